"""An independent OAuth 1.0a client (requests-oauthlib / oauthlib from PyPI)
against a real `stacksync server` on loopback: the three-legged flow with a
browser-like form post, signed REST API v2 requests, and the refusals.

Run by crates/cli/tests/oauth.rs with the virtual environment's python:

    oauth_client.py flow BASE KEY SECRET EMAIL PASSWORD MODE

MODE is `strict` (default server: PLAINTEXT refused, no trusted proxy; the
run ends by revoking the app) or `lenient` (PLAINTEXT allowed, 127.0.0.1 a
trusted proxy; prints `ACCESS token secret` for the next step).

    oauth_client.py refused BASE KEY SECRET TOKEN TOKEN_SECRET

checks that a signed request with these credentials is refused with 401.

    oauth_client.py token BASE KEY SECRET EMAIL PASSWORD

goes through the three-legged flow (out of band: the verifier from the
page) and prints `ACCESS token secret` (for crates/cli/tests/api_v2.rs).

Both take options after their arguments, for reaching the server through a
proxy (crates/cli/tests/api_swift_proxy.rs: an OpenStack Swift proxy whose
pipeline holds the `stacksync_api` filter):

    --prefix PREFIX        where the API lives on BASE (default /api/v2;
                           through the Swift proxy /v1)
    --header 'NAME: VALUE' sent with every API request (e.g. StackSync-API: v2);
                           may be repeated
    --proxied              BASE is a proxy that sets X-Forwarded-* itself and
                           drops the client's: a client's forged X-Forwarded-*
                           are then refused in either MODE
    --ca FILE              trust this certificate for an https:// BASE
"""

import html
import os
import re
import sys
import time
import urllib.parse
import uuid

import requests
from oauthlib.oauth1 import (
    SIGNATURE_HMAC,
    SIGNATURE_PLAINTEXT,
    SIGNATURE_TYPE_BODY,
    SIGNATURE_TYPE_QUERY,
    Client,
)
from requests_oauthlib import OAuth1, OAuth1Session

TIMEOUT = 30

# Where the API lives on BASE, what every API request carries, and whether a
# proxy in front sets X-Forwarded-* (the options of main).
API_PREFIX = "/api/v2"
API_HEADERS = {}
PROXIED = False


def _api_kwargs(kwargs):
    kwargs["headers"] = dict(kwargs.get("headers") or {}, **API_HEADERS)
    return kwargs


def api_get(url, **kwargs):
    return requests.get(url, **_api_kwargs(kwargs))


def api_delete(url, **kwargs):
    return requests.delete(url, **_api_kwargs(kwargs))


def check(condition, what, response=None):
    if not condition:
        detail = ""
        if response is not None:
            detail = " (HTTP %s: %s)" % (response.status_code, response.text[:500])
        raise AssertionError(what + detail)


def refused(response, status, problem, what):
    check(response.status_code == status, "%s: expected %d" % (what, status), response)
    body = response.json()
    check(body.get("error") == problem, "%s: expected error %s" % (what, problem), response)
    check(isinstance(body.get("description"), str) and body["description"], what + ": a description")
    if status == 401:
        check(response.headers.get("WWW-Authenticate", "").startswith("OAuth"), what + ": a challenge")


def authorize_page(base, token):
    page = requests.get(base + "/oauth/authorize", params={"oauth_token": token}, timeout=TIMEOUT)
    check(page.status_code == 200, "the authorization page", page)
    check(page.headers["Content-Type"].startswith("text/html"), "an HTML page")
    check(page.headers.get("X-Frame-Options") == "DENY", "the page may not be framed")
    check("frame-ancestors 'none'" in page.headers.get("Content-Security-Policy", ""), "a CSP")
    check("Test &lt;App&gt;" in page.text and "<App>" not in page.text, "the app's name, escaped", page)
    check('name="password"' in page.text and 'value="allow"' in page.text, "the form", page)
    check("<script" not in page.text and "http" not in page.text.split("<body>")[1], "self-contained")
    return page


