"""The shared-link page in a real browser (Playwright's Chromium), driven by
crates/gateway/tests/links.rs, which starts the server, makes the links and
passes them in a JSON file:

    python links_browser.py CONFIG.json

CONFIG: {"chromium", "axe" (or null), "folder": {"url", "secret", "files":
{name: text}, "sub", "deep": {name: text}}, "password": {"url", "secret",
"password", "name", "text"}, "upload": {"url", "secret", "existing"}}

Checks, as a visitor without an account: the folder's listing and its
navigation, downloads, the password form (wrong, then right), an upload
link's form with several files (a taken name gets a number), no console
error and no Content-Security-Policy violation, the secret in no request
URL (only in the body of POST .../open), at 360 px and on a desktop, and
no serious accessibility violation (axe-core, when given). Prints what it
checked and ends with OK, or FAILED and exits 1.
"""

import json
import sys

from playwright.sync_api import expect, sync_playwright

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
]

failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


class Visit:
    """One visitor: a fresh browser context watching its requests."""

    def __init__(self, browser, secret, width=1200, height=800):
        self.context = browser.new_context(
            viewport={"width": width, "height": height}, accept_downloads=True
        )
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.secret = secret
        self.errors = []
        self.requests = []
        self.page.on(
            "console",
            lambda m: m.type == "error" and self.errors.append(m.text),
        )
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r))
        self.page.on(
            "response",
            lambda r: r.status >= 400 and self.errors.append(f"{r.status} {r.request.method} {r.url}"),
        )

    def download(self, locator):
        with self.page.expect_download() as info:
            locator.click()
        with open(info.value.path(), "rb") as f:
            return f.read()

    def finish(self, what, allowed=()):
        urls = [r.url for r in self.requests]
        check(all(self.secret not in u for u in urls), f"{what}: the secret is in no request URL")
        carried = [r for r in self.requests if self.secret in (r.post_data or "")]
        check(
            bool(carried) and all(r.method == "POST" and r.url.endswith("/open") for r in carried),
            f"{what}: the secret went only in POST .../open bodies",
        )
        errors = [e for e in self.errors if not any(a in e for a in allowed)]
        check(not errors, f"{what}: no console error or policy violation {errors}")
        self.context.close()


def folder(browser, cfg, width):
    f = cfg["folder"]
    v = Visit(browser, f["secret"], width=width)
    v.page.goto(f["url"])
    rows = v.page.locator("table#listing tr.entry")
    expect(rows).to_have_count(len(f["files"]) + 1)
    names = rows.evaluate_all("rs => rs.map(r => r.dataset.name)")
    check(sorted(names) == sorted(list(f["files"]) + [f["sub"]]), f"{width}px: the folder lists {names}")
    kinds = rows.evaluate_all("rs => rs.map(r => r.dataset.kind)")
    check(kinds.count("folder") == 1, f"{width}px: one folder row ({kinds})")
    check(
        v.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"),
        f"{width}px: nothing scrolls sideways",
    )
    for name, text in f["files"].items():
        row = v.page.locator(f'tr.entry[data-name="{name}"]')
        got = v.download(row.locator("a.download"))
        check(got == text.encode(), f"{width}px: {name} downloads as it was")
    v.page.locator(f'tr.entry[data-name="{f["sub"]}"] .name').click()
    expect(v.page.locator("h1#folder-name")).to_have_text(f["sub"])
    expect(rows).to_have_count(len(f["deep"]))
    crumbs = v.page.locator("nav.breadcrumbs button.crumb")
    expect(crumbs).to_have_count(1)
    check(f["secret"] in v.page.url, f"{width}px: the address still holds the whole link")
    v.page.go_back()
    expect(rows).to_have_count(len(f["files"]) + 1)
    v.page.locator(f'tr.entry[data-name="{f["sub"]}"] .name').click()
    expect(rows).to_have_count(len(f["deep"]))
    crumbs.first.click()
    expect(rows).to_have_count(len(f["files"]) + 1)
    v.finish(f"folder at {width}px")


