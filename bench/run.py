#!/usr/bin/env python3
"""Push-time cost of tagwarden, measured with the real git client over file://.

For each ref count, every measurement copies a freshly prepared bare server (objects
already there from a branch push, so only refs/tags move), installs one kind of hook,
and times only the `git push` of N new annotated version tags. See bench/README.md.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from tagwarden.install import install

HOOKS = {
    "none": "hook-less",
    "shell": "shell pre-receive (cat >/dev/null)",
    "floor": "import floor (python -I: pygit2, structlog, yaml)",
    "pre-receive": "tagwarden, pre-receive mode",
    "update": "tagwarden, update mode",
    "pre-only": "diagnostic: tagwarden pre-receive hook alone",
}
FLOOR = "import sys; sys.stdin.buffer.read(); import pygit2, structlog, yaml"
IDENT = "Dev Eloper <dev@example.com> 1700000000 +0000"
TARGET_FLOOR, TARGET_PER_REF, TARGET_EXISTING = 1.15, 40e-6, 0.10


class BenchError(Exception):
    pass


def tag_name(i: int) -> str:
    return f"components/prompts/c{i}/v1.0.0"


def data(text: str) -> str:
    return f"data {len(text.encode())}\n{text}\n"


class Bench:
    def __init__(self, tmp: str, ncommits: int):
        self.tmp = tmp
        home = os.path.join(tmp, "home")
        os.makedirs(home)
        with open(os.path.join(home, ".gitconfig"), "w") as f:
            f.write("[user]\n\tname = Dev Eloper\n\temail = dev@example.com\n"
                    "[init]\n\tdefaultBranch = main\n[advice]\n\tnestedTag = false\n")
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("GIT_") and k != "XDG_CONFIG_HOME"}
        self.env.update(HOME=home, GIT_CONFIG_NOSYSTEM="1")
        self.client = os.path.join(tmp, "client.git")
        self.template = os.path.join(tmp, "template.git")
        self.copies = 0
        # client: a linear history of ncommits, tag c{i} on commit i (as edgit makes them)
        self.git("init", "-q", "--bare", self.client)
        stream = []
        for i in range(ncommits):
            stream.append(f"commit refs/heads/main\nmark :{i + 1}\ncommitter {IDENT}\n"
                          + data(f"change {i}") + (f"from :{i}\n" if i else "")
                          + f"M 100644 inline prompts/c{i}.txt\n" + data(f"prompt {i}"))
        for i in range(ncommits):
            stream.append(f"tag {tag_name(i)}\nfrom :{i + 1}\ntagger {IDENT}\n"
                          + data(f"Release c{i} v1.0.0"))
        self.git("fast-import", "--quiet", cwd=self.client, input="".join(stream))
        self.git("pack-refs", "--all", cwd=self.client)
        self.commits = self.git("rev-list", "main", cwd=self.client).split()
        # template server: every commit arrives by an ordinary branch push, no tags
        self.git("init", "-q", "--bare", self.template)
        self.git("push", "-q", f"file://{self.template}", "refs/heads/main",
                 cwd=self.client)

    def git(self, *args: str, cwd: str | None = None, input: str | None = None) -> str:
        out = subprocess.run(["git", *args], cwd=cwd or self.tmp, env=self.env, input=input,
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise BenchError(f"git {' '.join(args[:3])} failed:\n{out.stdout}{out.stderr}")
        return out.stdout

    def with_existing(self, count: int) -> str:
        """A copy of the template holding `count` more annotated version tags (10 per
        component, other components than the pushed ones), all in packed-refs."""
        path = os.path.join(self.tmp, "existing.git")
        shutil.copytree(self.template, path, symlinks=True)
        stream = "".join(f"tag components/prompts/old{i // 10}/v0.{i % 10}.0\n"
                         f"from {self.commits[i % len(self.commits)]}\ntagger {IDENT}\n"
                         + data(f"Release old{i // 10} v0.{i % 10}.0") for i in range(count))
        self.git("fast-import", "--quiet", cwd=path, input=stream)
        self.git("pack-refs", "--all", cwd=path)
        return path

    def server(self, template: str, hook: str) -> str:
        self.copies += 1
        path = os.path.join(self.tmp, f"srv{self.copies}.git")
        shutil.copytree(template, path, symlinks=True)
        script = {"shell": "cat >/dev/null",
                  "floor": f"exec {shlex.quote(sys.executable)} -I -c {shlex.quote(FLOOR)}"}
        if hook in script:
            hook_path = os.path.join(path, "hooks", "pre-receive")
            with open(hook_path, "w") as f:
                f.write(f"#!/bin/sh\n{script[hook]}\n")
            os.chmod(hook_path, 0o755)
        elif hook != "none":
            install(path, "pre-receive" if hook == "pre-only" else hook, python=sys.executable)
            if hook == "pre-only":  # the install without its post-receive
                os.unlink(os.path.join(path, "hooks", "post-receive"))
        return path

    def push(self, template: str, hook: str, n: int) -> float:
        """Seconds taken by one `git push` of n new tags into a fresh server."""
        srv = self.server(template, hook)
        cmd = ["git", "push", "--porcelain", f"file://{srv}",
               *(f"refs/tags/{tag_name(i)}" for i in range(n))]
        start = time.perf_counter()
        out = subprocess.run(cmd, cwd=self.client, env=self.env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        created = sum(line.startswith("*\t") for line in out.stdout.splitlines())
        if out.returncode != 0 or created != n:
            raise BenchError(f"push of {n} tag(s) with hook {hook!r} failed (exit "
                             f"{out.returncode}, {created} created):\n{out.stdout}{out.stderr}")
        shutil.rmtree(srv)
        return seconds


def measure(bench: Bench, template: str, plan: dict[tuple[str, int], int]) -> dict:
    """Interleave the cases round by round, so drift hits every case alike."""
    times: dict[tuple[str, int], list[float]] = {case: [] for case in plan}
    for hook in dict.fromkeys(h for h, _ in plan):  # warm-up: caches, .pyc files
        bench.push(template, hook, min(n for h, n in plan if h == hook))
    for r in range(max(plan.values())):
        print(f"  round {r + 1}/{max(plan.values())}", file=sys.stderr, flush=True)
        for (hook, n), runs in plan.items():
            if r < runs:
                times[(hook, n)].append(bench.push(template, hook, n))
    return {case: statistics.median(ts) for case, ts in times.items()}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 and 10 refs, 1 run each, 1,000 existing tags")
    p.add_argument("--sizes", default="1,100,1000", help="ref counts pushed (default 1,100,1000)")
    p.add_argument("--runs", type=int, help="runs per case (default 7, 5 for 1,000+ refs)")
    p.add_argument("--existing", type=int, default=100_000,
                   help="tags already in the server for the existing-tags case (0 skips it)")
    p.add_argument("--existing-runs", type=int, default=3)
    p.add_argument("--update-max", type=int, default=100,
                   help="largest ref count measured in update mode; larger ones are "
                        "estimated (default 100; 0 skips update mode)")
    p.add_argument("--update-large-runs", type=int, default=1,
                   help="runs in update mode above 100 refs (each ref starts Python)")
    a = p.parse_args(argv)
    sizes = sorted({int(s) for s in a.sizes.split(",")})
    if a.quick:
        sizes, a.runs, a.existing, a.existing_runs = [1, 10], 1, 1000, 1
        a.update_max = min(a.update_max, 10)

    def runs(n: int) -> int:
        return a.runs or (7 if n < 1000 else 5)

    plan = {(h, n): runs(n) for n in sizes for h in HOOKS if h != "update"}
    plan.update({("update", n): runs(n) if n <= 100 else min(runs(n), a.update_large_runs)
                 for n in sizes if n <= a.update_max})
    started = time.perf_counter()
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout
    print(f"tagwarden push benchmark: {git_version.strip()}, Python {sys.version.split()[0]} "
          f"({sys.executable} -I), {os.cpu_count()} CPUs, load {load()}")
    with tempfile.TemporaryDirectory(prefix="tagwarden-bench-") as tmp:
        try:
            print("preparing repositories...", file=sys.stderr, flush=True)
            bench = Bench(tmp, max(sizes))
            med = measure(bench, bench.template, plan)
            big = {}
            if a.existing:
                print(f"preparing a server with {a.existing:,} tags...", file=sys.stderr,
                      flush=True)
                existing = bench.with_existing(a.existing)
                big = measure(bench, existing, {("none", 1): a.existing_runs,
                                                ("pre-receive", 1): a.existing_runs})
        except BenchError as exc:
            print(f"\nBENCHMARK STOPPED: {exc}", file=sys.stderr)
            return 1

    # update mode above --update-max: straight line through the two largest measured sizes
    measured_update = sorted(n for h, n in med if h == "update")
    estimated = set()
    if len(measured_update) >= 2:
        lo, hi = measured_update[-2:]
        slope = (med[("update", hi)] - med[("update", lo)]) / (hi - lo)
        for n in sizes:
            if n > hi:
                med[("update", n)] = med[("update", hi)] + slope * (n - hi)
                estimated.add(n)

    print(f"\nmedian seconds of one `git push` of N new annotated version tags "
          f"(ratio = median / hook-less median at the same N)")
    print(f"{'refs':>6}  {'hook':<50} {'median':>10} {'ratio':>9}  runs")
    for n in sizes:
        for hook, label in HOOKS.items():
            if (hook, n) not in med:
                continue
            mark = "~" if n in estimated and hook == "update" else " "
            note = f"ESTIMATED from {lo} and {hi} refs" if mark == "~" else str(plan[(hook, n)])
            print(f"{n:>6,}  {label:<50} {mark}{med[(hook, n)]:>8.4f} s "
                  f"{mark}{med[(hook, n)] / med[('none', n)]:>7.2f}x  {note}")
        print()
    if big:
        for hook in ("none", "pre-receive"):
            print(f"{1:>6,}  {HOOKS[hook] + f' ({a.existing:,} tags exist)':<50} "
                  f"{big[(hook, 1)]:>9.4f} s {big[(hook, 1)] / big[('none', 1)]:>8.2f}x  "
                  f"{a.existing_runs}")
        print()

    first, last = sizes[0], sizes[-1]
    tw1, floor1 = med[("pre-receive", first)], med[("floor", first)]
    print("targets (timing never fails this program):")
    print(f"  {verdict(tw1 <= TARGET_FLOOR * floor1)}  pre-receive {first}-ref push = "
          f"{tw1 / floor1:.3f}x the import-floor push (target <= {TARGET_FLOOR:.2f}x)")
    print(f"  info  of which the post-receive hook: the pre-receive hook alone makes it "
          f"{med[('pre-only', first)] / floor1:.3f}x the import-floor push")
    if last > first:
        def per_ref(hook: str) -> float:
            return (med[(hook, last)] - med[(hook, first)]) / (last - first)
        extra = per_ref("pre-receive") - per_ref("none")
        print(f"  {verdict(extra <= TARGET_PER_REF)}  each extra ref adds {extra * 1e6:.1f} µs "
              f"over the hook-less push ({per_ref('pre-receive') * 1e6:.1f} - "
              f"{per_ref('none') * 1e6:.1f} µs/ref, {first}..{last} refs; "
              f"target <= {TARGET_PER_REF * 1e6:.0f} µs)")
    if big and first == 1:
        small_cost = tw1 - med[("none", 1)]
        big_cost = big[("pre-receive", 1)] - big[("none", 1)]
        change = big_cost / small_cost - 1
        total = big[("pre-receive", 1)] / tw1 - 1
        print(f"  {verdict(abs(change) < TARGET_EXISTING)}  {a.existing:,} existing tags change "
              f"tagwarden's 1-ref cost (push minus hook-less push) by {change:+.1%}: "
              f"{small_cost:.4f} s -> {big_cost:.4f} s (target < {TARGET_EXISTING:.0%}; "
              f"whole push incl. git's own work: {total:+.1%})")
    print(f"\nwall time {time.perf_counter() - started:.0f} s, load {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
