// The planner's editing tools: create, rename, merge and split territories, attach reps, edit
// assignment rules with a preview, and balance with the optimizer. Runs inside /planner/<id>/ on top
// of window.TesseraPlanner (static/js/planner.js); every edit goes through the API with the plan
// version, and a refused edit keeps the dialog open with what the planner typed.
import {
  EDITABLE_STATUSES,
  TerritoryList,
  normaliseError,
  openDialog,
  option,
  reportFailure,
  showError,
  wireCloseButtons,
} from "./planner_tools_common.js";
import { BalanceTool } from "./planner_tools_balance.js";
import { RulesTool } from "./planner_tools_rules.js";

const $ = (selector) => document.querySelector(selector);

class PlannerTools {
  constructor(planner) {
    this.planner = planner;
    this.territories = new TerritoryList(planner);
    this.editable = EDITABLE_STATUSES.includes(planner.plan.status);
    this.buttons = {};
    for (const dialog of document.querySelectorAll(".pt-dialog")) wireCloseButtons(dialog);
  }

  // Planners may balance any plan they see (the result is a new scenario), but edit by hand only
  // drafts and plans in review. The page's user.can_plan is false on plans it shows read-only, so the
  // role is asked for then.
  async isPlanner() {
    if (this.planner.user.can_plan) return true;
    try {
      const me = await this.planner.api("me/");
      return ["planner", "admin"].includes(me.role);
    } catch (error) {
      return false;
    }
  }

  async start() {
    if (!(await this.isPlanner())) return;
    this.editable = this.editable && this.planner.user.can_plan;
    await this.territories.load();
    const toolbar = this.planner.toolbar;
    toolbar.hidden = false;
    const group = document.createElement("div");
    group.className = "pt-toolbar";
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", "Editing tools");
    const add = (key, label, handler, title = "") => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "pt-toolbar-button";
      button.id = `pt-tool-${key}`;
      button.textContent = label;
      if (title) button.title = title;
      button.addEventListener("click", () => handler(button));
      group.append(button);
      this.buttons[key] = button;
      return button;
    };
    if (this.editable) {
      add("new", "New territory", (b) => this.openTerritory(b, null));
      add("edit", "Edit territory", (b) => this.openTerritory(b, this.selectedTerritory()));
      add("reps", "Reps", (b) => this.openMembers(b));
      add("merge", "Merge", (b) => this.openMerge(b));
      add("split", "Split", (b) => this.openSplit(b));
    }
    this.rules = new RulesTool(this);
    add("rules", "Rules", (b) => this.rules.open(b));
    this.balance = new BalanceTool(this);
    add("balance", "Balance…", (b) => this.balance.open(b, null));
    toolbar.append(group);
    this.wireTerritoryDialog();
    this.wireMergeDialog();
    this.wireSplitDialog();
    this.wireMembersDialog();
    this.updateButtons(this.planner.selection());
    document.addEventListener("planner:selection", (event) => this.updateButtons(event.detail));
    document.addEventListener("planner:changed", () => this.territories.load().catch(() => {}));

