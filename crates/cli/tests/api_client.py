"""The REST API v2 (docs/api-v2.md, "Endpoints") against a running
`stacksync server`, driven by an independent OAuth 1.0a client: Python's
requests-oauthlib / oauthlib, every request signed with HMAC-SHA1.

Run by crates/cli/tests/api_v2.rs with the virtual environment's python
(`. scripts/lib.sh; ensure_py_oauth` makes it). Every sub-command takes the
server and two users' credentials the same way:

    api_client.py suite  BASE PREFIX KEY SECRET TOKEN TOKEN_SECRET OTHER_TOKEN OTHER_TOKEN_SECRET
                         [--header NAME:VALUE ...] [--tag TAG] [--only SECTION ...]
    api_client.py shared BASE PREFIX KEY SECRET TOKEN TOKEN_SECRET OTHER_TOKEN OTHER_TOKEN_SECRET
                         --tag TAG [--header NAME:VALUE ...]

BASE is e.g. `http://127.0.0.1:PORT`; PREFIX is `/api/v2` on the server
itself, or `/v1` through a Swift proxy with the `stacksync_api` middleware
(then with `--header StackSync-API:v2`). The first user (alice) owns what
the suite makes; the second (bob) must have a small quota (a few MiB): the
suite fills it. `suite` ends by sharing two folders (`share-TAG`, and
`ro-TAG` read-only) with bob; after bob accepted both invitations (with the
`stacksync` CLI: acceptance is not an API endpoint), `shared` with the same
TAG checks the shared folders from both sides. Each prints `OK` last on
success; otherwise every failed check is printed (request, status, body)
and the exit status is 1.

Small commands for a test that drives a desktop client beside the API
(each prints JSON, `get` writes the bytes to OUT):

    api_client.py put   BASE PREFIX KEY SECRET TOKEN TOKEN_SECRET NAME FILE [--parent ID]
    api_client.py write BASE PREFIX KEY SECRET TOKEN TOKEN_SECRET ID FILE
    api_client.py mkdir BASE PREFIX KEY SECRET TOKEN TOKEN_SECRET NAME [--parent ID]
    api_client.py ls    BASE PREFIX KEY SECRET TOKEN TOKEN_SECRET [--folder ID]
    api_client.py get   BASE PREFIX KEY SECRET TOKEN TOKEN_SECRET ID OUT
"""

import argparse
import hashlib
import json
import os
import re
import socket
import sys
import time
import traceback
import urllib.parse
import uuid

import requests
from oauthlib.oauth1 import Client
from requests_oauthlib import OAuth1

TIMEOUT = 120
OCTETS = "application/octet-stream"
MiB = 1024 * 1024

# The 401 codes: the OAuth problem the server names (what the existing
# OAuth test checks), or `unauthenticated`.
AUTH_CODES = {
    "unauthenticated",
    "unsigned",
    "signature_invalid",
    "timestamp_refused",
    "nonce_used",
    "token_rejected",
    "consumer_key_rejected",
    "consumer_key_unknown",
    "parameter_absent",
}
HOSTILE_NAMES = ["..", ".", "a/b", "/", "a\x00b", "a\x07b", "line\nbreak", ""]
STATUSES = {"NEW", "CHANGED", "RENAMED", "MOVED", "DELETED"}
TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]00:00)$")
HEX = re.compile(r"^[0-9a-f]+$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# What the run noticed that the contract leaves open (printed at the end).
NOTES = set()
# The run under way (for checks deep in helpers that record and go on).
RUN = [None]


class Failed(AssertionError):
    pass


def describe(response):
    if response is None:
        return ""
    request = response.request
    url = request.url if request is not None else "?"
    method = request.method if request is not None else "?"
    try:
        text = response.text[:600]
    except Exception:  # a binary body
        text = repr(response.content[:200])
    return " [%s %s -> HTTP %s: %s]" % (method, url, response.status_code, text)


def check(condition, what, response=None):
    if not condition:
        raise Failed(what + describe(response))


class Api:
    """One user's signed requests."""

    def __init__(self, base, prefix, key, secret, token, token_secret, headers):
        self.base = base.rstrip("/")
        self.prefix = prefix.rstrip("/")
        self.key, self.secret = key, secret
        self.token, self.token_secret = token, token_secret
        self.headers = dict(headers)
        self.session = requests.Session()

    def url(self, path):
        return self.base + self.prefix + path

    def auth(self, **kwargs):
        return OAuth1(
            self.key,
            client_secret=self.secret,
            resource_owner_key=self.token,
            resource_owner_secret=self.token_secret,
            **kwargs
        )

    def call(self, method, path, params=None, body=None, json_body=None, headers=None, auth=True, **kwargs):
        all_headers = dict(self.headers)
        if body is not None:
            # Always a type: without one, requests-oauthlib guesses a form
            # (and would read a generator body to guess).
            all_headers["Content-Type"] = OCTETS
        all_headers.update(headers or {})
        return self.session.request(
            method,
            self.url(path),
            params=params,
            data=body,
            json=json_body,
            headers=all_headers,
            auth=self.auth() if auth is True else (auth or None),
            timeout=TIMEOUT,
            **kwargs
        )

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, **kw):
        return self.call("POST", path, **kw)

    def put(self, path, **kw):
        return self.call("PUT", path, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)

    def signed_headers(self, method, path):
        """Headers of one request signed once (for replaying it)."""
        signer = Client(self.key, client_secret=self.secret, resource_owner_key=self.token,
                        resource_owner_secret=self.token_secret)
        uri, headers, _ = signer.sign(self.url(path), http_method=method, headers=dict(self.headers))
        return uri, headers

    # Helpers that must succeed.

    def create_file(self, name, data, parent=None, what="creating a file"):
        params = {"name": name}
        if parent is not None:
            params["parent"] = parent
        r = self.post("/file", params=params, body=data)
        check(r.status_code == 201, what + " answers 201", r)
        item = check_item(r, what, filename=name, is_folder=False)
        if isinstance(data, bytes):
            check(item["size"] == len(data), what + ": its size", r)
        return item

    def create_folder(self, name, parent=None, what="creating a folder"):
        body = {"name": name}
        if parent is not None:
            body["parent"] = parent
        r = self.post("/folder", json_body=body)
        check(r.status_code == 201, what + " answers 201", r)
        return check_item(r, what, filename=name, is_folder=True)

    def item(self, kind, id_, what=None):
        r = self.get("/%s/%s" % (kind, id_))
        check(r.status_code == 200, (what or "reading %s %s" % (kind, id_)) + " answers 200", r)
        return check_item(r, what or "a %s" % kind)

    def data(self, id_, what="downloading"):
        r = self.get("/file/%s/data" % id_)
        check(r.status_code == 200, what + " answers 200", r)
        return r.content

    def contents(self, folder=None, include_deleted=False, limit=None, what="listing a folder"):
        """Every child of a folder, following the cursor; and the pages."""
        path = "/folder/%s/contents" % folder if folder else None
        params = {}
        if include_deleted:
            params["include_deleted"] = "true"
        if limit is not None:
            params["limit"] = str(limit)
        if path is None:
            # The top folder has no id: its first page comes with it.
            r = self.get("/folder", params=params)
            check(r.status_code == 200, what + ": GET /folder answers 200", r)
            top = r.json()
            check(top.get("is_root") is True and top.get("id") is None, what + ": the top folder", r)
            items, cursor, pages = list(top.get("contents", [])), top.get("cursor"), 1
            path = None
        else:
            r = self.get(path, params=params)
            check(r.status_code == 200, what + " answers 200", r)
            body = r.json()
            check(isinstance(body.get("contents"), list) and "cursor" in body, what + ": contents and cursor", r)
            items, cursor, pages = list(body["contents"]), body["cursor"], 1
        if limit is not None:
            check(len(items) <= limit, what + ": at most limit on the first page", r)
        while cursor is not None:
            check(pages < 10000, what + ": the cursor never ends")
            page_params = dict(params)
            page_params["cursor"] = cursor
            if path is None:
                r = self.get("/folder/root/contents", params=page_params)
                if 400 <= r.status_code < 500:
                    # No id for the top folder: its later pages come from
                    # GET /folder?cursor=.
                    r = self.get("/folder", params=page_params)
            else:
                r = self.get(path, params=page_params)
            check(r.status_code == 200, what + ": the next page", r)
            body = r.json()
            check(isinstance(body.get("contents"), list), what + ": contents", r)
            if limit is not None:
                check(len(body["contents"]) <= limit, what + ": at most limit per page", r)
            items.extend(body["contents"])
            cursor = body.get("cursor")
            pages += 1
        for item in items:
            check_item_json(item, what + ": a child")
        return items, pages

    def account(self):
        r = self.get("/account")
        check(r.status_code == 200, "GET /account", r)
        return r.json()


def check_item(response, what, **expect):
    try:
        item = response.json()
    except ValueError:
        raise Failed(what + ": not JSON" + describe(response))
    check_item_json(item, what, response)
    for key, value in expect.items():
        check(item.get(key) == value, "%s: %s is %r, not %r" % (what, key, item.get(key), value), response)
    return item