def password(browser, cfg):
    p = cfg["password"]
    v = Visit(browser, p["secret"], width=360, height=740)
    v.page.goto(p["url"])
    form = v.page.locator("form#link-password")
    expect(form).to_be_visible()
    check(v.page.locator("a#download").is_hidden(), "nothing shows before the password")
    form.locator("input[name=password]").fill("wrong")
    form.locator("input[name=password]").press("Enter")
    alert = v.page.locator("form#link-password [role=alert]")
    expect(alert).to_be_visible()
    check("wrong password" in alert.inner_text().lower(), f"a wrong password is said: {alert.inner_text()!r}")
    form.locator("input[name=password]").fill(p["password"])
    form.locator("button[type=submit]").click()
    download = v.page.locator("a#download")
    expect(download).to_be_visible()
    expect(v.page.locator("h1#file-name")).to_have_text(p["name"])
    check(form.is_hidden(), "the form goes once the password is right")
    got = v.download(download)
    check(got == p["text"].encode(), "the file downloads as it was")
    # A reload opens it with the session, without asking again.
    v.page.reload()
    expect(download).to_be_visible()
    check(form.is_hidden(), "a reload does not ask for the password again")
    v.finish("password link", allowed=("401",))


def upload(browser, cfg):
    u = cfg["upload"]
    v = Visit(browser, u["secret"], width=360, height=740)
    v.page.goto(u["url"])
    expect(v.page.locator("input#upload-files")).to_be_attached()
    expect(v.page.locator("section#upload")).to_be_visible()
    check(v.page.locator("table#listing tr.entry").count() == 0, "an upload link lists nothing")
    files = [
        {"name": u["existing"], "mimeType": "text/plain", "buffer": b"from a visitor"},
        {"name": "new.txt", "mimeType": "text/plain", "buffer": b"new one"},
        {"name": "new.txt", "mimeType": "text/plain", "buffer": b"new two"},
    ]
    v.page.locator("input#upload-files").set_input_files(files)
    done = v.page.locator("#uploads .upload.done")
    expect(done).to_have_count(3)
    states = v.page.locator("#uploads .upload .upload-state").all_inner_texts()
    check(any("saved as" in s for s in states), f"a taken name is said: {states}")
    total = v.page.locator("progress#upload-total")
    check(total.get_attribute("value") == total.get_attribute("max"), "the total progress is full")
    v.finish("upload link")


def accessibility(browser, cfg):
    if not cfg.get("axe"):
        print("SKIP axe-core: STACKSYNC_TEST_AXE is not set", flush=True)
        return
    # axe is injected as a script: the page's policy forbids that, so this
    # visitor alone bypasses it.
    for what, url in [("folder", cfg["folder"]["url"]), ("password", cfg["password"]["url"]),
                      ("upload", cfg["upload"]["url"])]:
        context = browser.new_context(bypass_csp=True)
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector("#folder:not([hidden]), #link-password:not([hidden]), #upload:not([hidden])")
        page.add_script_tag(path=cfg["axe"])
        result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        serious = [
            f"{x['id']}: {x['help']}"
            for x in result["violations"]
            if x.get("impact") in ("serious", "critical")
        ]
        check(not serious, f"{what}: no serious accessibility violation {serious}")
        context.close()


def main():
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=cfg["chromium"], args=ARGS)
        try:
            for width in (360, 1200):
                folder(browser, cfg, width)
            password(browser, cfg)
            upload(browser, cfg)
            accessibility(browser, cfg)
        except Exception as e:  # a timeout or a missing element
            check(False, f"the run stopped: {e}")
        finally:
            browser.close()
    if failures:
        print("FAILED: " + "; ".join(failures), flush=True)
        sys.exit(1)
    print("OK", flush=True)


if __name__ == "__main__":
    main()
