#!/usr/bin/env python3
"""Browser tests of the web UI (docs/web-ui.md) in headless Debian Chromium,
driven by Python Playwright (sync API) with the system browser: never a
browser Playwright downloads. Run by crates/cli/tests/web_ui.rs (and
`scripts/bench web`) against a real `stacksync server`.

Commands (each prints one line per step, `PASS name` or `FAIL name: why`,
and ends with `OK` when every step passed):

  flows BASE --size desktop|phone --alice EMAIL --bob EMAIL --password PW
        --shots DIR --axe AXE_JS --chromium PATH --scratch DIR
      sign in, drop a folder (Chrome DevTools protocol drag and drop of a
      real folder on disk), browse, sort, filter, download (a file and a
      folder's zip), rename, move, delete, restore from the trash, replace
      on a name conflict and restore an older version, share a folder with
      bob who accepts in his own session, a password-protected shared link
      opened in a fresh session, an upload whose connection is cut in the
      middle (resumed), devices, sign out; screenshots of the main pages
      under DIR/<size>/<page>.png and axe-core on each (no serious or
      critical violations).
  interop BASE --size ... --alice EMAIL --password PW --folder CLIENT_DIR
      a file written in a running desktop client's folder appears in the
      open listing, a file uploaded in the browser appears in the folder;
      both delays printed.
  listing BASE --size ... --alice EMAIL --password PW --name FOLDER --count N
      the folder of N entries: its listing through the API (paged, with the
      session cookie) and its page rendered in the browser until every
      `tr.entry` is there; prints `web-listing-N: X ms`, then one JSON line.
"""

import argparse
import hashlib
import io
import json
import os
import re
import sys
import time
import traceback
import zipfile

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect, sync_playwright

# Without the background-networking flags Chromium's own connections (to
# Google's services) are refused on a machine without Internet, and it
# stalls; none of them is needed for a page on loopback.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

SIZES = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "is_mobile": True,
        "has_touch": True,
        "device_scale_factor": 2,
    },
}

# Generous: a debug build of the server on a loaded two-core machine.
TIMEOUT_MS = 15_000
expect.set_options(timeout=TIMEOUT_MS)