def check_item_json(item, what, response=None):
    if response is None:
        what = "%s %s" % (what, json.dumps(item)[:400])
    check(isinstance(item, dict), what + ": an item object", response)
    if item.get("is_root"):
        check(item.get("id") is None, what + ": the top folder has no id", response)
        check(item.get("is_folder") is True, what + ": the top folder is a folder", response)
        return
    for key in ("id", "parent_id", "filename", "is_folder", "status", "version", "checksum", "size",
                "mimetype", "modified_at", "chunks"):
        check(key in item, "%s: the item has %r" % (what, key), response)
    check(isinstance(item["id"], str) and UUID.match(item["id"]), what + ": a lower-case UUID id", response)
    check(item["parent_id"] is None or UUID.match(item["parent_id"]), what + ": parent_id", response)
    if item.get("is_shared") is True:
        # A shared folder's root is a workspace, not an item: the contract
        # does not say what its status, version and time are.
        # Recorded once, not fatal: the rest of the run still says what it
        # finds.
        if not isinstance(item.get("read_only"), bool):
            RUN[0].fail_once("no read_only", what + ": a shared folder's root has no \"read_only\" (reported once)"
                             + describe(response))
        empty = [k for k in ("status", "version", "modified_at") if item[k] is None]
        if empty:
            NOTES.add("a shared folder's root answers %s null" % ", ".join(empty))
            return
    check(item["status"] in STATUSES, what + ": status", response)
    check(isinstance(item["version"], int) and item["version"] >= 1, what + ": version", response)
    check((isinstance(item["size"], int) and item["size"] >= 0) or (item["is_folder"] and item["size"] is None),
          what + ": size", response)
    check(item["mimetype"] is None or isinstance(item["mimetype"], str), what + ": mimetype", response)
    check(isinstance(item["modified_at"], str) and TIME.match(item["modified_at"]), what + ": modified_at",
          response)
    check(isinstance(item["chunks"], list) and all(isinstance(c, str) and HEX.match(c) for c in item["chunks"]),
          what + ": chunks", response)
    if not item["is_folder"]:
        check(item["checksum"] is None or (isinstance(item["checksum"], str) and HEX.match(item["checksum"])
                                           and len(item["checksum"]) == 64),
              what + ": a BLAKE3 hex checksum", response)
        check(item.get("etag") == '"%s.%d"' % (item["id"], item["version"]),
              what + ': etag "<id>.<version>"', response)
    else:
        check(item["chunks"] == [], what + ": a folder has no chunks", response)


class Run:
    """The run's state: the two users, what failed, what is noted."""

    def __init__(self, alice, bob, tag):
        self.alice, self.bob, self.tag = alice, bob, tag
        self.failures = []
        self.notes = NOTES
        self.once = set()
        RUN[0] = self
        self.section = None

    def name(self, base):
        return "%s-%s" % (base, self.tag)

    def fail(self, message):
        line = "FAIL [%s] %s" % (self.section, message)
        print(line, flush=True)
        self.failures.append(line)

    def fail_once(self, key, message):
        if key not in self.once:
            self.once.add(key)
            self.fail(message)

    def refused(self, response, status, codes, what):
        """A refusal with this status and a JSON error body; a mismatch is
        recorded and the section goes on. Returns whether it matched."""
        if isinstance(status, int):
            status = (status,)
        if isinstance(codes, str):
            codes = {codes}
        if response.status_code not in status:
            self.fail("%s: expected HTTP %s%s" % (what, "/".join(map(str, status)), describe(response)))
            return False
        try:
            body = response.json()
        except ValueError:
            self.fail("%s: the refusal's body is not JSON%s" % (what, describe(response)))
            return False
        ok = True
        if not isinstance(body, dict) or not isinstance(body.get("error"), str):
            self.fail("%s: no \"error\" in the refusal%s" % (what, describe(response)))
            return False
        if codes is not None and body["error"] not in codes:
            self.fail("%s: error %r, expected one of %s%s" % (what, body["error"], sorted(codes),
                                                              describe(response)))
            ok = False
        if not (isinstance(body.get("description"), str) and body["description"]):
            self.fail("%s: no \"description\" in the refusal%s" % (what, describe(response)))
            ok = False
        if not response.headers.get("Content-Type", "").startswith("application/json"):
            self.fail("%s: Content-Type %r, expected application/json%s"
                      % (what, response.headers.get("Content-Type"), describe(response)))
            ok = False
        if response.status_code == 401:
            if not response.headers.get("WWW-Authenticate", "").startswith("OAuth"):
                self.fail("%s: a 401 without WWW-Authenticate: OAuth%s" % (what, describe(response)))
                ok = False
        if response.status_code == 403 and status == (404, 403):
            self.notes.add("another user's item answered 403, the contract says 404: " + what)
        return ok

    def other_user(self, response, what):
        """Another user's item: 404 (the contract), 403 tolerated."""
        return self.refused(response, (404, 403), {"not_found", "forbidden"}, what)

    def soft(self, condition, what, response=None):
        if not condition:
            self.fail(what + describe(response))
        return condition


SECTIONS = []


def section(fn):
    SECTIONS.append(fn)
    return fn


def random_uuid():
    return str(uuid.uuid4())


# ---------------------------------------------------------------- sections


@section
def account_and_apps(run):
    a = run.alice.account()
    check({"user_id", "email", "name", "quota_limit", "quota_used"} <= set(a), "the account's fields")
    b = run.bob.account()
    check(a["email"] != b["email"], "two different users")
    r = run.alice.get("/apps")
    check(r.status_code == 200, "GET /apps", r)
    check(any(app.get("key") == run.alice.key for app in r.json().get("apps", [])), "the app is listed", r)


@section
def authentication(run):
    api = run.alice
    # Unsigned, on a read and on a write (which must create nothing).
    for method, path, kw in (("GET", "/account", {}), ("GET", "/folder", {}),
                             ("POST", "/file", {"params": {"name": run.name("unsigned")}, "body": b"x"}),
                             ("POST", "/folder", {"json_body": {"name": run.name("unsigned-dir")}})):
        r = api.call(method, path, auth=False, **kw)
        run.refused(r, 401, AUTH_CODES, "an unsigned %s %s" % (method, path))
    names = [i["filename"] for i in api.contents(what="the top folder after unsigned writes")[0]]
    run.soft(run.name("unsigned") not in names and run.name("unsigned-dir") not in names,
             "an unsigned write created something")
    # Badly signed: wrong consumer secret, wrong token secret, unknown token.
    for label, auth in (
        ("a wrong consumer secret", OAuth1(api.key, client_secret="x" + api.secret, resource_owner_key=api.token,
                                           resource_owner_secret=api.token_secret)),
        ("a wrong token secret", OAuth1(api.key, client_secret=api.secret, resource_owner_key=api.token,
                                        resource_owner_secret="x" + api.token_secret)),
        ("an unknown token", OAuth1(api.key, client_secret=api.secret, resource_owner_key="x" + api.token,
                                    resource_owner_secret=api.token_secret)),
    ):
        r = api.get("/folder", auth=auth)
        run.refused(r, 401, AUTH_CODES, label)
    # A tampered query: signed with limit=2, sent with limit=3.
    uri, headers = api.signed_headers("GET", "/folder?limit=2")
    r = requests.get(uri.replace("limit=2", "limit=3"), headers=headers, timeout=TIMEOUT)
    run.refused(r, 401, AUTH_CODES, "a tampered query")
    # An expired timestamp.
    old = api.auth(timestamp=str(int(time.time()) - 3600), nonce=uuid.uuid4().hex)
    run.refused(api.get("/folder", auth=old), 401, AUTH_CODES, "a timestamp an hour old")
    # A replayed nonce: one signature sent twice.
    uri, headers = api.signed_headers("GET", "/folder")
    first = requests.get(uri, headers=headers, timeout=TIMEOUT)
    check(first.status_code == 200, "the first use of a signature", first)
    second = requests.get(uri, headers=headers, timeout=TIMEOUT)
    run.refused(second, 401, AUTH_CODES, "the same signed request replayed")
    # A replayed write does not write twice.
    name = run.name("replayed")
    uri, headers = api.signed_headers("POST", "/folder?" + urllib.parse.urlencode({"x": "1"}))
    body = json.dumps({"name": name}).encode()
    headers["Content-Type"] = "application/json"
    first = requests.post(uri, headers=headers, data=body, timeout=TIMEOUT)
    check(first.status_code == 201, "a signed folder creation", first)
    second = requests.post(uri, headers=headers, data=body, timeout=TIMEOUT)
    run.refused(second, 401, AUTH_CODES, "a replayed folder creation")
    made = [i for i in api.contents()[0] if i["filename"] == name]
    check(len(made) == 1, "one folder made by a replayed creation, not %d" % len(made))


