"""The deployment ledger (refs/tagwarden/ledger): written after refs land, read by the
hooks for exact rollback, stale clones, tombstones and soak times. Real pushes, both modes."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import C, Clone, Server, git, make_server
from tagwarden.gitview import open_ledger

LEDGER = "refs/tagwarden/ledger"
DAY = 86400


def entries(server: Server) -> list[dict]:
    server.settle()
    led = open_ledger(str(server.path))
    return led.entries() if led else []


def current(server: Server) -> dict[str, dict]:
    server.settle()
    return open_ledger(str(server.path)).current()


def released(clone, *versions, component=C):
    for v in versions:
        clone.commit()
        clone.release(v, component)
    push = clone.push(*(f"{component}/{v}" for v in versions))
    assert push.ok, push.out
    # post-receive records in the background, at low priority: without waiting, the
    # next push's batch could be recorded first
    clone.server.settle()


# ---- what it holds ------------------------------------------------------------------

def test_install_starts_a_ledger_and_every_landed_update_is_an_entry(server, clone):
    assert server.ref(LEDGER)  # started empty at install
    released(clone, "v1.0.0")
    assert clone.deploy("staging", "v1.0.0").ok
    server.settle()  # the lock ends with receive-pack, before post-receive records
    assert clone.deploy("production", "v1.0.0").ok
    got = entries(server)
    assert [(e["ref"].rsplit("/", 1)[1], e["decision"]) for e in got] == \
        [("v1.0.0", "create"), ("staging", "deploy"), ("production", "promote")]
    prod = got[-1]
    assert prod["pusher"] and prod["pusher_source"] and prod["push_id"]
    assert prod["version"] == "v1.0.0" and prod["new_commit"] == server.commit_of(f"{C}/v1.0.0")
    assert prod["new"] == server.ref(f"{C}/production")
    assert prod["ts"].endswith("Z") and prod["epoch"] > 0
    # git log of the ref reads like a journal
    log = git("log", "--format=%s", LEDGER, cwd=server.path).stdout.splitlines()
    assert log[0] == f"tagwarden ledger: 1 entry ({C}/production)"


def test_rejected_pushes_leave_no_entry(server, clone):
    released(clone, "v1.0.0", "v1.1.0")
    assert clone.deploy("staging", "v1.0.0").ok
    before = entries(server)
    assert not clone.deploy("production", "v1.1.0").ok
    assert entries(server) == before


def test_pushes_cannot_write_the_ledger(server, clone):
    released(clone, "v1.0.0")
    head = server.ref(LEDGER)
    clone.git("fetch", "-q", "origin", f"+{LEDGER}:{LEDGER}")
    clone.git("update-ref", LEDGER, clone.rev("HEAD"))
    push = clone.push("--force", f"{LEDGER}:{LEDGER}")
    assert not push.ok and server.ref(LEDGER) == head
    assert any("reserved-namespace" in line for line in push.remote)


def test_a_mirror_carries_the_ledger(server, clone, tmp_path):
    released(clone, "v1.0.0")
    server.settle()
    mirror = tmp_path / "mirror.git"
    git("clone", "-q", "--mirror", str(server.path), str(mirror), cwd=tmp_path)
    assert open_ledger(str(mirror)).entries() == entries(server)


def test_a_repository_with_tags_gets_a_seeded_ledger_at_install(tmp_path, mode):
    srv = Server(tmp_path / "old.git")
    cl = Clone(srv, tmp_path / "old-clone")
    cl.commit()
    cl.release("v1.0.0")
    cl.set_env("staging", "v1.0.0")
    cl.tag("v9.9.9")  # unmanaged: not the ledger's business
    assert cl.push("HEAD:refs/heads/main", "--tags").ok  # no hooks yet
    done = srv.install(mode)
    assert any("2 managed tags" in line for line in done), done
    seeded = current(srv)
    assert set(seeded) == {f"{C}/v1.0.0", f"{C}/staging"}
    assert seeded[f"{C}/staging"]["version"] == "v1.0.0"
    assert [e["decision"] for e in entries(srv)] == ["seed", "seed"]
    assert srv.install(mode) == []  # again: nothing to do


def test_a_big_batch_keeps_its_entries_in_the_tree_and_the_commit_small(tmp_path, mode):
    """Every push reads the newest ledger commit: a seed of many tags keeps its entries
    in batch.jsonl of the tree, and the next batch, small, in its message again."""
    from tagwarden import ledger

    srv = Server(tmp_path / "big.git")
    cl = Clone(srv, tmp_path / "big-clone")
    cl.commit()
    n = ledger.INLINE_MAX + 5
    for i in range(n):
        cl.git("tag", f"components/prompts/c{i}/v1.0.0")
    assert cl.push("HEAD:refs/heads/main", "--tags").ok  # no hooks yet
    srv.install(mode)
    message = git("log", "-1", "--format=%B", LEDGER, cwd=srv.path).stdout
    assert message.startswith(f"tagwarden ledger: {n} entries\n")
    assert len(message) < 200 and "batch.jsonl" in message
    assert git("cat-file", "-e", f"{LEDGER}:batch.jsonl", cwd=srv.path, check=False) \
        .returncode == 0
    cl.commit()
    released(cl, "v1.0.1", component="components/prompts/c0")
    assert [e["decision"] for e in entries(srv)] == ["seed"] * n + ["create"]
    assert git("cat-file", "-e", f"{LEDGER}:batch.jsonl", cwd=srv.path, check=False) \
        .returncode != 0  # a small batch is in its message, and the big one's file is gone
    assert '"decision":"create"' in git("log", "-1", "--format=%B", LEDGER, cwd=srv.path).stdout


def test_a_repository_without_a_ledger_starts_one_at_its_first_push(server, clone):
    released(clone, "v1.0.0")
    server.settle()
    git("update-ref", "-d", LEDGER, cwd=server.path)  # as if installed by an older tagwarden
    assert clone.deploy("staging", "v1.0.0").ok
    got = entries(server)
    assert [(e["ref"].rsplit("/", 1)[1], e["decision"]) for e in got] == \
        [("v1.0.0", "seed"), ("staging", "deploy")]


def test_a_move_made_on_the_server_is_recorded_as_outside(server, clone):
    released(clone, "v1.0.0", "v1.1.0")
    assert clone.deploy("staging", "v1.0.0").ok
    server.settle()
    # an admin moves staging in the bare repository: no hook runs
    git("tag", "-f", f"{C}/staging", f"{C}/v1.1.0", cwd=server.path)
    clone.git("fetch", "-q", "--tags", "--force", "origin")
    assert clone.deploy("staging", "v1.0.0", message="back").ok
    kinds = [(e["ref"].rsplit("/", 1)[1], e["decision"]) for e in entries(server)]
    assert kinds[-2:] == [("staging", "outside"), ("staging", "rollback")]


def test_sixteen_concurrent_pushes_leave_a_complete_ledger(tmp_path, mode):
    server, clone = make_server(tmp_path, mode)
    names = [f"components/prompts/c{i:02d}" for i in range(16)]
    for name in names:
        clone.release("v1.0.0", name)
    assert clone.push("--tags").ok
    clones = []
    for i, name in enumerate(names):
        cl = Clone(server, tmp_path / f"c{i:02d}")
        cl.set_env("staging", "v1.0.0", name)
        clones.append(cl)
    procs = [subprocess.Popen(["git", "push", "--force", "origin", f"{name}/staging"],
                              cwd=cl.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for cl, name in zip(clones, names)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    got = [e for e in entries(server) if e["slot"] == "staging"]
    assert sorted(e["component"] for e in got) == names
    assert set(current(server)) >= {f"{n}/staging" for n in names}


# ---- exact rollback -----------------------------------------------------------------

def test_rollback_goes_only_to_what_the_slot_held(server, clone):
    released(clone, "v0.9.0", "v1.0.0", "v1.1.0")
    for v in ("v1.0.0", "v1.1.0"):
        assert clone.deploy("staging", v).ok
        assert clone.deploy("production", v).ok
    # back to v1.0.0, which production held: a rollback
    push = clone.deploy("production", "v1.0.0", message="back")
    assert push.ok and any("[rollback]" in line for line in push.remote), push.out
    # v0.9.0 is earlier, but production never held it: promotion rules apply
    before = server.refs()
    push = clone.deploy("production", "v0.9.0")
    assert not push.ok and server.refs() == before
    assert any("rule promotion-order:" in line for line in push.remote), push.out


# ---- tombstones ---------------------------------------------------------------------

def test_a_deleted_version_is_never_re_made_on_another_commit(server, clone):
    released(clone, "v1.0.0")
    first = server.commit_of(f"{C}/v1.0.0")
    server.settle()
    git("tag", "-d", f"{C}/v1.0.0", cwd=server.path)  # an admin deletes it on the server
    clone.git("tag", "-d", f"{C}/v1.0.0")
    clone.commit()
    clone.release("v1.0.0")
    push = clone.push(f"{C}/v1.0.0")
    assert not push.ok and server.ref(f"{C}/v1.0.0") is None
    text = "\n".join(push.remote)
    assert "rule version-tombstone:" in text and first[:7] in text and "v1.0.1" in text
    # on its old commit it may come back (a restore, not a new release)
    clone.git("tag", "-d", f"{C}/v1.0.0")
    clone.release("v1.0.0", target=first)
    assert clone.push(f"{C}/v1.0.0").ok


# ---- soak times ---------------------------------------------------------------------

SOAK = """\
pipelines:
  default:
    stages: [staging, production]
    soak: {production: 24h}
