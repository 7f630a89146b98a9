"""StackSync in an OpenStack Swift proxy's pipeline.

A request that carries the ``StackSync-API`` header (any case), and every
request under ``/oauth/``, is forwarded to the StackSync server: the body
streamed both ways, the status and the end-to-end headers kept, under a
timeout. Everything else passes through to Swift untouched, so an existing
Swift installation serves StackSync's REST API at the endpoint its users
already know.

Paths: ``<swift_prefix>/<rest>`` (by default ``/v1/file/...``,
``/v1/folder/...``) goes to ``<stacksync_url><api_path>/<rest>`` (by
default ``/api/v2/...``); ``/oauth/<rest>`` goes to
``<stacksync_url>/oauth/<rest>``. The server verifies the OAuth 1.0a
signature itself; it signs over the URL the client used, which this filter
passes on in ``X-Forwarded-Proto``, ``X-Forwarded-Host`` and
``X-Forwarded-Uri`` (the server trusts them only from the addresses its
configuration names).

Configuration (``[filter:stacksync_api]`` in ``proxy-server.conf``)::

    [filter:stacksync_api]
    paste.filter_factory = stacksync_api.middleware:filter_factory
    stacksync_url = http://127.0.0.1:8080
    # optional
    api_path = /api/v2
    swift_prefix = /v1
    api_version = v2
    timeout = 60
    # when TLS terminates in front of the proxy: the scheme clients use
    url_scheme = https

It does its own authentication (OAuth), so put it right after ``cache``,
before ``listing_formats`` (which would add ``format=json`` to the query of
a GET of ``/v1/X`` and so break the URL the client signed) and Swift's auth
filters: ``pipeline = catch_errors gatekeeper healthcheck proxy-logging
cache stacksync_api listing_formats tempauth ... proxy-server``.

Plain WSGI and the standard library only: no code of Swift's is needed.
"""

import http.client
import json
import socket
import urllib.parse

HEADER = "HTTP_STACKSYNC_API"
# Hop-by-hop headers (RFC 9110 7.6.1) are never forwarded either way.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
BLOCK = 64 * 1024
# Characters a path keeps unquoted (RFC 3986 pchar and "/").
PATH_SAFE = "/:@!$&'()*+,;=-._~"


def _quote_path(path):
    """A WSGI path (PEP 3333: the request's bytes decoded as latin-1) as it
    goes into a URL."""
    try:
        raw = path.encode("latin-1")
    except UnicodeEncodeError:
        raw = path.encode("utf-8")
    return urllib.parse.quote(raw, safe=PATH_SAFE)


# Most bytes of a refused request's body read and dropped so that its
# client gets to read the refusal.
DRAIN_LIMIT = 64 * 1024 * 1024


def _drain(blocks, limit):
    """Reads and drops what is left of a body, at most `limit` bytes."""
    seen = 0
    for block in blocks:
        seen += len(block)
        if seen >= limit:
            break


def _json_error(start_response, status, code, description):
    body = json.dumps({"error": code, "description": description}).encode()
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _request_body(environ):
    """The request body as an iterator of blocks (None when there is none),
    and its length when known."""
    stream = environ.get("wsgi.input")
    length = environ.get("CONTENT_LENGTH") or ""
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if stream is None:
        return None, None
    if length.strip():
        try:
            remaining = int(length)
        except ValueError:
            raise BadRequest("Content-Length is not a number")
        if remaining < 0:
            raise BadRequest("Content-Length is negative")

        def exact():
            left = remaining
            while left > 0:
                block = stream.read(min(BLOCK, left))
                if not block:
                    raise BadRequest("the request body ended early")
                left -= len(block)
                yield block

        return exact(), remaining
    if chunked:

        def until_eof():
            while True:
                block = stream.read(BLOCK)
                if not block:
                    return
                yield block

        return until_eof(), None
    return None, None


class BadRequest(Exception):
    pass


