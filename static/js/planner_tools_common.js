// Shared helpers of the planner's editing tools: dialogs, error display, the territory list.

export const EDITABLE_STATUSES = ["draft", "in_review"];

// Open a <dialog> modally and give focus back to the control that opened it when it closes.
export function openDialog(dialog, opener) {
  clearError(dialog);
  if (!dialog.open) dialog.showModal();
  const first = dialog.querySelector("[autofocus], input:not([type=hidden]):not([disabled]), select, textarea, button");
  if (first) first.focus();
  dialog.addEventListener(
    "close",
    () => {
      if (opener && document.contains(opener)) opener.focus();
    },
    { once: true },
  );
}

export function wireCloseButtons(dialog) {
  for (const button of dialog.querySelectorAll("[data-close]")) {
    button.addEventListener("click", () => dialog.close());
  }
}

function errorBox(scope) {
  return scope.querySelector(".pt-error:not([hidden])") || scope.querySelector(".pt-error");
}

export function clearError(scope) {
  for (const box of scope.querySelectorAll(".pt-error")) {
    box.hidden = true;
    box.textContent = "";
  }
  for (const field of scope.querySelectorAll("[aria-invalid=true]")) field.removeAttribute("aria-invalid");
}

// Show an API refusal ({message, errors}) in the dialog, marking the fields it names. The inputs
// keep what the planner typed, so a conflict or a typo loses nothing.
export function showError(scope, error) {
  clearError(scope);
  const box = errorBox(scope);
  const message = (error && error.message) || String(error || "Something went wrong.");
  const errors = (error && error.errors) || {};
  box.textContent = "";
  const lead = document.createElement("span");
  lead.textContent =
    error && error.status === 409
      ? `${message} The plan has been reloaded with those edits; your input is kept: check it and save again.`
      : message;
  box.append(lead);
  const entries = Object.entries(errors);
  if (entries.length) {
    const list = document.createElement("ul");
    for (const [field, problems] of entries) {
      const item = document.createElement("li");
      item.textContent = `${field.replaceAll("_", " ")}: ${[].concat(problems).join(" ")}`;
      list.append(item);
      const input =
        scope.querySelector(`[name="${CSS.escape(field)}"]`) ||
        scope.querySelector(`[name="${CSS.escape(field.split(".")[0])}"]`);
      if (input) input.setAttribute("aria-invalid", "true");
    }
    box.append(list);
  }
  box.hidden = false;
  box.setAttribute("tabindex", "-1");
  box.focus();
}

// The planner's api() rejects with the {message, errors} body; other failures are Errors.
// planner.js rejects with an Error carrying the response body and status; tolerate plain bodies too.
export function normaliseError(error) {
  if (error && error.body && typeof error.body === "object") {
    return { message: error.body.message || error.message, errors: error.body.errors || {}, status: error.status };
  }
  if (error && typeof error === "object" && ("message" in error || "errors" in error)) {
    return { message: error.message, errors: error.errors || {}, status: error.status };
  }
  return { message: String(error), errors: {} };
}

export function option(value, label, selected = false) {
  const element = document.createElement("option");
  element.value = value === null || value === undefined ? "" : String(value);
  element.textContent = label;
  element.selected = selected;
  return element;
}

export function formatNumber(value, digits = 0) {
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function percent(value, digits = 1) {
  return value === null || value === undefined ? "–" : `${formatNumber(value * 100, digits)} %`;
}

// The plan's territories, in hierarchy order, with their depth (for indented <select> labels).
export class TerritoryList {
  constructor(planner) {
    this.planner = planner;
    this.items = [];
  }

  async load() {
    const body = await this.planner.api(`territories/?plan=${this.planner.plan.id}&limit=1000`);
    const items = body.results || body;
    const byParent = new Map();
    for (const item of items) {
      const key = item.parent_id ?? "root";
      if (!byParent.has(key)) byParent.set(key, []);
      byParent.get(key).push(item);
    }
    const ids = new Set(items.map((t) => t.id));
    const ordered = [];
    const walk = (key, depth) => {
      for (const item of (byParent.get(key) || []).sort((a, b) => a.code.localeCompare(b.code))) {
        ordered.push({ ...item, depth });
        walk(item.id, depth + 1);
      }
    };
    walk("root", 0);
    // Territories whose parent is outside the user's scope still appear, at the top level.
    for (const item of items) {
      if (item.parent_id && !ids.has(item.parent_id)) {
        ordered.push({ ...item, depth: 0 });
        walk(item.id, 1);
      }
    }
    this.items = ordered;
    return ordered;
  }

  get(id) {
    return this.items.find((t) => t.id === Number(id)) || null;
  }

  label(territory) {
    return `${"\u2003".repeat(territory.depth)}${territory.code} · ${territory.name}`;
  }

  fill(select, { filter = () => true, selected = null, empty = null } = {}) {
    select.replaceChildren();
    if (empty !== null) select.append(option("", empty, selected === null));
    for (const territory of this.items.filter(filter)) {
      select.append(option(territory.id, this.label(territory), territory.id === selected));
    }
  }
}

// A refused edit: on a version conflict, reload the plan first (so the next save carries the new
// version), then explain in the dialog. The dialog stays open with the planner's input.
export async function reportFailure(tools, scope, error) {
  const problem = normaliseError(error);
  if (problem.status === 409) {
    try {
      await tools.planner.refresh();
      await tools.territories.load();
    } catch (reloadError) {
      problem.message += ` Reloading failed too (${normaliseError(reloadError).message}); reload the page.`;
    }
  }
  showError(scope, problem);
}
