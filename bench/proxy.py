#!/usr/bin/env python3
"""Edge proxy: throughput and added latency of Pave's edge proxy against the
instance directly and against nginx (Debian package) as a keep-alive reverse
proxy, with wrk, in one run on the same machine.

Targets: Pave req/s >= nginx req/s; Pave p99 - direct p99 < 1 ms.

Usage: bench/proxy.py [DURATION] [CONNECTIONS]   (defaults 10s, 64)
Needs wrk and nginx (`apt-get install -y nginx wrk`). Backend, proxies and
wrk share the machine's cores, as they would on a one-machine Pave.
"""

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from common import ROOT, free_port

DURATION = sys.argv[1] if len(sys.argv) > 1 else "10s"
CONNECTIONS = int(sys.argv[2]) if len(sys.argv) > 2 else 64
THREADS = 2
HOST = "bench.prod.localhost"
EXAMPLES = os.path.join(ROOT, "target", "release", "examples")

NGINX_CONF = """
worker_processes auto;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
daemon off;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream app {{
        server 127.0.0.1:{backend};
        keepalive 128;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""


def build():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "pave-deploy", "--examples"], cwd=ROOT, check=True)


def wait_listening(port, proc, what):
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} not listening after 30 s")


def check_pave(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/", headers={"Host": HOST})
    response = conn.getresponse()
    response.read()
    if response.status != 200 or response.getheader("x-pave-release") != "stable":
        raise RuntimeError(f"pave answered {response.status} release={response.getheader('x-pave-release')}")


def to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(port, duration=DURATION):
    out = subprocess.run(["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{duration}", "--latency",
                          "-H", f"Host: {HOST}", f"http://127.0.0.1:{port}/"],
                         check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(*re.search(r"50%\s+([\d.]+)(us|ms|s)", out).groups())
    p99 = to_ms(*re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0, socket_errors.group(1) if socket_errors else "none")
    return rps, p50, p99, errors


def main():
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: apt-get install -y nginx wrk")
    build()
    work = tempfile.mkdtemp(prefix="pave-proxy-bench-")
    backend_port, pave_port, nginx_port = free_port(), free_port(), free_port()
    procs = []
    try:
        backend = subprocess.Popen([os.path.join(EXAMPLES, "bench_backend"), f"127.0.0.1:{backend_port}"],
                                   stdout=subprocess.DEVNULL)
        procs.append(backend)
        wait_listening(backend_port, backend, "bench_backend")

        pave = subprocess.Popen([os.path.join(EXAMPLES, "edge_proxy"), "--listen", f"127.0.0.1:{pave_port}",
                                 "--route", f"{HOST}=stable:100@127.0.0.1:{backend_port}"],
                                stdout=subprocess.PIPE, text=True)
        procs.append(pave)
        wait_listening(pave_port, pave, "edge_proxy")
        check_pave(pave_port)

        user = "user root;" if os.geteuid() == 0 else ""
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=work, backend=backend_port, port=nginx_port, user=user))
        nginx = subprocess.Popen(["nginx", "-p", work, "-e", os.path.join(work, "error.log"), "-c", conf],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(nginx)
        wait_listening(nginx_port, nginx, "nginx")

        targets = [("direct", backend_port), ("pave", pave_port), ("nginx", nginx_port)]
        for _, port in targets:
            wrk(port, "2s")  # warm-up: connections, pools, caches
        results = [(label, *wrk(port)) for label, port in targets]

        pave.send_signal(signal.SIGTERM)
        pave_report = pave.communicate(timeout=30)[0].strip().splitlines()[-1]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    print(f"GET / ({HOST}, {len(b'hello from the bench backend')+1}-byte body), "
          f"wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}, {os.cpu_count()} cores shared by all")
    print(f"{'target':7} {'req/s':>9} {'p50 (ms)':>9} {'p99 (ms)':>9} {'non-2xx':>8}  socket errors")
    for label, rps, p50, p99, (non2xx, socket_errors) in results:
        print(f"{label:7} {rps:9.0f} {p50:9.3f} {p99:9.3f} {non2xx:8}  {socket_errors}")
    by = {label: (rps, p50, p99) for label, rps, p50, p99, _ in results}
    ratio = by["pave"][0] / by["nginx"][0]
    added_p99 = by["pave"][2] - by["direct"][2]
    added_p99_nginx = by["nginx"][2] - by["direct"][2]
    print(f"pave/nginx throughput: {ratio:.2f} (target >= 1.00)")
    print(f"pave - direct p99: {added_p99:+.3f} ms (target < 1 ms); nginx - direct p99: {added_p99_nginx:+.3f} ms")
    print(f"pave's own metrics: {pave_report}")


if __name__ == "__main__":
    main()
