#!/usr/bin/env python3
"""Canary detection and false rollbacks (issue 4).

One `pave up` (release build, embedded SQLite), a Python service deployed to
prod, and a load generator sending ~200 req/s through Pave's edge proxy.

1. Detection: a canary at 10% weight whose responses are 10% 5xx. Measured
   from the canary's first response to the load generator until traffic is
   100% back on stable (the generator's last canary response), and the
   controller's own figure (first traffic -> rollback decision). Target < 10 s;
   Flagger's floor is its 10 s interval times its failure threshold (default
   interval 60 s).
2. False rollbacks: TRIALS healthy canaries (same code as stable) under the
   same load, each analysed for ANALYSIS seconds at 10%. Target 0.

Usage: bench/canary.py [TRIALS] [ANALYSIS_SECONDS]
"""

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

from common import PAVE, Server, build

TRIALS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
ANALYSIS_S = int(sys.argv[2]) if len(sys.argv) > 2 else 15
RATE = 200
TARGET_S = 10.0

APP = r'''
import http.server, json, os, time, itertools
conf = json.load(open("behaviour.json"))
counter = itertools.count()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/healthz":
            code, body = 200, b"ok"
        else:
            time.sleep(conf.get("delay_ms", 0) / 1000)
            n = next(counter)
            p = conf.get("errors_percent", 0)
            code = 503 if p and n % (100 // p) == 0 else 200
            body = conf["version"].encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''

PAVE_YAML = f"""service: {{ name: hello, owner: platform }}
pipeline:
  jobs:
    build:
      steps:
        - run: mkdir -p dist && tar -czf dist/app.tar.gz app.py behaviour.json
      artifacts: [ {{ name: app, path: dist/app.tar.gz }} ]
deploy:
  run: python3 app.py
  health: {{ path: /healthz, interval: 200ms }}
  environments:
    prod:
      strategy:
        canary:
          steps:
            - weight: 10
            - analysis: {{ duration: {ANALYSIS_S}s }}
            - weight: 100
"""

GROUP = """apiVersion: backstage.io/v1alpha1
kind: Group
metadata: { name: platform }
spec: { type: team, children: [] }
"""


def git(repo, *args):
    subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@example.com", *args],
                   cwd=repo, check=True, stdout=subprocess.DEVNULL)


class Api:
    def __init__(self, server):
        self.server = server

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.server.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)

    def wait(self, dep_id, limit=300):
        deadline = time.time() + limit
        while time.time() < deadline:
            d = self.call("GET", f"/api/v1/deployments/{dep_id}")
            if d["deployment"]["status"] not in ("pending", "progressing", "paused"):
                return d
            time.sleep(0.1)
        raise RuntimeError(f"deployment {dep_id} did not finish")


class Load:
    """~RATE req/s from 8 keep-alive connections; records when each release answered."""

    def __init__(self, edge):
        self.edge = edge
        self.stop = False
        self.lock = threading.Lock()
        self.seen = {}  # release -> [first, last]
        self.failed = 0
        self.threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(8)]
        for t in self.threads:
            t.start()

    def worker(self):
        host, port = self.edge.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        interval = 8 / RATE
        nxt = time.time()
        while not self.stop:
            try:
                conn.request("GET", "/", headers={"Host": "hello.prod.localhost"})
                r = conn.getresponse()
                r.read()
                rel = r.getheader("x-pave-release") or "?"
                now = time.time()
                with self.lock:
                    s = self.seen.setdefault(rel, [now, now])
                    s[1] = now
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.failed += 1
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
            nxt += interval
            time.sleep(max(0, nxt - time.time()))

    def finish(self):
        self.stop = True
        for t in self.threads:
            t.join()


def stop_instances(directory):
    """Service instances outlive `pave up` by design; stop them."""
    records = os.path.join(directory, ".pave", "runtime", "instances")
    for name in os.listdir(records) if os.path.isdir(records) else []:
        try:
            with open(os.path.join(records, name)) as f:
                pid = json.load(f)["pid"]
            os.killpg(pid, 9)
        except (OSError, ValueError, KeyError):
            pass


def main():
    build()
    server = Server()
    os.makedirs(os.path.join(server.dir, "repo"))
    repo = os.path.join(server.dir, "repo")
    with open(os.path.join(repo, "app.py"), "w") as f:
        f.write(APP)
    with open(os.path.join(repo, "pave.yaml"), "w") as f:
        f.write(PAVE_YAML)
    with open(os.path.join(repo, "team.yaml"), "w") as f:
        f.write(GROUP)

    def behaviour(conf):
        with open(os.path.join(repo, "behaviour.json"), "w") as f:
            json.dump(conf, f)
        git(repo, "add", ".")
        git(repo, "commit", "-q", "-m", json.dumps(conf))
        subprocess.run([PAVE, "trigger", "hello", "--wait"], cwd=server.dir, check=True,
                       stdout=subprocess.DEVNULL)
        return latest_run()

    def latest_run():
        out = subprocess.run([PAVE, "runs", "hello", "--json"], cwd=server.dir, check=True,
                             capture_output=True, text=True).stdout
        return json.loads(out)[0]["id"]

    git(repo, "init", "-q", "-b", "main")
    server.start()
    api = Api(server)
    try:
        subprocess.run([PAVE, "apply", "-f", repo], cwd=server.dir, check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(server.dir, ".pave", "edge")) as f:
            edge = f.read().strip().removeprefix("http://")
        good = behaviour({"version": "v1", "delay_ms": 5})
        api.wait(api.call("POST", "/api/v1/deployments", {"service": "hello", "env": "prod", "run": good})["id"])
        bad = behaviour({"version": "bad", "delay_ms": 5, "errors_percent": 10})

        load = Load(edge)
        time.sleep(3)
        dep = api.call("POST", "/api/v1/deployments", {"service": "hello", "env": "prod", "run": bad})
        detail = api.wait(dep["id"])
        time.sleep(2)
        load.finish()
        status = detail["deployment"]["status"]
        decision = [l for l in detail["log"] if l["kind"] == "decision"][-1]
        controller_ms = decision["data"].get("ms_since_first_traffic")
        first, last = load.seen.get(dep["id"], [None, None])
        client_s = (last - first) if first else float("nan")
        print("detection: canary at 10% of ~200 req/s, 10% of its responses 5xx")
        print(f"  outcome                         {status}  ({detail['deployment']['reason']})")
        print(f"  client: first..last canary response  {client_s:6.2f} s   (target < {TARGET_S:.0f} s, ratio {client_s / TARGET_S:.2f})")
        print(f"  controller: first traffic..rollback  {controller_ms / 1000 if controller_ms else float('nan'):6.2f} s")
        print(f"  requests without an answer      {load.failed}")

        healthy = behaviour({"version": "v1", "delay_ms": 5, "trial": True})
        rollbacks, outcomes = 0, []
        for i in range(TRIALS):
            load = Load(edge)
            time.sleep(2)
            d = api.call("POST", "/api/v1/deployments", {"service": "hello", "env": "prod", "run": healthy})
            detail = api.wait(d["id"])
            load.finish()
            st = detail["deployment"]["status"]
            outcomes.append(st)
            if st != "succeeded":
                rollbacks += 1
                print(f"  trial {i + 1}: {st}: {detail['deployment']['reason']}")
        print(f"false rollbacks of a healthy canary: {rollbacks} of {TRIALS} "
              f"({ANALYSIS_S} s analysis at 10% weight, ~{RATE} req/s; target 0)")
    finally:
        server.stop()
        stop_instances(server.dir)


if __name__ == "__main__":
    main()
