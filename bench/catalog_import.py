#!/usr/bin/env python3
"""`pave apply` of 10,000 generated Backstage entities (teams, systems,
components with owners, systems, dependencies and APIs), end to end through
the CLI, HTTP and one store transaction, on SQLite and PostgreSQL.

Target (issue 2): < 1 s. Reference: Backstage's maintainers quote processing
"hundreds of entities per second"; we print the ratio against 500 entities/s,
the generous end of that, and against the 1 s target.
"""

import os
import shutil
import sys
import tempfile
import time

from common import Server, build, drop_pg_database, pg_database

TOTAL = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
BACKSTAGE_PER_SECOND = 500


def generate(root, total):
    """Writes `total` entities: 1% groups, 4% systems, 10% APIs, the rest components."""
    groups = max(1, total // 100)
    systems = max(1, total * 4 // 100)
    apis = max(1, total // 10)
    components = total - groups - systems - apis
    docs = []
    for g in range(groups):
        docs.append(f"apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata:\n  name: team-{g}\n"
                    f"  title: Team {g}\nspec:\n  type: team\n  parent: {'team-0' if g else ''}\n  children: []\n"
                    .replace("  parent: \n", ""))
    for s in range(systems):
        docs.append(f"apiVersion: backstage.io/v1alpha1\nkind: System\nmetadata:\n  name: system-{s}\n"
                    f"spec:\n  owner: team-{s % groups}\n")
    for a in range(apis):
        docs.append(f"apiVersion: backstage.io/v1alpha1\nkind: API\nmetadata:\n  name: api-{a}\n"
                    f"spec:\n  type: openapi\n  lifecycle: production\n  owner: team-{a % groups}\n"
                    f"  system: system-{a % systems}\n  definition: \"openapi: 3.0.0\"\n")
    for c in range(components):
        docs.append(f"apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: svc-{c}\n"
                    f"  description: Generated service {c}\n  tags: [generated, tier-{c % 3}]\n"
                    f"  links:\n    - url: https://runbooks.example/svc-{c}\n      title: Runbook\n"
                    f"spec:\n  type: service\n  lifecycle: production\n  owner: team-{c % groups}\n"
                    f"  system: system-{c % systems}\n  dependsOn: [component:svc-{(c + 1) % components}]\n"
                    f"  providesApis: [api-{c % apis}]\n  consumesApis: [api-{(c + 7) % apis}]\n")
    per_file = 100
    os.makedirs(root, exist_ok=True)
    for i in range(0, len(docs), per_file):
        with open(os.path.join(root, f"catalog-{i // per_file:04}.yaml"), "w") as f:
            f.write("---\n".join(docs[i:i + per_file]))
    return len(docs)


def run(label, database, catalog):
    server = Server(database=database)
    try:
        server.start()
        t0 = time.perf_counter()
        server.cli("apply", "-f", catalog)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        server.cli("apply", "-f", catalog)
        again = time.perf_counter() - t0
        verify = server.cli("audit", "verify").stdout.strip()
        return label, cold, again, verify
    finally:
        server.cleanup()


def main():
    build()
    work = tempfile.mkdtemp(prefix="pave-import-")
    catalog = os.path.join(work, "catalog")
    n = generate(catalog, TOTAL)
    size_mb = sum(os.path.getsize(os.path.join(catalog, f)) for f in os.listdir(catalog)) / 1e6
    print(f"catalog: {n} entities in {len(os.listdir(catalog))} files, {size_mb:.1f} MB of YAML")
    results = [run("SQLite", None, catalog)]
    pg = pg_database("pave_bench_import")
    if pg:
        results.append(run("PostgreSQL", pg, catalog))
        drop_pg_database("pave_bench_import")
    else:
        print("*** PostgreSQL not reachable: PostgreSQL row skipped ***")
    reference = n / BACKSTAGE_PER_SECOND
    print(f"{'backend':11} {'apply (s)':>9} {'entities/s':>10} {'vs 1 s target':>13} "
          f"{'vs Backstage@500/s':>18} {'re-apply (s)':>12}")
    for label, cold, again, verify in results:
        print(f"{label:11} {cold:9.3f} {n / cold:10.0f} {cold / 1.0:13.2f} {reference / cold:17.1f}x {again:12.3f}")
        print(f"            audit: {verify}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
