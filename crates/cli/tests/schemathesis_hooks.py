"""Schemathesis hooks for crates/cli/tests/api_schema.rs: every request the
fuzzer makes against the REST API v2 is signed with OAuth 1.0a (HMAC-SHA1,
oauthlib) for the exact method, URL and body it is sent with, and the
generated ids are sometimes swapped for ids that exist, so that the
operations get past "no such item" too.

Loaded by schemathesis through SCHEMATHESIS_HOOKS=<this file>; reads

    STACKSYNC_SCHEMA_SERVER  the server, http://127.0.0.1:PORT (the API is
                             under /api/v2, the OAuth endpoints under /oauth)
    STACKSYNC_SCHEMA_APP     "KEY SECRET" of the registered app
    STACKSYNC_SCHEMA_LOGIN   "EMAIL PASSWORD" of the user the requests act for
    STACKSYNC_SCHEMA_TOKEN   "TOKEN SECRET": that user's access token
    STACKSYNC_SCHEMA_OTHER   "TOKEN SECRET" of another user (optional): his
                             items' ids are offered too (they must answer
                             404, never a hint that they exist)
    STACKSYNC_SCHEMA_TRACE   set: every request and its answer on stderr

At load it uploads one file with a MIME type of its own (`typed-by-api.txt`,
text/plain: files the desktop client made have none) and lists both users'
folders through the API (signed the same way) to learn the ids; it prints
what it found on stderr, and at the end how each operation answered
(status codes and counts).

The signature: a form-encoded body (`application/x-www-form-urlencoded`)
takes part in it (RFC 5849 section 3.4.1.3.1), any other body (JSON, a
file's bytes) does not; the query of the URL as it goes on the wire always
does. The `Authorization` header is computed by oauthlib on the prepared
request, after schemathesis serialized everything, so what is signed is
what is sent.

`DELETE /apps/{key}` is fuzzed like the rest, and the fuzzer learns the
app's key from `GET /apps`: when it revokes the app's access, the hooks go
through the three-legged flow again (as the user would, approving the app
anew) and sign the following requests with the new token.
"""

import atexit
import collections
import html
import os
import re
import sys

import requests
import schemathesis
from hypothesis import strategies as st
from oauthlib.oauth1 import SIGNATURE_HMAC, SIGNATURE_TYPE_AUTH_HEADER, Client
from requests_oauthlib import OAuth1Session

FORM = "application/x-www-form-urlencoded"
TIMEOUT = 30


def _pair(var, required=True):
    value = os.environ.get(var, "").split()
    if len(value) != 2:
        if required:
            raise RuntimeError("%s must be set to two words (see %s)" % (var, __file__))
        return None
    return value


SERVER = os.environ.get("STACKSYNC_SCHEMA_SERVER", "").rstrip("/")
if not SERVER:
    raise RuntimeError("STACKSYNC_SCHEMA_SERVER is not set (see %s)" % __file__)
API = SERVER + "/api/v2"
APP = _pair("STACKSYNC_SCHEMA_APP")
LOGIN = _pair("STACKSYNC_SCHEMA_LOGIN")
TOKEN = _pair("STACKSYNC_SCHEMA_TOKEN")
OTHER = _pair("STACKSYNC_SCHEMA_OTHER", required=False)


class OAuth1Signer(requests.auth.AuthBase):
    """Adds `Authorization: OAuth ...` for a prepared request, as is."""

    def __init__(self, token):
        self.token = token

    def __call__(self, r):
        client = Client(
            APP[0],
            client_secret=APP[1],
            resource_owner_key=self.token[0],
            resource_owner_secret=self.token[1],
            signature_method=SIGNATURE_HMAC,
            signature_type=SIGNATURE_TYPE_AUTH_HEADER,
        )
        content_type = r.headers.get("Content-Type", "")
        if isinstance(content_type, bytes):
            content_type = content_type.decode("latin-1")
        form = content_type.split(";")[0].strip().lower() == FORM
        body = None
        headers = {}
        if form and r.body:
            body = r.body.decode("utf-8") if isinstance(r.body, bytes) else r.body
            headers["Content-Type"] = FORM
        _, signed, _ = client.sign(r.url, r.method, body, headers)
        r.headers["Authorization"] = signed["Authorization"]
        return r


