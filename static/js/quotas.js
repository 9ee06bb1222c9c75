// /quotas/<id>/: the adjustment form offers only sensible pairs. Quota moves between siblings, so
// "to territory" lists the siblings of "from territory", and the rep lists follow the chosen
// territory. The server checks the same rules; this only saves a round trip.

const configNode = document.getElementById("quota-adjust-config");
const form = document.getElementById("adjust-form");

if (configNode && form) {
  const config = JSON.parse(configNode.textContent);
  const parentOf = new Map(config.territories.map((t) => [String(t.id), t.parent]));
  const fromTerritory = form.querySelector("#from-territory");
  const toTerritory = form.querySelector("#to-territory");
  const repTerritory = form.querySelector("#rep-territory");
  const fromRep = form.querySelector("#from-rep");
  const toRep = form.querySelector("#to-rep");
  const toOptions = Array.from(toTerritory.options);

  function showSiblings() {
    const parent = parentOf.get(fromTerritory.value);
    let firstVisible = null;
    for (const option of toOptions) {
      const sibling = option.value !== fromTerritory.value && parentOf.get(option.value) === parent;
      option.hidden = !sibling;
      option.disabled = !sibling;
      if (sibling && firstVisible === null) firstVisible = option;
    }
    const current = toTerritory.selectedOptions[0];
    if (!current || current.disabled) {
      if (firstVisible) firstVisible.selected = true;
    }
  }

  function fillReps() {
    const reps = config.reps[repTerritory.value] || [];
    for (const [select, pick] of [[fromRep, 0], [toRep, 1]]) {
      select.replaceChildren(
        ...reps.map((rep) => new Option(rep.name, String(rep.id))),
      );
      if (reps.length > pick) select.selectedIndex = pick;
    }
  }

  function showBetween() {
    const between = form.querySelector("input[name=between]:checked").value;
    for (const label of form.querySelectorAll("[data-between]")) {
      const on = label.dataset.between === between;
      label.hidden = !on;
      for (const control of label.querySelectorAll("select")) control.disabled = !on;
    }
  }

  fromTerritory.addEventListener("change", showSiblings);
  repTerritory?.addEventListener("change", fillReps);
  for (const radio of form.querySelectorAll("input[name=between]")) {
    radio.addEventListener("change", showBetween);
  }
  showSiblings();
  if (repTerritory) fillReps();
  showBetween();
}

// A large plan's allocation runs in a worker: poll the plan until its job is done, then reload so
// the table shows the new quotas (or the error).
const job = document.getElementById("allocation-job");
if (job) {
  const url = `/api/v1/quota-plans/${job.dataset.quotaPlan}/`;
  const poll = async () => {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.ok) {
        const plan = await response.json();
        const status = plan.allocation_job?.status;
        if (status && status !== job.dataset.status) {
          if (status === "running") {
            job.dataset.status = status;
            job.textContent = job.textContent.replace("queued", "running");
          } else {
            window.location.reload();
            return;
          }
        }
      }
    } catch {
      // The server may be restarting; try again on the next tick.
    }
    setTimeout(poll, 2000);
  };
  setTimeout(poll, 2000);
}