def say(*parts):
    print(*parts, flush=True)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def random_bytes(n, seed):
    """Incompressible, reproducible bytes."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.blake2b(f"{seed}:{counter}".encode(), digest_size=64).digest()
        counter += 1
    return bytes(out[:n])


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


class Run:
    """The steps of one command: each runs, fails or is skipped when a step
    it needs failed; a failure saves a screenshot of every open page."""

    def __init__(self, shots, size):
        self.shots = shots
        self.size = size
        self.results = []
        self.failed = set()
        self.pages = []
        # Found by Web.shot on every page, failed in steps of their own at
        # the end, so that a layout or accessibility problem does not stop
        # the flows that come after it.
        self.layout = []
        self.accessibility = []
        self.shown = []

    def step(self, name, fn, needs=()):
        missing = [n for n in needs if n in self.failed]
        if missing:
            self.failed.add(name)
            self.results.append((name, False))
            say(f"FAIL {name}: not run, it needs {', '.join(missing)}")
            return None
        start = time.monotonic()
        try:
            value = fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported
            self.failed.add(name)
            self.results.append((name, False))
            detail = str(e).strip().splitlines()
            say(f"FAIL {name}: {type(e).__name__}: {' | '.join(detail[:12])}")
            if not isinstance(e, Failed):
                traceback.print_exc(file=sys.stdout)
            for i, page in enumerate(self.pages):
                try:
                    if not page.is_closed():
                        say(f"  page {i} was at {page.url}")
                        if self.shots:
                            path = os.path.join(self.shots, "failures", self.size, f"{name}-{i}.png")
                            os.makedirs(os.path.dirname(path), exist_ok=True)
                            page.screenshot(path=path, full_page=True)
                            say(f"  screenshot: {path}")
                except PlaywrightError:
                    pass
            return None
        self.results.append((name, True))
        say(f"PASS {name} ({(time.monotonic() - start) * 1000:.0f} ms)")
        return value

    def end(self, what):
        passed = sum(1 for _, ok in self.results if ok)
        say(f"{what}: {passed} of {len(self.results)} steps passed")
        if passed == len(self.results):
            say("OK")
            return 0
        return 1


class Web:
    """One signed-in (or not) browser session of the UI at one size."""

    def __init__(self, run, browser, base, size, axe=None, shots=None, **options):
        self.run = run
        self.browser = browser
        self.base = base.rstrip("/")
        self.size = size
        self.phone = size == "phone"
        self.axe = axe
        self.shots = shots
        self.context = browser.new_context(**SIZES[size], **options)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on(
            "console",
            lambda m: self.errors.append(f"console {m.type}: {m.text}")
            if m.type == "error"
            else None,
        )
        run.pages.append(self.page)

    def url(self, path):
        return self.base + path

    def goto(self, path):
        response = self.page.goto(self.url(path))
        check(response is not None, f"no response for {path}")
        check(response.status == 200, f"GET {path}: {response.status}")
        return response

    def script_errors(self, what):
        """Fails when the page's scripts failed or were refused (CSP)."""
        errors, self.errors = self.errors, []
        # Answers with an error status (a refused sign-in is a 401 page,
        # a wrong link password a 403) are checked where they matter; what
        # counts here is scripts that threw and what the CSP refused.
        errors = [e for e in errors if "Failed to load resource" not in e]
        check(not errors, f"{what}: the page reported errors: {errors}")

    # -- signing in ------------------------------------------------------

    def sign_in(self, email, password, expect_ok=True):
        self.goto("/")
        form = self.page.locator("form#signin")
        expect(form).to_be_visible()
        check(
            (form.get_attribute("method") or "").lower() == "post",
            "form#signin has method=post",
        )
        check(
            (form.get_attribute("action") or "").endswith("/signin"),
            "form#signin posts to /signin",
        )
        check(
            form.locator("input[type=hidden][name=csrf]").count() == 1,
            "form#signin has its hidden csrf field",
        )
        form.locator("input[name=email]").fill(email)
        form.locator("input[name=password]").fill(password)
        with self.page.expect_navigation():
            form.locator("input[name=password]").press("Enter")
        if expect_ok:
            expect(self.page).to_have_url(re.compile(re.escape(self.base) + r"/files/?$"))
            self.check_chrome()

    def check_chrome(self):
        """What every signed-in page has (docs/web-ui.md)."""
        page = self.page
        expect(page.locator("header")).to_have_count(1)
        for href in ["/files", "/trash", "/shared", "/links", "/devices"]:
            check(
                page.locator(f'header nav a[href="{href}"]').count() >= 1,
                f'header nav has a[href="{href}"]',
            )
        expect(page.locator("#quota")).to_have_text(re.compile(r"\S+.* used of \S+"))
        check(page.locator("form#signout").count() == 1, "form#signout")
        token = page.locator('meta[name="csrf-token"]').get_attribute("content")
        check(token, 'meta[name="csrf-token"] has a token')

    # -- pages -----------------------------------------------------------

    def shot(self, name):
        """Screenshot of the page as shown, then its checks: scripts (here),
        the phone layout and axe-core (noted for steps of their own)."""
        if self.shots:
            path = os.path.join(self.shots, self.size, f"{name}.png")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self.page.screenshot(path=path, full_page=True)
        self.run.shown.append(name)
        if self.phone:
            try:
                self.check_phone_layout(name)
            except Failed as e:
                self.run.layout.append(str(e))
        if self.axe:
            try:
                self.check_axe(name)
            except Failed as e:
                self.run.accessibility.append(str(e))
        self.script_errors(name)

    def check_phone_layout(self, name):
        width = self.page.evaluate("document.documentElement.scrollWidth")
        check(width <= 390 + 1, f"{name}: the page is {width} px wide on a 390 px phone")
        # Touch targets: visible buttons of the toolbar and rows, 44 px.
        small = self.page.evaluate(
            """() => [...document.querySelectorAll(
                    'button, input[type=submit]')]
                .filter(e => { const r = e.getBoundingClientRect();
                               return r.width > 0 && r.height > 0
                                   && getComputedStyle(e).visibility !== 'hidden'; })
                .filter(e => { const r = e.getBoundingClientRect();
                               return Math.min(r.width, r.height) < 43.5; })
                .map(e => e.outerHTML.slice(0, 120))"""
        )
        check(not small, f"{name}: touch targets under 44 px on a phone: {small[:5]}")

    def check_axe(self, name):
        page = self.page
        if not page.evaluate("typeof window.axe !== 'undefined'"):
            try:
                page.add_script_tag(path=self.axe)
            except PlaywrightError:
                pass
            if not page.evaluate("typeof window.axe !== 'undefined'"):
                # The pages' CSP refuses inline scripts (as it must); the
                # DevTools protocol's evaluation is not subject to it.
                with open(self.axe, encoding="utf-8") as f:
                    page.evaluate("(src) => { (0, eval)(src); }", f.read())
            # add_script_tag's failure is the CSP doing its job, not an error
            self.errors = [e for e in self.errors if "Content Security Policy" not in e]
        check(page.evaluate("typeof window.axe !== 'undefined'"), "axe-core loaded")
        result = page.evaluate(
            "async () => await axe.run(document, {resultTypes: ['violations']})"
        )
        bad = [v for v in result["violations"] if v.get("impact") in ("serious", "critical")]
        for v in result["violations"]:
            targets = [" ".join(map(str, n.get("target", []))) for n in v.get("nodes", [])][:4]
            say(f"  axe {self.size}/{name}: {v.get('impact')} {v['id']}: {v['help']} at {targets}")
        check(not bad, f"{name}: {len(bad)} serious or critical accessibility violations (axe-core)")

    # -- the folder page -------------------------------------------------

    def row(self, name):
        return self.page.locator(f'table#listing tr.entry[data-name="{name}"]')

    def row_id(self, name):
        expect(self.row(name)).to_have_count(1)
        return self.row(name).get_attribute("data-id")

    def names(self):
        return self.page.locator("table#listing tr.entry").evaluate_all(
            "rows => rows.map(r => r.dataset.name)"
        )

    def tap(self, locator):
        if self.phone:
            locator.tap()
        else:
            locator.click()

    def row_action(self, name, action):
        """Clicks a row's action; on a phone the actions may sit in a menu
        of the row, opened first."""
        row = self.row(name)
        expect(row).to_have_count(1)
        button = row.locator(f'button[data-action="{action}"]')
        check(button.count() == 1, f'row {name} has button[data-action="{action}"]')
        if not button.is_visible():
            toggle = row.locator(
                'summary, [aria-haspopup], button[aria-expanded], [data-action="menu"]'
            ).first
            check(toggle.count() == 1, f"row {name}: {action} is hidden and no menu opens it")
            self.tap(toggle)
        expect(button).to_be_visible()
        self.tap(button)

    def dialog_ok(self, dialog_id, fill=None, select=None):
        dialog = self.page.locator(f"dialog#{dialog_id}")
        expect(dialog).to_be_visible()
        for field, value in (fill or {}).items():
            dialog.locator(f'input[name="{field}"]').fill(value)
        for field, value in (select or {}).items():
            dialog.locator(field).select_option(value=value)
        self.tap(dialog.locator('button[value="ok"]'))
        return dialog

    def open_folder(self, name):
        folder_id = self.row_id(name)
        link = self.row(name).locator("a.name")
        check(
            link.get_attribute("href").endswith(f"/files/{folder_id}"),
            f"a folder's a.name links to /files/{folder_id}",
        )
        self.tap(link)
        expect(self.page).to_have_url(re.compile(f"/files/{folder_id}$"))
        expect(self.page.locator("h1")).to_have_text(name)
        return folder_id

    def upload_files(self, paths):
        self.page.locator("input#upload-files").set_input_files(paths)

    def wait_uploads(self, count, timeout=60_000):
        """Waits until at least `count` uploads are listed and none is in
        flight; fails if one failed."""
        self.page.wait_for_function(
            """(n) => { const u = [...document.querySelectorAll('#uploads .upload')];
                       return u.length >= n && u.every(e => e.classList.contains('done')
                           || e.classList.contains('failed') || e.classList.contains('conflict')); }""",
            arg=count,
            timeout=timeout,
        )
        failed = self.page.locator("#uploads .upload.failed").evaluate_all(
            "us => us.map(u => u.dataset.name)"
        )
        check(not failed, f"uploads failed: {failed}")

    def wait_upload(self, name, timeout=60_000):
        """Waits until the upload of `name` (`.upload[data-name]`, the name
        or a path ending with it) is done; fails if it failed."""
        state = self.page.wait_for_function(
            """(n) => { const u = [...document.querySelectorAll('#uploads .upload')]
                           .filter(e => e.dataset.name === n || (e.dataset.name || '').endsWith('/' + n));
                       const end = u.find(e => e.classList.contains('done') || e.classList.contains('failed'));
                       return end ? (end.classList.contains('done') ? 'done' : 'failed') : false; }""",
            arg=name,
            timeout=timeout,
        ).json_value()
        check(state == "done", f"the upload of {name} failed")

    def confirm_if_asked(self, done):
        """After an action that may ask for confirmation: waits until
        `done` (a JavaScript expression) holds or dialog#confirm-dialog is
        open, and confirms in the latter case."""
        asked = self.page.wait_for_function(
            f"() => ({done}) ? 'done' : (document.querySelector('dialog#confirm-dialog[open]') ? 'asked' : false)"
        ).json_value()
        if asked == "asked":
            self.dialog_ok("confirm-dialog")
            self.page.wait_for_function(f"() => {done}")

    def api(self, path):
        """GET of the REST API with the session cookie; the JSON."""
        response = self.context.request.get(self.url(path))
        check(response.ok, f"GET {path}: {response.status} {response.text()[:200]}")
        return response.json()

    def data(self, item_id):
        response = self.context.request.get(self.url(f"/api/v2/file/{item_id}/data"))
        check(response.ok, f"the file's data: {response.status}")
        return response.body()

    def download(self, trigger):
        with self.page.expect_download() as info:
            trigger()
        with open(info.value.path(), "rb") as f:
            return f.read()

    def close(self):
        self.context.close()


