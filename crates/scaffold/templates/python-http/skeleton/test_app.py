"""Tests for {{ name }}: the handler directly, and the server over HTTP."""

import http.client
import json
import threading
import unittest

import app


class HandlerTest(unittest.TestCase):
    def test_healthz_is_ok(self):
        status, _, body = app.handle("/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"ok")

    def test_root_names_the_service(self):
        status, content_type, body = app.handle("/")
        self.assertEqual(status, 200)
        self.assertEqual(content_type, "application/json")
        self.assertEqual(json.loads(body)["service"], "{{ name }}")

    def test_unknown_path_is_404(self):
        self.assertEqual(app.handle("/nope")[0], 404)


class ServerTest(unittest.TestCase):
    def test_serves_healthz_over_http(self):
        server = app.http.server.ThreadingHTTPServer(("127.0.0.1", 0), app.Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            self.assertEqual(response.status, 200)
            self.assertEqual(response.read(), b"ok")
            conn.close()
        finally:
            server.shutdown()
            server.server_close()


if __name__ == "__main__":
    unittest.main()
