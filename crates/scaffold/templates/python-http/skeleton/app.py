"""{{ name }}: {{ description }}

Standard library only. Listens on $PORT (default 8080) on 127.0.0.1.
"""

import http.server
import json
import os

SERVICE = "{{ name }}"


def handle(path):
    """Returns (status, content type, body) for a GET of `path`."""
    if path == "/healthz":
        return 200, "text/plain", b"ok"
    if path == "/":
        body = {
            "service": SERVICE,
            "release": os.environ.get("PAVE_RELEASE", "dev"),
            "message": "hello from " + SERVICE,
        }
        return 200, "application/json", (json.dumps(body) + "\n").encode()
    return 404, "text/plain", b"not found\n"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        status, content_type, body = handle(self.path.split("?", 1)[0])
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    port = int(os.environ.get("PORT", "8080"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("%s listening on 127.0.0.1:%d" % (SERVICE, port), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
