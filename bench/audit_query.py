#!/usr/bin/env python3
"""Query time of `tagwarden audit` on a 1,000,000-line audit log.

Generates the log once (cached: a second run reuses it), rendered and chained by
tagwarden's own audit writer: pushes by several pushers to hundreds of components, each
push's decision lines followed by its applied lines, some rejected, a few not_applied
and incident records, timestamps a few seconds apart. Then times whole commands
(`python -m tagwarden.cli audit --log FILE ...`, one process each, output to a pipe),
medians of --runs runs, after one untimed warm-up of each. See bench/README.md.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

from tagwarden.audit import GENESIS, Head, render

TARGET = 2.0  # seconds, for a filtered query over the whole log
FORMAT = 1    # bump when the generated records change: the cache is rebuilt
TYPES = ("prompts", "agents", "queries", "configs")
PUSHERS = ("alice", "bob", "carol", "dave", "erin", "ci-deploy", "mallory")
ENVS = ("dev", "staging", "production")
START = datetime(2026, 1, 5, 8, 0, tzinfo=timezone.utc)
RULES = ("promotion-order", "env-unreleased", "version-immutable", "slot-unknown",
         "env-protected", "version-invalid")


def component(i: int) -> str:
    return f"components/{TYPES[i % len(TYPES)]}/c{i:03d}"


def oid(rng: random.Random) -> str:
    return "%040x" % rng.getrandbits(160)


def records(n: int, ncomponents: int, seed: int = 7):
    """Yield n records, push by push, in the shape the hooks write them."""
    rng = random.Random(seed)
    versions = [[1, 0, 0] for _ in range(ncomponents)]
    when, made = START, 0
    while made < n:
        when += timedelta(seconds=rng.uniform(0.5, 9.0))
        push_id = "%016x" % rng.getrandbits(64)
        pusher = rng.choice(PUSHERS)
        base = {"push_id": push_id, "repo": "/srv/git/app.git", "pusher": pusher,
                "pusher_source": "GL_USER", "remote_addr": f"203.0.113.{rng.randrange(1, 250)}",
                "protocol": "ssh", "push_options": rng.choice(([], [], ["ticket=OPS-42"])),
                "policy_sha256": "d0563d2e38d0412cd4868b36f81b1e2f43da2a4963e77092b776d60ab5ce0cc2",
                "tagwarden_version": "0.1.0"}
        if rng.random() < 0.0005:  # an incident, traceback and all
            yield {"event": "incident", "incident": "%012x" % rng.getrandbits(48),
                   "hook": "pre-receive", "push_id": push_id, "repo": base["repo"],
                   "decision": "rejected", "rule": "internal-error",
                   "ts": _ts(when), "exception": [{
                       "exc_type": "OSError", "exc_value": "disk on fire " * 20,
                       "exc_notes": [], "exceptions": [], "is_cause": False,
                       "is_group": False, "syntax_error": None,
                       "frames": [{"filename": f"/usr/lib/python3/tagwarden/m{k}.py",
                                   "lineno": k * 7, "name": f"f{k}"} for k in range(40)]}]}
            made += 1
            continue
        decided = []
        for _ in range(1 if rng.random() < 0.8 else rng.randint(2, 4)):
            c = rng.randrange(ncomponents)
            name = component(c)
            v = versions[c]
            if rng.random() < 0.4:  # a new version
                v[rng.choice((1, 2, 2, 2))] += 1
                version, slot, kind = "v%d.%d.%d" % tuple(v), None, "version"
                slot, action, change = version, "create", "create"
            else:
                version, kind = "v%d.%d.%d" % tuple(v), "environment"
                slot = rng.choice(ENVS)
                action = rng.choice(("move", "move", "move", "create"))
                change = rng.choice(("deploy", "promote", "promote", "rollback",
                                     "redeploy", "out-of-order"))
            roll = rng.random()
            decision = "rejected" if roll < 0.12 or change == "out-of-order" and roll < 0.8 \
                else "warned" if roll < 0.15 else "accepted"
            rule = rng.choice(RULES) if decision != "accepted" else None
            rec = dict(base, event="decision", hook="pre-receive",
                       ref=f"refs/tags/{name}/{slot}", old="0" * 40 if action == "create"
                       else oid(rng), new=oid(rng), old_commit=None if action == "create"
                       else oid(rng), new_commit=oid(rng), action=action, kind=kind,
                       component=name, slot=slot, version=version, decision=decision,
                       rule=rule, change=change, lock_wait_ms=rng.choice((0, 0, 0, 3)),
                       warnings=[rule] if decision == "warned" else [],
                       reason=f"{slot} takes only what the stage before held ({version})"
                       if decision == "rejected" else None, ts=_ts(when))
            decided.append(rec)
        for rec in decided:
            yield rec
        made += len(decided)
        applied_at = when + timedelta(seconds=rng.uniform(0.2, 0.6))
        for rec in decided:
            if rec["decision"] == "rejected" or made >= n:
                continue
            event = "not_applied" if rng.random() < 0.01 else "applied"
            out = {k: v for k, v in rec.items() if k not in ("lock_wait_ms", "warnings")}
            out.update(event=event, hook="post-receive", ts=_ts(applied_at),
                       reason=None if event == "applied" else
                       "approved, but git did not write it (another push won the ref, "
                       "or an atomic push failed)")
            yield out
            made += 1


def _ts(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def generate(path: str, n: int, ncomponents: int) -> None:
    """Render n records with tagwarden's writer, chained, into path (atomically)."""
    head, batch, written = Head(0, GENESIS), [], 0
    tmp = path + ".part"
    with open(tmp, "w", encoding="ascii") as f:
        for rec in records(n, ncomponents):
            batch.append(rec)
            if len(batch) == 10_000:
                head = _write(f, batch, head)
                written += len(batch)
                batch = []
                if written % 100_000 == 0:
                    print(f"  {written:,} lines", file=sys.stderr, flush=True)
        if batch:
            head = _write(f, batch, head)
    os.replace(tmp, path)


