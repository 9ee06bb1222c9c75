// Review page: add a comment through the API (POST /api/v1/plans/{id}/comments/) without reloading,
// and confirm status changes that cannot be undone by the button next to them.
const form = document.getElementById('comment-form');
const list = document.getElementById('comments');
const count = document.getElementById('comment-count');
const errorBox = document.getElementById('comment-error');

function csrfToken() {
  const input = document.querySelector('input[name=csrfmiddlewaretoken]');
  return input ? input.value : '';
}

function renderComment(comment) {
  const item = document.createElement('li');
  const meta = document.createElement('div');
  meta.className = 'meta';
  const author = document.createElement('strong');
  author.textContent = comment.author ? comment.author.username : '(deleted user)';
  meta.append(author);
  const when = new Date(comment.created);
  const stamp = document.createElement('time');
  stamp.dateTime = comment.created;
  stamp.textContent = when.toISOString().slice(0, 16).replace('T', ' ');
  meta.append(' · ', stamp);
  if (comment.territory) meta.append(` · on ${comment.territory.code} ${comment.territory.name}`);
  const body = document.createElement('p');
  body.textContent = comment.body;
  item.append(meta, body);
  return item;
}

if (form) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    errorBox.hidden = true;
    const button = form.querySelector('button[type=submit]');
    const territory = form.elements.territory.value;
    button.disabled = true;
    try {
      const response = await fetch(form.dataset.api, {
        method: 'POST',
        credentials: 'same-origin',
        headers: {'Content-Type': 'application/json', 'X-CSRFToken': csrfToken(), Accept: 'application/json'},
        body: JSON.stringify({body: form.elements.body.value, territory: territory ? Number(territory) : null}),
      });
      const data = await response.json().catch(() => ({message: `The server answered ${response.status}.`}));
      if (!response.ok) {
        const details = Object.values(data.errors || {}).flat().join(' ');
        errorBox.textContent = data.message + (details && details !== data.message ? ` (${details})` : '');
        errorBox.hidden = false;
        return;
      }
      const empty = document.getElementById('no-comments');
      if (empty) empty.remove();
      list.append(renderComment(data));
      count.textContent = String(list.querySelectorAll('li').length);
      form.elements.body.value = '';
      form.elements.body.focus();
    } catch (error) {
      errorBox.textContent = 'The comment could not be sent; check your connection and try again.';
      errorBox.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
}

for (const button of document.querySelectorAll('#transitions button[data-status=archived]')) {
  button.form.addEventListener('submit', (event) => {
    if (!window.confirm('Archive this plan? An archived plan can be cloned but no longer edited.')) {
      event.preventDefault();
    }
  });
}
