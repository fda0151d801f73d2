#!/usr/bin/env python3
"""Per-step overhead of the pipeline engine: 100 steps of `true` through
`pave run` (release binary) against the same 100 commands in one bash script.

Target (issue 3): ratio <= 1.5. Printed side by side, same machine, same run.

Pave starts a fresh `bash --noprofile --norc -eo pipefail` per step (as GitHub
Actions does), in its own process group, with its own $PAVE_OUTPUT/$PAVE_ENV
files and piped, line-by-line masked output; the one-script reference starts
bash once and `true` is a builtin there, so it costs almost nothing. Two more
references show where the time goes: the 100 commands as external programs
(`/bin/true`) in one script, and one `bash -c true` per command (what any
runner that isolates steps pays). `pave run` also has fixed costs per run
(process start, `git ls-files`, copying the workspace, planning); a 1-step
run measures them, so the per-step cost is (T100 - T1) / 99.

Usage: bench/step_overhead.py [REPEATS]
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from common import PAVE, build

STEPS = 100
REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, stdout=subprocess.DEVNULL)


def make_repo(root, steps):
    repo = os.path.join(root, f"repo-{steps}")
    os.makedirs(repo)
    lines = ["service: { name: bench, owner: perf }", "pipeline:", "  jobs:", "    steps:", "      steps:"]
    lines += [f"        - {{ name: s{i}, run: 'true' }}" for i in range(steps)]
    with open(os.path.join(repo, "pave.yaml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    git(repo, "init", "-q")
    git(repo, "config", "user.name", "bench")
    git(repo, "config", "user.email", "bench@pave.invalid")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "bench")
    return repo


def timed(cmd, cwd, env=None):
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"{cmd} failed: {r.stderr.decode()}")
    return elapsed


def median_of(fn):
    fn()  # warm-up (page cache, first exec)
    return statistics.median(fn() for _ in range(REPEATS))


def main():
    build()
    root = tempfile.mkdtemp(prefix="pave-bench-steps-")
    try:
        repo100 = make_repo(root, STEPS)
        repo1 = make_repo(root, 1)
        env = dict(os.environ, PAVE_CACHE_DIR=os.path.join(root, "cache"))
        script_builtin = os.path.join(root, "builtin.sh")
        with open(script_builtin, "w") as f:
            f.write("set -eo pipefail\n" + "true\n" * STEPS)
        script_external = os.path.join(root, "external.sh")
        with open(script_external, "w") as f:
            f.write("set -eo pipefail\n" + "/bin/true\n" * STEPS)
        per_step_bash = os.path.join(root, "per_step.sh")
        with open(per_step_bash, "w") as f:
            f.write("set -eo pipefail\n" + "bash --noprofile --norc -eo pipefail -c true\n" * STEPS)

        pave100 = median_of(lambda: timed([PAVE, "run"], repo100, env))
        pave1 = median_of(lambda: timed([PAVE, "run"], repo1, env))
        bash_builtin = median_of(lambda: timed(["bash", script_builtin], root))
        bash_external = median_of(lambda: timed(["bash", script_external], root))
        bash_per_step = median_of(lambda: timed(["bash", per_step_bash], root))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    per_step = (pave100 - pave1) / (STEPS - 1)
    ms = lambda s: f"{s * 1000:8.1f} ms"
    print(f"{STEPS} steps of `true`, median of {REPEATS} runs (after a warm-up)\n")
    print(f"  pave run, {STEPS} steps                       {ms(pave100)}")
    print(f"  pave run, 1 step (fixed cost of a run)       {ms(pave1)}")
    print(f"  pave per-step cost (T100 - T1) / 99          {ms(per_step)}")
    print(f"  one bash script, builtin `true` x{STEPS}        {ms(bash_builtin)}")
    print(f"  one bash script, `/bin/true` x{STEPS}           {ms(bash_external)}")
    print(f"  one `bash -c true` per command x{STEPS}         {ms(bash_per_step)}")
    print()
    ratio = pave100 / bash_builtin
    print(f"ratio pave / one bash script (issue's reference)        {ratio:6.2f}  (target <= 1.5)")
    print(f"ratio pave / one script of external commands            {pave100 / bash_external:6.2f}")
    print(f"ratio pave / one bash per command (per-step isolation)   {pave100 / bash_per_step:6.2f}")
    if ratio > 1.5:
        print(
            "\nThe 1.5 target is missed against a single bash script: that script starts bash\n"
            "once and runs `true` as a builtin, while Pave (like GitHub Actions) starts one\n"
            "shell per step, in its own process group, with output files and piped, masked\n"
            "logs. The fair floor for per-step isolation is the `bash -c` row; the ratio\n"
            "against it is what Pave's own bookkeeping costs."
        )


if __name__ == "__main__":
    main()
