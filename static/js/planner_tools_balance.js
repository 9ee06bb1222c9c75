// The balance dialog: parameters for the optimizer, a job with a live progress bar, and the result
// opened as a new scenario. A sweep draws the disruption–balance trade-off (Chart.js, global Chart)
// and lets the planner pick a point: the job wrote the scenario of its chosen point; another point's
// scenario is produced by re-running the same problem as a rebalance at that point's disruption
// weight (same seed and data give the same answer).
import { clearError, formatNumber, normaliseError, openDialog, percent, showError } from "./planner_tools_common.js";

const $ = (selector) => document.querySelector(selector);
const POLL_MS = 1000;
const FINISHED = ["succeeded", "failed", "cancelled"];

export class BalanceTool {
  constructor(tools) {
    this.tools = tools;
    this.planner = tools.planner;
    this.dialog = $("#pt-balance-dialog");
    this.form = $("#pt-balance-form");
    this.job = null;
    this.chart = null;
    this.sweep = null;
    this.wire();
  }

  open(opener, territoryId) {
    const select = $("#pt-balance-subtree");
    const territory = territoryId ? this.tools.territories.get(territoryId) : null;
    if (!this.job || FINISHED.includes(this.job.status)) {
      select.replaceChildren();
      const whole = document.createElement("option");
      whole.value = "";
      whole.textContent = `The whole plan (${this.planner.plan.name})`;
      select.append(whole);
      for (const t of this.tools.territories.items.filter((item) => !item.is_leaf)) {
        const item = document.createElement("option");
        item.value = t.code;
        item.textContent = `Under ${this.tools.territories.label(t).trim()}`;
        item.selected = territory !== null && t.id === territory.id;
        select.append(item);
      }
      if (territory && territory.is_leaf) {
        // A leaf has nothing to balance inside it: balance its parent's subtree instead.
        const parent = this.tools.territories.get(territory.parent_id);
        if (parent) select.value = parent.code;
      }
      $("#pt-balance-name").placeholder = `${this.planner.plan.name} – balanced`;
    }
    this.updateMode();
    openDialog(this.dialog, opener);
    if (territoryId && !territory) {
      showError(this.dialog, { message: `Territory ${territoryId} is not in this plan (or not yours to see); balancing the whole plan.`, errors: {} });
    }
  }

  updateMode() {
    const mode = $("#pt-balance-mode").value;
    for (const element of this.form.querySelectorAll("[data-for-mode]")) {
      element.classList.toggle("pt-hidden-by-mode", !element.dataset.forMode.split(" ").includes(mode));
    }
    const disruption = $("#pt-balance-disruption");
    if (mode === "design" && disruption.dataset.touched !== "yes") disruption.value = "0";
    if (mode === "rebalance" && disruption.dataset.touched !== "yes") disruption.value = "1";
    const perRep = $("#pt-balance-per-rep").checked;
    $("#pt-balance-count").disabled = perRep;
  }

  parameters() {
    const data = new FormData(this.form);
    const mode = data.get("mode");
    const metrics = data.getAll("metric");
    const parameters = {
      mode,
      level: data.get("level") || "accounts",
      metrics,
      weights: metrics.map((m) => Number(data.get(`weight-${m}`) || 1)),
      tolerance: Number(data.get("tolerance")) / 100,
      keep_locks: $("#pt-balance-keep-locks").checked,
      per_rep: $("#pt-balance-per-rep").checked,
      time_limit: Number(data.get("time_limit") || 30),
    };
    if (data.get("subtree")) parameters.subtree = data.get("subtree");
    if (!parameters.per_rep && data.get("territories")) parameters.territories = Number(data.get("territories"));
    if (mode === "sweep") {
      parameters.sweep_weights = String(data.get("sweep_weights"))
        .split(/[\s,;]+/)
        .filter(Boolean)
        .map(Number);
    } else {
      parameters.disruption_weight = Number(data.get("disruption_weight"));
    }
    if (String(data.get("name") || "").trim()) parameters.name = String(data.get("name")).trim();
    return parameters;
  }

  setRunning(running) {
    $("#pt-balance-start").disabled = running;
    $("#pt-balance-cancel").hidden = !running;
    for (const field of this.form.querySelectorAll("fieldset.pt-metrics input, .pt-fields input, .pt-fields select")) {
      field.disabled = running;
    }
    if (!running) this.updateMode();
  }

  async start(parameters) {
    clearError(this.dialog);
    let job;
    try {
      job = await this.planner.api(`plans/${this.planner.plan.id}/balance/`, { method: "POST", body: parameters });
    } catch (error) {
      showError(this.dialog, normaliseError(error));
      return;
    }
    this.parametersSent = parameters;
    this.track(job);
  }

  track(job) {
    this.job = job;
    $("#pt-balance-job").hidden = false;
    this.setRunning(true);
    this.show(job);
    const poll = async () => {
      try {
        this.job = await this.planner.api(`jobs/${job.id}/`);
      } catch (error) {
        showError(this.dialog, normaliseError(error));
        this.setRunning(false);
        return;
      }
      this.show(this.job);
      if (FINISHED.includes(this.job.status)) {
        this.finished(this.job);
      } else {
        this.timer = setTimeout(poll, POLL_MS);
      }
    };
    this.timer = setTimeout(poll, POLL_MS);
  }

  show(job) {
    const progress = $("#pt-balance-progress");
    progress.value = job.progress;
    progress.setAttribute("aria-valuetext", `${job.progress} %: ${job.message || job.status}`);
    $("#pt-balance-percent").textContent = `${job.progress} %`;
    $("#pt-balance-message").textContent = job.message || job.status;
  }