def post_form(base, fields):
    # As a browser posts the form: urlencoded, no OAuth, no cookie.
    return requests.post(base + "/oauth/authorize", data=fields, allow_redirects=False, timeout=TIMEOUT)


def api(key, secret, token, token_secret, **kwargs):
    return OAuth1(key, client_secret=secret, resource_owner_key=token, resource_owner_secret=token_secret, **kwargs)


def flow(base, key, secret, email, password, mode):
    lenient = mode == "lenient"
    callback = "http://127.0.0.1:9/callback?state=xyz"

    # 1. A request token, the OAuth parameters in the form body this time.
    session = OAuth1Session(key, client_secret=secret, callback_uri=callback, signature_type=SIGNATURE_TYPE_BODY)
    tokens = session.fetch_request_token(base + "/oauth/request_token")
    check(tokens.get("oauth_callback_confirmed") == "true", "oauth_callback_confirmed")
    request_token = tokens["oauth_token"]

    # 2. The user signs in on the page: a wrong password first, then the
    # right one, which sends the browser back to the callback.
    authorize_page(base, request_token)
    wrong = post_form(base, {"oauth_token": request_token, "email": email, "password": "wrong", "action": "allow"})
    check(wrong.status_code == 401 and "Location" not in wrong.headers, "a wrong password is refused", wrong)
    check("wrong email or password" in wrong.text, "and said so", wrong)
    forged = post_form(base, {"oauth_token": request_token, "email": email, "action": "allow"})
    check(forged.status_code == 401 and "Location" not in forged.headers, "no approval without a password", forged)
    allowed = post_form(base, {"oauth_token": request_token, "email": email, "password": password, "action": "allow"})
    check(allowed.status_code == 302, "approval redirects", allowed)
    location = allowed.headers["Location"]
    check(location.startswith("http://127.0.0.1:9/callback?state=xyz&oauth_token="), "to the callback: " + location)
    answer = session.parse_authorization_response(location)
    check(answer["oauth_token"] == request_token, "the callback names the request token")
    again = post_form(base, {"oauth_token": request_token, "email": email, "password": password, "action": "allow"})
    check(again.status_code == 404, "a request token is approved once", again)

    # 3. The exchange, once.
    access = session.fetch_access_token(base + "/oauth/access_token")
    token, token_secret = access["oauth_token"], access["oauth_token_secret"]
    second = requests.post(
        base + "/oauth/access_token",
        auth=OAuth1(key, client_secret=secret, resource_owner_key=request_token,
                    resource_owner_secret=tokens["oauth_token_secret"], verifier=answer["oauth_verifier"]),
        timeout=TIMEOUT,
    )
    check(second.status_code == 401, "a second exchange is refused", second)
    check(second.headers["Content-Type"].startswith("application/x-www-form-urlencoded"), "form-encoded refusal")
    check(urllib.parse.parse_qs(second.text).get("oauth_problem") == ["token_rejected"], "oauth_problem", second)

    # 4. Signed API requests: header, query, awkward query parameters.
    account = api_get(base + API_PREFIX + "/account", auth=api(key, secret, token, token_secret), timeout=TIMEOUT)
    check(account.status_code == 200, "a signed request", account)
    body = account.json()
    check(body["email"] == email and body["quota_limit"] > 0 and "quota_used" in body, "the account", account)
    odd = api_get(
        base + API_PREFIX + "/account",
        params={"a b": "c/d+e", "tilde": "~x", "empty": "", "utf": "\u00e9"},
        auth=api(key, secret, token, token_secret, signature_type=SIGNATURE_TYPE_QUERY),
        timeout=TIMEOUT,
    )
    check(odd.status_code == 200, "a request signed in the query with encoded parameters", odd)

    # 5. Refusals: unsigned, tampered, old, replayed.
    refused(api_get(base + API_PREFIX + "/account", timeout=TIMEOUT), 401, "unsigned", "an unsigned request")
    refused(
        api_get(base + API_PREFIX + "/account", auth=api(key, "not-" + secret, token, token_secret), timeout=TIMEOUT),
        401, "signature_invalid", "a wrong consumer secret",
    )
    signer = Client(key, client_secret=secret, resource_owner_key=token, resource_owner_secret=token_secret)
    uri, headers, _ = signer.sign(base + API_PREFIX + "/account?n=1")
    tampered = api_get(base + API_PREFIX + "/account?n=2", headers=headers, timeout=TIMEOUT)
    refused(tampered, 401, "signature_invalid", "a tampered request")
    old = api(key, secret, token, token_secret, timestamp=str(int(time.time()) - 3600), nonce=uuid.uuid4().hex)
    refused(api_get(base + API_PREFIX + "/account", auth=old, timeout=TIMEOUT), 401, "timestamp_refused", "an old timestamp")
    uri, headers, _ = signer.sign(base + API_PREFIX + "/account")
    first = api_get(uri, headers=headers, timeout=TIMEOUT)
    check(first.status_code == 200, "a fresh request", first)
    refused(api_get(uri, headers=headers, timeout=TIMEOUT), 401, "nonce_used", "a replayed nonce")
    other = "x" + token
    refused(
        api_get(base + API_PREFIX + "/account", auth=api(key, secret, other, token_secret), timeout=TIMEOUT),
        401, "token_rejected", "an unknown token",
    )

    # 6. PLAINTEXT over loopback: only when the server allows it.
    plain = api_get(
        base + API_PREFIX + "/account",
        auth=api(key, secret, token, token_secret, signature_method=SIGNATURE_PLAINTEXT),
        timeout=TIMEOUT,
    )
    if lenient:
        check(plain.status_code == 200, "PLAINTEXT over loopback when allowed", plain)
    else:
        refused(plain, 400, "signature_method_rejected", "PLAINTEXT when not allowed")

    # 7. Through a proxy: the URL the client signed, passed on in
    # X-Forwarded-*, counts only when the proxy is trusted.
    signed_url = "https://swift.example/v1/account?x=%20y"
    uri, headers, _ = signer.sign(signed_url, headers={"StackSync-API": "v2"})
    headers.update({
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "swift.example",
        "X-Forwarded-Uri": "/v1/account?x=%20y",
        "X-Forwarded-For": "203.0.113.7",
    })
    proxied = api_get(base + API_PREFIX + "/account?x=%20y", headers=headers, timeout=TIMEOUT)
    if PROXIED:
        # The proxy in front replaced them with what it saw.
        refused(proxied, 401, "signature_invalid", "X-Forwarded-* sent through a proxy that sets its own")
    elif lenient:
        check(proxied.status_code == 200, "a request through the trusted proxy", proxied)
    else:
        refused(proxied, 401, "signature_invalid", "X-Forwarded-* from an untrusted peer")

    # 8. Out of band: the page shows the verifier.
    oob = OAuth1Session(key, client_secret=secret, callback_uri="oob")
    oob_token = oob.fetch_request_token(base + "/oauth/request_token")["oauth_token"]
    shown = post_form(base, {"oauth_token": oob_token, "email": email, "password": password, "action": "allow"})
    check(shown.status_code == 200, "oob approval shows a page", shown)
    match = re.search(r'<code id="verifier">([^<]+)</code>', shown.text)
    check(match is not None, "the verifier on the page", shown)
    oob_access = oob.fetch_access_token(base + "/oauth/access_token", verifier=html.unescape(match.group(1)))
    check(oob_access["oauth_token"] != token, "a second access token")

    # 9. Denied: nothing to exchange.
    denied = OAuth1Session(key, client_secret=secret, callback_uri="oob")
    denied_tokens = denied.fetch_request_token(base + "/oauth/request_token")
    no = post_form(base, {"oauth_token": denied_tokens["oauth_token"], "action": "deny"})
    check(no.status_code == 200 and "denied" in no.text.lower(), "deny", no)
    refusal = requests.post(
        base + "/oauth/access_token",
        auth=OAuth1(key, client_secret=secret, resource_owner_key=denied_tokens["oauth_token"],
                    resource_owner_secret=denied_tokens["oauth_token_secret"], verifier="guess"),
        timeout=TIMEOUT,
    )
    check(refusal.status_code == 401, "a denied request token is not exchanged", refusal)

    # 10. The user's apps, and revoking this one.
    apps = api_get(base + API_PREFIX + "/apps", auth=api(key, secret, token, token_secret), timeout=TIMEOUT)
    check(apps.status_code == 200 and [a["key"] for a in apps.json()["apps"]] == [key], "the app is listed", apps)
    if lenient:
        print("ACCESS %s %s" % (token, token_secret))
        return
    revoked = api_delete(
        base + API_PREFIX + "/apps/" + urllib.parse.quote(key, safe=""),
        auth=api(key, secret, token, token_secret), timeout=TIMEOUT,
    )
    check(revoked.status_code == 200, "revoking the app", revoked)
    refused(
        api_get(base + API_PREFIX + "/account", auth=api(key, secret, token, token_secret), timeout=TIMEOUT),
        401, "token_rejected", "a revoked app",
    )
    refused(
        api_get(base + API_PREFIX + "/account", auth=api(key, secret, oob_access["oauth_token"],
                                                        oob_access["oauth_token_secret"]), timeout=TIMEOUT),
        401, "token_rejected", "every token of a revoked app",
    )