@section
def file_lifecycle(run):
    api = run.alice
    content = b"hello, world\n"
    name = run.name("a") + ".txt"
    item = api.create_file(name, content, what="POST /file at the top")
    fid = item["id"]
    check(item["parent_id"] is None and item["status"] == "NEW", "a new file at the top", None)
    v1 = item["version"]
    second = api.create_file(run.name("b") + ".txt", b"b", parent="root", what="POST /file?parent=root")
    check(second["parent_id"] is None, "parent=root is the top folder")

    got = api.item("file", fid)
    for key in ("id", "filename", "version", "size", "checksum", "etag", "parent_id"):
        run.soft(got[key] == item[key], "GET /file/ID: %s differs from the creation's answer" % key)

    # Downloads: whole, ranges, conditional.
    r = api.get("/file/%s/data" % fid)
    check(r.status_code == 200 and r.content == content, "GET /file/ID/data gives the bytes", r)
    run.soft(r.headers.get("ETag") == item["etag"], "the download's ETag is the item's etag", r)
    run.soft("bytes" in r.headers.get("Accept-Ranges", ""), "Accept-Ranges: bytes", r)
    run.soft(bool(r.headers.get("Content-Type")), "a Content-Type on the download", r)
    r = api.get("/file/%s/data" % fid, headers={"Range": "bytes=2-5"})
    if run.soft(r.status_code == 206, "Range bytes=2-5 answers 206", r):
        run.soft(r.content == content[2:6], "Range bytes=2-5 gives bytes 2..5", r)
        run.soft(r.headers.get("Content-Range") == "bytes 2-5/%d" % len(content), "Content-Range 2-5", r)
    r = api.get("/file/%s/data" % fid, headers={"Range": "bytes=7-"})
    if run.soft(r.status_code == 206, "Range bytes=7- answers 206", r):
        run.soft(r.content == content[7:], "Range bytes=7- gives the tail", r)
    r = api.get("/file/%s/data" % fid, headers={"Range": "bytes=100-200"})
    run.refused(r, 416, None, "a range past the end")
    r = api.get("/file/%s/data" % fid, headers={"If-None-Match": item["etag"]})
    if run.soft(r.status_code == 304, "If-None-Match with the current etag answers 304", r):
        run.soft(r.content == b"", "a 304 has no body", r)
    r = api.get("/file/%s/data" % fid, headers={"If-None-Match": '"%s.999999"' % fid})
    run.soft(r.status_code == 200 and r.content == content, "If-None-Match with another etag answers 200", r)

    # Updates: a good If-Match, then a stale one changes nothing.
    content2 = b"hello again, world\n"
    r = api.put("/file/%s/data" % fid, body=content2, headers={"If-Match": item["etag"]})
    check(r.status_code == 200, "PUT /file/ID/data with the current If-Match answers 200", r)
    updated = check_item(r, "the updated file", id=fid, size=len(content2))
    check(updated["version"] > v1, "the update is a new version", r)
    run.soft(updated["status"] == "CHANGED", "an updated file's status is CHANGED", r)
    run.soft(updated["checksum"] != item["checksum"], "new content, new checksum", r)
    check(api.data(fid) == content2, "the new content is downloaded")
    r = api.put("/file/%s/data" % fid, body=b"lost update", headers={"If-Match": item["etag"]})
    run.refused(r, 409, "conflict", "PUT /file/ID/data with a stale If-Match")
    check(api.data(fid) == content2, "a stale If-Match changed the content")
    check(api.item("file", fid)["version"] == updated["version"], "a stale If-Match made a version")
    r = api.put("/file/%s/data" % fid, body=content, headers={})
    check(r.status_code == 200, "PUT /file/ID/data without If-Match answers 200", r)
    current = check_item(r, "the unconditional update")
    check(api.data(fid) == content, "the unconditional update's content")

    # Rename, move into a folder and back.
    new_name = run.name("renamed") + ".txt"
    r = api.put("/file/%s" % fid, json_body={"name": new_name}, headers={"If-Match": updated["etag"]})
    run.refused(r, 409, "conflict", "PUT /file/ID (rename) with a stale If-Match")
    check(api.item("file", fid)["filename"] == name, "a stale rename renamed")
    r = api.put("/file/%s" % fid, json_body={"name": new_name}, headers={"If-Match": current["etag"]})
    check(r.status_code == 200, "renaming a file", r)
    renamed = check_item(r, "the renamed file", id=fid, filename=new_name)
    run.soft(renamed["status"] == "RENAMED", "a renamed file's status is RENAMED", r)
    folder = api.create_folder(run.name("dir"))
    r = api.put("/file/%s" % fid, json_body={"parent": folder["id"]})
    check(r.status_code == 200, "moving a file into a folder", r)
    moved = check_item(r, "the moved file", id=fid, parent_id=folder["id"], filename=new_name)
    run.soft(moved["status"] == "MOVED", "a moved file's status is MOVED", r)
    inside = [i["id"] for i in api.contents(folder["id"])[0]]
    check(fid in inside, "the moved file is listed in its folder")
    top = [i["id"] for i in api.contents()[0]]
    check(fid not in top, "the moved file is no longer at the top")
    r = api.put("/file/%s" % fid, json_body={"parent": None, "name": name})
    check(r.status_code == 200, "moving and renaming a file back to the top", r)
    check_item(r, "the file back at the top", id=fid, parent_id=None, filename=name)
    check(api.data(fid) == content, "renames and moves keep the content")

    # Delete: a stale If-Match first.
    latest = api.item("file", fid)
    r = api.delete("/file/%s" % fid, headers={"If-Match": current["etag"]})
    run.refused(r, 409, "conflict", "DELETE /file/ID with a stale If-Match")
    check(api.item("file", fid)["status"] != "DELETED", "a stale delete deleted")
    r = api.delete("/file/%s" % fid, headers={"If-Match": latest["etag"]})
    check(r.status_code == 200, "DELETE /file/ID answers 200", r)
    deleted = check_item(r, "the deleted file", id=fid, status="DELETED")
    check(deleted["version"] > latest["version"], "the deletion is a new version", r)
    again = api.item("file", fid, "reading a deleted file")
    check(again["status"] == "DELETED", "a deleted file answers with status DELETED")
    check(fid not in [i["id"] for i in api.contents()[0]], "a deleted file is not listed")
    # Its name is free again.
    reborn = api.create_file(name, b"again", what="a new file under a deleted file's name")
    check(api.data(reborn["id"]) == b"again", "the new file's content")


@section
def versions(run):
    api = run.alice
    bodies = [b"one", b"two two", b"three"]
    item = api.create_file(run.name("versioned") + ".txt", bodies[0])
    fid = item["id"]
    for body in bodies[1:]:
        r = api.put("/file/%s/data" % fid, body=body)
        check(r.status_code == 200, "an update", r)
    r = api.get("/file/%s/versions" % fid)
    check(r.status_code == 200, "GET /file/ID/versions", r)
    listed = r.json()
    check(isinstance(listed, list) and len(listed) == 3, "three versions", r)
    for v in listed:
        check_item_json(v, "a version", r)
        check(v["id"] == fid, "every version has the file's id", r)
    numbers = [v["version"] for v in listed]
    check(numbers == sorted(numbers) and len(set(numbers)) == 3, "oldest first, distinct numbers", r)
    check([v["size"] for v in listed] == [len(b) for b in bodies], "each version's size", r)
    first = numbers[0]

    r = api.get("/file/%s/version/%d" % (fid, first))
    check(r.status_code == 200, "GET /file/ID/version/N", r)
    check_item(r, "one version", id=fid, version=first, size=len(bodies[0]))
    r = api.get("/file/%s/version/%d/data" % (fid, first))
    check(r.status_code == 200 and r.content == bodies[0], "GET /file/ID/version/N/data", r)
    r = api.get("/file/%s/version/%d/data" % (fid, numbers[1]), headers={"Range": "bytes=1-3"})
    if run.soft(r.status_code == 206, "a Range on a version's data answers 206", r):
        run.soft(r.content == bodies[1][1:4], "a version's range", r)
    r = api.get("/file/%s/version/%d" % (fid, numbers[-1] + 1000))
    run.refused(r, 404, "not_found", "GET /file/ID/version/N of no such version")
    r = api.get("/file/%s/version/%d/data" % (fid, numbers[-1] + 1000))
    run.refused(r, 404, "not_found", "GET /file/ID/version/N/data of no such version")
    r = api.get("/file/%s/version/abc" % fid)
    run.refused(r, (400, 404), {"bad_request", "not_found"}, "GET /file/ID/version/abc")
    r = api.post("/file/%s/version/%d/restore" % (fid, numbers[-1] + 1000))
    run.refused(r, 404, "not_found", "restoring no such version")

    r = api.post("/file/%s/version/%d/restore" % (fid, first))
    check(r.status_code == 200, "POST /file/ID/version/N/restore answers 200", r)
    restored = check_item(r, "the restored version", id=fid, size=len(bodies[0]))
    check(restored["version"] > numbers[-1], "a restore is a new version", r)
    check(api.data(fid) == bodies[0], "the restored content")
    r = api.get("/file/%s/versions" % fid)
    check(r.status_code == 200 and len(r.json()) == 4, "the restore is in the version list", r)
    # A deleted file's versions are kept; restoring one brings it back.
    r = api.delete("/file/%s" % fid)
    check(r.status_code == 200, "deleting the versioned file", r)
    r = api.get("/file/%s/versions" % fid)
    check(r.status_code == 200 and len(r.json()) >= 4, "a deleted file's versions are kept", r)
    r = api.post("/file/%s/version/%d/restore" % (fid, numbers[1]))
    if run.soft(r.status_code == 200, "restoring a version of a deleted file", r):
        check(api.item("file", fid)["status"] != "DELETED", "the restored file is no longer deleted")
        check(api.data(fid) == bodies[1], "the restored file's content")


