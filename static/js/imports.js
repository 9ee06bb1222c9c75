// The imports page: upload a file to /api/v1/imports/, poll the job for progress, show the report.
const form = document.getElementById("import-form");
const submit = document.getElementById("import-submit");
const statusBox = document.getElementById("import-status");
const message = document.getElementById("import-message");
const bar = document.getElementById("import-progress");
const percent = document.getElementById("import-percent");
const errorBox = document.getElementById("import-error");
const reportBox = document.getElementById("import-report");
const POLL_MS = 500;

function csrfToken() {
  return form.querySelector("input[name=csrfmiddlewaretoken]").value;
}

function showError(text) {
  errorBox.textContent = text;
  errorBox.hidden = !text;
}

function errorText(body, status) {
  if (!body || typeof body !== "object") return `The server answered ${status}.`;
  const details = Object.entries(body.errors || {}).map(([field, messages]) =>
    `${field}: ${[].concat(messages).map((m) => (typeof m === "string" ? m : JSON.stringify(m))).join(" ")}`);
  return [body.message || `The server answered ${status}.`, ...details].join(" ");
}

function showProgress(job) {
  statusBox.hidden = false;
  message.textContent = job.message || job.status;
  bar.value = job.progress;
  percent.textContent = `${job.progress}%`;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function showReport(job) {
  const report = job.report || {};
  const totals = document.getElementById("import-totals");
  const notes = document.getElementById("import-notes");
  const table = document.getElementById("import-rows");
  const body = table.tBodies[0];
  totals.replaceChildren();
  notes.replaceChildren();
  body.replaceChildren();
  // Stored as JSON, the totals lose their order; show them as the importer counts them.
  const order = ["created", "updated", "unchanged", "error"];
  const totalsInOrder = Object.entries(report.totals || {}).sort(([a], [b]) => order.indexOf(a) - order.indexOf(b));
  for (const [name, value] of totalsInOrder) {
    const pair = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = name;
    dd.textContent = Number(value).toLocaleString();
    pair.append(dt, dd);
    totals.append(pair);
  }
  const noteTexts = [...(report.notes || [])];
  if (report.description) noteTexts.unshift(`Read as ${report.description}.`);
  for (const text of noteTexts) {
    const li = document.createElement("li");
    li.textContent = text;
    notes.append(li);
  }
  // A file-level problem (missing columns, unreadable file) names what is wrong in report.errors.
  for (const [field, messages] of Object.entries(report.errors || {})) {
    const row = body.insertRow();
    cell(row, "—", "num");
    cell(row, "");
    cell(row, "error", "level-error");
    cell(row, field);
    cell(row, [].concat(messages).join(" "));
  }
  for (const result of report.rows || []) {
    for (const [level, key] of [["error", "errors"], ["warning", "warnings"]]) {
      for (const [field, messages] of Object.entries(result[key] || {})) {
        for (const text of messages) {
          const row = body.insertRow();
          row.dataset.row = result.row;
          cell(row, String(result.row), "num");
          cell(row, result.external_id || "");
          cell(row, level, `level-${level}`);
          cell(row, field);
          cell(row, text);
        }
      }
    }
  }
  table.hidden = body.rows.length === 0;
  const omitted = document.getElementById("import-omitted");
  omitted.hidden = !report.rows_omitted;
  omitted.textContent = report.rows_omitted ? `…and ${report.rows_omitted.toLocaleString()} more rows with problems.` : "";
  reportBox.hidden = false;
}

const KIND_LABELS = { accounts: "Accounts", reps: "Reps", territories: "Territories of a plan" };

function addRecent(job) {
  const table = document.getElementById("recent-imports");
  const row = table.tBodies[0].insertRow(0);
  cell(row, new Date(job.created).toISOString().slice(0, 16).replace("T", " "));
  cell(row, KIND_LABELS[job.kind] || job.kind);
  cell(row, job.file_name);
  cell(row, job.created_by || "—");
  const badge = document.createElement("span");
  badge.className = `status status-job-${job.status}`;
  badge.textContent = job.status.charAt(0).toUpperCase() + job.status.slice(1);
  row.insertCell().append(badge);
  cell(row, job.message);
  table.hidden = false;
  document.getElementById("no-imports").hidden = true;
}

async function poll(url) {
  for (;;) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    const job = await response.json();
    if (!response.ok) throw new Error(errorText(job, response.status));
    showProgress(job);
    if (job.status === "succeeded" || job.status === "failed") return job;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function upload(event) {
  event.preventDefault();
  showError("");
  reportBox.hidden = true;
  const data = new FormData(form);
  data.delete("csrfmiddlewaretoken");
  if (!data.get("mapping")) data.delete("mapping");
  submit.disabled = true;
  try {
    const response = await fetch(form.dataset.api, {
      method: "POST",
      body: data,
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
      credentials: "same-origin",
    });
    const job = await response.json();
    if (!response.ok) {
      showError(errorText(job, response.status));
      return;
    }
    showProgress(job);
    const finished = job.status === "succeeded" || job.status === "failed" ? job : await poll(`${form.dataset.api}${job.id}/`);
    if (finished.status === "failed" && finished.error) showError(finished.error);
    showReport(finished);
    addRecent(finished);
  } catch (error) {
    showError(`The import could not be followed: ${error.message}`);
  } finally {
    submit.disabled = false;
  }
}

form.addEventListener("submit", upload);

const planSelect = document.getElementById("export-plan");
if (planSelect) {
  planSelect.addEventListener("change", () => {
    for (const link of document.querySelectorAll("#export-links a")) {
      link.href = `/api/v1/plans/${planSelect.value}/export/?format=${link.dataset.format}`;
    }
  });
}
