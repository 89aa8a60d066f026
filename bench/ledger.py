#!/usr/bin/env python3
"""What a long deployment ledger costs a push: a 1-ref deploy into a repository whose
ledger holds 100,000 entries, against the same repository with a fresh ledger.

Both servers hold the same refs and have tagwarden installed in pre-receive mode; only
refs/tagwarden/ledger differs. Each run moves the staging slot of one component with a
new tag object (alternately to v1.1.0 and back to v1.0.0: a deploy and a rollback, both
read the ledger) and times the `git push` over file://. post-receive, which appends to
the ledger in the background, is waited for between runs and timed on its own. Target:
the 100,000-entry push costs < 10% more. See bench/README.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import isolated_env  # noqa: E402  (bench/run.py: the same isolated git)

from tagwarden import ledger
from tagwarden.install import install
from tagwarden.recorder import writer

C = "components/prompts/bench"
TARGET = 0.10


def git(*args, cwd, env, input=None) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, env=env, input=input, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
    return out.stdout


def fake_entries(count: int, slot_heavy: int) -> list[list[dict]]:
    """Batches of synthetic entries: 1,000 other components (versions, staging and
    production moves), plus ``slot_heavy`` earlier moves of the benchmarked slot, so its
    own fan-out trees are full too."""
    batches, batch = [], []
    now = 1_700_000_000.0
    push = {"push_id": "0" * 16, "pusher": "bench", "pusher_source": "uid"}

    def add(ref, kind, component, slot, version, n):
        new = f"{n:040x}"
        facts = {"kind": kind, "component": component, "slot": slot, "version": version,
                 "new_commit": f"{n + 1:040x}", "old_commit": None, "change": "deploy",
                 "verdict": "accepted"}
        batch.append(ledger.entry(now + n, push, ref, f"{n - 1:040x}", new, facts))
        if len(batch) == 1000:
            batches.append(list(batch))
            batch.clear()

    for n in range(slot_heavy):
        add(f"refs/tags/{C}/staging", "environment", C, "staging", f"v0.{n}.0", 10 * n + 3)
    n = slot_heavy
    while n < count:
        comp = f"components/prompts/other{n % 1000}"
        i = n // 1000
        if i % 10 == 0:
            add(f"refs/tags/{comp}/v1.{i}.0", "version", comp, f"v1.{i}.0", f"v1.{i}.0",
                10 * n + 5)
        else:
            slot = "staging" if i % 2 else "production"
            add(f"refs/tags/{comp}/{slot}", "environment", comp, slot, f"v1.{i}.0", 10 * n + 7)
        n += 1
    if batch:
        batches.append(batch)
    return batches


class Setup:
    def __init__(self, tmp: str):
        self.tmp = tmp
        self.env = isolated_env(tmp)

    def server(self, name: str) -> str:
        path = os.path.join(self.tmp, name)
        git("init", "-q", "--bare", path, cwd=self.tmp, env=self.env)
        install(path, "pre-receive", python=sys.executable)
        return path

    def clone(self, server: str, name: str) -> str:
        path = os.path.join(self.tmp, name)
        git("clone", "-q", server, path, cwd=self.tmp, env=self.env)
        return path


def ledger_head(server: str, env) -> str:
    out = subprocess.run(["git", "rev-parse", "-q", "--verify", "refs/tagwarden/ledger"],
                         cwd=server, env=env, capture_output=True, text=True)
    return out.stdout.strip()


def timed_deploy(setup: Setup, clone: str, server: str, version: str, run: int) -> tuple[float, float]:
    env = setup.env
    git("tag", "-f", "-a", "-m", f"Set bench to staging ({run})", f"{C}/staging",
        f"{C}/{version}", cwd=clone, env=env)
    before = ledger_head(server, env)
    start = time.perf_counter()
    out = subprocess.run(["git", "push", "-q", "--force", "origin", f"{C}/staging"], cwd=clone,
                         env=env, capture_output=True, text=True)
    pushed = time.perf_counter()
    if out.returncode != 0:
        raise SystemExit(f"push refused:\n{out.stderr}")
    while ledger_head(server, env) == before:  # post-receive, in the background
        if time.perf_counter() - pushed > 60:
            raise SystemExit("post-receive did not write the ledger within 60 s")
        time.sleep(0.002)
    return pushed - start, time.perf_counter() - pushed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--slot-entries", type=int, default=5_000,
                        help="of which earlier moves of the benchmarked slot")
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tagwarden-ledger-bench-") as tmp:
        setup = Setup(tmp)
        fresh = setup.server("fresh.git")
        work = setup.clone(fresh, "work")
        env = setup.env
        for v in ("v1.0.0", "v1.1.0"):
            (open(os.path.join(work, f"{v}.txt"), "w")).write(v)
            git("add", ".", cwd=work, env=env)
            git("commit", "-q", "-m", v, cwd=work, env=env)
            git("tag", "-a", "-m", f"Release bench {v}", f"{C}/{v}", cwd=work, env=env)
        git("push", "-q", "origin", "HEAD:refs/heads/main", "--tags", cwd=work, env=env)
        git("tag", "-a", "-m", "Set bench to staging", f"{C}/staging", f"{C}/v1.0.0",
            cwd=work, env=env)
        git("push", "-q", "origin", f"{C}/staging", cwd=work, env=env)
        time.sleep(1)

        long = os.path.join(tmp, "long.git")
        shutil.copytree(fresh, long, symlinks=True)
        started = time.perf_counter()
        out = writer(long)
        batches = fake_entries(args.entries, args.slot_entries)
        for batch in batches:
            out.append(batch)
        # the benchmarked slot's real current value comes last, as it would
        real = ledger.entry(time.time(), {"push_id": "1" * 16, "pusher": "bench"},
                            f"refs/tags/{C}/staging", "0" * 40,
                            git("rev-parse", f"refs/tags/{C}/staging", cwd=long, env=env).strip(),
                            {"kind": "environment", "component": C, "slot": "staging",
                             "version": "v1.0.0", "change": "deploy", "verdict": "accepted",
                             "new_commit": git("rev-parse", f"refs/tags/{C}/v1.0.0^{{commit}}",
                                               cwd=long, env=env).strip()})
        out.append([real])
        total = sum(len(b) for b in batches) + 1
        for server in (fresh, long):  # as a repository that git gc keeps tidy
            git("gc", "-q", cwd=server, env=env)
        print(f"built a ledger of {total:,} entries in {time.perf_counter() - started:.0f} s")
        git("remote", "add", "long", long, cwd=work, env=env)

        times = {"fresh": [], "long": []}
        records = {"fresh": [], "long": []}
        for run in range(args.runs):
            for name, server in (("fresh", fresh), ("long", long)):
                git("remote", "set-url", "origin", server, cwd=work, env=env)
                version = "v1.1.0" if run % 2 == 0 else "v1.0.0"
                pushed, recorded = timed_deploy(setup, work, server, version, run)
                times[name].append(pushed)
                records[name].append(recorded)
        med = {k: statistics.median(v) for k, v in times.items()}
        rec = {k: statistics.median(v) for k, v in records.items()}
        ratio = med["long"] / med["fresh"] - 1
        print(f"1-ref deploy, medians of {args.runs} runs each (alternating servers):")
        print(f"  fresh ledger          push {med['fresh']:.4f} s   post-receive after it "
              f"{rec['fresh']:.4f} s")
        print(f"  {total:,}-entry ledger push {med['long']:.4f} s   post-receive after it "
              f"{rec['long']:.4f} s")
        print(f"  push cost change: {ratio:+.1%}  (target < +{TARGET:.0%}: "
              f"{'PASS' if ratio < TARGET else 'FAIL'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