    const balanceFor = new URLSearchParams(window.location.search).get("balance");
    if (balanceFor !== null) this.balance.open(this.buttons.balance, balanceFor ? Number(balanceFor) : null);
  }

  selectedTerritory() {
    const selection = this.planner.selection();
    return selection && selection.territoryId ? this.territories.get(selection.territoryId) : null;
  }

  updateButtons(selection) {
    const territory = selection && selection.territoryId ? this.territories.get(selection.territoryId) : null;
    const hasMembers = selection && (selection.accountIds.length || selection.unitIds.length);
    const set = (key, enabled, why) => {
      const button = this.buttons[key];
      if (!button) return;
      button.disabled = !enabled;
      button.title = enabled ? "" : why;
    };
    set("edit", territory, "Select a territory first");
    set("reps", territory, "Select a territory first");
    set("merge", territory, "Select the territory to merge away first");
    set("split", territory && territory.is_leaf && hasMembers, "Select a leaf territory and the accounts or units to split off");
  }

  // Every successful edit: adopt the new version, reload the map and panel, then our list.
  async afterEdit(version) {
    if (version !== undefined && version !== null) this.planner.setVersion(version);
    await this.planner.refresh();
    await this.territories.load();
    this.updateButtons(this.planner.selection());
  }

  async send(scope, path, method, body) {
    // One request at a time per dialog: a double click must not send the edit twice.
    const buttons = [...scope.querySelectorAll("button:not([data-close]):not(:disabled)")];
    for (const button of buttons) button.disabled = true;
    try {
      return await this.planner.api(path, { method, body: { ...body, version: this.planner.plan.version } });
    } catch (error) {
      await reportFailure(this, scope, error);
      return null;
    } finally {
      for (const button of buttons) button.disabled = false;
    }
  }

  // --- create and edit -------------------------------------------------------------------------

  openTerritory(opener, territory) {
    const dialog = $("#pt-territory-dialog");
    const form = $("#pt-territory-form");
    form.reset();
    this.editing = territory;
    $("#pt-territory-title").textContent = territory ? `Edit ${territory.code} ${territory.name}` : "New territory";
    $("#pt-territory-save").textContent = territory ? "Save" : "Create";
    $("#pt-territory-delete").hidden = !territory;
    const selected = this.selectedTerritory();
    const defaultParent = territory ? territory.parent_id : selected && !selected.is_leaf ? selected.id : selected ? selected.parent_id : null;
    this.territories.fill($("#pt-territory-parent"), {
      // A territory cannot move under itself; the server also refuses its descendants.
      filter: (t) => !territory || t.id !== territory.id,
      selected: defaultParent,
      empty: "(top level)",
    });
    if (territory) {
      $("#pt-territory-name").value = territory.name;
      $("#pt-territory-code").value = territory.code;
      $("#pt-territory-level").value = territory.level_name;
      $("#pt-territory-color").value = territory.color;
    }
    openDialog(dialog, opener);
  }

  wireTerritoryDialog() {
    const dialog = $("#pt-territory-dialog");
    $("#pt-territory-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new FormData(event.target);
      const body = {
        name: data.get("name"),
        code: data.get("code"),
        parent: data.get("parent") ? Number(data.get("parent")) : null,
        color: data.get("color"),
        level_name: data.get("level_name") || "territory",
      };
      const editing = this.editing;
      const result = editing
        ? await this.send(dialog, `territories/${editing.id}/`, "PATCH", body)
        : await this.send(dialog, "territories/", "POST", { ...body, plan: this.planner.plan.id });
      if (!result) return;
      dialog.close();
      await this.afterEdit(result.version);
    });
    $("#pt-territory-delete").addEventListener("click", async () => {
      const territory = this.editing;
      if (!territory || !window.confirm(`Delete ${territory.code} ${territory.name}?`)) return;
      const result = await this.send(dialog, `territories/${territory.id}/`, "DELETE", {});
      if (!result) return;
      dialog.close();
      await this.afterEdit(result.version);
    });
  }

  // --- merge and split ---------------------------------------------------------------------------

  openMerge(opener) {
    const territory = this.selectedTerritory();
    if (!territory) return;
    this.merging = territory;
    $("#pt-merge-title").textContent = `Merge ${territory.code} ${territory.name}`;
    $("#pt-merge-intro").textContent = `${territory.code} ${territory.name} will be merged into the territory you choose.`;
    this.territories.fill($("#pt-merge-into"), {
      filter: (t) => t.id !== territory.id && t.is_leaf === territory.is_leaf,
    });
    openDialog($("#pt-merge-dialog"), opener);
  }

  wireMergeDialog() {
    const dialog = $("#pt-merge-dialog");
    $("#pt-merge-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const into = Number(new FormData(event.target).get("into"));
      const result = await this.send(dialog, `territories/${this.merging.id}/merge/`, "POST", { into });
      if (!result) return;
      dialog.close();
      await this.afterEdit(result.version);
    });
  }

  openSplit(opener) {
    const territory = this.selectedTerritory();
    const selection = this.planner.selection();
    if (!territory) return;
    this.splitting = { territory, accountIds: [...selection.accountIds], unitIds: [...selection.unitIds] };
    $("#pt-split-form").reset();
    $("#pt-split-title").textContent = `Split ${territory.code} ${territory.name}`;
    const parts = [];
    if (selection.accountIds.length) parts.push(`${selection.accountIds.length} selected accounts`);
    if (selection.unitIds.length) parts.push(`${selection.unitIds.length} selected geography units`);
    $("#pt-split-intro").textContent = `A new territory beside ${territory.code} takes ${parts.join(" and ")}.`;
    $("#pt-split-code").value = `${territory.code}-B`;
    openDialog($("#pt-split-dialog"), opener);
  }

  wireSplitDialog() {
    const dialog = $("#pt-split-dialog");
    $("#pt-split-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new FormData(event.target);
      const { territory, accountIds, unitIds } = this.splitting;
      const result = await this.send(dialog, `territories/${territory.id}/split/`, "POST", {
        name: data.get("name"),
        code: data.get("code"),
        color: data.get("color"),
        account_ids: accountIds,
        unit_ids: unitIds,
      });
      if (!result) return;
      dialog.close();
      await this.afterEdit(result.version);
    });
  }

  // --- reps ----------------------------------------------------------------------------------------

  async openMembers(opener) {
    const territory = this.selectedTerritory();
    if (!territory) return;
    this.membersOf = territory;
    $("#pt-members-title").textContent = `Reps of ${territory.code} ${territory.name}`;
    $("#pt-rep-search").value = "";
    $("#pt-rep-results").replaceChildren();
    this.members = territory.reps.map((m) => ({ ...m }));
    this.renderMembers();
    openDialog($("#pt-members-dialog"), opener);
  }

  renderMembers() {
    const rows = $("#pt-members-rows");
    rows.replaceChildren();
    this.members.forEach((member, index) => {
      const row = document.createElement("tr");
      const name = document.createElement("td");
      name.textContent = `${member.name}${member.external_id ? ` (${member.external_id})` : ""}`;
      const roleCell = document.createElement("td");
      const role = document.createElement("select");
      role.name = `members.${index}.role`;
      role.setAttribute("aria-label", `Role of ${member.name}`);
      for (const [value, label] of [["primary", "Primary"], ["overlay", "Overlay"], ["support", "Support"]]) {
        role.append(option(value, label, member.role === value));
      }
      role.addEventListener("change", () => (member.role = role.value));
      roleCell.append(role);
      const shareCell = document.createElement("td");
      const share = document.createElement("input");
      share.type = "number";
      share.min = "0.001";
      share.max = "1";
      share.step = "0.05";
      share.value = member.share;
      share.name = `members.${index}.share`;
      share.setAttribute("aria-label", `Share of ${member.name}`);
      share.addEventListener("input", () => (member.share = share.value));
      shareCell.append(share);
      const removeCell = document.createElement("td");
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "secondary";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", `Remove ${member.name}`);
      remove.addEventListener("click", () => {
        this.members.splice(index, 1);
        this.renderMembers();
        $("#pt-rep-search").focus();
      });
      removeCell.append(remove);
      row.append(name, roleCell, shareCell, removeCell);
      rows.append(row);
    });
    $("#pt-members-empty").hidden = this.members.length > 0;
  }

  wireMembersDialog() {
    const dialog = $("#pt-members-dialog");
    let timer = null;
    $("#pt-rep-search").addEventListener("input", (event) => {
      clearTimeout(timer);
      const term = event.target.value.trim();
      timer = setTimeout(() => this.searchReps(term), 200);
    });
    $("#pt-rep-search").addEventListener("keydown", (event) => {
      // Enter in the search box picks the first hit rather than submitting the form.
      if (event.key === "Enter") {
        event.preventDefault();
        const first = $("#pt-rep-results button");
        if (first) first.click();
      }
    });
    $("#pt-members-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const members = this.members.map((m) => ({ rep: m.rep, role: m.role, share: Number(m.share) }));
      const result = await this.send(dialog, `territories/${this.membersOf.id}/members/`, "PUT", { members });
      if (!result) return;
      dialog.close();
      await this.afterEdit(result.version);
    });
  }

  async searchReps(term) {
    const list = $("#pt-rep-results");
    if (!term) {
      list.replaceChildren();
      return;
    }
    let body;
    try {
      body = await this.planner.api(`territories/rep-candidates/?search=${encodeURIComponent(term)}&limit=10`);
    } catch (error) {
      showError($("#pt-members-dialog"), normaliseError(error));
      return;
    }
    list.replaceChildren();
    const taken = new Set(this.members.map((m) => m.rep));
    const results = (body.results || []).filter((rep) => !taken.has(rep.id));
    if (!results.length) {
      const none = document.createElement("li");
      none.className = "empty";
      none.textContent = "No matching reps.";
      list.append(none);
    }
    for (const rep of results) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = `Add ${rep.name} (${rep.external_id})${rep.active ? "" : " – inactive"}`;
      button.addEventListener("click", () => {
        this.members.push({ rep: rep.id, name: rep.name, external_id: rep.external_id, role: this.members.length ? "overlay" : "primary", share: 1 });
        this.renderMembers();
        $("#pt-rep-search").value = "";
        list.replaceChildren();
        $("#pt-rep-search").focus();
      });
      item.append(button);
      list.append(item);
    }
  }
}

function boot(planner) {
  const tools = new PlannerTools(planner);
  window.TesseraPlannerTools = tools;
  tools.start().catch((error) => {
    // The tools are an addition to the page: a failure here must not take the planner down.
    const message = normaliseError(error).message;
    const note = document.createElement("p");
    note.className = "pt-error";
    note.setAttribute("role", "alert");
    note.textContent = `The editing tools could not start: ${message}`;
    (planner.toolbar || document.body).append(note);
  });
}

if (window.TesseraPlanner) {
  boot(window.TesseraPlanner);
} else {
  document.addEventListener("planner:ready", () => boot(window.TesseraPlanner), { once: true });
}
