#!/usr/bin/env python3
"""Fully cached rerun of a 20-step pipeline doing real work, against the cold run.

Each step compiles its own generated C file with `cc -O2` into an object file,
declared as a step cache output (`cache: { inputs: [src/fN.c], outputs:
[out/fN.o] }`). The cold run starts from an empty cache (every step runs and is
saved); the rerun, from a fresh clean workspace as always, restores every step.

Target (issue 3): rerun <= 5% of the cold run. Printed side by side.

Usage: bench/cached_rerun.py [FUNCTIONS_PER_FILE]
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

from common import PAVE, build

STEPS = 20
FUNCTIONS = int(sys.argv[1]) if len(sys.argv) > 1 else 40


def c_source(n):
    fns = []
    for i in range(FUNCTIONS):
        fns.append(
            f"double f{n}_{i}(const double *a, int len) {{\n"
            f"  double s = 0;\n"
            f"  for (int k = 0; k < len; k++) {{\n"
            f"    s += a[k] * {i + 1}.5 / (k + 1.0);\n"
            f"    if (s > 1e9) s -= a[k] * {n + 2};\n"
            f"  }}\n"
            f"  return s;\n"
            f"}}\n"
        )
    return "".join(fns)


def git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, stdout=subprocess.DEVNULL)


def run(repo, env):
    t = time.perf_counter()
    r = subprocess.run([PAVE, "run"], cwd=repo, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"pave run failed:\n{r.stdout}\n{r.stderr}")
    return elapsed, r.stdout


def main():
    build()
    root = tempfile.mkdtemp(prefix="pave-bench-cache-")
    try:
        repo = os.path.join(root, "repo")
        os.makedirs(os.path.join(repo, "src"))
        lines = ["service: { name: bench, owner: perf }", "pipeline:", "  jobs:", "    build:", "      steps:"]
        for n in range(STEPS):
            with open(os.path.join(repo, "src", f"f{n}.c"), "w") as f:
                f.write(c_source(n))
            lines += [
                f"        - name: compile f{n}",
                f"          cache: {{ inputs: [src/f{n}.c], outputs: [out/f{n}.o] }}",
                f"          run: mkdir -p out && cc -O2 -c src/f{n}.c -o out/f{n}.o",
            ]
        with open(os.path.join(repo, "pave.yaml"), "w") as f:
            f.write("\n".join(lines) + "\n")
        git(repo, "init", "-q")
        git(repo, "config", "user.name", "bench")
        git(repo, "config", "user.email", "bench@pave.invalid")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "bench")
        env = dict(os.environ, PAVE_CACHE_DIR=os.path.join(root, "cache"))

        cold, out_cold = run(repo, env)
        warm_runs = [run(repo, env) for _ in range(3)]
        warm = sorted(t for t, _ in warm_runs)[1]
        # Summary table rows end with the CACHE column.
        hits = sum(1 for line in warm_runs[-1][1].splitlines() if line.endswith(" hit"))
        misses = sum(1 for line in out_cold.splitlines() if line.endswith(" miss"))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"{STEPS} steps, each `cc -O2` of a generated C file ({FUNCTIONS} functions), step cache on\n")
    print(f"  cold run (empty cache, {misses} misses)        {cold * 1000:9.1f} ms")
    print(f"  fully cached rerun (median of 3, {hits} hits) {warm * 1000:9.1f} ms")
    print(f"\nratio rerun / cold  {warm / cold * 100:5.1f}%  (target <= 5%)")


if __name__ == "__main__":
    main()
