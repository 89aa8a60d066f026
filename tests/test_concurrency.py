"""Concurrent pushes: promotions of one component are serialised from the decision until
the refs are written; audit lines of simultaneous pushes stay whole; locks of dead
pushes are broken and a live holder makes a push wait, then time out."""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import pytest

from conftest import C, Clone, make_server

LOCK = "tagwarden/locks/components%prompts%extraction.lock"

# A test-only observer: when production's new value is committed, note what staging holds.
OBSERVER = """#!/bin/sh
[ "$1" = committed ] || exit 0
if grep -q '/production$'; then
  echo "staging=$(git rev-parse 'refs/tags/components/prompts/extraction/staging^{commit}')" \
    >> "$(pwd)/landed.log"
fi
exit 0
"""

SLOW_HOOK = """#!/bin/sh
# the repository's own hook (kept by tagwarden): slow whenever production is pushed
if [ "$#" -eq 3 ]; then refs="$1"; else refs=$(cat); fi
case "$refs" in *production*) touch "$(pwd)/slow.started"; sleep 3;; esac
exit 0
"""


def _popen_push(clone: Clone, *args) -> subprocess.Popen:
    return subprocess.Popen(["git", "push", "--porcelain", "origin", *args], cwd=clone.path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(path, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_promotion_and_upstream_move_are_serialised(tmp_path, mode):
    """Push B promotes production to what staging holds (v1.0.0) and is slow after its
    decision; push A moves staging to v1.1.0 meanwhile. Without serialisation A lands
    first and production lands on a commit staging no longer holds."""
    server, clone = make_server(tmp_path, mode)
    hook = server.path / "hooks" / f"{mode}.tagwarden-chained"
    hook.write_text(SLOW_HOOK)
    hook.chmod(0o755)
    observer = server.path / "hooks" / "reference-transaction"
    observer.write_text(OBSERVER)
    observer.chmod(0o755)
    clone.release("v1.0.0")
    clone.commit()
    clone.release("v1.1.0")
    assert clone.push(f"{C}/v1.0.0", f"{C}/v1.1.0").ok
    assert clone.deploy("staging", "v1.0.0").ok
    other = Clone(server, tmp_path / "other")  # a second developer

    promote = _popen_push(clone, "--force", clone.set_env("production", "v1.0.0"))
    _wait_for(server.path / "slow.started")  # B has decided and is still running
    other.set_env("staging", "v1.1.0")
    started = time.monotonic()
    move = _popen_push(other, "--force", f"{C}/staging")
    out_move, _ = move.communicate(timeout=60)
    out_promote, _ = promote.communicate(timeout=60)
    assert promote.returncode == 0, out_promote
    assert move.returncode == 0, out_move
    assert time.monotonic() - started > 1.0  # A waited for B

    assert server.commit_of(f"{C}/production") == server.commit_of(f"{C}/v1.0.0")
    assert server.commit_of(f"{C}/staging") == server.commit_of(f"{C}/v1.1.0")
    # the moment production landed, staging still held what production took
    assert (server.path / "landed.log").read_text().split() == [
        f"staging={server.commit_of(f'{C}/v1.0.0')}"]
    decided_staging = [r for r in server.audit("decision") if r["ref"].endswith("/staging")][-1]
    assert decided_staging["lock_wait_ms"] > 1000
    assert not (server.path / LOCK).exists()  # released once the refs were recorded


def test_8_simultaneous_pushes_leave_8_whole_decision_lines(tmp_path, mode):
    server, clone = make_server(tmp_path, mode)
    clones = []
    for i in range(8):
        cl = Clone(server, tmp_path / f"dev{i}")
        cl.commit()
        cl.release("v1.0.0", component=f"components/prompts/c{i}")
        clones.append(cl)
    barrier = threading.Barrier(8)
    results = [None] * 8

    def push(i):
        barrier.wait()
        results[i] = clones[i].push(f"components/prompts/c{i}/v1.0.0")

    threads = [threading.Thread(target=push, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(r is not None and r.ok for r in results), [r.out for r in results if r]
    server.settle()
    lines = server.audit_path.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one whole JSON object
    decided = sorted(r["ref"] for r in records if r["event"] == "decision")
    assert decided == sorted(f"refs/tags/components/prompts/c{i}/v1.0.0" for i in range(8))
    assert sum(r["event"] == "applied" for r in records) == 8
    assert len({r["push_id"] for r in records if r["event"] == "decision"}) == 8


def test_concurrent_deploys_of_one_component_all_complete_in_turn(tmp_path, mode):
    server, clone = make_server(tmp_path, mode)
    clone.release("v1.0.0")
    assert clone.push(f"{C}/v1.0.0").ok
    slots = ["dev", "canary", "blue", "green"]
    clones = [Clone(server, tmp_path / f"dev-{slot}") for slot in slots]
    procs = [_popen_push(cl, "--force", cl.set_env(slot, "v1.0.0"))
             for cl, slot in zip(clones, slots)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    for slot in slots:
        assert server.commit_of(f"{C}/{slot}") == server.commit_of(f"{C}/v1.0.0")
    server.settle()  # post-receive releases in the background
    assert not (server.path / LOCK).exists()


def test_a_dead_pushs_lock_is_broken(tmp_path, mode):
    server, clone = make_server(tmp_path, mode)
    clone.release("v1.0.0")
    assert clone.push(f"{C}/v1.0.0").ok
    lock = server.path / LOCK
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("999999999-1")  # a receive-pack that no longer exists
    started = time.monotonic()
    assert clone.deploy("staging", "v1.0.0").ok
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("mode", ["pre-receive"])
def test_a_live_holder_makes_the_push_time_out(tmp_path, mode):
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nconcurrency:\n  lock_timeout_seconds: 1\n")
    server, clone = make_server(tmp_path, mode, str(policy))
    clone.release("v1.0.0")
    assert clone.push(f"{C}/v1.0.0").ok
    with open(f"/proc/{os.getpid()}/stat") as f:
        start = f.read().rsplit(")", 1)[1].split()[19]
    lock = server.path / LOCK
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(f"{os.getpid()}-{start}")  # held by a live process: this test
    before = server.refs()
    push = clone.deploy("staging", "v1.0.0")
    assert not push.ok and server.refs() == before
    assert "another push is deploying the same component" in push.out
    assert server.audit("decision")[-1]["rule"] == "lock-timeout"
    assert lock.read_text() == f"{os.getpid()}-{start}"  # not ours to remove


def test_a_lease_owner_holds_until_it_runs_out():
    """Where no git-receive-pack can be watched (hooks run by a host service), locks
    belong to a lease: alive until post-receive releases it or its time is up."""
    from tagwarden.session import alive, lease_owner

    assert alive(lease_owner(30))
    assert not alive(lease_owner(-1))