@section
def folders(run):
    api = run.alice
    top = api.create_folder(run.name("tree"))
    check(top["parent_id"] is None and top["status"] == "NEW", "a new folder at the top")
    r = api.post("/folder", json_body={"name": run.name("nullparent"), "parent": None})
    check(r.status_code == 201, "POST /folder with parent null", r)
    check_item(r, "a folder with parent null", parent_id=None)
    r = api.post("/folder", json_body={"name": run.name("rootparent"), "parent": "root"})
    check(r.status_code == 201, "POST /folder with parent root", r)
    check_item(r, "a folder with parent root", parent_id=None)
    sub = api.create_folder("sub", parent=top["id"], what="a nested folder")
    check(sub["parent_id"] == top["id"], "the nested folder's parent")
    deeper = api.create_folder("deeper", parent=sub["id"], what="a folder two levels down")
    leaf = api.create_file("leaf.txt", b"leaf", parent=deeper["id"], what="a file three levels down")
    check(leaf["parent_id"] == deeper["id"], "the file's parent")
    beside = api.create_file("beside.txt", b"beside", parent=top["id"])

    r = api.get("/folder/%s" % top["id"])
    check(r.status_code == 200, "GET /folder/ID", r)
    read = check_item(r, "a folder read", id=top["id"], is_folder=True)
    check(isinstance(read.get("contents"), list) and "cursor" in read, "a folder read has contents and cursor", r)
    check({i["id"] for i in read["contents"]} == {sub["id"], beside["id"]}, "the folder's children", r)
    r = api.get("/folder")
    check(r.status_code == 200, "GET /folder", r)
    root = r.json()
    check(root.get("is_root") is True and root.get("id") is None, "the top folder: is_root, id null", r)
    check("cursor" in root and isinstance(root.get("contents"), list), "the top folder has contents", r)
    check(top["id"] in [i["id"] for i in api.contents()[0]], "the new folder is at the top")

    # Rename, then move into another folder.
    r = api.put("/folder/%s" % top["id"], json_body={"name": run.name("tree2")})
    check(r.status_code == 200, "PUT /folder/ID (rename)", r)
    check_item(r, "the renamed folder", id=top["id"], filename=run.name("tree2"))
    check(api.item("folder", sub["id"])["parent_id"] == top["id"], "renaming keeps the children")
    other = api.create_folder(run.name("other"))
    r = api.put("/folder/%s" % sub["id"], json_body={"parent": other["id"]})
    check(r.status_code == 200, "PUT /folder/ID (move)", r)
    check_item(r, "the moved folder", id=sub["id"], parent_id=other["id"])
    check(sub["id"] in [i["id"] for i in api.contents(other["id"])[0]], "the moved folder is in its new parent")
    check(sub["id"] not in [i["id"] for i in api.contents(top["id"])[0]], "and no longer in the old one")
    check(api.data(leaf["id"]) == b"leaf", "a file inside a moved folder keeps its content")
    r = api.put("/folder/%s" % sub["id"], json_body={"parent": top["id"]})
    check(r.status_code == 200, "moving the folder back", r)
    # Into itself or its own descendant: refused, nothing changed.
    for target, label in ((top["id"], "itself"), (deeper["id"], "its own descendant")):
        r = api.put("/folder/%s" % top["id"], json_body={"parent": target})
        run.refused(r, (400, 409), {"bad_request", "conflict", "invalid_name"}, "moving a folder into " + label)
    check(api.item("folder", top["id"])["parent_id"] is None, "a refused move moved the folder")

    # Delete: everything inside goes too.
    r = api.delete("/folder/%s" % top["id"])
    check(r.status_code == 200, "DELETE /folder/ID", r)
    check_item(r, "the deleted folder", id=top["id"], status="DELETED")
    for kind, inner, label in (("file", leaf, "a file three levels down"), ("file", beside, "a file inside"),
                               ("folder", sub, "a folder inside"), ("folder", deeper, "a folder two down")):
        r = api.get("/%s/%s" % (kind, inner["id"]))
        if r.status_code == 200:
            run.soft(r.json().get("status") == "DELETED", "after deleting its folder, %s is DELETED" % label, r)
        else:
            run.refused(r, 404, "not_found", "after deleting its folder, %s" % label)
    check(top["id"] not in [i["id"] for i in api.contents()[0]], "a deleted folder is not listed")
    with_deleted = {i["id"]: i for i in api.contents(include_deleted=True)[0]}
    run.soft(top["id"] in with_deleted and with_deleted[top["id"]]["status"] == "DELETED",
             "include_deleted=true lists the deleted folder at the top")
    api.create_folder(run.name("tree2"), what="a folder under a deleted folder's name")


@section
def contents_paging(run):
    api = run.alice
    folder = api.create_folder(run.name("paged"))
    children = [api.create_file("f%d.txt" % n, b"%d" % n, parent=folder["id"])["id"] for n in range(5)]
    children.append(api.create_folder("sub", parent=folder["id"])["id"])

    items, pages = api.contents(folder["id"], limit=2, what="paging limit=2")
    ids = [i["id"] for i in items]
    check(sorted(ids) == sorted(children), "every child exactly once over the pages: %r" % ids)
    check(pages >= 3, "six children in pages of two take at least three pages (got %d)" % pages)
    items, pages = api.contents(folder["id"], what="one page")
    check(sorted(i["id"] for i in items) == sorted(children) and pages == 1, "the default limit: one page")
    # The folder read gives the first page and a cursor.
    r = api.get("/folder/%s" % folder["id"], params={"limit": "2"})
    check(r.status_code == 200, "GET /folder/ID?limit=2", r)
    body = r.json()
    check(len(body.get("contents", [])) <= 2 and body.get("cursor"), "a first page of two and a cursor", r)
    seen = [i["id"] for i in body["contents"]]
    cursor = body["cursor"]
    while cursor:
        r = api.get("/folder/%s/contents" % folder["id"], params={"limit": "2", "cursor": cursor})
        check(r.status_code == 200, "the next page after a folder read", r)
        seen.extend(i["id"] for i in r.json()["contents"])
        cursor = r.json()["cursor"]
    check(sorted(seen) == sorted(children), "the folder read's cursor continues in /contents: %r" % seen)
    # The top folder pages as well.
    top, _ = api.contents(limit=1, what="the top folder, one per page")
    check(folder["id"] in [i["id"] for i in top], "the top folder's pages list the folder")
    check(len({i["id"] for i in top}) == len(top), "the top folder's pages list nothing twice")

    # Bad parameters.
    for params, label in (({"limit": "abc"}, "limit=abc"), ({"limit": "-1"}, "limit=-1"),
                          ({"limit": "0"}, "limit=0"), ({"limit": "1001"}, "limit=1001"),
                          ({"cursor": "not a cursor"}, "a garbage cursor"),
                          ({"include_deleted": "maybe"}, "include_deleted=maybe")):
        r = api.get("/folder/%s/contents" % folder["id"], params=params)
        run.refused(r, 400, "bad_request", "GET /folder/ID/contents?" + label)

    # include_deleted.
    gone = children[0]
    r = api.delete("/file/%s" % gone)
    check(r.status_code == 200, "deleting a child", r)
    live = [i["id"] for i in api.contents(folder["id"], limit=2)[0]]
    check(gone not in live and len(live) == 5, "a deleted child is hidden by default")
    listed = {i["id"]: i for i in api.contents(folder["id"], include_deleted=True, limit=2)[0]}
    check(gone in listed and listed[gone]["status"] == "DELETED", "include_deleted=true lists the deleted child")
    check(len(listed) == 6, "include_deleted=true lists every child once")
    r = api.get("/folder/%s" % folder["id"], params={"include_deleted": "true"})
    check(r.status_code == 200, "GET /folder/ID?include_deleted=true", r)
    check(gone in [i["id"] for i in r.json()["contents"]], "a folder read honours include_deleted", r)
    r = api.get("/folder/%s" % folder["id"])
    check(gone not in [i["id"] for i in r.json()["contents"]], "a folder read hides deleted children", r)


@section
def names(run):
    api = run.alice
    taken = run.name("taken") + ".txt"
    taken_dir = run.name("taken-dir")
    f = api.create_file(taken, b"first")
    api.create_folder(taken_dir)
    other = api.create_file(run.name("other") + ".txt", b"other")
    other_dir = api.create_folder(run.name("other-dir"))

    # Clashes, both ways, on create and rename and move.
    run.refused(api.post("/file", params={"name": taken}, body=b"second"), 409, "conflict",
                "a file over an existing file")
    run.refused(api.post("/file", params={"name": taken_dir}, body=b"x"), 409, "conflict",
                "a file over an existing folder")
    run.refused(api.post("/folder", json_body={"name": taken_dir}), 409, "conflict",
                "a folder over an existing folder")
    run.refused(api.post("/folder", json_body={"name": taken}), 409, "conflict",
                "a folder over an existing file")
    run.refused(api.put("/file/%s" % other["id"], json_body={"name": taken}), 409, "conflict",
                "renaming a file onto a taken name")
    run.refused(api.put("/folder/%s" % other_dir["id"], json_body={"name": taken}), 409, "conflict",
                "renaming a folder onto a taken name")
    inner = api.create_file(taken, b"inner", parent=other_dir["id"], what="the same name in another folder")
    run.refused(api.put("/file/%s" % inner["id"], json_body={"parent": None}), 409, "conflict",
                "moving a file next to one of the same name")
    check(api.data(f["id"]) == b"first", "a clash changed the existing file")
    check(api.item("file", other["id"])["filename"] == run.name("other") + ".txt", "a refused rename renamed")
    check(api.item("file", inner["id"])["parent_id"] == other_dir["id"], "a refused move moved")

    # Hostile names, on create and rename.
    for bad in HOSTILE_NAMES:
        codes = {"invalid_name", "bad_request"} if bad == "" else {"invalid_name"}
        label = repr(bad)
        run.refused(api.post("/file", params={"name": bad}, body=b"x"), 400, codes, "POST /file name=" + label)
        run.refused(api.post("/file", params={"name": bad, "parent": other_dir["id"]}, body=b"x"), 400, codes,
                    "POST /file in a folder, name=" + label)
        run.refused(api.post("/folder", json_body={"name": bad}), 400, codes, "POST /folder name=" + label)
        run.refused(api.put("/file/%s" % other["id"], json_body={"name": bad}), 400, codes,
                    "renaming a file to " + label)
        run.refused(api.put("/folder/%s" % other_dir["id"], json_body={"name": bad}), 400, codes,
                    "renaming a folder to " + label)
    listed = api.contents(include_deleted=True)[0] + api.contents(other_dir["id"], include_deleted=True)[0]
    check(not [i for i in listed if i["filename"] in HOSTILE_NAMES or "/" in i["filename"]],
          "a hostile name was created")
    run.refused(api.post("/file", body=b"x"), 400, {"bad_request", "invalid_name"}, "POST /file without a name")
    run.refused(api.post("/folder", json_body={}), 400, {"bad_request", "invalid_name"},
                "POST /folder without a name")
    run.refused(api.post("/folder", body=b"{not json", headers={"Content-Type": "application/json"}), 400,
                "bad_request", "POST /folder with a body that is not JSON")
    run.refused(api.put("/file/%s" % other["id"], json_body={"name": 7}), 400, {"bad_request", "invalid_name"},
                "renaming a file to a number")

    # Names that are fine, however awkward in a URL or a signature.
    for odd in ("with spaces.txt", "a+b&c=d%20e.txt", "ünïcödé ✓.txt", "#?;.txt", "-dash", "..hidden", "x" * 200):
        name = odd + "-" + run.tag
        r = api.post("/file", params={"name": name}, body=b"odd")
        if run.soft(r.status_code == 201, "POST /file with the valid name %r" % name, r):
            item = r.json()
            run.soft(item.get("filename") == name, "the name %r is kept as is" % name, r)
            got = api.get("/file/%s" % item["id"])
            run.soft(got.status_code == 200 and got.json().get("filename") == name, "and read back", got)