# -- the flows -------------------------------------------------------------


def drop_paths(web, paths):
    """Drags real paths (files or folders) onto `main` and drops them, as a
    file manager does, through the DevTools protocol's Input domain.
    Chromium turns a folder's path into a directory entry
    (DataTransferItem.webkitGetAsEntry().isDirectory), so the page reads it
    with its FileSystemDirectoryReader as it would a real drop."""
    page = web.page
    box = page.locator("main").bounding_box()
    check(box is not None, "main is shown")
    viewport = page.viewport_size
    top = max(box["y"], 0)
    bottom = min(box["y"] + box["height"], viewport["height"])
    check(bottom > top, "main is in view")
    x = box["x"] + box["width"] / 2
    y = (top + bottom) / 2
    cdp = page.context.new_cdp_session(page)
    data = {"items": [], "files": paths, "dragOperationsMask": 1}
    for kind in ["dragEnter", "dragOver", "drop"]:
        cdp.send("Input.dispatchDragEvent", {"type": kind, "x": x, "y": y, "data": data})
    cdp.detach()


def settled(page):
    """Waits (a few seconds at most) until a shared link's page shows an
    outcome: a message, the password form, the download or a listing."""
    outcome = page.locator(
        "[role=alert]:visible, .error:visible, #status:visible, #password-error:visible, "
        "a#download:visible, table#listing:visible"
    ).first
    try:
        outcome.wait_for(timeout=5_000)
    except PlaywrightError:
        pass


