#!/usr/bin/env python3
"""What one more ref costs inside the pre-receive process, beside the least any Python
hook must do per ref on the same machine.

Both run in this process over the same bare repository (N annotated version tags whose
objects are there, refs not yet written, as in git's receive quarantine), without the
cyclic garbage collector, as the hook runs:

- floor: split git's input line, read the tag object and the header of its target
  (pygit2), render one audit-sized JSON line from a format and chain-hash it (sha256);
- tagwarden: ``HookRun("pre-receive")`` judging the same input with the shipped default
  policy, auditing every ref and recording the push's state, exactly as the hook does
  once Python has started.

Printed: µs per extra ref for each, ``(t(N) - t(1)) / (N - 1)``, medians of interleaved
runs, and their ratio. The whole-push figures are bench/run.py's; this one says how much
of tagwarden's per-ref time is its own rules and records and how much no Python hook
avoids. See bench/README.md.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import isolated_env, releases  # noqa: E402

import pygit2  # noqa: E402
from pygit2.enums import Option  # noqa: E402

from tagwarden.hook import HookRun  # noqa: E402
from tagwarden.install import install  # noqa: E402

_LINE = ('{"action": "create", "change": %s, "component": %s, "decision": "accepted", '
         '"event": "decision", "new": %s, "new_commit": %s, "old": %s, "prev_sha256": "%s", '
         '"ref": %s, "seq": %d, "slot": %s, "version": %s, ' + '"x": "' + "y" * 500 + '"}')


def prepare(tmp: str, n: int) -> tuple[str, dict[int, bytes]]:
    env = isolated_env(tmp)
    repo = os.path.join(tmp, "server.git")
    subprocess.run(["git", "init", "-q", "--bare", repo], env=env, check=True)
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, env=env, check=True,
                   input=releases(n), text=True)
    tags = subprocess.run(["git", "for-each-ref", "--format=%(objectname) %(refname)",
                           "refs/tags"], cwd=repo, env=env, check=True, capture_output=True,
                          text=True).stdout.splitlines()
    subprocess.run(["git", "update-ref", "--stdin"], cwd=repo, env=env, check=True, text=True,
                   input="".join(f"delete {line.split()[1]}\n" for line in tags))
    install(repo, "pre-receive", python=sys.executable)
    lines = [f"{'0' * 40} {line}\n" for line in tags]
    return repo, {1: lines[0].encode(), n: "".join(lines).encode()}


def floor(repo: str, stdin: bytes) -> float:
    start = time.perf_counter()
    odb = pygit2.Repository(repo).odb
    prev, encode = "0" * 64, json.encoder.encode_basestring_ascii
    for seq, line in enumerate(stdin.decode()[:-1].split("\n"), 1):
        old, new, ref = line.split(" ")
        odb.read_header(new)
        head = odb.read(new)[1].split(b"\n", 3)
        target, name = head[0][7:].decode(), head[2][4:].decode()
        odb.read_header(target)
        component, _, slot = name.rpartition("/")
        text = _LINE % (encode("create"), encode(component), encode(new), encode(target),
                        encode(old), prev, encode(ref), seq, encode(slot), encode(slot))
        prev = hashlib.sha256(text.encode()).hexdigest()
    return time.perf_counter() - start


def tagwarden(repo: str, stdin: bytes) -> float:
    shutil.rmtree(os.path.join(repo, "tagwarden"), ignore_errors=True)  # audit, state
    run = HookRun("pre-receive", [], stdin, os.path.join(repo, "hooks"))
    err = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stderr(err):
        code = run.execute()
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"tagwarden refused the benchmark push:\n{err.getvalue()}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--refs", type=int, default=1000)
    p.add_argument("--runs", type=int, default=15)
    a = p.parse_args(argv)
    gc.disable()  # as in the hook (tagwarden/hook.py)
    pygit2.option(Option.ENABLE_STRICT_HASH_VERIFICATION, 0)  # as gitview does
    with tempfile.TemporaryDirectory(prefix="tagwarden-per-ref-") as tmp:
        repo, inputs = prepare(tmp, a.refs)
        os.environ["GIT_DIR"] = repo
        times: dict[tuple[str, int], list[float]] = {}
        for r in range(a.runs + 1):  # the first round warms caches and is dropped
            for name, fn in (("floor", floor), ("tagwarden", tagwarden)):
                for n, stdin in inputs.items():
                    seconds = fn(repo, stdin)
                    if r:
                        times.setdefault((name, n), []).append(seconds)
    per_ref = {name: (statistics.median(times[(name, a.refs)])
                      - statistics.median(times[(name, 1)])) / (a.refs - 1)
               for name in ("floor", "tagwarden")}
    print(f"per extra ref, in-process, {a.refs} vs 1 refs, medians of {a.runs} runs, "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}:")
    print(f"  floor      {per_ref['floor'] * 1e6:6.1f} µs  (read the tag and its target's "
          "type, one chained JSON line)")
    print(f"  tagwarden  {per_ref['tagwarden'] * 1e6:6.1f} µs  "
          f"= {per_ref['tagwarden'] / per_ref['floor']:.2f}x the floor")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