class _Response:
    """Streams the upstream body, then closes the connection."""

    def __init__(self, conn, response):
        self.conn = conn
        self.response = response

    def __iter__(self):
        try:
            while True:
                block = self.response.read(BLOCK)
                if not block:
                    return
                yield block
        finally:
            self.close()

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class StackSyncApi:
    def __init__(self, app, conf):
        self.app = app
        url = conf.get("stacksync_url", "").strip()
        if not url:
            raise ValueError("stacksync_api: set stacksync_url (the StackSync server's URL)")
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError("stacksync_api: stacksync_url must be an http:// or https:// URL")
        self.scheme = parsed.scheme
        self.host = parsed.hostname
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.base = parsed.path.rstrip("/")
        self.api_path = "/" + conf.get("api_path", "/api/v2").strip("/")
        self.swift_prefix = "/" + conf.get("swift_prefix", "/v1").strip("/")
        self.version = conf.get("api_version", "v2").strip().lower()
        self.timeout = float(conf.get("timeout", 60))
        # The scheme clients use, when TLS terminates in front of the proxy
        # (which then sees plain HTTP); by default, as the request arrived.
        self.url_scheme = conf.get("url_scheme", "").strip().lower() or None
        if self.url_scheme not in (None, "http", "https"):
            raise ValueError("stacksync_api: url_scheme must be http or https")

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/oauth" or path.startswith("/oauth/"):
            target = path
        elif HEADER in environ:
            asked = environ[HEADER].strip().lower()
            if asked != self.version:
                return _json_error(
                    start_response,
                    "400 Bad Request",
                    "unsupported_api_version",
                    "StackSync-API %r is not served here; use %r"
                    % (environ[HEADER], self.version),
                )
            if not (path == self.swift_prefix or path.startswith(self.swift_prefix + "/")):
                return _json_error(
                    start_response,
                    "404 Not Found",
                    "not_found",
                    "the StackSync API lives under %s/" % self.swift_prefix,
                )
            target = self.api_path + path[len(self.swift_prefix):]
        else:
            return self.app(environ, start_response)
        return self.forward(environ, start_response, target)

    def forward(self, environ, start_response, target):
        query = environ.get("QUERY_STRING", "")
        # PATH_INFO is decoded by the WSGI server: quote it again as a URL.
        url = self.base + _quote_path(target)
        if query:
            url += "?" + query
        try:
            body, length = _request_body(environ)
        except BadRequest as e:
            return _json_error(start_response, "400 Bad Request", "bad_request", str(e))
        headers = self.request_headers(environ, length, body is not None)
        conn_class = (
            http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        )
        conn = conn_class(self.host, self.port, timeout=self.timeout)
        try:
            conn.putrequest(environ["REQUEST_METHOD"], url, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders()
            if body is not None:
                try:
                    for block in body:
                        if length is None:
                            conn.send(b"%x\r\n%s\r\n" % (len(block), block))
                        else:
                            conn.send(block)
                    if length is None:
                        conn.send(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    # The server answered before it read the whole body (a
                    # refusal: too large, not allowed) and closed: its answer,
                    # when it reached us, is the client's answer, once the
                    # client has sent what it is sending (most clients read
                    # an answer only then), up to a limit.
                    _drain(body, DRAIN_LIMIT)
            response = conn.getresponse()
        except BadRequest as e:
            conn.close()
            return _json_error(start_response, "400 Bad Request", "bad_request", str(e))
        except (socket.timeout, TimeoutError):
            conn.close()
            return _json_error(
                start_response,
                "504 Gateway Timeout",
                "upstream_timeout",
                "the StackSync server did not answer in %g s" % self.timeout,
            )
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            return _json_error(
                start_response,
                "502 Bad Gateway",
                "upstream_unavailable",
                "the StackSync server could not be reached: %s" % e.__class__.__name__,
            )
        out = [
            (name, value)
            for name, value in response.getheaders()
            if name.lower() not in HOP_BY_HOP
        ]
        start_response("%d %s" % (response.status, response.reason), out)
        return _Response(conn, response)

    def request_headers(self, environ, length, has_body):
        headers = []
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                name = key[5:].replace("_", "-").title()
                if name.lower() in HOP_BY_HOP or name.lower() == "host":
                    continue
                if name.lower().startswith("x-forwarded-"):
                    # Only what this filter says about the request counts.
                    continue
                headers.append((name, value))
        if environ.get("CONTENT_TYPE"):
            headers.append(("Content-Type", environ["CONTENT_TYPE"]))
        if has_body:
            if length is None:
                headers.append(("Transfer-Encoding", "chunked"))
            else:
                headers.append(("Content-Length", str(length)))
        host_port = "%s:%d" % (self.host, self.port)
        headers.append(("Host", host_port))
        headers.append(("Connection", "close"))
        original_host = environ.get("HTTP_HOST") or "%s:%s" % (
            environ.get("SERVER_NAME", ""),
            environ.get("SERVER_PORT", ""),
        )
        # The path exactly as the client sent it, when the WSGI server keeps
        # it (eventlet, which runs Swift's proxy, in RAW_PATH_INFO): the
        # signature covers the client's own encoding (%7E, %27, ...).
        uri = environ.get("RAW_PATH_INFO")
        if not (uri and uri.startswith("/")):
            uri = _quote_path(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
        if environ.get("QUERY_STRING"):
            uri += "?" + environ["QUERY_STRING"]
        scheme = self.url_scheme or environ.get("wsgi.url_scheme", "http")
        headers.append(("X-Forwarded-Proto", scheme))
        headers.append(("X-Forwarded-Host", original_host))
        headers.append(("X-Forwarded-Uri", uri))
        remote = environ.get("REMOTE_ADDR")
        if remote:
            headers.append(("X-Forwarded-For", remote))
        return headers


def filter_factory(global_conf, **local_conf):
    conf = dict(global_conf)
    conf.update(local_conf)

    def factory(app):
        return StackSyncApi(app, conf)

    return factory