  finished(job) {
    this.setRunning(false);
    if (job.status === "failed") {
      showError(this.dialog, { message: `The optimizer could not balance the plan: ${job.error}`, errors: {} });
      return;
    }
    if (job.status === "cancelled") {
      $("#pt-balance-message").textContent = "Cancelled: no scenario was written.";
      return;
    }
    if (job.parameters.mode === "sweep" && job.result.sweep && job.result.sweep.length) {
      this.showSweep(job);
      return;
    }
    this.openScenario(job.produced_plan);
  }

  openScenario(planId) {
    $("#pt-balance-message").textContent = "Opening the new scenario…";
    window.location.assign(`/planner/${planId}/`);
  }

  showSweep(job) {
    const points = job.result.sweep;
    const chosenWeight = job.result.disruption_weight;
    this.sweep = { job, points, chosen: points.findIndex((p) => p.disruption_weight === chosenWeight) };
    $("#pt-sweep").hidden = false;
    $("#pt-balance-message").textContent = `Sweep done: ${points.length} points. The scenario written is the marked one; pick another to make its scenario.`;
    const list = $("#pt-sweep-points");
    list.replaceChildren();
    points.forEach((point, index) => {
      const labelElement = document.createElement("label");
      const radio = document.createElement("input");
      radio.type = "radio";
      radio.name = "sweep-point";
      radio.value = String(index);
      radio.checked = index === this.sweep.chosen;
      radio.addEventListener("change", () => this.pick(index));
      labelElement.append(
        radio,
        ` disruption weight ${formatNumber(point.disruption_weight, 2)}: moves ${percent(point.moved_share)}, worst deviation ${percent(point.worst_deviation)}` +
          (point.within_tolerance ? ", within tolerance" : ", outside tolerance") +
          (index === this.sweep.chosen ? " (written as the scenario)" : ""),
      );
      list.append(labelElement);
    });
    this.drawChart();
    this.pick(this.sweep.chosen >= 0 ? this.sweep.chosen : 0);
    $("#pt-sweep").scrollIntoView({ block: "nearest" });
  }

  drawChart() {
    const canvas = $("#pt-sweep-chart");
    if (typeof window.Chart === "undefined") return; // the radio list still lets the planner pick
    if (this.chart) this.chart.destroy();
    const { points } = this.sweep;
    this.chart = new window.Chart(canvas, {
      type: "scatter",
      data: {
        datasets: [
          {
            label: "Disruption weights",
            data: points.map((p) => ({ x: p.moved_share * 100, y: p.worst_deviation * 100, weight: p.disruption_weight })),
            showLine: true,
            borderColor: "#8aa4c8",
            pointRadius: points.map(() => 6),
            pointHoverRadius: 9,
            pointBackgroundColor: points.map(() => "#1f6feb"),
          },
        ],
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              label: (context) =>
                `weight ${context.raw.weight}: ${formatNumber(context.raw.x, 1)} % moved, worst deviation ${formatNumber(context.raw.y, 1)} %`,
            },
          },
        },
        scales: {
          x: { title: { display: true, text: "Accounts moved (%)" }, beginAtZero: true },
          y: { title: { display: true, text: "Worst deviation from target (%)" }, beginAtZero: true },
        },
        onClick: (_event, elements) => {
          if (elements.length) {
            const index = elements[0].index;
            const radio = $(`#pt-sweep-points input[value="${index}"]`);
            if (radio) radio.checked = true;
            this.pick(index);
          }
        },
      },
    });
  }

  pick(index) {
    this.sweep.picked = index;
    if (this.chart) {
      const dataset = this.chart.data.datasets[0];
      dataset.pointBackgroundColor = this.sweep.points.map((_, i) => (i === index ? "#d9480f" : "#1f6feb"));
      dataset.pointRadius = this.sweep.points.map((_, i) => (i === index ? 9 : 6));
      this.chart.update();
    }
    const button = $("#pt-sweep-open");
    button.textContent =
      index === this.sweep.chosen
        ? "Open the scenario for this point"
        : "Make and open the scenario for this point";
  }

  async openPicked() {
    const { job, points, picked, chosen } = this.sweep;
    if (picked === chosen && job.produced_plan) {
      this.openScenario(job.produced_plan);
      return;
    }
    const point = points[picked];
    const parameters = { ...job.parameters };
    // The job stores every parameter, unset ones as null; the API takes them absent instead.
    for (const [key, value] of Object.entries(parameters)) {
      if (value === null || value === undefined) delete parameters[key];
    }
    delete parameters.sweep_weights;
    parameters.mode = "rebalance";
    parameters.disruption_weight = point.disruption_weight;
    const base = job.parameters.name || `${this.planner.plan.name} – balanced`;
    parameters.name = `${base} (disruption ${point.disruption_weight})`;
    $("#pt-sweep").hidden = true;
    await this.start(parameters);
  }

  wire() {
    $("#pt-balance-mode").addEventListener("change", () => this.updateMode());
    $("#pt-balance-per-rep").addEventListener("change", () => this.updateMode());
    $("#pt-balance-disruption").addEventListener("input", (event) => (event.target.dataset.touched = "yes"));
    this.form.addEventListener("submit", async (event) => {
      event.preventDefault();
      $("#pt-sweep").hidden = true;
      await this.start(this.parameters());
    });
    $("#pt-balance-cancel").addEventListener("click", async () => {
      if (!this.job) return;
      try {
        this.job = await this.planner.api(`jobs/${this.job.id}/cancel/`, { method: "POST", body: {} });
        this.show(this.job);
      } catch (error) {
        showError(this.dialog, normaliseError(error));
      }
    });
    $("#pt-sweep-open").addEventListener("click", () => this.openPicked());
  }
}
