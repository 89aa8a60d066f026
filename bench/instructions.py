#!/usr/bin/env python3
"""What one more ref costs the pre-receive process, in counts that do not depend on the
machine's mood: CPU instructions (valgrind's callgrind) and minor page faults.

Wall time on a shared 2-CPU virtual machine moves by a third between minutes, which
buries a per-ref cost of tens of µs (bench/README.md). Instructions are repeatable for
the same code and input, so this is the reading to compare two versions of tagwarden
by; faults matter because each costs microseconds on such a machine.

Over the repository of bench/per_ref.py (N annotated version tags whose objects are
there, refs not yet written, as in git's receive quarantine) it runs the hook process
the shim runs, ``python -I -m tagwarden.hook pre-receive``, with 1 and with N refs on
its input, and prints ``(count(N) - count(1)) / (N - 1)``. Needs valgrind.
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from per_ref import prepare  # noqa: E402


def hook(repo: str, stdin: bytes, prefix: list[str] = ()) -> subprocess.CompletedProcess:
    shutil.rmtree(os.path.join(repo, "tagwarden"), ignore_errors=True)  # audit, state
    out = subprocess.run([*prefix, sys.executable, "-I", "-m", "tagwarden.hook", "--hooks-dir",
                          os.path.join(repo, "hooks"), "pre-receive"], input=stdin,
                         env=dict(os.environ, GIT_DIR=repo), cwd=repo, capture_output=True)
    if out.returncode != 0:
        raise SystemExit(f"the hook refused the benchmark push:\n{out.stderr.decode()}")
    return out


def instructions(repo: str, stdin: bytes, tmp: str) -> int:
    profile = os.path.join(tmp, "callgrind.out")
    hook(repo, stdin, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={profile}"])
    with open(profile) as f:
        found = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M)
    return int(found.group(1))


def faults(repo: str, stdin: bytes, runs: int) -> float:
    counts = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
        hook(repo, stdin)
        counts.append(resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - before)
    return statistics.median(counts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--refs", type=int, default=1000)
    p.add_argument("--fault-runs", type=int, default=5)
    a = p.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="tagwarden-instructions-") as tmp:
        repo, inputs = prepare(tmp, a.refs)
        hook(repo, inputs[1])  # compiles what changed, so neither count pays for it
        count = {n: instructions(repo, stdin, tmp) for n, stdin in inputs.items()}
        fault = {n: faults(repo, stdin, a.fault_runs) for n, stdin in inputs.items()}
    per = a.refs - 1
    print(f"pre-receive process, {a.refs} vs 1 refs:")
    print(f"  instructions  {count[1]:>13,} + {(count[a.refs] - count[1]) / per:>9,.0f} per extra ref")
    print(f"  minor faults  {fault[1]:>13,.0f} + {(fault[a.refs] - fault[1]) / per:>9.2f} per extra ref"
          f"  (median of {a.fault_runs} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