SIGNER = OAuth1Signer(TOKEN)


def _approved_token():
    """A new access token of the user for the app (out of band, as
    `oauth_client.py token` gets one)."""
    session = OAuth1Session(APP[0], client_secret=APP[1], callback_uri="oob")
    request_token = session.fetch_request_token(SERVER + "/oauth/request_token")["oauth_token"]
    page = requests.post(
        SERVER + "/oauth/authorize",
        data={"oauth_token": request_token, "email": LOGIN[0], "password": LOGIN[1], "action": "allow"},
        timeout=TIMEOUT,
    )
    match = re.search(r'<code id="verifier">([^<]+)</code>', page.text)
    if page.status_code != 200 or match is None:
        raise RuntimeError("approving the app again: HTTP %s %s" % (page.status_code, page.text[:300]))
    access = session.fetch_access_token(SERVER + "/oauth/access_token", verifier=html.unescape(match.group(1)))
    return [access["oauth_token"], access["oauth_token_secret"]]


@schemathesis.hook
def before_call(context, case, kwargs):
    """Every request of every phase goes out signed."""
    kwargs["auth"] = SIGNER


# How each operation answered: (operation, status) -> count.
ANSWERS = collections.Counter()
RENEWED = [0]
# Set STACKSYNC_SCHEMA_TRACE=1 to see every request and its answer.
TRACE = bool(os.environ.get("STACKSYNC_SCHEMA_TRACE"))


@schemathesis.hook
def after_call(context, case, response):
    ANSWERS[(case.operation.label, response.status_code)] += 1
    if TRACE:
        request = response.request
        body = request.body if isinstance(request.body, (bytes, type(None))) else request.body.encode()
        print(
            "TRACE %s %s [%s] %r -> %d %r"
            % (request.method, request.url, request.headers.get("Content-Type", ""), (body or b"")[:120],
               response.status_code, response.content[:200]),
            file=sys.stderr,
        )
    if (
        case.operation.method.upper() == "DELETE"
        and case.operation.path == "/apps/{key}"
        and response.status_code == 200
        and (case.path_parameters or {}).get("key") == APP[0]
    ):
        SIGNER.token = _approved_token()
        RENEWED[0] += 1


def _report():
    operations = collections.defaultdict(dict)
    for (label, status), count in ANSWERS.items():
        operations[label][status] = count
    lines = ["schemathesis_hooks: answers per operation (status: count)"]
    for label in sorted(operations):
        statuses = operations[label]
        lines.append(
            "  %-45s %5d  %s"
            % (label, sum(statuses.values()), "  ".join("%d: %d" % s for s in sorted(statuses.items())))
        )
    lines.append("  %d requests; the app's access was revoked by the fuzzer and approved again %d times"
                 % (sum(ANSWERS.values()), RENEWED[0]))
    print("\n".join(lines), file=sys.stderr)


atexit.register(_report)


# ---- ids that exist -------------------------------------------------------


def _listing(signer, folder, found, depth=0):
    path = "/folder" if folder is None else "/folder/" + folder
    r = requests.get(API + path, params={"include_deleted": "true"}, auth=signer, timeout=TIMEOUT)
    if r.status_code != 200:
        raise RuntimeError("listing %s: HTTP %s %s" % (path, r.status_code, r.text[:300]))
    for item in r.json().get("contents", []):
        if not item.get("id"):
            continue
        found["etags"].append(item.get("etag"))
        if item.get("is_folder"):
            found["folders"].append(item["id"])
            if depth < 4 and item.get("status") != "DELETED":
                _listing(signer, item["id"], found, depth + 1)
        else:
            found["files"].append(item["id"])