@section
def unknown_and_malformed_ids(run):
    api = run.alice
    file_ = api.create_file(run.name("known") + ".txt", b"known")
    folder = api.create_folder(run.name("known-dir"))
    for bad, statuses, codes in ((random_uuid(), (404,), {"not_found"}),
                                 ("not-a-uuid", (400, 404), {"bad_request", "not_found"}),
                                 ("12345", (400, 404), {"bad_request", "not_found"})):
        for method, path, kw in endpoints_on(bad, bad):
            r = api.call(method, path, **kw)
            run.refused(r, statuses, codes, "%s %s (%s id)" % (method, path, "unknown" if statuses == (404,)
                                                                 else "malformed"))
    # One kind's id where the other is expected.
    for method, path, kw in (("GET", "/file/%s" % folder["id"], {}), ("GET", "/file/%s/data" % folder["id"], {}),
                             ("GET", "/folder/%s" % file_["id"], {}),
                             ("GET", "/folder/%s/contents" % file_["id"], {}),
                             ("POST", "/file", {"params": {"name": "x", "parent": file_["id"]}, "body": b"x"})):
        r = api.call(method, path, **kw)
        run.refused(r, (400, 404, 409), {"bad_request", "not_found", "conflict"},
                    "%s %s with the other kind's id" % (method, path))


def endpoints_on(file_id, folder_id, version=1):
    """Every endpoint that names an item, as (method, path, kwargs)."""
    return [
        ("GET", "/file/%s" % file_id, {}),
        ("GET", "/file/%s/data" % file_id, {}),
        ("PUT", "/file/%s/data" % file_id, {"body": b"intruder"}),
        ("PUT", "/file/%s" % file_id, {"json_body": {"name": "intruder.txt"}}),
        ("DELETE", "/file/%s" % file_id, {}),
        ("GET", "/file/%s/versions" % file_id, {}),
        ("GET", "/file/%s/version/%d" % (file_id, version), {}),
        ("GET", "/file/%s/version/%d/data" % (file_id, version), {}),
        ("POST", "/file/%s/version/%d/restore" % (file_id, version), {}),
        ("GET", "/folder/%s" % folder_id, {}),
        ("GET", "/folder/%s/contents" % folder_id, {}),
        ("PUT", "/folder/%s" % folder_id, {"json_body": {"name": "intruder"}}),
        ("DELETE", "/folder/%s" % folder_id, {}),
        ("POST", "/folder/%s/share" % folder_id, {"json_body": ["nobody@example.org"]}),
        ("POST", "/folder/%s/unshare" % folder_id, {"json_body": ["nobody@example.org"]}),
        ("GET", "/folder/%s/members" % folder_id, {}),
        ("POST", "/file", {"params": {"name": "intruder.txt", "parent": folder_id}, "body": b"intruder"}),
        ("POST", "/folder", {"json_body": {"name": "intruder", "parent": folder_id}}),
    ]


@section
def other_users_items(run):
    alice, bob = run.alice, run.bob
    folder = alice.create_folder(run.name("alices"))
    file_ = alice.create_file("secret.txt", b"alice's secret", parent=folder["id"])
    r = alice.put("/file/%s/data" % file_["id"], body=b"alice's secret, v2")
    check(r.status_code == 200, "alice updates her file", r)
    first_version = file_["version"]
    for method, path, kw in endpoints_on(file_["id"], folder["id"], first_version):
        run.other_user(bob.call(method, path, **kw), "bob's %s %s on alice's item" % (method, path))
    # Bob's own file into alice's folder, or bob sharing alice's folder with himself.
    mine = bob.create_file(run.name("bobs") + ".txt", b"bob's")
    run.other_user(bob.put("/file/%s" % mine["id"], json_body={"parent": folder["id"]}),
                   "bob moving his file into alice's folder")
    run.other_user(bob.post("/folder/%s/share" % folder["id"], json_body=[bob.account()["email"]]),
                   "bob sharing alice's folder with himself")
    # Nothing of alice's changed, nothing leaked into bob's listings.
    check(alice.data(file_["id"]) == b"alice's secret, v2", "alice's file is intact")
    check(alice.item("file", file_["id"])["status"] != "DELETED", "alice's file is not deleted")
    check(alice.item("folder", folder["id"])["filename"] == run.name("alices"), "alice's folder is not renamed")
    check([i["filename"] for i in alice.contents(folder["id"])[0]] == ["secret.txt"],
          "nothing was added to alice's folder")
    bobs = [i["id"] for i in bob.contents(include_deleted=True)[0]]
    check(folder["id"] not in bobs and file_["id"] not in bobs, "alice's items are not in bob's listing")
    check(mine["id"] in bobs, "bob's own file is in his listing")
    entries = delta_all(bob)[0]
    check(not {folder["id"], file_["id"]} & {e["id"] for e in entries}, "alice's items are not in bob's delta")


@section
def wrong_methods(run):
    api = run.alice
    f = api.create_file(run.name("methods") + ".txt", b"m")
    d = api.create_folder(run.name("methods-dir"))
    for method, path in (("PATCH", "/file/%s" % f["id"]), ("POST", "/file/%s" % f["id"]),
                         ("DELETE", "/file/%s/data" % f["id"]), ("PUT", "/file/%s/versions" % f["id"]),
                         ("PATCH", "/folder/%s" % d["id"]), ("DELETE", "/folder/%s/members" % d["id"]),
                         ("DELETE", "/delta"), ("PUT", "/account")):
        run.refused(api.call(method, path), 405, "method_not_allowed", "%s %s" % (method, path))
    check(api.data(f["id"]) == b"m", "a refused method changed the file")


@section
def other_refusals(run):
    api = run.alice
    # No such endpoint under the prefix: a JSON 404 too.
    run.refused(api.get("/no-such-endpoint"), 404, "not_found", "GET an unknown endpoint")
    run.refused(api.get("/file/%s/nothing" % random_uuid()), 404, "not_found", "GET /file/ID/nothing")
    # A metadata body far larger than any name: too large (413), not read.
    folder = api.create_folder(run.name("big-body"))
    huge = {"name": "x", "padding": "p" * (1024 * 1024)}
    run.refused(api.post("/folder", json_body=huge), 413, "too_large", "POST /folder with a 1 MiB JSON body")
    run.refused(api.put("/folder/%s" % folder["id"], json_body=huge), 413, "too_large",
                "PUT /folder/ID with a 1 MiB JSON body")
    check(api.item("folder", folder["id"])["filename"] == run.name("big-body"), "a refused body renamed")


def delta_all(api, cursor=None, limit=None):
    """Every page of the change feed from cursor; (entries, cursor, pages)."""
    entries, pages = [], 0
    while True:
        params = {}
        if cursor is not None:
            params["cursor"] = cursor
        if limit is not None:
            params["limit"] = str(limit)
        r = api.get("/delta", params=params)
        check(r.status_code == 200, "GET /delta", r)
        body = r.json()
        check(isinstance(body.get("entries"), list) and isinstance(body.get("has_more"), bool)
              and isinstance(body.get("cursor"), str) and body["cursor"], "entries, cursor, has_more", r)
        if limit is not None:
            check(len(body["entries"]) <= limit, "at most limit entries", r)
        for e in body["entries"]:
            check_item_json(e, "a delta entry", r)
        entries.extend(body["entries"])
        pages += 1
        check(pages < 100000, "the feed never ends")
        cursor = body["cursor"]
        if not body["has_more"]:
            return entries, cursor, pages
        check(body["entries"], "a page with has_more has entries", r)


@section
def delta(run):
    api = run.alice
    folder = api.create_folder(run.name("delta"))
    kept = api.create_file("kept.txt", b"kept", parent=folder["id"])
    changed = api.create_file("changed.txt", b"before", parent=folder["id"])
    doomed = api.create_file("doomed.txt", b"doomed", parent=folder["id"])
    entries, cursor, _ = delta_all(api)
    ids = {e["id"] for e in entries}
    check({folder["id"], kept["id"], changed["id"], doomed["id"]} <= ids,
          "GET /delta without a cursor lists what was created")
    # Nothing happened since: nothing new.
    quiet, cursor2, _ = delta_all(api, cursor)
    check(quiet == [], "GET /delta?cursor= right after: no entries (got %r)" % [e["filename"] for e in quiet])
    # Three changes: exactly those.
    r = api.put("/file/%s/data" % changed["id"], body=b"after")
    check(r.status_code == 200, "an update", r)
    r = api.delete("/file/%s" % doomed["id"])
    check(r.status_code == 200, "a delete", r)
    born = api.create_file("born.txt", b"born", parent=folder["id"])
    later, cursor3, _ = delta_all(api, cursor2)
    last = {}
    for e in later:
        last[e["id"]] = e
    check(set(last) == {changed["id"], doomed["id"], born["id"]},
          "the feed after a cursor has only later changes: %r" % sorted(e["filename"] for e in later))
    check(last[doomed["id"]]["status"] == "DELETED", "a deleted item's entry says DELETED")
    check(last[changed["id"]]["size"] == len(b"after"), "an updated item's entry is its new version")
    check(kept["id"] not in last, "an untouched item is not repeated")
    # Paging with limit: the same entries, several pages.
    all_entries, _, _ = delta_all(api)
    paged, end, pages = delta_all(api, limit=2)
    check(pages >= 2, "limit=2 gives several pages (%d)" % pages)
    check({e["id"] for e in paged} == {e["id"] for e in all_entries}, "limit=2 pages give the same items")
    check(delta_all(api, end)[0] == [], "the paged feed's last cursor is at the end")
    for params, label in (({"cursor": "garbage"}, "a garbage cursor"), ({"limit": "abc"}, "limit=abc"),
                          ({"limit": "0"}, "limit=0")):
        run.refused(api.get("/delta", params=params), 400, "bad_request", "GET /delta with " + label)


