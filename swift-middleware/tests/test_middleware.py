"""The filter between a real WSGI server and a real upstream, on loopback.

Run: python3 -m unittest discover -s swift-middleware/tests
"""

import hashlib
import http.client
import io
import http.server
import json
import os
import socket
import sys
import threading
import time
import unittest
import wsgiref.simple_server

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from stacksync_api.middleware import filter_factory  # noqa: E402


class Upstream(http.server.BaseHTTPRequestHandler):
    """A stand-in StackSync server: answers what it received, as JSON, or
    streams N bytes for GET /api/v2/big/N."""

    protocol_version = "HTTP/1.1"
    delay = 0.0

    def handle_any(self):
        if Upstream.delay:
            time.sleep(Upstream.delay)
        if self.path.endswith("/refuse-early"):
            # As the StackSync server refuses a body over its limit: at
            # once, without reading it, then closing.
            body = b'{"error":"too_large","description":"over the limit"}'
            self.send_response(413)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True
            return
        body = b""
        digest = hashlib.sha256()
        size = 0
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            while True:
                line = self.rfile.readline()
                n = int(line.strip(), 16)
                if n == 0:
                    self.rfile.readline()
                    break
                block = self.rfile.read(n)
                self.rfile.readline()
                digest.update(block)
                size += len(block)
        elif self.headers.get("Content-Length"):
            left = int(self.headers["Content-Length"])
            while left:
                block = self.rfile.read(min(left, 65536))
                digest.update(block)
                size += len(block)
                left -= len(block)
        if self.path.startswith("/api/v2/big/"):
            n = int(self.path.rsplit("/", 1)[1])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.send_header("ETag", '"v1"')
            self.end_headers()
            sent = 0
            while sent < n:
                block = b"x" * min(65536, n - sent)
                self.wfile.write(block)
                sent += len(block)
            return
        body = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "all_headers": [[k.lower(), v] for k, v in self.headers.items()],
                "size": size,
                "sha256": digest.hexdigest(),
            }
        ).encode()
        status = 201 if self.path.endswith("/created") else 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Custom", "kept")
        self.send_header("Keep-Alive", "timeout=5")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = handle_any

    def log_message(self, *args):
        pass


def swift(environ, start_response):
    """A stand-in for the rest of the Swift pipeline."""
    body = b"swift saw " + environ["PATH_INFO"].encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass


def serve(server):
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    return t


class MiddlewareTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
        serve(cls.upstream)
        url = "http://127.0.0.1:%d" % cls.upstream.server_address[1]
        app = filter_factory({}, stacksync_url=url, timeout="2")(swift)
        cls.proxy = wsgiref.simple_server.make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
        serve(cls.proxy)
        # A second filter whose upstream refuses connections.
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        closed.close()
        dead = filter_factory({}, stacksync_url="http://127.0.0.1:%d" % port)(swift)
        cls.dead = wsgiref.simple_server.make_server("127.0.0.1", 0, dead, handler_class=QuietHandler)
        serve(cls.dead)

    @classmethod
    def tearDownClass(cls):
        for s in (cls.upstream, cls.proxy, cls.dead):
            s.shutdown()
            s.server_close()

    def request(self, method, path, headers=None, body=None, server=None):
        server = server or self.proxy
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response, data

    def test_without_the_header_swift_answers(self):
        response, data = self.request("GET", "/v1/AUTH_test/container")
        self.assertEqual(response.status, 200)
        self.assertEqual(data, b"swift saw /v1/AUTH_test/container")

    def test_the_header_in_any_case_goes_to_stacksync_under_the_api_path(self):
        for name in ("StackSync-API", "stacksync-api", "STACKSYNC-API"):
            response, data = self.request("GET", "/v1/file/abc?include_deleted=true", {name: "v2"})
            self.assertEqual(response.status, 200, data)
            seen = json.loads(data)
            self.assertEqual(seen["path"], "/api/v2/file/abc?include_deleted=true")
            self.assertEqual(response.getheader("X-Custom"), "kept")
            self.assertIsNone(response.getheader("Keep-Alive"), "hop-by-hop headers are dropped")

    def test_oauth_goes_to_stacksync_without_the_header(self):
        response, data = self.request(
            "POST",
            "/oauth/request_token",
            {"Authorization": 'OAuth oauth_consumer_key="k"', "Content-Type": "application/x-www-form-urlencoded"},
            body=b"a=1",
        )
        self.assertEqual(response.status, 200)
        seen = json.loads(data)
        self.assertEqual(seen["path"], "/oauth/request_token")
        self.assertEqual(seen["headers"]["authorization"], 'OAuth oauth_consumer_key="k"')
        self.assertEqual(seen["headers"]["content-type"], "application/x-www-form-urlencoded")
        self.assertEqual(seen["size"], 3)

    def test_the_server_learns_the_url_the_client_signed(self):
        response, data = self.request(
            "GET",
            "/v1/folder/x%20y?b=2&a=1",
            {"StackSync-API": "v2", "X-Forwarded-Host": "forged.example", "Host": "swift.example:8080"},
        )
        seen = json.loads(data)
        self.assertEqual(seen["path"], "/api/v2/folder/x%20y?b=2&a=1")
        self.assertEqual(seen["headers"]["x-forwarded-host"], "swift.example:8080")
        self.assertNotIn("forged.example", json.dumps(seen["all_headers"]), "a client's own X-Forwarded-* never passes")
        self.assertEqual(seen["headers"]["x-forwarded-uri"], "/v1/folder/x%20y?b=2&a=1")
        self.assertEqual(seen["headers"]["x-forwarded-proto"], "http")

    def test_a_path_beyond_ascii_keeps_its_bytes(self):
        # The WSGI server hands PATH_INFO on as latin-1-decoded bytes (PEP 3333).
        response, data = self.request("GET", "/v1/folder/%C3%A9t%C3%A9?q=%C3%A9", {"StackSync-API": "v2"})
        self.assertEqual(response.status, 200, data)
        seen = json.loads(data)
        self.assertEqual(seen["path"], "/api/v2/folder/%C3%A9t%C3%A9?q=%C3%A9")
        self.assertEqual(seen["headers"]["x-forwarded-uri"], "/v1/folder/%C3%A9t%C3%A9?q=%C3%A9")

    def call(self, environ, **conf):
        url = "http://127.0.0.1:%d" % self.upstream.server_address[1]
        app = filter_factory({}, stacksync_url=url, **conf)(swift)
        environ.setdefault("REQUEST_METHOD", "GET")
        environ.setdefault("HTTP_STACKSYNC_API", "v2")
        environ.setdefault("wsgi.input", io.BytesIO(b""))
        environ.setdefault("wsgi.url_scheme", "http")
        environ.setdefault("HTTP_HOST", "swift.example")
        statuses = []
        body = b"".join(app(environ, lambda s, h: statuses.append(s)))
        self.assertEqual(statuses, ["200 OK"], body)
        return json.loads(body)

    def test_the_signed_path_is_passed_on_as_the_client_encoded_it(self):
        # Swift's WSGI server (eventlet) keeps the raw path in RAW_PATH_INFO.
        seen = self.call({"PATH_INFO": "/v1/folder/a~b'c", "RAW_PATH_INFO": "/v1/folder/a%7Eb%27c", "QUERY_STRING": "x=%7E"})
        self.assertEqual(seen["headers"]["x-forwarded-uri"], "/v1/folder/a%7Eb%27c?x=%7E")
        self.assertEqual(seen["path"], "/api/v2/folder/a~b'c?x=%7E")

    def test_the_scheme_clients_use_behind_a_tls_terminator(self):
        seen = self.call({"PATH_INFO": "/v1/account"}, url_scheme="https")
        self.assertEqual(seen["headers"]["x-forwarded-proto"], "https")
        self.assertEqual(seen["headers"]["x-forwarded-host"], "swift.example")
        seen = self.call({"PATH_INFO": "/v1/account"})
        self.assertEqual(seen["headers"]["x-forwarded-proto"], "http")

    def test_status_and_large_bodies_stream_both_ways(self):
        payload = os.urandom(8 * 1024 * 1024 + 17)
        response, data = self.request(
            "PUT", "/v1/file/abc/created", {"StackSync-API": "v2", "Content-Type": "application/octet-stream"}, payload
        )
        self.assertEqual(response.status, 201)
        seen = json.loads(data)
        self.assertEqual(seen["size"], len(payload))
        self.assertEqual(seen["sha256"], hashlib.sha256(payload).hexdigest())
        response, data = self.request("GET", "/v1/big/%d" % (16 * 1024 * 1024), {"StackSync-API": "v2"})
        self.assertEqual(response.status, 200)
        self.assertEqual(len(data), 16 * 1024 * 1024)
        self.assertEqual(response.getheader("ETag"), '"v1"')

    def test_an_early_refusal_reaches_the_client(self):
        payload = os.urandom(4 * 1024 * 1024)
        response, data = self.request(
            "POST", "/v1/folder/refuse-early", {"StackSync-API": "v2", "Content-Type": "application/json"}, payload
        )
        self.assertEqual(response.status, 413)
        self.assertEqual(json.loads(data)["error"], "too_large")

    def test_a_chunked_upload_is_forwarded_whole(self):
        # What Swift's WSGI server (eventlet) hands on for a chunked request:
        # no length, the decoded body in wsgi.input until its end.
        payload = os.urandom(3 * 65536 + 123)
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/v1/file",
            "QUERY_STRING": "name=n",
            "HTTP_STACKSYNC_API": "v2",
            "HTTP_TRANSFER_ENCODING": "chunked",
            "wsgi.input": io.BytesIO(payload),
            "wsgi.url_scheme": "http",
        }
        url = "http://127.0.0.1:%d" % self.upstream.server_address[1]
        app = filter_factory({}, stacksync_url=url)(swift)
        statuses = []
        body = b"".join(app(environ, lambda s, h: statuses.append(s)))
        self.assertEqual(statuses, ["200 OK"])
        seen = json.loads(body)
        self.assertEqual(seen["path"], "/api/v2/file?name=n")
        self.assertEqual(seen["headers"]["transfer-encoding"], "chunked")
        self.assertEqual(seen["size"], len(payload))
        self.assertEqual(seen["sha256"], hashlib.sha256(payload).hexdigest())

    def test_another_api_version_is_refused_clearly(self):
        response, data = self.request("GET", "/v1/file/abc", {"StackSync-API": "v1"})
        self.assertEqual(response.status, 400)
        self.assertEqual(json.loads(data)["error"], "unsupported_api_version")

    def test_outside_the_prefix_is_not_found(self):
        response, data = self.request("GET", "/v2/file/abc", {"StackSync-API": "v2"})
        self.assertEqual(response.status, 404)
        self.assertEqual(json.loads(data)["error"], "not_found")

    def test_an_unreachable_server_is_a_502_with_a_json_error(self):
        response, data = self.request("GET", "/v1/file/abc", {"StackSync-API": "v2"}, server=self.dead)
        self.assertEqual(response.status, 502)
        self.assertEqual(json.loads(data)["error"], "upstream_unavailable")

    def test_a_slow_server_is_a_504(self):
        Upstream.delay = 3.0
        try:
            response, data = self.request("GET", "/v1/file/slow", {"StackSync-API": "v2"})
        finally:
            Upstream.delay = 0.0
        self.assertEqual(response.status, 504)
        self.assertEqual(json.loads(data)["error"], "upstream_timeout")

    def test_a_bad_content_length_is_a_400(self):
        environ = {
            "REQUEST_METHOD": "PUT",
            "PATH_INFO": "/v1/file/abc/data",
            "HTTP_STACKSYNC_API": "v2",
            "CONTENT_LENGTH": "ten",
            "wsgi.input": None,
        }
        environ["wsgi.input"] = io.BytesIO(b"0123456789")
        statuses = []
        app = filter_factory({}, stacksync_url="http://127.0.0.1:9")(swift)
        body = b"".join(app(environ, lambda s, h: statuses.append(s)))
        self.assertEqual(statuses, ["400 Bad Request"])
        self.assertEqual(json.loads(body)["error"], "bad_request")

    def test_configuration_is_checked(self):
        with self.assertRaises(ValueError):
            filter_factory({})(swift)
        with self.assertRaises(ValueError):
            filter_factory({}, stacksync_url="ftp://x")(swift)
        with self.assertRaises(ValueError):
            filter_factory({}, stacksync_url="http://x", url_scheme="gopher")(swift)


if __name__ == "__main__":
    unittest.main()
