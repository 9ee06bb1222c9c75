// Plan list: keep at most two plans ticked for comparing, and confirm before archiving.
const form = document.getElementById('compare-form');
const button = document.getElementById('compare-picked');
const hint = document.getElementById('compare-hint');
const picks = Array.from(document.querySelectorAll('input.pick'));
const order = [];

function update() {
  const ticked = picks.filter((box) => box.checked);
  if (!button) return;
  button.disabled = ticked.length !== 2;
  if (ticked.length === 2) {
    hint.textContent = 'Ready: the older of the two is the baseline A.';
  } else {
    hint.textContent = `Tick two plans (${ticked.length} ticked); the older one is the baseline A.`;
  }
}

for (const box of picks) {
  box.addEventListener('change', () => {
    const index = order.indexOf(box);
    if (index >= 0) order.splice(index, 1);
    if (box.checked) {
      order.push(box);
      // A third tick replaces the earliest one, so two stay ticked.
      while (order.length > 2) order.shift().checked = false;
    }
    update();
  });
}
if (form) update();

for (const archive of document.querySelectorAll('form.archive-form')) {
  archive.addEventListener('submit', (event) => {
    const name = archive.dataset.planName;
    if (!window.confirm(`Archive "${name}"? An archived plan can be cloned but no longer edited.`)) {
      event.preventDefault();
    }
  });
}
