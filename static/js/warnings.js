// "Check now": start the warning checks as a job and follow its progress, then reload the list.

const button = document.getElementById("check-now");
const box = document.getElementById("check-progress");
const bar = box ? box.querySelector("progress") : null;
const message = box ? box.querySelector(".progress-message") : null;
const POLL_MS = 1000;

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

async function api(path, options = {}) {
  const response = await fetch(`/api/v1/${path}`, {
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    ...options,
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
  return body;
}

function show(check) {
  box.hidden = false;
  bar.value = check.progress;
  message.textContent = check.status === "failed" ? `Failed: ${check.error}` : `${check.progress}% · ${check.message}`;
}

async function follow(id) {
  button.disabled = true;
  for (;;) {
    const check = await api(`warnings/checks/${id}/`);
    show(check);
    if (check.status === "succeeded") {
      window.location.reload();
      return;
    }
    if (check.status === "failed" || check.status === "cancelled") {
      button.disabled = false;
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

if (button) {
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const check = await api("warnings/check/", { method: "POST", body: "{}" });
      show(check);
      await follow(check.id);
    } catch (error) {
      box.hidden = false;
      message.textContent = `Could not run the checks: ${error.message}`;
      button.disabled = false;
    }
  });
  if (button.dataset.running) follow(button.dataset.running).catch((error) => {
    message.textContent = error.message;
    button.disabled = false;
  });
}