class Flows:
    def __init__(self, args, run, browser):
        self.args = args
        self.run = run
        self.browser = browser
        self.scratch = os.path.join(args.scratch, args.size)
        os.makedirs(self.scratch, exist_ok=True)
        self.alice = None
        self.files = {}
        self.ids = {}

    def web(self, shots=True):
        return Web(
            self.run,
            self.browser,
            self.args.base,
            self.args.size,
            axe=self.args.axe,
            shots=self.args.shots if shots else None,
        )

    def write(self, rel, data):
        path = os.path.join(self.scratch, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def top(self):
        web = self.alice
        web.goto("/files")
        expect(web.page.locator("table#listing")).to_have_count(1)

    # 1
    def sign_in(self):
        web = self.alice = self.web()
        web.goto("/")
        expect(web.page.locator("form#signin")).to_be_visible()
        web.shot("signin")
        # A wrong password: the page again, with an alert.
        web.sign_in(self.args.alice, "not-the-password", expect_ok=False)
        expect(web.page.locator(".error[role=alert]")).to_be_visible()
        check("/files" not in web.page.url, "a wrong password does not sign in")
        web.script_errors("the refused sign-in")
        web.sign_in(self.args.alice, self.args.password)
        # Signed in, / goes to /files.
        web.page.goto(web.url("/"))
        expect(web.page).to_have_url(re.compile(r"/files/?$"))
        expect(web.page.locator("table#listing")).to_have_count(1)
        web.shot("files-empty")

    # 2
    def drop_folder(self):
        web = self.alice
        self.top()
        album = os.path.join(self.scratch, "album")
        self.files["album/a.txt"] = b"dropped text\n"
        self.files["album/photo.bin"] = random_bytes(200_000, 1)
        self.files["album/inner/b.txt"] = b"inside a folder inside the dropped one\n"
        for rel, data in self.files.items():
            self.write(rel, data)
        toolbar = web.page
        check(
            toolbar.locator("input#upload-files[type=file][multiple]").count() == 1,
            "input#upload-files (type=file multiple)",
        )
        check(
            toolbar.locator("input#upload-folder[webkitdirectory]").count() == 1,
            "input#upload-folder (webkitdirectory)",
        )
        camera = toolbar.locator("input#camera")
        check(
            camera.count() == 1
            and camera.get_attribute("accept") == "image/*"
            and camera.get_attribute("capture") == "environment",
            'input#camera (accept="image/*" capture="environment")',
        )
        drop_paths(web, [album])
        web.wait_uploads(3)
        expect(web.row("album")).to_have_count(1)
        check(web.row("album").get_attribute("data-kind") == "folder", "album is a folder")
        self.ids["album"] = web.row_id("album")
        web.shot("files")
        say(f"  drop: a folder dropped through Input.dispatchDragEvent ({self.args.size})")

    # 3
    def browse(self):
        web = self.alice
        self.top()
        web.open_folder("album")
        expect(web.page.locator("table#listing tr.entry")).to_have_count(3)
        rows = {
            r["name"]: r
            for r in web.page.locator("table#listing tr.entry").evaluate_all(
                """rows => rows.map(r => ({name: r.dataset.name, kind: r.dataset.kind,
                        size: r.dataset.size, modified: r.dataset.modified, id: r.dataset.id}))"""
            )
        }
        check(set(rows) == {"a.txt", "photo.bin", "inner"}, f"album holds {sorted(rows)}")
        check(rows["inner"]["kind"] == "folder", "inner is a folder")
        check(rows["photo.bin"]["kind"] == "file", "photo.bin is a file")
        check(rows["photo.bin"]["size"] == "200000", f"photo.bin's data-size: {rows['photo.bin']}")
        check(rows["a.txt"]["modified"], "data-modified is set")
        file_link = web.row("a.txt").locator("a.name").get_attribute("href")
        check(
            file_link.endswith(f"/preview/{rows['a.txt']['id']}"),
            f"a file's a.name links to its preview: {file_link}",
        )
        crumbs = web.page.locator("nav.breadcrumbs a")
        check(crumbs.count() >= 1, "nav.breadcrumbs has links")
        check(
            crumbs.first.get_attribute("href").rstrip("/").endswith("/files"),
            "the first breadcrumb is the top folder",
        )
        web.shot("folder")
        web.open_folder("inner")
        expect(web.page.locator("table#listing tr.entry")).to_have_count(1)
        expect(web.row("b.txt")).to_have_count(1)
        crumbs = web.page.locator("nav.breadcrumbs a")
        check(
            any(h.endswith(f"/files/{self.ids['album']}") for h in crumbs.evaluate_all(
                "as => as.map(a => a.getAttribute('href'))")),
            "the breadcrumbs lead back to album",
        )
        web.tap(crumbs.filter(has_text="album").first)
        expect(web.page).to_have_url(re.compile(f"/files/{self.ids['album']}$"))
        # Sorting by size, folders first.
        link = web.page.locator('th a[data-sort="size"]')
        check(link.count() == 1, 'th a[data-sort="size"]')
        if link.is_visible():
            web.tap(link)
        else:
            # One column on a phone: the header row may be left out; the
            # query is the contract, so the server's order is checked.
            say(f"  sorting: th a[data-sort] is not shown at {self.args.size} size")
            web.page.goto(web.url(link.get_attribute("href")))
        expect(web.page).to_have_url(re.compile(r"[?&]sort=size"))
        web.page.wait_for_load_state("domcontentloaded")
        names = web.names()
        check(names[0] == "inner", f"folders first: {names}")
        order = re.search(r"order=(asc|desc)", web.page.url)
        files = names[1:]
        want = sorted(["a.txt", "photo.bin"], key=lambda n: len(self.files["album/" + n]))
        if order and order.group(1) == "desc":
            want.reverse()
        check(files == want, f"sorted by size ({web.page.url}): {files}")
        # Filtering hides rows whose name does not contain the text.
        web.page.locator("input#filter").fill("PHOT")
        expect(web.row("photo.bin")).to_be_visible()
        expect(web.row("a.txt")).to_be_hidden()
        expect(web.row("inner")).to_be_hidden()
        web.page.locator("input#filter").fill("")
        expect(web.row("a.txt")).to_be_visible()

    # 4
    def download(self):
        web = self.alice
        web.goto(f"/files/{self.ids['album']}")
        got = web.download(lambda: web.row_action("photo.bin", "download"))
        check(sha(got) == sha(self.files["album/photo.bin"]), "photo.bin downloads as it was")
        # The folder as a zip.
        response = web.context.request.get(web.url(f"/zip/{self.ids['album']}"))
        check(response.ok, f"/zip/{{id}}: {response.status}")
        archive = zipfile.ZipFile(io.BytesIO(response.body()))
        entries = {
            n: archive.read(n) for n in archive.namelist() if not n.endswith("/")
        }
        # Entries may be named from the folder itself or from inside it.
        inside = {re.sub(r"^album/", "", n): d for n, d in entries.items()}
        want = {k[len("album/"):]: v for k, v in self.files.items() if k.startswith("album/")}
        check(
            {k: sha(v) for k, v in inside.items()} == {k: sha(v) for k, v in want.items()},
            f"the zip holds {sorted(entries)}",
        )
        # Everything.
        response = web.context.request.get(web.url("/zip/root"))
        check(response.ok, f"/zip/root: {response.status}")
        names = zipfile.ZipFile(io.BytesIO(response.body())).namelist()
        check(any(n.endswith("album/inner/b.txt") for n in names), f"/zip/root holds {names}")

    # 5
    def rename_move_delete_restore(self):
        web = self.alice
        self.top()
        notes = b"notes to rename, move, delete and restore\n"
        web.upload_files([self.write("notes.txt", notes)])
        web.wait_upload("notes.txt")
        expect(web.row("notes.txt")).to_have_count(1)
        file_id = web.row_id("notes.txt")
        # Rename.
        web.row_action("notes.txt", "rename")
        web.dialog_ok("name-dialog", fill={"name": "renamed.txt"})
        expect(web.row("renamed.txt")).to_have_count(1)
        expect(web.row("notes.txt")).to_have_count(0)
        check(web.row_id("renamed.txt") == file_id, "a rename keeps the item")
        # A new folder.
        self.tap_new_folder("archive")
        archive_id = web.row_id("archive")
        # Move into it.
        web.row_action("renamed.txt", "move")
        dialog = web.page.locator("dialog#move-dialog")
        expect(dialog).to_be_visible()
        # The targets are loaded when the dialog opens.
        expect(dialog.locator('select#move-target option[value="root"]')).to_have_count(1)
        options = dialog.locator("select#move-target option").evaluate_all(
            "os => os.map(o => [o.value, o.textContent.trim()])"
        )
        values = [v for v, _ in options]
        check("root" in values, f"the move targets include the top folder: {options}")
        check(archive_id in values, f"the move targets include archive: {options}")
        web.dialog_ok("move-dialog", select={"select#move-target": archive_id})
        expect(web.row("renamed.txt")).to_have_count(0)
        web.open_folder("archive")
        expect(web.row("renamed.txt")).to_have_count(1)
        # Delete (confirmed).
        web.row_action("renamed.txt", "delete")
        web.dialog_ok("confirm-dialog")
        expect(web.row("renamed.txt")).to_have_count(0)
        check(web.api(f"/api/v2/file/{file_id}")["status"] == "DELETED", "deleted on the server")
        # The trash, newest first; restore.
        web.goto("/trash")
        web.check_chrome()
        row = web.page.locator(f'table#trash tr.entry[data-name="renamed.txt"]')
        expect(row).to_have_count(1)
        check(row.get_attribute("data-id") == file_id, "the trash row is the item")
        web.shot("trash")
        web.tap(row.locator('button[data-action="restore"]'))
        web.confirm_if_asked(
            "!document.querySelector('table#trash tr.entry[data-name=\"renamed.txt\"]')"
        )
        web.goto(f"/files/{archive_id}")
        expect(web.row("renamed.txt")).to_have_count(1)
        check(web.data(file_id) == notes, "the restored file has its bytes")

    def tap_new_folder(self, name):
        web = self.alice
        web.tap(web.page.locator("button#new-folder"))
        web.dialog_ok("name-dialog", fill={"name": name})
        expect(web.row(name)).to_have_count(1)
        check(web.row(name).get_attribute("data-kind") == "folder", f"{name} is a folder")

    # 6
    def versions(self):
        web = self.alice
        self.top()
        v1 = b"version one\n"
        v2 = b"version two, longer\n"
        web.upload_files([self.write("v1/doc.txt", v1)])
        web.wait_upload("doc.txt")
        file_id = web.row_id("doc.txt")
        # The same name again: a conflict the user answers.
        web.upload_files([self.write("v2/doc.txt", v2)])
        conflict = web.page.locator('#uploads .upload.conflict[data-name="doc.txt"]')
        expect(conflict).to_have_count(1)
        check(web.data(file_id) == v1, "nothing is overwritten before the user says so")
        web.tap(conflict.locator('button[data-choice="replace"]'))
        outcome = web.page.wait_for_function(
            """(n) => { const f = document.querySelector('#uploads .upload.failed[data-name="doc.txt"]');
                       if (f) return 'failed: ' + f.textContent.trim();
                       const r = document.querySelector('table#listing tr.entry[data-name="doc.txt"]');
                       return r && r.dataset.size === String(n) ? 'done' : false; }""",
            arg=len(v2),
        ).json_value()
        check(outcome == "done", f"replacing doc.txt: the upload {outcome}")
        check(web.data(file_id) == v2, "replace wrote the new bytes")
        # Keep both: a second item, the first untouched.
        web.upload_files([self.write("v3/doc.txt", b"kept beside\n")])
        conflict = web.page.locator('#uploads .upload.conflict[data-name="doc.txt"]')
        expect(conflict).to_have_count(1)
        web.tap(conflict.locator('button[data-choice="keep-both"]'))
        expect(web.page.locator("table#listing tr.entry[data-name^='doc']")).to_have_count(2)
        check(web.data(file_id) == v2, "keep-both left the file alone")
        # Versions: download the first, restore it.
        web.row_action("doc.txt", "versions")
        expect(web.page).to_have_url(re.compile(f"/versions/{file_id}$"))
        rows = web.page.locator("table#versions tr.version")
        expect(rows).to_have_count(2)
        latest = web.page.locator('table#versions tr.version[data-version="2"]')
        check(
            latest.locator('button[data-action="restore"]').count() == 0,
            "no restore on the latest version",
        )
        web.shot("versions")
        first = web.page.locator('table#versions tr.version[data-version="1"]')
        got = web.download(lambda: web.tap(first.locator("a.download")))
        check(got == v1, "version 1 downloads as it was")
        web.tap(first.locator('button[data-action="restore"]'))
        web.confirm_if_asked("document.querySelectorAll('table#versions tr.version').length === 3")
        check(web.data(file_id) == v1, "the restored version is the current one")
        item = web.api(f"/api/v2/file/{file_id}")
        check(item["version"] == 3, f"a restore is a new version: {item['version']}")

    # 7
    def preview(self):
        web = self.alice
        web.goto(f"/files/{self.ids['album']}")
        web.tap(web.row("a.txt").locator("a.name"))
        expect(web.page).to_have_url(re.compile(r"/preview/[0-9a-f-]{36}$"))
        text = self.files["album/a.txt"].decode().strip()
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        shown = False
        while not shown and time.monotonic() < deadline:
            for frame in web.page.frames:
                try:
                    if text in frame.content():
                        shown = True
                        break
                except PlaywrightError:
                    pass
            if not shown:
                web.page.wait_for_timeout(100)
        check(shown, "the preview shows the text file")
        web.shot("preview")

    # 8
    def share(self):
        web = self.alice
        self.top()
        self.tap_new_folder("team")
        team_id = web.row_id("team")
        web.open_folder("team")
        plan = b"the team's plan\n"
        web.upload_files([self.write("team/plan.txt", plan)])
        web.wait_upload("plan.txt")
        self.top()
        web.row_action("team", "share")
        dialog = web.page.locator("dialog#share-dialog")
        expect(dialog).to_be_visible()
        dialog.locator("select[name=access]").select_option(value="read-write")
        web.dialog_ok("share-dialog", fill={"email": self.args.bob})
        # Bob, in his own browser session.
        bob = self.web()
        bob.sign_in(self.args.bob, self.args.password)
        bob.goto("/shared")
        bob.check_chrome()
        invitation = bob.page.locator("tr.invitation")
        # Alice's request may still be on its way: reload until it is there.
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while invitation.count() == 0 and time.monotonic() < deadline:
            bob.page.wait_for_timeout(200)
            bob.goto("/shared")
        expect(invitation).to_have_count(1)
        bob.shot("shared-invitation")
        bob.tap(invitation.locator('button[data-action="accept"]'))
        expect(invitation).to_have_count(0)
        share = bob.page.locator("tr.share")
        expect(share).to_have_count(1)
        expect(share.locator("ul.members li")).to_have_count(2)
        expect(share.locator("ul.members")).to_contain_text(self.args.alice)
        bob.shot("shared")
        bob.goto("/files")
        expect(bob.row("team")).to_have_count(1)
        bob.open_folder("team")
        expect(bob.row("plan.txt")).to_have_count(1)
        got = bob.download(lambda: bob.row_action("plan.txt", "download"))
        check(got == plan, "bob downloads the shared file")
        # Alice's listing follows bob's upload (the page's /events). A
        # shared folder's id is its workspace's (docs/api-v2.md), so it is
        # read again.
        self.top()
        shared_id = web.open_folder("team")
        say(f"  team: {team_id} before sharing, {shared_id} shared")
        expect(web.row("plan.txt")).to_have_count(1)
        bob.upload_files([self.write("bob/from-bob.txt", b"bob was here\n")])
        bob.wait_upload("from-bob.txt")
        expect(web.row("from-bob.txt")).to_have_count(1)
        # Alice's /shared lists the folder with bob in it.
        web.goto("/shared")
        expect(web.page.locator("tr.share ul.members")).to_contain_text(self.args.bob)
        bob.close()

    # 9
    def link(self):
        web = self.alice
        self.top()
        report = random_bytes(50_000, 9)
        web.upload_files([self.write("report.bin", report)])
        web.wait_upload("report.bin")
        web.row_action("report.bin", "link")
        password = "link-pw-" + self.args.size
        web.dialog_ok("link-dialog", fill={"password": password})
        url_box = web.page.locator("input#link-url")
        expect(url_box).not_to_have_value("")
        url = url_box.input_value()
        check(re.search(r"/s/[^/#?]+#.+", url), f"a link with its secret after #: {url}")
        web.page.keyboard.press("Escape")
        web.goto("/links")
        expect(web.page.locator("tr.link")).to_have_count(1)
        web.shot("links")
        # A fresh session: nobody signed in.
        visitor = self.web()
        if url.startswith("/"):
            url = web.base + url
        response = visitor.page.goto(url)
        check(response is not None and response.status == 200, "the link's page opens")
        form = visitor.page.locator("form#link-password")
        expect(form).to_be_visible()
        check(not visitor.page.locator("a#download").is_visible(), "nothing before the password")
        visitor.shot("link-password")
        form.locator("input[name=password]").fill("wrong")
        form.locator("input[name=password]").press("Enter")
        settled(visitor.page)
        check(not visitor.page.locator("a#download").is_visible(), "a wrong password opens nothing")
        form = visitor.page.locator("form#link-password")
        expect(form).to_be_visible()
        form.locator("input[name=password]").fill(password)
        form.locator("input[name=password]").press("Enter")
        expect(visitor.page.locator("a#download")).to_be_visible()
        visitor.shot("link")
        got = visitor.download(lambda: visitor.tap(visitor.page.locator("a#download")))
        check(got == report, "the linked file downloads as it was")
        # The secret never reached the server in a URL: only in the body.
        visitor.close()
        # Revoke: the link no longer opens.
        web.goto("/links")
        web.tap(web.page.locator('tr.link button[data-action="revoke"]'))
        web.confirm_if_asked("document.querySelectorAll('tr.link').length === 0")
        gone = self.web(shots=False)
        gone.page.goto(url)
        # The page asks the server with the secret, then shows what it got.
        settled(gone.page)
        if gone.page.locator("form#link-password").is_visible():
            gone.page.locator("form#link-password input[name=password]").fill(password)
            gone.page.locator("form#link-password input[name=password]").press("Enter")
            settled(gone.page)
        check(not gone.page.locator("a#download").is_visible(), "a revoked link opens nothing")
        gone.close()

    # 10
    def resumed_upload(self):
        # Its own session, service workers blocked: requests a service
        # worker makes are not the page's, and routing sees only the page's.
        web = Web(self.run, self.browser, self.args.base, self.args.size,
                  service_workers="block")
        web.sign_in(self.args.alice, self.args.password)
        size = 24 * 1024 * 1024 + 12345
        data = random_bytes(size, 10)
        state = {"pieces": 0, "aborted": 0, "sent": 0, "largest": 0, "urls": []}

        def handler(route, request):
            body = request.post_data_buffer or b""
            is_piece = (
                request.method in ("PUT", "POST", "PATCH")
                and len(body) > 0
                and "json" not in (request.headers.get("content-type") or "")
            )
            if is_piece:
                state["pieces"] += 1
                state["urls"].append(f"{request.method} {request.url}")
                if state["pieces"] == 2 and state["aborted"] == 0:
                    state["aborted"] += 1
                    route.abort("connectionreset")
                    return
                state["sent"] += len(body)
                state["largest"] = max(state["largest"], len(body))
            route.continue_()

        pattern = re.compile(r".*/api/v2/upload_session.*")
        web.page.route(pattern, handler)
        try:
            web.upload_files([self.write("big.bin", data)])
            web.wait_upload("big.bin", timeout=180_000)
        finally:
            web.page.unroute(pattern)
        check(
            state["pieces"] >= 3,
            f"the upload went through API v2 upload sessions in pieces: {state['pieces']} pieces "
            f"({state['urls'][:3]})",
        )
        check(state["aborted"] == 1, "the connection was cut once")
        check(
            state["sent"] <= size + state["largest"],
            f"resumed, not restarted: {state['sent']} bytes sent for {size}",
        )
        file_id = web.row_id("big.bin")
        check(web.row("big.bin").get_attribute("data-size") == str(size), "its size")
        got = web.data(file_id)
        check(len(got) == size and sha(got) == sha(data), "the file arrived whole")
        say(f"  resumed upload: {state['pieces']} pieces, one cut, {state['sent']} bytes sent")
        web.close()

    # 10b
    def installable_offline(self):
        """The manifest and the service worker; the last listing of a
        folder shown when the network is away."""
        web = self.alice
        web.goto(f"/files/{self.ids['album']}")
        check(web.page.locator('link[rel="manifest"]').count() == 1, 'link[rel="manifest"]')
        manifest = web.context.request.get(web.url("/manifest.webmanifest"))
        check(manifest.ok, f"/manifest.webmanifest: {manifest.status}")
        manifest = json.loads(manifest.text())
        for key in ["name", "icons", "start_url", "display"]:
            check(manifest.get(key), f"the manifest has {key}: {manifest}")
        worker = web.context.request.get(web.url("/sw.js"))
        check(worker.ok, f"/sw.js: {worker.status}")
        check("javascript" in (worker.headers.get("content-type") or ""), "/sw.js is JavaScript")
        ready = web.page.evaluate(
            """() => Promise.race([
                   navigator.serviceWorker.ready.then(() => true),
                   new Promise(r => setTimeout(() => r(false), 10000))])"""
        )
        check(ready, "the service worker became ready")
        # Visited under the worker's control, then offline.
        web.page.reload()
        web.page.wait_for_function("() => !!navigator.serviceWorker.controller")
        expect(web.page.locator("table#listing tr.entry")).to_have_count(3)
        web.context.set_offline(True)
        try:
            web.page.reload()
            expect(web.page.locator("table#listing tr.entry")).to_have_count(3)
            expect(web.row("photo.bin")).to_have_count(1)
        finally:
            web.context.set_offline(False)
        # The errors of requests refused while offline are expected.
        web.errors = [e for e in web.errors if "ERR_INTERNET_DISCONNECTED" not in e]

    # 11
    def devices(self):
        web = self.alice
        web.goto("/devices")
        web.check_chrome()
        current = web.page.locator("tr.device.current")
        expect(current).to_have_count(1)
        check(
            current.locator('button[data-action="sign-out"]').count() == 1,
            "this session can be signed out",
        )
        web.shot("devices")

    # 12
    def sign_out(self):
        web = self.alice
        self.top()
        form = web.page.locator("form#signout")
        submit = form.locator("button, input[type=submit]").first
        if not submit.is_visible():
            toggle = web.page.locator(
                'header summary, header [aria-haspopup], header button[aria-expanded]'
            ).first
            if toggle.count():
                web.tap(toggle)
        with web.page.expect_navigation():
            web.tap(submit)
        expect(web.page).to_have_url(re.compile(re.escape(web.base) + r"/$"))
        expect(web.page.locator("form#signin")).to_be_visible()
        web.page.goto(web.url("/files"))
        expect(web.page.locator("form#signin")).to_be_visible()
        response = web.context.request.get(web.url("/api/v2/account"))
        check(response.status == 401, f"the API after sign-out: {response.status}")


def cmd_flows(args, browser):
    run = Run(args.shots, args.size)
    flows = Flows(args, run, browser)
    run.step("sign-in", flows.sign_in)
    run.step("drop-folder", flows.drop_folder, needs=["sign-in"])
    run.step("browse-sort-filter", flows.browse, needs=["drop-folder"])
    run.step("download-and-zip", flows.download, needs=["drop-folder"])
    run.step("rename-move-delete-restore", flows.rename_move_delete_restore, needs=["sign-in"])
    run.step("conflict-and-versions", flows.versions, needs=["sign-in"])
    run.step("preview", flows.preview, needs=["drop-folder"])
    run.step("share-with-bob", flows.share, needs=["sign-in"])
    run.step("password-link", flows.link, needs=["sign-in"])
    run.step("resumed-upload", flows.resumed_upload, needs=["sign-in"])
    run.step("installable-offline", flows.installable_offline, needs=["drop-folder"])
    run.step("devices", flows.devices, needs=["sign-in"])
    run.step("sign-out", flows.sign_out, needs=["sign-in"])
    say(f"  pages checked: {', '.join(run.shown)}")
    if args.size == "phone":
        run.step("phone-layout", lambda: check(not run.layout, " | ".join(run.layout)))
    run.step(
        "accessibility", lambda: check(not run.accessibility, " | ".join(run.accessibility))
    )
    return run.end(f"web_ui.py flows ({args.size})")


def wait_for_file(path, data, limit):
    """Polls the desktop client's folder until `path` holds `data`."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with open(path, "rb") as f:
                if f.read() == data:
                    return True
        except OSError:
            pass
        time.sleep(0.02)
    return False


def cmd_interop(args, browser):
    run = Run(args.shots, args.size)
    web = Web(run, browser, args.base, args.size)
    limit = args.limit
    tag = args.size

    def sign_in():
        web.sign_in(args.alice, args.password)

    def desktop_to_browser():
        web.goto("/files")
        expect(web.page.locator("table#listing")).to_have_count(1)
        name = f"from-desktop-{tag}.txt"
        data = f"written in the desktop folder ({tag})\n".encode()
        path = os.path.join(args.folder, name)
        start = time.monotonic()
        with open(path + ".part", "wb") as f:
            f.write(data)
        os.rename(path + ".part", path)
        web.row(name).wait_for(state="attached", timeout=limit * 1000)
        delay = time.monotonic() - start
        say(f"desktop-to-browser ({tag}): {delay * 1000:.0f} ms")
        check(web.row(name).get_attribute("data-size") == str(len(data)), "its size")
        # When the listing is read again, a row that did not change stays
        # the same element: a click pressed on it as the refresh lands is
        # not lost (the browser drops a click whose press and release hit
        # two different elements).
        web.row(name).evaluate("row => { row.keptAcrossRefresh = true; }")
        second = f"second-from-desktop-{tag}.txt"
        with open(os.path.join(args.folder, second + ".part"), "wb") as f:
            f.write(b"another\n")
        os.rename(os.path.join(args.folder, second + ".part"), os.path.join(args.folder, second))
        web.row(second).wait_for(state="attached", timeout=limit * 1000)
        check(
            web.row(name).evaluate("row => row.keptAcrossRefresh === true"),
            "an unchanged row is kept, not replaced, when the listing is read again",
        )
        check(web.names().count(name) == 1, "and shown once")

    def browser_to_desktop():
        name = f"from-browser-{tag}.bin"
        data = random_bytes(100_000, 3)
        path = os.path.join(args.scratch, name)
        os.makedirs(args.scratch, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        start = time.monotonic()
        web.upload_files([path])
        web.wait_upload(name)
        uploaded = time.monotonic()
        arrived = wait_for_file(os.path.join(args.folder, name), data, limit)
        check(arrived, f"{name} did not reach the desktop folder within {limit} s")
        done = time.monotonic()
        say(
            f"browser-to-desktop ({tag}): {(done - uploaded) * 1000:.0f} ms after the upload "
            f"finished ({(done - start) * 1000:.0f} ms from choosing the file)"
        )

    run.step("sign-in", sign_in)
    run.step("desktop-to-browser", desktop_to_browser, needs=["sign-in"])
    run.step("browser-to-desktop", browser_to_desktop, needs=["sign-in"])
    return run.end(f"web_ui.py interop ({args.size})")


def cmd_listing(args, browser):
    run = Run(args.shots, args.size)
    web = Web(run, browser, args.base, args.size)
    figures = {}

    def sign_in():
        web.sign_in(args.alice, args.password)

    def api_listing():
        web.goto("/files")
        folder_id = web.row_id(args.name)
        figures["folder"] = folder_id
        start = time.monotonic()
        count, cursor, pages = 0, None, 0
        while True:
            path = f"/api/v2/folder/{folder_id}/contents?limit=1000"
            if cursor:
                path += "&cursor=" + cursor
            page = web.api(path)
            count += len(page["contents"])
            pages += 1
            cursor = page.get("cursor")
            if not cursor:
                break
        ms = (time.monotonic() - start) * 1000
        check(count == args.count, f"the API lists {count} entries, not {args.count}")
        figures["api_ms"] = round(ms, 1)
        say(f"api-listing-{args.count}: {ms:.0f} ms ({pages} pages, session cookie)")

    def web_listing():
        folder_id = figures["folder"]
        fresh = Web(run, browser, args.base, args.size)
        fresh.context.add_cookies(web.context.cookies())
        start = time.monotonic()
        response = fresh.page.goto(fresh.url(f"/files/{folder_id}"), wait_until="domcontentloaded")
        dom = time.monotonic()
        check(response.status == 200, f"/files/{{id}}: {response.status}")
        fresh.page.wait_for_function(
            "(n) => document.querySelectorAll('table#listing tr.entry').length >= n",
            arg=args.count,
            timeout=300_000,
            polling=50,
        )
        rows = time.monotonic()
        count = fresh.page.locator("table#listing tr.entry").count()
        check(count == args.count, f"the page lists {count} rows, not {args.count}")
        html = len(response.body())
        figures.update(
            web_ms=round((rows - start) * 1000, 1),
            dom_ms=round((dom - start) * 1000, 1),
            html_bytes=html,
        )
        say(f"web-listing-{args.count}: {(rows - start) * 1000:.0f} ms")
        say(
            f"  domcontentloaded after {(dom - start) * 1000:.0f} ms; the page's HTML is "
            f"{html} bytes ({args.size}, {SIZES[args.size]['viewport']['width']} px)"
        )
        if args.shots:
            path = os.path.join(args.shots, args.size, f"folder-{args.count}.png")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fresh.page.screenshot(path=path)
        fresh.close()

    run.step("sign-in", sign_in)
    run.step("api-listing", api_listing, needs=["sign-in"])
    run.step("web-listing", web_listing, needs=["api-listing"])
    status = run.end(f"web_ui.py listing ({args.size})")
    if "web_ms" in figures and "api_ms" in figures:
        figures["ratio"] = round(figures["web_ms"] / max(figures["api_ms"], 0.1), 2)
        say(f"web/api: {figures['ratio']}x")
    figures.update(size=args.size, entries=args.count)
    say(json.dumps(figures))
    return status


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["flows", "interop", "listing"])
    parser.add_argument("base")
    parser.add_argument("--size", choices=list(SIZES), default="desktop")
    parser.add_argument("--alice", required=True)
    parser.add_argument("--bob")
    parser.add_argument("--password", default="secret-pw")
    parser.add_argument("--shots")
    parser.add_argument("--axe")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--scratch", default="/tmp/stacksync-web-ui")
    parser.add_argument("--folder", help="the desktop client's folder (interop)")
    parser.add_argument("--limit", type=float, default=10.0, help="arrival deadline, s")
    parser.add_argument("--name", default="big", help="the large folder (listing)")
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        try:
            command = {"flows": cmd_flows, "interop": cmd_interop, "listing": cmd_listing}
            status = command[args.command](args, browser)
        finally:
            browser.close()
    sys.exit(status)


if __name__ == "__main__":
    main()