def _write(f, batch: list[dict], head: Head) -> Head:
    lines = render(batch, head)
    f.write("\n".join(lines) + "\n")
    return Head(head.seq + len(lines), hashlib.sha256(lines[-1].encode()).hexdigest())


def run(log: str, argv: list[str]) -> tuple[float, int, int]:
    """One whole command: (seconds, exit status, output lines)."""
    cmd = [sys.executable, "-m", "tagwarden.cli", "audit", "--log", log, *argv]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True)
    seconds = time.perf_counter() - start
    if out.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n"
                         f"{out.stderr.decode(errors='replace')}")
    rows = out.stdout.count(b"\n")
    if rows and "--json" not in argv and argv[:1] != ["verify"]:
        rows -= 1  # the table's header
    return seconds, out.returncode, rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", help="where the generated log is kept (default: a directory "
                                 "under the system's temporary directory, reused)")
    p.add_argument("--lines", type=int, default=1_000_000)
    p.add_argument("--components", type=int, default=400)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--verify", action="store_true",
                   help="also time one `tagwarden audit verify` (no target)")
    a = p.parse_args(argv)
    where = a.dir or os.path.join(tempfile.gettempdir(), "tagwarden-bench-audit")
    os.makedirs(where, exist_ok=True)
    log = os.path.join(where, f"audit-{a.lines}-{a.components}-v{FORMAT}.jsonl")
    if not os.path.exists(log):
        print(f"generating {a.lines:,} lines into {log} (once)...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        generate(log, a.lines, a.components)
        print(f"  done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    size = os.path.getsize(log)
    x = component(a.components // 3)
    cases = [
        ("component + slot", ["--component", x, "--slot", "production"]),
        ("who moved production of X", ["--component", x, "--slot", "production",
                                       "--event", "applied"]),
        ("pusher + decision + since", ["--pusher", "mallory", "--decision", "rejected",
                                       "--since", "2026-01-20"]),
        ("component glob + json", ["--component", "components/agents/c1*", "--change",
                                   "rollback", "--json"]),
        ("one hour", ["--since", "2026-01-20T10:00", "--until", "2026-01-20T11:00"]),
        ("since alone", ["--since", "2026-01-26"]),
        ("last 20 lines", ["--limit", "20"]),
    ]
    print(f"tagwarden audit query benchmark: {a.lines:,} lines, {size / 1e6:.0f} MB, "
          f"{a.components} components; Python {sys.version.split()[0]}, {os.cpu_count()} "
          f"CPUs, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"medians of {a.runs} runs of the whole command (process start included), after "
          f"one warm-up each; X = {x}\n")
    print(f"{'query':<28} {'median':>9} {'min':>9} {'max':>9} {'rows':>7}  arguments")
    medians = {}
    for label, args in cases:
        run(log, args)  # warm-up: page cache, .pyc
        times, rows = [], 0
        for _ in range(a.runs):
            seconds, _, rows = run(log, args)
            times.append(seconds)
        medians[label] = statistics.median(times)
        print(f"{label:<28} {medians[label]:>7.3f} s {min(times):>7.3f} s {max(times):>7.3f} s "
              f"{rows:>7,}  {' '.join(args)}")
    if a.verify:
        seconds, code, _ = run(log, ["verify"])
        print(f"{'verify (1 run)':<28} {seconds:>7.3f} s {'':>9} {'':>9} {'':>7}  exit {code}")
    worst = max(medians["component + slot"], medians["pusher + decision + since"])
    print(f"\n  {'PASS' if worst <= TARGET else 'FAIL'}  filtered query over {a.lines:,} "
          f"lines: slowest of the two target queries {worst:.3f} s (target <= {TARGET:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