@section
def quota(run):
    bob = run.bob
    before = bob.account()
    limit, used = before["quota_limit"], before["quota_used"]
    check(limit <= 64 * MiB, "the second user needs a small quota (has %d bytes)" % limit)
    remaining = limit - used
    name = run.name("over-quota") + ".bin"
    r = bob.post("/file", params={"name": name}, body=os.urandom(remaining + 1))
    run.refused(r, 413, "quota_exceeded", "a file one byte over the remaining quota")
    check(bob.account()["quota_used"] == used, "a refused upload used quota")
    check(name not in [i["filename"] for i in bob.contents(include_deleted=True)[0]], "a refused upload was listed")
    r = bob.post("/file", params={"name": run.name("over-quota-stream") + ".bin"},
                 body=blocks(os.urandom(remaining + 1)))
    run.refused(r, 413, "quota_exceeded", "a streamed file over the remaining quota")
    small = bob.create_file(run.name("within-quota") + ".bin", os.urandom(1000))
    after = bob.account()
    check(after["quota_used"] > used, "a stored file uses quota (%d -> %d)" % (used, after["quota_used"]))
    r = bob.put("/file/%s/data" % small["id"], body=os.urandom(limit - after["quota_used"] + 2000))
    run.refused(r, 413, "quota_exceeded", "an update over the remaining quota")
    check(bob.item("file", small["id"])["version"] == small["version"], "a refused update made a version")


