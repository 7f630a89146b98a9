// The page of a shared link, /s/{link}#{secret}.
//
// The secret is read from the URL's fragment, which a browser never sends,
// and given to the server only in the body of POST /s/{link}/open; that
// answer sets the link session cookie every later request carries. So the
// secret never appears in a request line, a log or a Referer. Nothing here
// changes the fragment, and nothing is fetched from anywhere but this
// server (the page's Content-Security-Policy allows nothing else, and no
// inline script).
'use strict';

(function () {
  const segment = location.pathname.split('/')[2] || '';
  const base = '/s/' + segment;
  const secret = readSecret();
  const $ = (id) => document.getElementById(id);

  // One re-open per page when a session ends (12 h) while the page is open.
  let reopened = false;
  let currentFolder = null;

  function readSecret() {
    const raw = location.hash.slice(1);
    try {
      return decodeURIComponent(raw);
    } catch (e) {
      return raw;
    }
  }

  function say(text) {
    const s = $('status');
    s.textContent = text || '';
    s.hidden = !text;
  }

  function humanSize(n) {
    if (typeof n !== 'number' || !isFinite(n)) return '';
    if (n < 1000) return n + (n === 1 ? ' byte' : ' bytes');
    const units = ['kB', 'MB', 'GB', 'TB', 'PB'];
    let v = n;
    let u = -1;
    do {
      v /= 1000;
      u += 1;
    } while (v >= 1000 && u < units.length - 1);
    return (v < 10 ? v.toFixed(1) : Math.round(v)) + ' ' + units[u];
  }

  function when(t) {
    if (!t) return '';
    const d = new Date(t);
    return isNaN(d.getTime()) ? '' : d.toLocaleString();
  }

  function shownInline(type) {
    if (!type) return false;
    return (type.startsWith('image/') && type !== 'image/svg+xml') ||
      type.startsWith('audio/') || type.startsWith('video/') ||
      type === 'application/pdf' || type === 'text/plain';
  }

  function fileUrl(id) {
    return base + '/file/' + encodeURIComponent(id);
  }

  async function description(r) {
    try {
      const body = await r.json();
      const text = (body && body.description) || '';
      return text.charAt(0).toUpperCase() + text.slice(1);
    } catch (e) {
      return '';
    }
  }

  function ended() {
    for (const id of ['link-password', 'file', 'folder', 'upload']) $(id).hidden = true;
    say(secret
      ? 'This link does not exist or has ended. Ask whoever shared it with you for a new one.'
      : 'This link is incomplete: the part after "#" is missing. Copy the whole link and try again.');
  }

  function askPassword(message) {
    say('');
    const form = $('link-password');
    const error = $('password-error');
    error.textContent = message || '';
    error.hidden = !message;
    form.hidden = false;
    const input = form.elements.password;
    input.value = '';
    input.focus();
  }

  // Opens the link: with the session cookie if the browser has one, else
  // with the secret (and the password). Answers the link, or null once it
  // has shown why not.
  async function open(password) {
    const body = {};
    if (secret) body.secret = secret;
    if (password !== undefined) body.password = password;
    let r;
    try {
      r = await fetch(base + '/open', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
        credentials: 'same-origin',
        cache: 'no-store',
      });
    } catch (e) {
      say('The server cannot be reached. Check your connection and reload the page.');
      return null;
    }
    if (r.ok) return r.json();
    if (r.status === 401) {
      const why = await description(r);
      askPassword(password === undefined ? '' : (why || 'Wrong password.'));
      return null;
    }
    if (r.status === 429) {
      askPassword((await description(r)) || 'Too many attempts: wait a minute and try again.');
      return null;
    }
    if (r.status === 404) {
      ended();
      return null;
    }
    say((await description(r)) || 'The link could not be opened (error ' + r.status + ').');
    return null;
  }

  function start(opened) {
    say('');
    $('link-password').hidden = true;
    const item = opened.item;
    if (opened.access === 'upload') {
      showUpload(item);
    } else if (item.kind === 'folder') {
      showFolder(null, false);
    } else {
      showFile(item);
    }
  }

  // A single file.
  function showFile(item) {
    document.title = item.name + ' - StackSync';
    $('file-name').textContent = item.name;
    $('file-size').textContent = humanSize(item.size);
    $('file-modified').textContent = item.modified_at ? ' · ' + when(item.modified_at) : '';
    const url = fileUrl(item.id);
    const download = $('download');
    download.href = url + '?download=1';
    download.setAttribute('download', item.name);
    if (shownInline(item.mimetype)) {
      const openFile = $('open-file');
      openFile.href = url;
      openFile.hidden = false;
    }
    if (item.mimetype && item.mimetype.startsWith('image/') && item.mimetype !== 'image/svg+xml') {
      const preview = $('preview');
      preview.src = url;
      preview.alt = item.name;
      preview.hidden = false;
    }
    $('file').hidden = false;
  }

  // A folder: one page of it at a time.
  async function listPage(folder, cursor) {
    const q = new URLSearchParams();
    if (folder) q.set('folder', folder);
    if (cursor) q.set('cursor', cursor);
    const url = base + '/list' + (q.toString() ? '?' + q.toString() : '');
    const get = () => fetch(url, { credentials: 'same-origin', cache: 'no-store' });
    let r;
    try {
      r = await get();
      if (r.status === 404 && !reopened) {
        reopened = true;
        if (!(await open())) return null;
        r = await get();
      }
    } catch (e) {
      say('The server cannot be reached. Check your connection and try again.');
      return null;
    }
    if (r.status === 404) {
      ended();
      return null;
    }
    if (!r.ok) {
      say((await description(r)) || 'The folder could not be read (error ' + r.status + ').');
      return null;
    }
    return r.json();
  }

  async function showFolder(folder, remember) {
    const page = await listPage(folder, null);
    if (!page) return;
    currentFolder = folder;
    if (remember) history.pushState({ folder: folder }, '', location.href);
    const path = page.path || [];
    const here = path.length ? path[path.length - 1] : { name: '' };
    document.title = here.name + ' - StackSync';
    $('folder-name').textContent = here.name;
    const crumbs = document.querySelector('nav.breadcrumbs');
    crumbs.replaceChildren();
    path.forEach((crumb, i) => {
      if (i > 0) {
        const sep = document.createElement('span');
        sep.className = 'sep';
        sep.textContent = '/';
        crumbs.append(sep);
      }
      if (i === path.length - 1) {
        const span = document.createElement('span');
        span.textContent = crumb.name;
        span.setAttribute('aria-current', 'page');
        crumbs.append(span);
      } else {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'crumb';
        b.textContent = crumb.name;
        b.addEventListener('click', () => showFolder(i === 0 ? null : crumb.id, true));
        crumbs.append(b);
      }
    });
    crumbs.hidden = path.length < 2;
    $('listing').tBodies[0].replaceChildren();
    addRows(page);
    $('folder').hidden = false;
  }

  function addRows(page) {
    const body = $('listing').tBodies[0];
    for (const e of page.entries || []) body.append(row(e));
    $('empty').hidden = body.rows.length > 0;
    const more = $('more');
    more.hidden = !page.cursor;
    more.dataset.cursor = page.cursor || '';
  }

  function row(e) {
    const tr = document.createElement('tr');
    tr.className = 'entry kind-' + e.kind;
    tr.dataset.id = e.id;
    tr.dataset.name = e.name;
    tr.dataset.kind = e.kind;
    tr.dataset.size = String(e.size);
    if (e.modified_at) tr.dataset.modified = e.modified_at;
    const name = document.createElement('td');
    name.className = 'name-cell';
    let label;
    if (e.kind === 'folder') {
      label = document.createElement('button');
      label.type = 'button';
      label.addEventListener('click', () => showFolder(e.id, true));
    } else {
      label = document.createElement('a');
      label.href = fileUrl(e.id);
      label.target = '_blank';
      label.rel = 'noopener noreferrer';
    }
    label.className = 'name';
    label.textContent = e.name;
    name.append(label);
    const size = document.createElement('td');
    size.className = 'size';
    size.textContent = e.kind === 'file' ? humanSize(e.size) : '';
    const modified = document.createElement('td');
    modified.className = 'modified';
    modified.textContent = when(e.modified_at);
    const actions = document.createElement('td');
    actions.className = 'actions';
    if (e.kind === 'file') {
      const a = document.createElement('a');
      a.className = 'download';
      a.href = fileUrl(e.id) + '?download=1';
      a.setAttribute('download', e.name);
      a.textContent = 'Download';
      a.setAttribute('aria-label', 'Download ' + e.name);
      actions.append(a);
    }
    tr.append(name, size, modified, actions);
    return tr;
  }

  async function more() {
    const button = $('more');
    button.disabled = true;
    const page = await listPage(currentFolder, button.dataset.cursor);
    button.disabled = false;
    if (page) addRows(page);
  }

  // An upload link: files go in, nothing is listed.
  const queue = [];
  let sending = false;
  let totalBytes = 0;
  let sentBytes = 0;

  function showUpload(item) {
    document.title = 'Send files to ' + item.name + ' - StackSync';
    $('upload-folder').textContent = item.name;
    $('upload').hidden = false;
  }

  function enqueue(files) {
    for (const file of files) {
      const li = document.createElement('li');
      li.className = 'upload';
      li.dataset.name = file.name;
      const name = document.createElement('span');
      name.className = 'upload-name';
      name.textContent = file.name;
      const state = document.createElement('span');
      state.className = 'upload-state';
      state.textContent = 'waiting';
      const bar = document.createElement('progress');
      bar.max = Math.max(file.size, 1);
      bar.value = 0;
      li.append(name, state, bar);
      $('uploads').append(li);
      queue.push({ file: file, li: li });
      totalBytes += file.size;
    }
    updateTotal();
    if (!sending) sendAll();
  }

  function updateTotal() {
    const total = $('upload-total');
    total.max = Math.max(totalBytes, 1);
    total.value = sentBytes;
    total.hidden = totalBytes === 0 && queue.length === 0;
  }

  function post(file, bar) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', base + '/upload?name=' + encodeURIComponent(file.name));
      xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
      xhr.upload.addEventListener('progress', (e) => {
        bar.value = e.loaded;
        updateTotalWith(e.loaded);
      });
      xhr.addEventListener('load', () => {
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch (e) {
          body = null;
        }
        resolve({ status: xhr.status, body: body });
      });
      xhr.addEventListener('error', () => resolve({ status: 0, body: null }));
      xhr.addEventListener('abort', () => resolve({ status: 0, body: null }));
      xhr.send(file);
    });
  }

  let inFlight = 0;
  function updateTotalWith(loaded) {
    inFlight = loaded;
    const total = $('upload-total');
    total.value = sentBytes + inFlight;
  }

  async function sendOne(job) {
    const state = job.li.querySelector('.upload-state');
    const bar = job.li.querySelector('progress');
    state.textContent = 'sending';
    for (let attempt = 0; attempt < 4; attempt += 1) {
      const r = await post(job.file, bar);
      inFlight = 0;
      if (r.status === 201) {
        job.li.classList.add('done');
        bar.value = bar.max;
        const saved = r.body && r.body.name;
        state.textContent = saved && saved !== job.file.name ? 'sent, saved as ' + saved : 'sent';
        return;
      }
      // Another upload took the name meanwhile: the next try picks another.
      if (r.status === 409) continue;
      if (r.status === 404 && !reopened) {
        reopened = true;
        if (await open()) continue;
      }
      job.li.classList.add('failed');
      if (r.status === 413) {
        state.textContent = 'not sent: there is no room left for it';
      } else if (r.status === 404) {
        state.textContent = 'not sent: the link has ended';
      } else if (r.status === 0) {
        state.textContent = 'not sent: the connection was lost';
      } else {
        state.textContent = 'not sent: ' + ((r.body && r.body.description) || 'error ' + r.status);
      }
      return;
    }
    job.li.classList.add('failed');
    state.textContent = 'not sent: the name stayed taken';
  }

  async function sendAll() {
    sending = true;
    while (queue.length) {
      const job = queue.shift();
      await sendOne(job);
      sentBytes += job.file.size;
      updateTotal();
    }
    sending = false;
  }

  function wire() {
    $('link-password').addEventListener('submit', async (e) => {
      e.preventDefault();
      const form = e.currentTarget;
      const button = form.querySelector('button');
      button.disabled = true;
      const opened = await open(form.elements.password.value);
      button.disabled = false;
      if (opened) start(opened);
    });
    $('more').addEventListener('click', more);
    $('upload-files').addEventListener('change', (e) => {
      enqueue(Array.from(e.target.files));
      e.target.value = '';
    });
    const drop = $('upload');
    drop.addEventListener('dragover', (e) => {
      e.preventDefault();
      drop.classList.add('dragging');
    });
    drop.addEventListener('dragleave', () => drop.classList.remove('dragging'));
    drop.addEventListener('drop', (e) => {
      e.preventDefault();
      drop.classList.remove('dragging');
      if (e.dataTransfer && e.dataTransfer.files.length) enqueue(Array.from(e.dataTransfer.files));
    });
    window.addEventListener('popstate', (e) => {
      if (!$('folder').hidden) showFolder((e.state && e.state.folder) || null, false);
    });
  }

  async function main() {
    wire();
    const opened = await open();
    if (opened) start(opened);
  }

  main();
})();
