#!/usr/bin/env python3
"""Scheduling: 1000 trivial jobs (`run: true`) of one run over 4 agents, each
a separate `pave agent` process (capacity 1), against a `pave up` on the
embedded SQLite default with no in-process agent.

Target (issue 3): < 10 s wall from trigger to the run finishing. Prints the
wall time, its ratio to the target, throughput, and the queue time (claim
minus queue) p50/p95 of the jobs.

Usage: bench/scheduling.py [JOBS] [AGENTS]
"""

import datetime
import json
import os
import subprocess
import sys
import time
import urllib.request

from common import PAVE, Server, build

JOBS = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
AGENTS = int(sys.argv[2]) if len(sys.argv) > 2 else 4
TARGET_S = 10.0


def git(repo, *args):
    subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@example.com", *args],
                   cwd=repo, check=True, stdout=subprocess.DEVNULL)


def get(server, path):
    req = urllib.request.Request(server.url + path, headers={"Authorization": f"Bearer {server.token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    build()
    server = Server(database=None)
    agents = []
    try:
        # No in-process agent: all work goes to the separate agent processes.
        server.start_args = ["--agent-capacity", "0"]
        server.start()
        repo = os.path.join(server.dir, "sched")
        os.makedirs(repo)
        with open(os.path.join(repo, "pave.yaml"), "w") as f:
            f.write("service:\n  name: sched\n  owner: bench\npipeline:\n  jobs:\n")
            for i in range(JOBS):
                f.write(f"    j{i}:\n      steps:\n        - run: 'true'\n")
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", ".")
        git(repo, "commit", "-q", "-m", "jobs")
        server.cli("apply", "-f", os.path.join(repo, "pave.yaml"))
        # Only agent tokens claim jobs.
        agent_token = server.cli("token", "create", "--role", "agent", "--name", "bench").stdout.strip()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAVE_")}
        env.update(PAVE_SERVER=server.url, PAVE_TOKEN=agent_token)
        for a in range(AGENTS):
            agents.append(subprocess.Popen(
                [PAVE, "agent", "--name", f"bench-{a}", "--capacity", "1",
                 "--work-dir", os.path.join(server.dir, f"agent-{a}")],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1.0)  # agents connected and long-polling
        dead = [a.args[3] for a in agents if a.poll() is not None]
        if dead:
            raise RuntimeError(f"agents exited at start: {', '.join(dead)}")
        t0 = time.perf_counter()
        run_id = server.cli("trigger", "sched").stdout.strip()
        while True:
            run = get(server, f"/api/v1/runs/{run_id}")
            if run["status"] == "finished":
                break
            if all(a.poll() is not None for a in agents):
                raise RuntimeError("every agent exited before the run finished")
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        jobs = run["jobs"]
        queue = [ts(j["started_at"]) - ts(j["queued_at"]) for j in jobs if j.get("started_at") and j.get("queued_at")]
        attempts = sum(1 for j in jobs if j["attempt"] != 1)
        print(f"{JOBS} jobs of `true` over {AGENTS} agent processes (capacity 1 each), SQLite; outcome {run['outcome']}")
        print(f"{'measure':28} {'value':>10} {'target':>8} {'ratio':>7}")
        print(f"{'wall, trigger to finish (s)':28} {wall:10.2f} {TARGET_S:8.1f} {wall / TARGET_S:7.2f}")
        print(f"{'jobs per second':28} {JOBS / wall:10.1f}")
        print(f"{'queue time p50 (s)':28} {pct(queue, 50):10.3f}")
        print(f"{'queue time p95 (s)':28} {pct(queue, 95):10.3f}")
        print(f"jobs re-run after a lost lease: {attempts}")
    finally:
        for a in agents:
            a.terminate()
        for a in agents:
            a.wait(timeout=30)
        server.cleanup()


if __name__ == "__main__":
    main()
