// Assignment rules: the list in priority order, an editor for conditions and postal-code lists, and a
// preview (computed by the server's resolver) of how many accounts would move before saving.
import { clearError, normaliseError, openDialog, option, reportFailure, showError } from "./planner_tools_common.js";

const $ = (selector) => document.querySelector(selector);

// Mirrors territories/rules.py: which operators apply to which fields.
const TEXT_FIELDS = ["industry", "segment", "status", "lead_source", "postal_code", "state", "city", "country", "name"];
const NUMBER_FIELDS = ["revenue", "potential", "employees", "workload_hours"];
const TEXT_OPS = [["eq", "is"], ["ne", "is not"], ["in", "is one of"], ["not_in", "is none of"], ["prefix", "starts with"]];
const NUMBER_OPS = [["eq", "="], ["ne", "≠"], ["gte", "≥"], ["lte", "≤"], ["gt", ">"], ["lt", "<"], ["in", "is one of"], ["not_in", "is none of"]];
const POSTAL_LIST = ["in_postal_list", "is in the postal-code list"];
const LIST_OPS = ["in", "not_in"];

function opsFor(field) {
  if (NUMBER_FIELDS.includes(field)) return NUMBER_OPS;
  if (field === "postal_code") return [...TEXT_OPS, POSTAL_LIST];
  return TEXT_OPS;
}

function label(field) {
  return field.replaceAll("_", " ");
}

export class RulesTool {
  constructor(tools) {
    this.tools = tools;
    this.planner = tools.planner;
    this.dialog = $("#pt-rules-dialog");
    this.form = $("#pt-rule-form");
    this.rules = [];
    this.editing = null;
    this.previewed = null;
    this.wire();
  }

  get editable() {
    return this.tools.editable;
  }

  async open(opener) {
    $("#pt-rule-new").hidden = !this.editable;
    if (this.resume) {
      // Back from looking at the preview's accounts on the map: the editor is as it was left.
      this.resume = false;
      openDialog(this.dialog, opener);
      $("#pt-rule-name").focus();
      return;
    }
    this.showList();
    openDialog(this.dialog, opener);
    await this.loadRules();
  }

  showList() {
    $("#pt-rules-list-view").hidden = false;
    this.form.hidden = true;
  }

  async loadRules() {
    try {
      const body = await this.planner.api(`plans/${this.planner.plan.id}/rules/?limit=1000`);
      this.rules = body.results || body;
    } catch (error) {
      showError($("#pt-rules-list-view"), normaliseError(error));
      return;
    }
    const rows = $("#pt-rules-rows");
    rows.replaceChildren();
    for (const rule of this.rules) {
      const row = document.createElement("tr");
      const cells = [
        [String(rule.priority), "num"],
        [rule.name, ""],
        [`${rule.territory.code} ${rule.territory.name}`, ""],
        [rule.description + (rule.postal_codes_count ? ` (${rule.postal_codes_count} postal codes)` : ""), ""],
        [rule.active ? "yes" : "no", ""],
      ];
      for (const [text, className] of cells) {
        const cell = document.createElement("td");
        cell.textContent = text;
        if (className) cell.className = className;
        row.append(cell);
      }
      const actions = document.createElement("td");
      if (this.editable) {
        const edit = document.createElement("button");
        edit.type = "button";
        edit.className = "secondary";
        edit.textContent = "Edit";
        edit.setAttribute("aria-label", `Edit rule ${rule.name}`);
        edit.addEventListener("click", () => this.edit(rule.id));
        actions.append(edit);
      }
      row.append(actions);
      rows.append(row);
    }
    $("#pt-rules-empty").hidden = this.rules.length > 0;
  }

  async edit(ruleId) {
    let rule = null;
    if (ruleId) {
      try {
        rule = await this.planner.api(`rules/${ruleId}/`);
      } catch (error) {
        showError($("#pt-rules-list-view"), normaliseError(error));
        return;
      }
    }
    this.editing = rule;
    this.form.reset();
    clearError(this.form);
    $("#pt-rule-title").textContent = rule ? `Edit rule ${rule.name}` : "New rule";
    const selected = this.tools.selectedTerritory();
    this.tools.territories.fill($("#pt-rule-territory"), {
      filter: (t) => t.is_leaf,
      selected: rule ? rule.territory.id : selected && selected.is_leaf ? selected.id : null,
    });
    $("#pt-rule-name").value = rule ? rule.name : "";
    $("#pt-rule-priority").value = rule ? rule.priority : 100;
    $("#pt-rule-active").checked = rule ? rule.active : true;
    $("#pt-rule-postal").value = rule ? rule.postal_codes.join("\n") : "";
    const list = $("#pt-conditions");
    list.replaceChildren();
    for (const condition of rule ? rule.conditions : []) this.addCondition(condition);
    if (!rule) this.addCondition({ field: "industry", op: "eq", value: "" });
    this.updatePostalBlock();
    this.resetPreview();
    $("#pt-rule-delete-button")?.remove();
    if (rule) {
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "danger";
      remove.id = "pt-rule-delete-button";
      remove.textContent = "Delete rule…";
      remove.addEventListener("click", () => this.previewDelete());
      $("#pt-rule-back").before(remove);
    }
    $("#pt-rules-list-view").hidden = true;
    this.form.hidden = false;
    $("#pt-rule-name").focus();
  }