def _discover(token):
    found = {"files": [], "folders": [], "etags": []}
    _listing(OAuth1Signer(token), None, found)
    return found


def _email(token):
    r = requests.get(API + "/account", auth=OAuth1Signer(token), timeout=TIMEOUT)
    if r.status_code != 200:
        raise RuntimeError("GET /account: HTTP %s %s" % (r.status_code, r.text[:300]))
    return r.json()["email"]


def _typed_file(token):
    """A file uploaded with a MIME type of its own (the desktop client gives
    none), so that downloads answer with it: made once, kept if it exists."""
    r = requests.post(
        API + "/file",
        params={"name": "typed-by-api.txt"},
        data=b"uploaded with its own type\n",
        headers={"Content-Type": "text/plain; charset=utf-8"},
        auth=OAuth1Signer(token),
        timeout=TIMEOUT,
    )
    if r.status_code not in (201, 409):
        raise RuntimeError("POST /file: HTTP %s %s" % (r.status_code, r.text[:300]))


_typed_file(TOKEN)
MINE = _discover(TOKEN)
THEIRS = _discover(OTHER) if OTHER else {"files": [], "folders": [], "etags": []}
FILES = sorted(set(MINE["files"]))
FOLDERS = sorted(set(MINE["folders"])) + ["root"]
OTHER_IDS = sorted(set(THEIRS["files"] + THEIRS["folders"]) - set(FILES + FOLDERS))
ETAGS = sorted(t for t in MINE["etags"] if t)
# Whom to share with: the users, and an address with no account yet.
EMAILS = [_email(TOKEN)] + ([_email(OTHER)] if OTHER else []) + ["nobody-yet@example.org"]
print(
    "schemathesis_hooks: %d files and %d folders of the user, %d items of another"
    % (len(FILES), len(FOLDERS) - 1, len(OTHER_IDS)),
    file=sys.stderr,
)
if not FILES or len(FOLDERS) < 2:
    raise RuntimeError("the user has no file or no folder to fuzz: %r" % MINE)


def _swap(value, key, choices):
    """`value` as generated, or with `key` taken from `choices`."""
    if not choices or not isinstance(value, dict) or key not in value:
        return st.just(value)
    return st.one_of(
        st.just(value),
        st.sampled_from(choices).map(lambda choice: dict(value, **{key: choice})),
    )


@schemathesis.hook
def flatmap_path_parameters(context, path_parameters):
    # Mostly ids of the kind the path names, now and then one of the other
    # kind or another user's.
    path = context.operation.path if context.operation is not None else ""
    same = FOLDERS if path.startswith("/folder") else FILES
    other = FILES if path.startswith("/folder") else FOLDERS
    strategy = _swap(path_parameters, "id", same * 4 + other + OTHER_IDS)
    if isinstance(path_parameters, dict) and "version" in path_parameters:
        strategy = strategy.flatmap(lambda p: _swap(p, "version", [1, 2, 3]))
    return strategy


@schemathesis.hook
def flatmap_query(context, query):
    return _swap(query, "parent", FOLDERS)


@schemathesis.hook
def flatmap_headers(context, headers):
    return _swap(headers, "If-Match", ETAGS).flatmap(lambda h: _swap(h, "If-None-Match", ETAGS))


def _people(body):
    """A share's or unshare's body, or with real addresses."""
    addresses = st.lists(st.sampled_from(EMAILS), min_size=1, max_size=3, unique=True)
    if isinstance(body, list):
        return st.one_of(st.just(body), addresses)
    if isinstance(body, dict) and "emails" in body:
        return st.one_of(st.just(body), addresses.map(lambda a: dict(body, emails=a)))
    return st.just(body)


@schemathesis.hook
def flatmap_body(context, body):
    path = context.operation.path if context.operation is not None else ""
    if path.endswith("/share") or path.endswith("/unshare"):
        return _people(body)
    return _swap(body, "parent", FOLDERS + [None])
