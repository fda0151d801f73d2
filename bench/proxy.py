#!/usr/bin/env python3
"""Edge proxy: throughput and added latency of Pave's edge proxy against the
instance directly and against nginx (Debian package) as a keep-alive reverse
proxy, with wrk, in one run on the same machine.

Targets: Pave req/s >= nginx req/s; Pave p99 - direct p99 < 1 ms.

Two phases, each ROUNDS rounds against direct, pave and nginx in rotating
order, reporting per target the median of the rounds:
- throughput: wrk -t2 -cCONNECTIONS (saturates the box; p99 there is mostly queueing);
- added latency: wrk -t1 -c1 (one request at a time, so p99 differences are
  the proxy's own cost rather than queueing behind other requests).

Usage: bench/proxy.py [DURATION] [CONNECTIONS]   (defaults 5s, 64)
On a shared box, run it niced (`nice -n 10 bench/proxy.py`) so that minutes
of saturation do not starve interactive work.
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

from common import ROOT, free_port, median

DURATION = sys.argv[1] if len(sys.argv) > 1 else "5s"
CONNECTIONS = int(sys.argv[2]) if len(sys.argv) > 2 else 64
THREADS = 2
ROUNDS = 3
LIGHT_DURATION = "5s"
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


def wrk(port, duration=DURATION, threads=THREADS, connections=CONNECTIONS):
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}", "--latency",
                          "-H", f"Host: {HOST}", f"http://127.0.0.1:{port}/"],
                         check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(*re.search(r"50%\s+([\d.]+)(us|ms|s)", out).groups())
    p99 = to_ms(*re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0, socket_errors.group(1) if socket_errors else "none")
    return rps, p50, p99, errors


def interleaved(targets, measure):
    """ROUNDS rounds over the targets, the order rotating each round so that
    load from elsewhere on the box does not favour one target; per target the
    median of each figure (errors summed)."""
    runs = {label: [] for label, _ in targets}
    for round_ in range(ROUNDS):
        order = targets[round_ % len(targets):] + targets[:round_ % len(targets)]
        for label, port in order:
            runs[label].append(measure(port))
            time.sleep(1)  # let the box settle between runs
    rows = []
    for label, _ in targets:
        figures = runs[label]
        non2xx = sum(f[3][0] for f in figures)
        socket_errors = "; ".join(f[3][1] for f in figures if f[3][1] != "none") or "none"
        rows.append((label, median([f[0] for f in figures]), median([f[1] for f in figures]),
                     median([f[2] for f in figures]), (non2xx, socket_errors)))
    return rows


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
        results = interleaved(targets, lambda port: wrk(port))
        light = interleaved(targets, lambda port: wrk(port, LIGHT_DURATION, 1, 1))

        pave.send_signal(signal.SIGTERM)
        pave_report = pave.communicate(timeout=30)[0].strip().splitlines()[-1]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    print(f"GET / ({HOST}, {len(b'hello from the bench backend') + 1}-byte body), "
          f"{os.cpu_count()} cores shared by wrk, backend and proxy")
    print(f"{'phase':26} {'target':7} {'req/s':>9} {'p50 (ms)':>9} {'p99 (ms)':>9} {'non-2xx':>8}  socket errors")
    print(f"median of {ROUNDS} interleaved rounds per target")
    for phase, rows in ((f"throughput -t{THREADS} -c{CONNECTIONS} -d{DURATION}", results),
                        (f"latency -t1 -c1 -d{LIGHT_DURATION}", light)):
        for label, rps, p50, p99, (non2xx, socket_errors) in rows:
            print(f"{phase:26} {label:7} {rps:9.0f} {p50:9.3f} {p99:9.3f} {non2xx:8}  {socket_errors}")
    by = {label: (rps, p50, p99) for label, rps, p50, p99, _ in results}
    lat = {label: (rps, p50, p99) for label, rps, p50, p99, _ in light}
    print(f"pave/nginx throughput: {by['pave'][0] / by['nginx'][0]:.2f} (target >= 1.00)")
    print(f"added p99 at -c1, pave - direct: {lat['pave'][2] - lat['direct'][2]:+.3f} ms (target < 1 ms); "
          f"nginx - direct: {lat['nginx'][2] - lat['direct'][2]:+.3f} ms")
    print(f"added p99 at -c{CONNECTIONS}, pave - direct: {by['pave'][2] - by['direct'][2]:+.3f} ms; "
          f"nginx - direct: {by['nginx'][2] - by['direct'][2]:+.3f} ms")
    print(f"pave's own metrics: {pave_report}")


if __name__ == "__main__":
    main()
