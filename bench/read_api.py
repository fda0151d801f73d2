#!/usr/bin/env python3
"""Read API throughput: `wrk` on GET /api/v1/services with 1,000 services,
SQLite and PostgreSQL side by side (ratio PostgreSQL / SQLite).

Needs wrk (`apt-get install -y wrk`). wrk and the server share the 2 cores.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

from common import Server, build, drop_pg_database, pg_database

DURATION = sys.argv[1] if len(sys.argv) > 1 else "10s"
CONNECTIONS = 32


def write_services(root, n=1000):
    os.makedirs(root, exist_ok=True)
    docs = []
    for i in range(n):
        docs.append(f"apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: svc-{i}\n"
                    f"  description: Service number {i}\nspec:\n  type: service\n  lifecycle: production\n"
                    f"  owner: team-{i % 20}\n  system: system-{i % 40}\n")
    with open(os.path.join(root, "catalog-info.yaml"), "w") as f:
        f.write("---\n".join(docs))


def wrk(url, token):
    out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{DURATION}", "--latency",
                          "-H", f"Authorization: Bearer {token}", f"{url}/api/v1/services"],
                         check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, float(p99.group(1)) * scale, int(errors.group(1)) if errors else 0


def run(label, database, catalog):
    server = Server(database=database)
    try:
        server.start()
        server.cli("apply", "-f", catalog)
        return (label, *wrk(server.url, server.token))
    finally:
        server.cleanup()


def main():
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    build()
    work = tempfile.mkdtemp(prefix="pave-read-")
    catalog = os.path.join(work, "catalog")
    write_services(catalog)
    results = [run("SQLite", None, catalog)]
    pg = pg_database("pave_bench_read")
    if pg:
        results.append(run("PostgreSQL", pg, catalog))
        drop_pg_database("pave_bench_read")
    else:
        print("*** PostgreSQL not reachable: PostgreSQL row skipped ***")
    print(f"GET /api/v1/services (1000 services, ~{os.path.getsize(os.path.join(catalog, 'catalog-info.yaml')) // 1000} kB YAML), "
          f"wrk -t2 -c{CONNECTIONS} -d{DURATION}")
    print(f"{'backend':11} {'req/s':>9} {'p99 (ms)':>9} {'non-2xx':>8}")
    for label, rps, p99, errors in results:
        print(f"{label:11} {rps:9.0f} {p99:9.2f} {errors:8}")
    if len(results) == 2:
        print(f"ratio PostgreSQL/SQLite: {results[1][1] / results[0][1]:.2f} (req/s)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