  addCondition(condition) {
    const list = $("#pt-conditions");
    const index = list.children.length + 1;
    const item = document.createElement("li");
    const field = document.createElement("select");
    field.setAttribute("aria-label", `Condition ${index}: field`);
    for (const name of [...TEXT_FIELDS, ...NUMBER_FIELDS]) field.append(option(name, label(name), name === condition.field));
    const custom = condition.field && condition.field.startsWith("attributes.");
    field.append(option("attributes.", "custom attribute…", custom));
    const attribute = document.createElement("input");
    attribute.type = "text";
    attribute.placeholder = "attribute name";
    attribute.setAttribute("aria-label", `Condition ${index}: custom attribute name`);
    attribute.value = custom ? condition.field.slice("attributes.".length) : "";
    const op = document.createElement("select");
    op.setAttribute("aria-label", `Condition ${index}: operator`);
    const value = document.createElement("input");
    value.type = "text";
    value.setAttribute("aria-label", `Condition ${index}: value`);
    const shown = Array.isArray(condition.value) ? condition.value.join(", ") : condition.value ?? "";
    value.value = shown;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "secondary";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove condition ${index}`);
    const refreshOps = (selectedOp) => {
      const name = field.value === "attributes." ? "attributes." : field.value;
      op.replaceChildren(...opsFor(name).map(([v, text]) => option(v, text, v === selectedOp)));
      attribute.hidden = field.value !== "attributes.";
      value.hidden = op.value === POSTAL_LIST[0];
      value.placeholder = LIST_OPS.includes(op.value) ? "values, separated by commas" : "value";
    };
    field.addEventListener("change", () => {
      refreshOps(op.value);
      this.updatePostalBlock();
    });
    op.addEventListener("change", () => {
      refreshOps(op.value);
      this.updatePostalBlock();
    });
    remove.addEventListener("click", () => {
      item.remove();
      this.updatePostalBlock();
      this.resetPreview();
      $("#pt-condition-add").focus();
    });
    item.append(field, attribute, op, value, remove);
    list.append(item);
    refreshOps(condition.op);
  }

  conditions() {
    return [...$("#pt-conditions").children].map((item) => {
      const [field, attribute, op, value] = item.querySelectorAll("select, input");
      const name = field.value === "attributes." ? `attributes.${attribute.value.trim()}` : field.value;
      if (op.value === POSTAL_LIST[0]) return { field: name, op: op.value };
      if (LIST_OPS.includes(op.value)) {
        return { field: name, op: op.value, value: value.value.split(",").map((v) => v.trim()).filter(Boolean) };
      }
      return { field: name, op: op.value, value: value.value.trim() };
    });
  }

  updatePostalBlock() {
    const usesList = this.conditions().some((c) => c.op === POSTAL_LIST[0]);
    $("#pt-postal-block").hidden = !usesList;
  }

  body() {
    const usesList = this.conditions().some((c) => c.op === POSTAL_LIST[0]);
    return {
      name: $("#pt-rule-name").value,
      territory: $("#pt-rule-territory").value ? Number($("#pt-rule-territory").value) : null,
      priority: Number($("#pt-rule-priority").value),
      active: $("#pt-rule-active").checked,
      conditions: this.conditions(),
      postal_codes: usesList ? $("#pt-rule-postal").value : [],
    };
  }

  resetPreview() {
    this.previewed = null;
    this.deleting = false;
    $("#pt-rule-save").disabled = true;
    $("#pt-rule-save").textContent = "Save rule";
    $("#pt-preview-summary").textContent = "Preview the rule to see how many accounts would move before you save it.";
    $("#pt-preview-table").hidden = true;
    $("#pt-preview-sample").hidden = true;
    $("#pt-preview-select").hidden = true;
  }

  async runPreview(body) {
    clearError(this.form);
    $("#pt-preview-summary").textContent = "Resolving every account with and without this edit…";
    const button = $("#pt-rule-preview");
    button.disabled = true;
    let preview;
    try {
      preview = await this.planner.api(`plans/${this.planner.plan.id}/rules/preview/`, { method: "POST", body });
    } catch (error) {
      this.resetPreview();
      showError(this.form, normaliseError(error));
      return null;
    } finally {
      button.disabled = false;
    }
    this.showPreview(preview);
    return preview;
  }

  showPreview(preview) {
    const moves = preview.would_move;
    const words = moves === 1 ? "1 account would move" : `${moves.toLocaleString()} accounts would move`;
    const summary = $("#pt-preview-summary");
    summary.replaceChildren();
    const figure = document.createElement("span");
    figure.className = "pt-figure";
    figure.id = "pt-preview-count";
    figure.textContent = words;
    summary.append(
      figure,
      this.deleting ? "." : `. The rule's conditions match ${preview.matched.toLocaleString()} accounts; after saving it decides ${preview.decided_by_rule.toLocaleString()} of them (earlier rules, locks and corporate families take the others).`,
    );
    const tbody = $("#pt-preview-table tbody");
    tbody.replaceChildren();
    for (const row of preview.by_territory) {
      const tr = document.createElement("tr");
      for (const [text, className] of [
        [row.territory ? `${row.territory.code} ${row.territory.name}` : "Unassigned", ""],
        [`+${row.gain}`, "num"],
        [`−${row.loss}`, "num"],
      ]) {
        const td = document.createElement("td");
        td.textContent = text;
        if (className) td.className = className;
        tr.append(td);
      }
      tbody.append(tr);
    }
    $("#pt-preview-table").hidden = preview.by_territory.length === 0;
    const sample = $("#pt-preview-sample ul");
    sample.replaceChildren();
    for (const account of preview.sample) {
      const li = document.createElement("li");
      const from = account.from ? account.from.code : "unassigned";
      const to = account.to ? account.to.code : "unassigned";
      li.textContent = `${account.name} (${account.external_id}): ${from} → ${to}`;
      sample.append(li);
    }
    $("#pt-preview-sample").hidden = preview.sample.length === 0;
    $("#pt-preview-select").hidden = !(preview.account_ids.length && typeof this.planner.select === "function");
    this.previewed = preview;
    const save = $("#pt-rule-save");
    save.disabled = false;
    save.textContent = this.deleting
      ? `Delete rule (moves ${moves.toLocaleString()})`
      : `Save rule (moves ${moves.toLocaleString()})`;
  }

  async previewDelete() {
    this.deleting = true;
    const preview = await this.runPreview({ rule: this.editing.id, delete: true });
    if (preview) $("#pt-rule-save").focus();
  }

  wire() {
    $("#pt-rule-new").addEventListener("click", () => this.edit(null));
    // Show the accounts the preview would move on the map; the rule editor keeps its input for later.
    $("#pt-preview-select").addEventListener("click", () => {
      this.planner.select({ accountIds: this.previewed.account_ids });
      this.resume = true;
      this.dialog.close();
    });
    $("#pt-condition-add").addEventListener("click", () => {
      this.addCondition({ field: "industry", op: "eq", value: "" });
      this.resetPreview();
      const selects = $("#pt-conditions").querySelectorAll("li:last-child select");
      selects[0].focus();
    });
    $("#pt-rule-back").addEventListener("click", async () => {
      this.showList();
      await this.loadRules();
      $("#pt-rule-new").focus();
    });
    // Any change after a preview makes it stale: saving needs a fresh one.
    this.form.addEventListener("input", () => this.previewed && this.resetPreview());
    this.form.addEventListener("change", () => this.previewed && this.resetPreview());
    $("#pt-rule-preview").addEventListener("click", async () => {
      this.deleting = false;
      const body = this.body();
      if (this.editing) body.rule = this.editing.id;
      await this.runPreview(body);
    });
    this.form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!this.previewed) return;
      const version = this.planner.plan.version;
      const save = $("#pt-rule-save");
      save.disabled = true;
      let result;
      try {
        if (this.deleting) {
          result = await this.planner.api(`rules/${this.editing.id}/`, { method: "DELETE", body: { version } });
        } else if (this.editing) {
          result = await this.planner.api(`rules/${this.editing.id}/`, { method: "PATCH", body: { ...this.body(), version } });
        } else {
          result = await this.planner.api(`plans/${this.planner.plan.id}/rules/`, { method: "POST", body: { ...this.body(), version } });
        }
      } catch (error) {
        save.disabled = false;
        await reportFailure(this.tools, this.form, error);
        return;
      }
      await this.tools.afterEdit(result.version);
      this.showList();
      await this.loadRules();
      const status = $("#pt-rules-list-view .subtle");
      status.textContent = `Saved. ${result.moved.toLocaleString()} accounts moved. Rules are tried in order of priority (lowest first) after locked accounts and corporate families, before geography.`;
      $("#pt-rule-new").focus();
    });
  }
}
