// StackSync's website: everything the pages do beyond links and forms,
// through REST API v2 with the session cookie and the page's CSRF token.
// No framework, no build step; see docs/web-ui.md for the contract.
"use strict";

(() => {
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const CSRF = csrfMeta ? csrfMeta.content : "";
  const PIECE = 4 * 1024 * 1024; // upload piece size
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  // ------------------------------------------------------------ helpers

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.description) || `the server answered ${status}`);
      this.status = status;
      this.body = body || {};
    }
  }

  async function api(method, url, body, extra = {}) {
    const headers = { "X-CSRF-Token": CSRF };
    let payload = body;
    if (body !== undefined && !(body instanceof Blob)) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    const r = await fetch(url, {
      method,
      headers,
      body: payload,
      credentials: "same-origin",
      signal: extra.signal,
    });
    let data = null;
    const text = await r.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (_) {
        data = { description: text };
      }
    }
    if (!r.ok) throw new ApiError(r.status, data);
    return data;
  }

  function toast(text, bad = false) {
    const t = $("#toast");
    if (!t) return;
    t.textContent = text;
    t.classList.toggle("bad", bad);
    t.classList.add("shown");
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => t.classList.remove("shown"), 5000);
  }

  function failed(e) {
    toast(e instanceof Error ? e.message : String(e), true);
  }

  // Opens a <dialog> and resolves with the button's value when it closes.
  function ask(dialog, prepare) {
    return new Promise((resolve) => {
      if (prepare) prepare(dialog);
      const done = () => {
        dialog.removeEventListener("close", done);
        resolve(dialog.returnValue);
      };
      dialog.returnValue = "";
      dialog.addEventListener("close", done);
      dialog.showModal();
    });
  }

  async function askName(title, value) {
    const d = $("#name-dialog");
    const answer = await ask(d, () => {
      $("h2", d).textContent = title;
      $("input", d).value = value || "";
    });
    const name = $("input", d).value.trim();
    return answer === "ok" && name ? name : null;
  }

  async function confirmDelete(text) {
    const d = $("#confirm-dialog");
    return (await ask(d, () => ($(".text", d).textContent = text))) === "ok";
  }

  function saveUrl(url, name) {
    const a = document.createElement("a");
    a.href = url;
    a.download = name || "";
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  function human(bytes) {
    const units = ["B", "KB", "MB", "GB", "TB"];
    let v = bytes;
    let u = 0;
    while (v >= 1000 && u < units.length - 1) {
      v /= 1000;
      u += 1;
    }
    return u === 0 ? `${bytes} B` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // ------------------------------------------------------------ folder page

  const folderEl = $("#folder");
  const FOLDER = folderEl ? folderEl.dataset.id : null;
  const kindPath = (row) => (row.dataset.kind === "folder" ? "folder" : "file");

  function applyFilter() {
    const f = $("#filter");
    if (!f) return;
    const needle = f.value.trim().toLowerCase();
    for (const row of $$("#listing tr.entry")) {
      row.hidden = needle !== "" && !row.dataset.name.toLowerCase().includes(needle);
    }
  }

  // Brings the rows shown to those of a fresh listing, touching only the
  // rows that changed: a row that did not change stays the same element,
  // never detached, not even moved. A click whose press and release land
  // on two different elements (the row was replaced in between, by a
  // refresh that a commit elsewhere set off) is lost by the browser.
  function syncRows(old, fresh) {
    const wanted = new Set(Array.from(fresh.children, (r) => r.dataset.id).filter(Boolean));
    const keep = new Set();
    let cursor = old.firstElementChild;
    const skipGone = () => {
      while (cursor && !wanted.has(cursor.dataset.id)) cursor = cursor.nextElementSibling;
    };
    for (const row of Array.from(fresh.children)) {
      skipGone();
      if (cursor && row.dataset.id && cursor.dataset.id === row.dataset.id) {
        if (sameRow(cursor, row)) {
          keep.add(cursor);
        } else {
          keep.add(old.insertBefore(document.importNode(row, true), cursor));
        }
        cursor = cursor.nextElementSibling;
      } else {
        keep.add(old.insertBefore(document.importNode(row, true), cursor));
      }
    }
    for (const row of Array.from(old.children)) {
      if (!keep.has(row)) row.remove();
    }
  }

  // Whether a row shown holds what a fresh one does (the filter's hiding
  // aside).
  function sameRow(shown, row) {
    const hidden = shown.hidden;
    shown.hidden = false;
    const same = shown.outerHTML === row.outerHTML;
    shown.hidden = hidden;
    return same;
  }

  // Re-reads the rows of the folder shown (after a change here or elsewhere).
  let refreshing = null;
  async function refreshListing() {
    if (!folderEl) return;
    if (refreshing) {
      refreshing.again = true;
      return;
    }
    refreshing = { again: false };
    try {
      let r;
      try {
        r = await fetch(location.href, { credentials: "same-origin" });
      } catch (_) {
        // Offline or the server away: the listing shown stays, and is
        // read again once the page is back online (below).
        return;
      }
      if (!r.ok) return;
      const doc = new DOMParser().parseFromString(await r.text(), "text/html");
      const fresh = $("#listing tbody", doc);
      const old = $("#listing tbody");
      if (fresh && old) syncRows(old, fresh);
      const quota = $("#quota", doc);
      if (quota && $("#quota")) $("#quota").textContent = quota.textContent;
      const empty = $(".empty", doc);
      const shownEmpty = $("#folder > .empty");
      if (!empty && shownEmpty) shownEmpty.remove();
      applyFilter();
    } finally {
      const again = refreshing.again;
      refreshing = null;
      if (again) refreshListing();
    }
  }

  // Every folder the user may move things into, as [id, path].
  async function allFolders() {
    const out = [["root", "/ (top folder)"]];
    const queue = [["root", ""]];
    while (queue.length && out.length < 2000) {
      const [id, path] = queue.shift();
      let cursor = null;
      do {
        const url =
          id === "root"
            ? `/api/v2/folder/root/contents?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`
            : `/api/v2/folder/${id}/contents?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
        let page;
        try {
          page = await api("GET", url);
        } catch (_) {
          break;
        }
        for (const item of page.contents || []) {
          if (item.is_folder && item.id) {
            const p = `${path}/${item.filename}`;
            out.push([item.id, p]);
            queue.push([item.id, p]);
          }
        }
        cursor = page.cursor;
      } while (cursor);
    }
    return out;
  }

  async function rowAction(action, row) {
    const id = row.dataset.id;
    const name = row.dataset.name;
    const kind = kindPath(row);
    switch (action) {
      case "download":
        if (kind === "folder") saveUrl(`/zip/${id}`, `${name}.zip`);
        else saveUrl(`/api/v2/file/${id}/data?download=1`, name);
        return;
      case "versions":
        location.href = `/versions/${id}`;
        return;
      case "rename": {
        const n = await askName(`Rename ${name}`, name);
        if (!n || n === name) return;
        await api("PUT", `/api/v2/${kind}/${id}`, { name: n });
        toast(`Renamed to ${n}`);
        break;
      }
      case "move": {
        const d = $("#move-dialog");
        const select = $("#move-target", d);
        select.replaceChildren();
        const loading = new Option("Loading folders…", "");
        select.append(loading);
        const answer = ask(d);
        const folders = await allFolders();
        select.replaceChildren(
          ...folders
            .filter(([fid]) => fid !== id)
            .map(([fid, path]) => new Option(path, fid, fid === FOLDER, fid === FOLDER)),
        );
        if ((await answer) !== "ok" || !select.value) return;
        const target = select.value === "root" ? null : select.value;
        await api("PUT", `/api/v2/${kind}/${id}`, { parent: target });
        toast(`Moved ${name}`);
        break;
      }
      case "delete":
        if (!(await confirmDelete(`Delete ${name}? You can restore it from the trash.`))) return;
        await api("DELETE", `/api/v2/${kind}/${id}`);
        toast(`Deleted ${name}`);
        break;
      case "share":
        await shareDialog(id, name);
        break;
      case "link":
        await linkDialog(id, name, kind === "folder");
        return;
      default:
        return;
    }
    await refreshListing();
  }

  async function loadMembers(id, list) {
    list.replaceChildren();
    try {
      const answer = await api("GET", `/api/v2/folder/${id}/members`);
      for (const m of answer.members || answer || []) {
        const li = document.createElement("li");
        li.textContent = `${m.name ? `${m.name} <${m.email}>` : m.email}${m.is_owner ? " (owner)" : m.read_only ? " (read only)" : ""}`;
        list.append(li);
      }
    } catch (e) {
      if (e.status !== 404 && e.status !== 400) failed(e);
    }
  }

  async function shareDialog(id, name) {
    const d = $("#share-dialog");
    const list = $("ul.members", d);
    const answer = ask(d, () => {
      $("h2", d).textContent = `Share ${name}`;
      $("input[name=email]", d).value = "";
    });
    loadMembers(id, list);
    if ((await answer) !== "ok") return;
    const email = $("input[name=email]", d).value.trim();
    if (!email) return;
    const readOnly = $("select[name=access]", d).value === "read-only";
    await api("POST", `/api/v2/folder/${id}/share`, { emails: [email], read_only: readOnly });
    toast(`Invited ${email}: they accept on their Sharing page`);
  }

  async function linkDialog(id, name, folder) {
    const d = $("#link-dialog");
    const made = $(".made", d);
    const upload = $("input[name=upload_only]", d);
    const ok = $("button[value=ok]", d);
    made.hidden = true;
    ok.hidden = false;
    upload.checked = false;
    upload.disabled = !folder;
    $("input[name=password]", d).value = "";
    $("input[name=expires]", d).value = "";
    $("h2", d).textContent = `Link to ${name}`;
    while ((await ask(d)) === "ok") {
      const body = { id, access: upload.checked ? "upload" : "view" };
      const password = $("input[name=password]", d).value;
      if (password) body.password = password;
      const expires = $("input[name=expires]", d).value;
      if (expires) body.expires_at = new Date(`${expires}T23:59:59`).toISOString();
      try {
        const link = await api("POST", "/api/v2/links", body);
        const url = new URL(link.url, location.origin).href;
        $("#link-url", d).value = url;
        made.hidden = false;
        ok.hidden = true;
        try {
          await navigator.clipboard.writeText(url);
          toast("Link copied");
        } catch (_) {
          toast("Link made");
        }
      } catch (e) {
        failed(e);
      }
    }
  }

  // ------------------------------------------------------------ uploads

  // One file to send: where, under which relative path, and its progress.
  class Upload {
    constructor(file, path) {
      this.file = file;
      this.path = path; // "a/b/name.ext" below the folder shown
      this.sent = 0;
      this.li = document.createElement("li");
      this.li.className = "upload";
      this.li.dataset.name = path;
      this.label = document.createElement("span");
      this.label.className = "label";
      this.label.textContent = path;
      this.bar = document.createElement("progress");
      this.bar.max = Math.max(file.size, 1);
      this.bar.value = 0;
      this.bar.setAttribute("aria-label", `Upload of ${path}`);
      this.note = document.createElement("span");
      this.note.className = "note";
      this.li.append(this.label, this.bar, this.note);
    }

    progress(sent) {
      this.sent = sent;
      this.bar.value = sent;
      uploads.update();
    }

    state(cls, note) {
      this.li.classList.remove("conflict", "failed", "done");
      if (cls) this.li.classList.add(cls);
      this.note.textContent = note || "";
    }
  }

  const uploads = {
    all: [],
    queue: [],
    running: 0,
    folderIds: new Map(), // relative folder path -> id

    panel() {
      return $("#uploads");
    },

    update() {
      const total = this.all.reduce((n, u) => n + Math.max(u.file.size, 1), 0);
      const sent = this.all.reduce(
        (n, u) => n + (u.li.classList.contains("done") ? Math.max(u.file.size, 1) : u.sent),
        0,
      );
      const bar = $("#upload-total");
      if (bar) {
        bar.max = Math.max(total, 1);
        bar.value = sent;
      }
    },

    add(files) {
      const panel = this.panel();
      if (!panel || !files.length) return;
      panel.hidden = false;
      for (const [file, path] of files) {
        const u = new Upload(file, path);
        this.all.push(u);
        this.queue.push(u);
        $("ul", panel).append(u.li);
      }
      this.update();
      this.pump();
    },

    pump() {
      while (this.running < 2 && this.queue.length) {
        const u = this.queue.shift();
        this.running += 1;
        send(u)
          .catch((e) => u.state("failed", e.message))
          .finally(() => {
            this.running -= 1;
            this.update();
            this.pump();
            refreshListing();
          });
      }
    },
  };

  // The id of folder `path` (relative to the folder shown), made if needed.
  async function folderFor(path) {
    if (!path) return FOLDER;
    if (uploads.folderIds.has(path)) return uploads.folderIds.get(path);
    const cut = path.lastIndexOf("/");
    const parentPath = cut < 0 ? "" : path.slice(0, cut);
    const name = cut < 0 ? path : path.slice(cut + 1);
    const promise = (async () => {
      const parent = await folderFor(parentPath);
      try {
        const made = await api("POST", "/api/v2/folder", { name, parent });
        return made.id;
      } catch (e) {
        if (e.status !== 409) throw e;
        // There already: find it.
        let cursor = null;
        do {
          const page = await api(
            "GET",
            `/api/v2/folder/${parent}/contents?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`,
          );
          const hit = (page.contents || []).find((i) => i.filename === name && i.is_folder);
          if (hit) return hit.id;
          cursor = page.cursor;
        } while (cursor);
        throw e;
      }
    })();
    uploads.folderIds.set(path, promise);
    return promise;
  }

  function choose(u, existing) {
    return new Promise((resolve) => {
      u.state("conflict", `${existing ? "A file with this name exists." : ""} `);
      const buttons = [
        ["replace", "Replace"],
        ["keep-both", "Keep both"],
        ["skip", "Skip"],
      ].map(([choice, label]) => {
        const b = document.createElement("button");
        b.type = "button";
        b.dataset.choice = choice;
        b.textContent = label;
        b.addEventListener("click", () => {
          for (const x of buttons) x.remove();
          u.state("", "");
          resolve(choice);
        });
        return b;
      });
      u.note.after(...buttons);
    });
  }

  async function openSession(u, parent, name) {
    const size = u.file.size;
    const mimetype = u.file.type || undefined;
    try {
      return await api("POST", "/api/v2/upload_session", { parent, name, size, mimetype });
    } catch (e) {
      if (e.status !== 409) throw e;
      const existing = e.body && (e.body.existing || e.body.item || e.body);
      const choice = await choose(u, existing);
      if (choice === "skip") return null;
      if (choice === "keep-both") {
        return api("POST", "/api/v2/upload_session", { parent, name, size, mimetype, autorename: true });
      }
      const id = existing && existing.id;
      if (!id) throw e;
      // A new version of the file in the way, based on the version seen.
      return api("POST", "/api/v2/upload_session", { id, size, if_match: existing.version });
    }
  }

  // Sends one file in pieces; a piece that fails is retried from whatever
  // the server says it has, so a dropped connection resumes.
  async function send(u) {
    const path = u.path;
    const cut = path.lastIndexOf("/");
    const parent = await folderFor(cut < 0 ? "" : path.slice(0, cut));
    const name = cut < 0 ? path : path.slice(cut + 1);
    const session = await openSession(u, parent, name);
    if (!session) {
      u.state("done", "skipped");
      return;
    }
    const id = session.id;
    let offset = session.offset || 0;
    let failures = 0;
    while (offset < u.file.size) {
      const end = Math.min(offset + PIECE, u.file.size);
      try {
        const r = await fetch(`/api/v2/upload_session/${id}?offset=${offset}`, {
          method: "PUT",
          headers: { "X-CSRF-Token": CSRF, "Content-Type": "application/octet-stream" },
          body: u.file.slice(offset, end),
          credentials: "same-origin",
        });
        const data = await r.json().catch(() => ({}));
        if (r.ok || r.status === 409) {
          if (typeof data.offset === "number") offset = data.offset;
          else if (r.ok) offset = end;
          else throw new ApiError(r.status, data);
          failures = 0;
          u.progress(offset);
          continue;
        }
        if (r.status >= 400 && r.status < 500 && r.status !== 408 && r.status !== 429) {
          throw new ApiError(r.status, data);
        }
      } catch (e) {
        if (e instanceof ApiError) throw e;
      }
      // The connection dropped or the server is busy: wait, then ask.
      failures += 1;
      u.state("", `connection lost, resuming (${failures})`);
      await sleep(Math.min(500 * 2 ** failures, 15000));
      try {
        const now = await api("GET", `/api/v2/upload_session/${id}`);
        offset = now.offset;
        u.state("", "");
      } catch (e) {
        if (e instanceof ApiError && e.status === 404) throw e;
      }
    }
    let finished = false;
    for (let attempt = 0; !finished; attempt += 1) {
      try {
        await api("POST", `/api/v2/upload_session/${id}/finish`, {});
        finished = true;
      } catch (e) {
        // A finish whose answer was lost ended the session: it is done.
        if (e instanceof ApiError && e.status === 404 && attempt > 0) break;
        if (e instanceof ApiError || attempt > 8) throw e;
        await sleep(1000);
      }
    }
    u.progress(u.file.size);
    u.state("done", human(u.file.size));
  }

  // Files of a drop, folders walked (entries API), with relative paths.
  async function dropped(dt) {
    const out = [];
    const entries = [];
    for (const item of Array.from(dt.items || [])) {
      const entry = item.webkitGetAsEntry ? item.webkitGetAsEntry() : null;
      if (entry) entries.push(entry);
    }
    if (!entries.length) {
      for (const f of Array.from(dt.files || [])) out.push([f, f.webkitRelativePath || f.name]);
      return out;
    }
    const walk = async (entry, prefix) => {
      if (entry.isFile) {
        const file = await new Promise((res, rej) => entry.file(res, rej));
        out.push([file, prefix + entry.name]);
      } else if (entry.isDirectory) {
        const reader = entry.createReader();
        let batch;
        do {
          batch = await new Promise((res, rej) => reader.readEntries(res, rej));
          for (const e of batch) await walk(e, `${prefix}${entry.name}/`);
        } while (batch.length);
      }
    };
    for (const e of entries) await walk(e, "");
    return out;
  }

  function fromInput(input) {
    return Array.from(input.files).map((f) => [f, f.webkitRelativePath || f.name]);
  }

  if (folderEl && folderEl.dataset.readOnly !== "true") {
    for (const id of ["upload-files", "upload-folder", "camera"]) {
      const input = $(`#${id}`);
      if (!input) continue;
      input.addEventListener("change", () => {
        uploads.add(fromInput(input));
        input.value = "";
      });
    }
    const main = $("main");
    main.addEventListener("dragover", (e) => {
      e.preventDefault();
      main.classList.add("dropping");
    });
    main.addEventListener("dragleave", (e) => {
      if (e.target === main) main.classList.remove("dropping");
    });
    main.addEventListener("drop", async (e) => {
      e.preventDefault();
      main.classList.remove("dropping");
      try {
        uploads.add(await dropped(e.dataTransfer));
      } catch (err) {
        failed(err);
      }
    });
    const nf = $("#new-folder");
    if (nf) {
      nf.addEventListener("click", async () => {
        const name = await askName("New folder", "");
        if (!name) return;
        try {
          await api("POST", "/api/v2/folder", { name, parent: FOLDER });
          await refreshListing();
        } catch (e) {
          failed(e);
        }
      });
    }
  }

  if (folderEl) {
    const filter = $("#filter");
    let typing = null;
    if (filter) {
      filter.addEventListener("input", () => {
        clearTimeout(typing);
        typing = setTimeout(applyFilter, 120);
      });
    }
    document.addEventListener("click", (e) => {
      const b = e.target.closest("#listing button[data-action]");
      if (!b) return;
      rowAction(b.dataset.action, b.closest("tr.entry")).catch(failed);
    });
  }

  // ------------------------------------------------------------ live updates

  // Any commit in the user's workspaces re-reads the listing shown.
  function listen() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    let ws;
    try {
      ws = new WebSocket(`${proto}//${location.host}/api/v1/notifications?hints=1`);
    } catch (_) {
      return;
    }
    let timer = null;
    ws.addEventListener("message", () => {
      clearTimeout(timer);
      timer = setTimeout(refreshListing, 100);
    });
    // Changes made while the socket was down were not announced.
    ws.addEventListener("open", () => {
      if (listened) refreshListing();
      listened = true;
    });
    ws.addEventListener("close", () => setTimeout(listen, 3000));
  }
  let listened = false;
  if (folderEl) {
    listen();
    window.addEventListener("online", () => refreshListing());
  }

  // ------------------------------------------------------------ other pages

  document.addEventListener("click", async (e) => {
    const b = e.target.closest("button[data-action]");
    if (!b || b.closest("#listing")) return;
    const row = b.closest("tr");
    try {
      switch (b.dataset.action) {
        case "restore":
          if (row && row.classList.contains("version")) {
            const file = $("#file").dataset.id;
            await api("POST", `/api/v2/file/${file}/version/${b.dataset.version}/restore`);
            toast(`Version ${b.dataset.version} restored`);
            location.reload();
          } else if (row) {
            await api("POST", `/api/v2/trash/${row.dataset.id}/restore`);
            toast(`Restored ${row.dataset.name}`);
            row.remove();
          }
          break;
        case "accept":
        case "decline":
          await api("POST", `/api/v2/invitations/${row.dataset.id}/${b.dataset.action}`);
          location.reload();
          break;
        case "unshare":
          await api("POST", `/api/v2/folder/${row.dataset.id}/unshare`, { emails: [b.dataset.email] });
          location.reload();
          break;
        case "revoke":
          await api("DELETE", `/api/v2/links/${row.dataset.id}`);
          row.remove();
          break;
        case "revoke-app":
          await api("DELETE", `/api/v2/apps/${encodeURIComponent(row.dataset.id)}`);
          row.remove();
          break;
        default:
          break;
      }
    } catch (err) {
      failed(err);
    }
  });

  const text = $("#text-preview");
  if (text) {
    fetch(text.dataset.src, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.text() : Promise.reject(new Error(`the server answered ${r.status}`))))
      .then((t) => (text.textContent = t))
      .catch((e) => (text.textContent = `Could not load the file: ${e.message}`));
  }

  const links = $("#links");
  if (links) {
    api("GET", "/api/v2/links")
      .then((answer) => {
        const list = answer.links || answer || [];
        const body = $("tbody", links);
        for (const l of list) {
          const tr = document.createElement("tr");
          tr.className = "link";
          tr.dataset.id = l.id;
          const item = l.item || {};
          const cells = [
            item.filename || item.name || l.item_id || "",
            `${l.access === "upload" ? "upload only" : "view"}${l.has_password ? ", password" : ""}`,
            l.expires_at ? new Date(l.expires_at).toLocaleDateString() : "never",
          ];
          for (const c of cells) {
            const td = document.createElement("td");
            td.textContent = c;
            tr.append(td);
          }
          const td = document.createElement("td");
          td.className = "col-actions";
          const b = document.createElement("button");
          b.type = "button";
          b.dataset.action = "revoke";
          b.textContent = "Revoke";
          td.append(b);
          tr.append(td);
          body.append(tr);
        }
        const empty = $("p.empty");
        if (empty) empty.hidden = list.length > 0;
      })
      .catch(failed);
  }

  if ("serviceWorker" in navigator && CSRF) {
    navigator.serviceWorker.register("/sw.js").catch(() => {});
  } else if (!CSRF && "caches" in window) {
    // Signed out: no listing of the account stays in this browser.
    caches.delete("stacksync-pages-v1").catch(() => {});
  }
})();