def blocks(data, size=MiB):
    """A generator body: requests sends it with chunked encoding."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


def download_digest(api, fid, what):
    r = api.get("/file/%s/data" % fid, stream=True)
    check(r.status_code == 200, what, r)
    digest, size = hashlib.sha256(), 0
    for block in r.iter_content(256 * 1024):
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


@section
def large_files(run):
    api = run.alice
    big = os.urandom(20 * MiB + 12345)
    medium = os.urandom(5 * MiB + 7)
    want_big, want_medium = hashlib.sha256(big).hexdigest(), hashlib.sha256(medium).hexdigest()
    started = time.monotonic()
    r = api.post("/file", params={"name": run.name("big") + ".bin"}, body=blocks(big))
    check(r.status_code == 201, "a 20 MiB chunked upload", r)
    encoding = r.request.headers.get("Transfer-Encoding")  # bytes once oauthlib signed
    check(encoding in ("chunked", b"chunked"), "the upload was chunked (%r)" % encoding)
    big_item = check_item(r, "the big file", size=len(big))
    print("  20 MiB chunked upload: %.2f s" % (time.monotonic() - started))
    started = time.monotonic()
    check(download_digest(api, big_item["id"], "downloading the big file") == (want_big, len(big)),
          "the big file's bytes come back")
    print("  20 MiB download: %.2f s" % (time.monotonic() - started))
    r = api.post("/file", params={"name": run.name("medium") + ".bin"}, body=medium)
    check(r.status_code == 201, "a 5 MiB upload with Content-Length", r)
    length = r.request.headers.get("Content-Length")
    check(length in (str(len(medium)), str(len(medium)).encode()), "the upload had a Content-Length (%r)" % length)
    medium_item = check_item(r, "the medium file", size=len(medium))
    check(download_digest(api, medium_item["id"], "downloading the medium file") == (want_medium, len(medium)),
          "the medium file's bytes come back")
    # The same content again (its chunks are known): still the right bytes.
    r = api.post("/file", params={"name": run.name("big-again") + ".bin"}, body=blocks(big))
    check(r.status_code == 201, "the big content again", r)
    again = check_item(r, "the big file's copy", size=len(big))
    check(again["id"] != big_item["id"], "another file")
    check(again["checksum"] == big_item["checksum"], "the same content, the same checksum")
    run.soft(again["chunks"] == big_item["chunks"], "the same content, the same chunks")
    check(download_digest(api, again["id"], "downloading the copy") == (want_big, len(big)),
          "the deduplicated copy's bytes come back")
    # A range in the middle of the big file.
    r = api.get("/file/%s/data" % again["id"], headers={"Range": "bytes=10000000-10099999"})
    if run.soft(r.status_code == 206, "a range in the middle of the big file", r):
        check(r.content == big[10000000:10100000], "the middle range's bytes")
    # The medium file replaced by the big content, streamed.
    r = api.put("/file/%s/data" % medium_item["id"], body=blocks(big))
    check(r.status_code == 200, "a streamed 20 MiB update", r)
    check(download_digest(api, medium_item["id"], "downloading the update") == (want_big, len(big)),
          "the update's bytes come back")
    r = api.get("/file/%s/version/%d/data" % (medium_item["id"], medium_item["version"]), stream=True)
    check(r.status_code == 200, "the medium file's first version", r)
    check(hashlib.sha256(r.content).hexdigest() == want_medium, "the first version's bytes are kept")
    # An empty file.
    empty = api.create_file(run.name("empty"), b"", what="an empty file")
    check(api.data(empty["id"]) == b"", "an empty file's bytes")


def send_cut_piece(api, path, piece, after):
    """Sends a piece that says it holds `piece` (Content-Length) and drops
    the connection after `after` bytes of it, as a phone losing its signal
    does; the server answers nobody."""
    uri, headers = api.signed_headers("PUT", path)
    parts = urllib.parse.urlsplit(uri)
    target = parts.path + ("?" + parts.query if parts.query else "")
    lines = ["PUT %s HTTP/1.1" % target, "Host: %s" % parts.netloc, "Content-Type: " + OCTETS,
             "Content-Length: %d" % len(piece), "Connection: close"]
    for name, value in headers.items():
        if name.lower() not in ("host", "content-type", "content-length", "connection"):
            lines.append("%s: %s" % (name, value))
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=TIMEOUT) as sock:
        sock.sendall(head + piece[:after])


def new_session(api, what, **body):
    r = api.post("/upload_session", json_body=body)
    check(r.status_code == 201, what + ": POST /upload_session answers 201", r)
    s = r.json()
    check(isinstance(s.get("id"), str) and UUID.match(s["id"]), what + ": a session id", r)
    check(s.get("offset") == 0 and s.get("size") == body["size"], what + ": offset 0 and the size", r)
    check(isinstance(s.get("expires_at"), str) and TIME.match(s["expires_at"]), what + ": expires_at", r)
    return "/upload_session/%s" % s["id"]


def send_piece(api, path, offset, piece, what):
    r = api.put(path, params={"offset": str(offset)}, body=piece)
    check(r.status_code == 200, what + " answers 200", r)
    check(r.json().get("offset") == offset + len(piece), what + ": the new offset", r)
    return r.json()["offset"]


@section
def upload_sessions(run):
    api, bob = run.alice, run.bob
    data = os.urandom(3 * MiB + 777)
    name = run.name("session") + ".bin"
    path = new_session(api, "a new file's session", name=name, size=len(data), mimetype="image/jpeg")
    offset = send_piece(api, path, 0, data[:MiB], "the first piece")
    # The same piece again (a retry after a lost reply): 409 with the offset.
    r = api.put(path, params={"offset": "0"}, body=data[:MiB])
    if run.refused(r, 409, "conflict", "a piece at a stale offset"):
        run.soft(r.json().get("offset") == offset, "the 409 says where the session is", r)
    # The connection drops half way through the second piece: nothing of
    # it is kept; the client asks how far it is and goes on from there.
    send_cut_piece(api, "%s?offset=%d" % (path, offset), data[offset:offset + 2 * MiB], MiB // 2)
    r = api.get(path)
    check(r.status_code == 200, "GET the session after a cut", r)
    check(r.json().get("offset") == offset, "a cut piece is not kept (offset %r)" % r.json().get("offset"), r)
    early = api.post(path + "/finish")
    if run.refused(early, 409, "conflict", "finishing before every byte is there"):
        run.soft(early.json().get("offset") == offset, "the early finish says the offset", early)
    r = api.put(path, params={"offset": str(offset)}, body=blocks(data[offset:offset + MiB], 256 * 1024))
    check(r.status_code == 200, "a chunked piece", r)
    offset = r.json()["offset"]
    past = api.put(path, params={"offset": str(offset)}, body=data[offset:] + b"extra")
    run.refused(past, 400, "bad_request", "a piece past the file's size")
    while offset < len(data):
        offset = send_piece(api, path, offset, data[offset:offset + MiB], "the piece at %d" % offset)
    r = api.post(path + "/finish")
    check(r.status_code == 201, "finishing a new file answers 201", r)
    item = check_item(r, "the session's file", filename=name, size=len(data), is_folder=False)
    run.soft(item["mimetype"] == "image/jpeg", "the session's MIME type", r)
    check(api.data(item["id"]) == data, "the file holds exactly the bytes sent")
    run.refused(api.get(path), 404, "not_found", "a finished session")
    # The finish again (a retry after a lost answer): the same file, once.
    r = api.post(path + "/finish")
    check(r.status_code == 201, "a retried finish answers 201 again", r)
    check_item(r, "the retried finish's file", id=item["id"], version=item["version"], size=len(data))

    # A taken name: 409 with the item holding it; or autorename at finish.
    r = api.post("/upload_session", json_body={"name": name, "size": 3})
    if run.refused(r, 409, "conflict", "a session for a taken name"):
        run.soft((r.json().get("item") or {}).get("id") == item["id"], "the 409 names the file in the way", r)
    renamed = new_session(api, "an autorenamed session", name=name, size=3, autorename=True)
    send_piece(api, renamed, 0, b"abc", "an autorenamed session's piece")
    r = api.post(renamed + "/finish")
    check(r.status_code == 201, "finishing an autorenamed session", r)
    stem, ext = os.path.splitext(name)
    check_item(r, "the autorenamed file", filename="%s (1)%s" % (stem, ext))

    # A new version, and a stale one.
    version = new_session(api, "a new version's session", id=item["id"], if_match=item["version"], size=5)
    send_piece(api, version, 0, b"fresh", "a new version's piece")
    r = api.post(version + "/finish")
    check(r.status_code == 200, "finishing a new version answers 200", r)
    check_item(r, "the new version", id=item["id"], version=item["version"] + 1, size=5)
    check(api.data(item["id"]) == b"fresh", "the new version's bytes")
    r = api.post(version + "/finish")
    check(r.status_code == 200, "a new version's retried finish answers 200 again", r)
    check_item(r, "the retried new version", id=item["id"], version=item["version"] + 1, size=5)
    r = api.post("/upload_session", json_body={"id": item["id"], "if_match": item["version"], "size": 5})
    run.refused(r, 409, "conflict", "a session on a stale version")

    # Cancelled, and another user's.
    cancelled = new_session(api, "a session to cancel", name=run.name("cancelled"), size=10)
    send_piece(api, cancelled, 0, b"12345", "a piece of a session to cancel")
    r = api.delete(cancelled)
    check(r.status_code == 204, "DELETE /upload_session/ID answers 204", r)
    run.refused(api.get(cancelled), 404, "not_found", "a cancelled session")
    run.refused(api.delete(cancelled), 404, "not_found", "cancelling it again")
    mine = new_session(api, "a session bob tries", name=run.name("session-bob-tries"), size=10)
    run.other_user(bob.get(mine), "bob reading alice's session")
    run.other_user(bob.put(mine, params={"offset": "0"}, body=b"0123456789"), "bob sending a piece of it")
    run.other_user(bob.post(mine + "/finish"), "bob finishing it")
    run.other_user(bob.delete(mine), "bob cancelling it")
    r = api.get(mine)
    check(r.status_code == 200 and r.json().get("offset") == 0, "alice's session is untouched", r)

    # Refusals of bad input.
    for body, status, code, what in (
            ({"size": 1}, 400, "bad_request", "neither name nor id"),
            ({"name": "x", "id": item["id"], "size": 1}, 400, "bad_request", "both name and id"),
            ({"name": "..", "size": 1}, 400, "invalid_name", "a hostile name"),
            ({"name": "x", "size": -1}, 400, "bad_request", "a negative size"),
            ({"name": "x", "size": 1, "bogus": 1}, 400, "bad_request", "an unknown field"),
            ({"name": "x", "size": 1, "parent": "nope"}, 400, "bad_request", "a bad parent id"),
            ({"name": "x", "size": 1, "parent": random_uuid()}, 404, "not_found", "an unknown parent"),
            ({"id": random_uuid(), "size": 1}, 404, "not_found", "an unknown file")):
        run.refused(api.post("/upload_session", json_body=body), status, code, "a session with " + what)
    run.refused(api.put(mine, params={"offset": "abc"}, body=b"x"), 400, "bad_request", "offset=abc")
    run.refused(api.put(mine, body=b"x"), 400, "bad_request", "a piece without an offset")
    run.refused(api.get("/upload_session/not-an-id"), 400, "bad_request", "a malformed session id")
    run.refused(api.get("/upload_session/" + random_uuid()), 404, "not_found", "an unknown session")
    run.refused(api.call("PATCH", mine), 405, "method_not_allowed", "PATCH on a session")
    check(api.delete(mine).status_code == 204, "cancelling alice's session")
    # Bob's small quota (the quota section filled it).
    r = bob.post("/upload_session", json_body={"name": run.name("too-big"), "size": 64 * MiB})
    run.refused(r, 413, "quota_exceeded", "a session larger than the remaining quota")


@section
def share_phase_one(run):
    alice, bob = run.alice, run.bob
    bob_email = bob.account()["email"]
    alice_email = alice.account()["email"]
    team = alice.create_folder(run.name("share"))
    alice.create_file("plan.txt", b"the plan", parent=team["id"])
    ro = alice.create_folder(run.name("ro"))
    alice.create_file("rules.txt", b"the rules", parent=ro["id"])
    lone = alice.create_folder(run.name("lone"))
    run.refused(alice.get("/folder/%s/members" % lone["id"]), 404, "not_found", "members of a folder not shared")
    run.refused(alice.post("/folder/%s/share" % team["id"], body=b"{not json",
                           headers={"Content-Type": "application/json"}), 400, "bad_request",
                "a share whose body is not JSON")

    r = alice.post("/folder/%s/share" % team["id"], json_body=[bob_email])
    check(r.status_code == 200, "POST /folder/ID/share with a list of emails answers 200", r)
    shared_to = r.json().get("shared_to")
    check(isinstance(shared_to, list) and [s.get("email") for s in shared_to] == [bob_email],
          "shared_to names bob", r)
    check(all("name" in s for s in shared_to), "shared_to entries have a name", r)
    r = alice.post("/folder/%s/share" % ro["id"], json_body={"emails": [bob_email], "read_only": True})
    check(r.status_code == 200, "POST /folder/ID/share with {emails, read_only}", r)
    check([s.get("email") for s in r.json().get("shared_to", [])] == [bob_email], "shared_to names bob", r)
    # Until bob accepts, either not shared yet (404) or the owner alone.
    r = alice.get("/folder/%s/members" % team["id"])
    if r.status_code == 200:
        members = r.json()
        check(isinstance(members, list), "members is a list", r)
        owners = [m for m in members if m.get("is_owner")]
        check([m.get("email") for m in owners] == [alice_email], "the owner is a member", r)
    else:
        run.refused(r, 404, "not_found", "members before anyone accepted")
    # Bob sees nothing of it before accepting.
    run.other_user(bob.get("/folder/%s" % team["id"]), "bob reading the folder before accepting")
    print("SHARED %s %s" % (run.name("share"), run.name("ro")))


# ------------------------------------------------------- after acceptance


def find(items, name, what):
    found = [i for i in items if i.get("filename") == name]
    check(len(found) == 1, "%s: one %r in %r" % (what, name, [i.get("filename") for i in items]))
    return found[0]


def owners_folder(run, before, when):
    """The owner's folder that was shared as `before`, live at the top:
    under the same id, or (noted) under a new one once it is no longer a
    shared folder (a shared folder's id is its workspace's)."""
    r = run.alice.get("/folder/%s" % before["id"])
    if r.status_code == 200:
        item = check_item(r, "the owner's folder " + when)
        check(item.get("status") != "DELETED", "the owner's folder is not deleted " + when, r)
        return item
    run.refused(r, 404, "not_found", "the owner's folder under its shared id " + when)
    found = [i for i in run.alice.contents()[0] if i["filename"] == before["filename"]]
    check(len(found) == 1, "the owner's folder %r is at the top %s" % (before["filename"], when))
    NOTES.add("a folder that stops being shared (%s) changes id: the shared id then answers 404" % when)
    return found[0]


def shared_phase_two(run):
    """The shared folders after bob accepted: each step is reported on its
    own; the first finds the folders (the others need them)."""
    s = {}

    def both_sides_see_the_folders():
        alice, bob = run.alice, run.bob
        s["alice_email"], s["bob_email"] = alice.account()["email"], bob.account()["email"]
        top = alice.contents()[0]
        s["team"] = team = find(top, run.name("share"), "alice's top folder")
        s["ro"] = ro = find(top, run.name("ro"), "alice's top folder")
        r = alice.get("/folder/%s" % team["id"])
        check(r.status_code == 200, "alice reads the shared folder", r)
        s["plan"] = find(r.json()["contents"], "plan.txt", "the shared folder")
        r = alice.get("/folder/%s" % ro["id"])
        check(r.status_code == 200, "alice reads the read-only shared folder", r)
        s["rules"] = find(r.json()["contents"], "rules.txt", "the read-only shared folder")
        for item in (team, ro):
            run.soft(item.get("is_shared") is True, "the owner's view of %s: is_shared" % item["filename"])
            run.soft(item.get("owner") in (None, s["alice_email"]), "the owner's view of %s: owner %r"
                     % (item["filename"], item.get("owner")))  # a missing owner is reported once
        bobs = bob.contents()[0]
        b_team = [i for i in bobs if i.get("id") == team["id"]]
        b_ro = [i for i in bobs if i.get("id") == ro["id"]]
        check(len(b_team) == 1 and len(b_ro) == 1,
              "bob's top folder has both shared folders under the owner's ids (the workspace ids): %r"
              % [(i.get("filename"), i.get("id")) for i in bobs])
        b_team, b_ro = b_team[0], b_ro[0]
        run.soft(b_team.get("is_shared") is True and b_team.get("owner") in (None, s["alice_email"]),
                 "bob's view: shared, owned by alice: %r" % b_team)
        run.soft(b_team.get("read_only") is False, "bob may write to the first: %r" % b_team)
        run.soft(b_ro.get("read_only") is True, "bob may only read the second: %r" % b_ro)

    def members():
        for who, api in (("alice", run.alice), ("bob", run.bob)):
            r = api.get("/folder/%s/members" % s["team"]["id"])
            check(r.status_code == 200, "%s lists the members" % who, r)
            listed = {m.get("email"): m for m in r.json()}
            check(set(listed) == {s["alice_email"], s["bob_email"]}, "the members are alice and bob", r)
            check(listed[s["alice_email"]].get("is_owner") is True
                  and listed[s["bob_email"]].get("is_owner") is False, "alice is the owner", r)
            check(all("name" in m and m.get("joined_at") for m in listed.values()), "name and joined_at", r)

    def bob_reads_and_writes():
        alice, bob, team, plan = run.alice, run.bob, s["team"], s["plan"]
        check(bob.data(plan["id"]) == b"the plan", "bob downloads alice's file")
        mine = bob.create_file("from-bob.txt", b"bob's part", parent=team["id"], what="bob adds a file")
        check(alice.data(mine["id"]) == b"bob's part", "alice downloads bob's file")
        r = bob.put("/file/%s/data" % plan["id"], body=b"the plan, by bob")
        check(r.status_code == 200, "bob updates alice's file", r)
        check(alice.data(plan["id"]) == b"the plan, by bob", "alice sees bob's update")
        # Owner only: sharing and unsharing.
        run.refused(bob.post("/folder/%s/share" % team["id"], json_body=[s["alice_email"]]), 403, "forbidden",
                    "a member sharing the folder")
        run.refused(bob.post("/folder/%s/unshare" % team["id"], json_body=[s["alice_email"]]), 403, "forbidden",
                    "a member unsharing the folder")

    def read_only():
        alice, bob, ro, rules = run.alice, run.bob, s["ro"], s["rules"]
        check(bob.data(rules["id"]) == b"the rules", "bob reads the read-only folder")
        run.refused(bob.post("/file", params={"name": "nope.txt", "parent": ro["id"]}, body=b"x"), 403,
                    "forbidden", "bob creating a file in the read-only folder")
        run.refused(bob.put("/file/%s/data" % rules["id"], body=b"x"), 403, "forbidden",
                    "bob updating a file in the read-only folder")
        run.refused(bob.put("/file/%s" % rules["id"], json_body={"name": "renamed.txt"}), 403, "forbidden",
                    "bob renaming a file in the read-only folder")
        run.refused(bob.delete("/file/%s" % rules["id"]), 403, "forbidden",
                    "bob deleting a file in the read-only folder")
        run.refused(bob.post("/folder", json_body={"name": "nope", "parent": ro["id"]}), 403, "forbidden",
                    "bob creating a folder in the read-only folder")
        r = bob.post("/file/%s/version/%d/restore" % (rules["id"], rules["version"]))
        run.refused(r, 403, "forbidden", "bob restoring a version in the read-only folder")
        check(alice.data(rules["id"]) == b"the rules", "the read-only folder's file is intact")
        check(alice.item("file", rules["id"])["filename"] == "rules.txt", "and its name")

    def a_members_mount():
        alice, bob, team, ro = run.alice, run.bob, s["team"], s["ro"]
        r = bob.put("/folder/%s" % team["id"], json_body={"name": "bobs-name-for-it"})
        check(r.status_code == 200, "bob renames his mount of the shared folder", r)
        check([i for i in bob.contents()[0] if i.get("id") == team["id"]][0]["filename"] == "bobs-name-for-it",
              "bob sees his name")
        check(alice.item("folder", team["id"])["filename"] == run.name("share"), "alice's name is unchanged")
        r = bob.delete("/folder/%s" % ro["id"])
        check(r.status_code == 200, "bob leaves the read-only folder (DELETE of its root)", r)
        check(ro["id"] not in [i["id"] for i in bob.contents()[0]], "bob no longer lists it")
        run.other_user(bob.get("/folder/%s" % ro["id"]), "bob reading a folder he left")
        check(alice.data(s["rules"]["id"]) == b"the rules", "a member leaving deletes nothing of the owner's")
        still = owners_folder(run, ro, "after its last member left")
        r = alice.get("/folder/%s/members" % still["id"])
        if r.status_code == 200:
            check(s["bob_email"] not in [m.get("email") for m in r.json()], "bob is no longer a member", r)
        else:
            run.refused(r, 404, "not_found", "members of a folder everyone else left")

    def unshare():
        alice, bob, team, plan = run.alice, run.bob, s["team"], s["plan"]
        run.refused(alice.delete("/folder/%s" % team["id"]), 409, "conflict", "the owner deleting a shared folder")
        check(alice.item("folder", team["id"])["status"] != "DELETED", "the refused delete deleted")
        r = alice.post("/folder/%s/unshare" % team["id"], json_body=[s["bob_email"]])
        check(r.status_code == 200, "POST /folder/ID/unshare answers 200", r)
        check([u.get("email") for u in r.json().get("unshared_to", [])] == [s["bob_email"]],
              "unshared_to names bob", r)
        run.other_user(bob.get("/folder/%s" % team["id"]), "bob reading the folder after the unshare")
        run.other_user(bob.get("/file/%s/data" % plan["id"]), "bob downloading from it after the unshare")
        check(alice.data(plan["id"]) == b"the plan, by bob", "the owner keeps the folder's content")
        still = owners_folder(run, team, "after the unshare")
        check(plan["id"] in [i["id"] for i in alice.contents(still["id"])[0]], "the owner's folder lists the file")
        r = alice.delete("/folder/%s" % still["id"])
        check(r.status_code == 200, "once unshared, the owner deletes it", r)
        check(alice.item("file", plan["id"])["status"] == "DELETED", "and what was in it")

    steps = [both_sides_see_the_folders, members, bob_reads_and_writes, read_only, a_members_mount, unshare]
    for step in steps:
        run.section = "shared: " + step.__name__
        print("== %s" % run.section, flush=True)
        try:
            step()
        except Exception as e:
            run.fail(str(e) if isinstance(e, Failed) else traceback.format_exc())
            if step is steps[0]:
                run.fail("the other steps need the shared folders: not run")
                return


# ------------------------------------------------------------------- main


def run_sections(run, only):
    for fn in SECTIONS:
        if only and fn.__name__ not in only:
            continue
        run.section = fn.__name__
        print("== %s" % fn.__name__, flush=True)
        try:
            fn(run)
        except Exception as e:  # every section runs; each failure is listed
            detail = str(e) if isinstance(e, Failed) else traceback.format_exc()
            run.fail(detail)


def finish(run):
    for note in sorted(run.notes):
        print("NOTE " + note)
    if run.failures:
        print("%d FAILED CHECKS (each FAIL line above)" % len(run.failures), flush=True)
        raise SystemExit(1)
    print("OK")


def two_users(args):
    headers = {}
    for h in args.header or []:
        name, _, value = h.partition(":")
        headers[name.strip()] = value.strip()
    alice = Api(args.base, args.prefix, args.key, args.secret, args.token, args.token_secret, headers)
    bob = Api(args.base, args.prefix, args.key, args.secret, args.other_token, args.other_token_secret, headers)
    return alice, bob


def one_user(args):
    headers = {}
    for h in args.header or []:
        name, _, value = h.partition(":")
        headers[name.strip()] = value.strip()
    return Api(args.base, args.prefix, args.key, args.secret, args.token, args.token_secret, headers)


def small_command(args):
    api = one_user(args)
    if args.command == "put":
        with open(args.file, "rb") as f:
            data = f.read()
        item = api.create_file(args.name, data, parent=args.parent)
        print(json.dumps(item))
    elif args.command == "write":
        with open(args.file, "rb") as f:
            data = f.read()
        r = api.put("/file/%s/data" % args.id, body=data)
        check(r.status_code == 200, "PUT /file/ID/data", r)
        print(json.dumps(r.json()))
    elif args.command == "mkdir":
        print(json.dumps(api.create_folder(args.name, parent=args.parent)))
    elif args.command == "ls":
        items, _ = api.contents(args.folder)
        print(json.dumps(items))
    elif args.command == "get":
        data = api.data(args.id)
        with open(args.out, "wb") as f:
            f.write(data)
        print(json.dumps({"size": len(data)}))


POSITIONAL = {
    "suite": ["other_token", "other_token_secret"],
    "shared": ["other_token", "other_token_secret"],
    "put": ["name", "file"],
    "write": ["id", "file"],
    "mkdir": ["name"],
    "ls": [],
    "get": ["id", "out"],
}
OPTIONS = {"--header": "header", "--tag": "tag", "--only": "only", "--parent": "parent", "--folder": "folder"}


def parse(argv):
    """The command line, by hand: secrets may start with "-", which
    argparse would take for options. Options are known by name and take
    one value; everything else is positional."""
    if len(argv) < 2 or argv[1] not in POSITIONAL:
        raise SystemExit(__doc__)
    args = argparse.Namespace(command=argv[1], header=[], only=[], tag=uuid.uuid4().hex[:8], parent=None,
                              folder=None)
    positional = []
    rest = iter(argv[2:])
    for arg in rest:
        if arg in OPTIONS:
            value = next(rest, None)
            if value is None:
                raise SystemExit("%s needs a value" % arg)
            field = OPTIONS[arg]
            if isinstance(getattr(args, field), list):
                getattr(args, field).append(value)
            else:
                setattr(args, field, value)
        else:
            positional.append(arg)
    names = ["base", "prefix", "key", "secret", "token", "token_secret"] + POSITIONAL[args.command]
    if len(positional) != len(names):
        raise SystemExit("%s takes %s, got %d arguments" % (args.command, " ".join(n.upper() for n in names),
                                                             len(positional)))
    for name, value in zip(names, positional):
        setattr(args, name, value)
    return args


def main(argv):
    args = parse(argv)
    if args.command in ("suite", "shared"):
        alice, bob = two_users(args)
        run = Run(alice, bob, args.tag)
        if args.command == "suite":
            run_sections(run, args.only)
        else:
            shared_phase_two(run)
        finish(run)
    else:
        small_command(args)


if __name__ == "__main__":
    main(sys.argv)