def token_command(base, key, secret, email, password):
    session = OAuth1Session(key, client_secret=secret, callback_uri="oob")
    request_token = session.fetch_request_token(base + "/oauth/request_token")["oauth_token"]
    shown = post_form(base, {"oauth_token": request_token, "email": email, "password": password, "action": "allow"})
    check(shown.status_code == 200, "oob approval shows a page", shown)
    match = re.search(r'<code id="verifier">([^<]+)</code>', shown.text)
    check(match is not None, "the verifier on the page", shown)
    access = session.fetch_access_token(base + "/oauth/access_token", verifier=html.unescape(match.group(1)))
    print("ACCESS %s %s" % (access["oauth_token"], access["oauth_token_secret"]))


def options(argv):
    """Sets the options' globals; returns the other arguments."""
    global API_PREFIX, PROXIED
    rest = []
    args = iter(argv)
    for arg in args:
        if arg == "--prefix":
            API_PREFIX = "/" + next(args).strip("/")
        elif arg == "--header":
            name, sep, value = next(args).partition(":")
            if not sep:
                raise SystemExit("--header needs NAME: VALUE")
            API_HEADERS[name.strip()] = value.strip()
        elif arg == "--proxied":
            PROXIED = True
        elif arg == "--ca":
            # Every request (requests and OAuth1Session alike) verifies with it.
            os.environ["REQUESTS_CA_BUNDLE"] = next(args)
        else:
            rest.append(arg)
    return rest


def main(argv):
    argv = options(argv)
    if argv[1] == "flow":
        base, key, secret, email, password, mode = argv[2:8]
        flow(base, key, secret, email, password, mode)
    elif argv[1] == "refused":
        base, key, secret, token, token_secret = argv[2:7]
        response = api_get(base + API_PREFIX + "/account", auth=api(key, secret, token, token_secret), timeout=TIMEOUT)
        check(response.status_code == 401, "refused after the app's removal", response)
    elif argv[1] == "token":
        base, key, secret, email, password = argv[2:7]
        token_command(base, key, secret, email, password)
    else:
        raise SystemExit("unknown command " + argv[1])
    print("OK")


if __name__ == "__main__":
    main(sys.argv)
