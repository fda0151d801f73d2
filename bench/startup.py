#!/usr/bin/env python3
"""Startup to /readyz answering, and idle RSS, of `pave up` on the embedded SQLite default.

Targets (issue 2): startup < 300 ms, idle RSS < 50 MB. Printed side by side
with the targets and the ratio (measured / target; below 1.0 beats it).
"""

import sys
import time

from common import Server, build, median

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 10


def main():
    build()
    cold, warm, rss = [], [], []
    for _ in range(RUNS):
        server = Server()
        try:
            cold.append(server.start())  # fresh data dir: creates the database and runs migrations
            server.stop()
            warm.append(server.start())  # existing database
            time.sleep(2)
            rss.append(server.rss_mb())
        finally:
            server.cleanup()
    rows = [
        ("startup, fresh data dir (ms)", median(cold), 300),
        ("startup, existing data (ms)", median(warm), 300),
        ("idle RSS after 2 s (MB)", median(rss), 50),
    ]
    print(f"pave up on SQLite, median of {RUNS} runs")
    print(f"{'measure':32} {'pave':>9} {'target':>8} {'ratio':>7}")
    for name, value, target in rows:
        print(f"{name:32} {value:9.1f} {target:8} {value / target:7.2f}")
    print(f"all runs: fresh {[round(x) for x in cold]} ms, existing {[round(x) for x in warm]} ms")


if __name__ == "__main__":
    main()