"""


@pytest.fixture
def soaking(tmp_path, mode):
    policy = tmp_path / "soak.yaml"
    policy.write_text(SOAK)
    server, clone = make_server(tmp_path, mode, policy)
    t0 = 1_800_000_000
    server.config("tagwarden.clock", str(t0))
    released(clone, "v1.0.0")
    assert clone.deploy("staging", "v1.0.0").ok
    return server, clone, t0


def test_production_waits_for_staging_to_soak(soaking):
    server, clone, t0 = soaking
    server.config("tagwarden.clock", str(t0 + 3600))
    before = server.refs()
    push = clone.deploy("production", "v1.0.0")
    assert not push.ok and server.refs() == before
    text = "\n".join(push.remote)
    assert "rule soak-time:" in text and "held it for 1d" in text
    assert "since 2027-01-15T08:00:00Z (1h)" in text
    assert "Eligible at 2027-01-16T08:00:00Z (in 23h)" in text

    server.config("tagwarden.clock", str(t0 + DAY))
    assert clone.deploy("production", "v1.0.0").ok


def test_a_redeploy_of_staging_does_not_restart_its_soak(soaking):
    server, clone, t0 = soaking
    server.config("tagwarden.clock", str(t0 + 20 * 3600))
    assert clone.deploy("staging", "v1.0.0", message="again").ok  # same commit, new object
    server.config("tagwarden.clock", str(t0 + DAY))
    assert clone.deploy("production", "v1.0.0").ok


def test_rollback_does_not_wait_for_soak(soaking):
    server, clone, t0 = soaking
    server.config("tagwarden.clock", str(t0 + DAY))
    assert clone.deploy("production", "v1.0.0").ok
    released(clone, "v1.1.0")
    assert clone.deploy("staging", "v1.1.0").ok
    server.config("tagwarden.clock", str(t0 + 3 * DAY))
    assert clone.deploy("production", "v1.1.0").ok
    server.config("tagwarden.clock", str(t0 + 3 * DAY + 60))
    push = clone.deploy("production", "v1.0.0", message="back")
    assert push.ok and any("[rollback]" in line for line in push.remote), push.out


def test_a_soak_of_a_bad_duration_is_a_policy_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SOAK.replace("24h", "a day"))
    out = subprocess.run([sys.executable, "-m", "tagwarden.cli", "policy", "check", str(bad)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert "bad.yaml:4: pipelines.default.soak.production: expected a duration" in out.stderr


# ---- the audit log's chain head -------------------------------------------------------

def test_the_ledger_records_the_audit_chain_head(server, clone):
    import hashlib

    released(clone, "v1.0.0")
    assert clone.deploy("staging", "v1.0.0").ok
    server.settle()
    head = open_ledger(str(server.path)).audit_head()
    last = server.audit_path.read_bytes().rstrip(b"\n").split(b"\n")[-1]
    assert head["seq"] == json.loads(last)["seq"]
    assert head["sha256"] == hashlib.sha256(last).hexdigest()
    out = subprocess.run([sys.executable, "-m", "tagwarden.cli", "audit", "verify",
                          str(server.path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
