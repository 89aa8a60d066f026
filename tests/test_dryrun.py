"""tagwarden policy test: a candidate policy replayed over a repository's current tags and
its ledger's history, listing what it would have rejected.

One repository made by real pushes (pre-receive mode, default policy, clock injected with
tagwarden.clock, pushers from REMOTE_USER) serves most tests: versions, staging,
production, a rollback, a lightweight version released together with its staging deploy,
a dev slot, a move made on the server (an outside entry) and an unmanaged tag with a bidi
control in its name. The candidates are policy files written next to it."""
from __future__ import annotations

import io
import json

import pytest

from conftest import HOUR, POLICIES, T0, C, Clone, Server, git, make_server, module_git_env, ts
from tagwarden.dryrun import KEYS, run

ODD = "rel\u202eease"  # an unmanaged tag whose name would reverse the terminal's text

CANARY = "pipelines:\n  default:\n    stages: [staging, canary, production]\n"
SOAK = "pipelines:\n  default:\n    stages: [staging, production]\n    soak: {production: 1h}\n"
LIGHTWEIGHT = "versions:\n  lightweight: deny\n"
NO_DEV = "environments:\n  names: [staging, production, canary]\n"


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """The history's repository (path). Built once; the tests only read it."""
    base = tmp_path_factory.mktemp("dryrun")
    with module_git_env(base):
        server, clone = make_server(base, "pre-receive", name="app.git")

        def push(hours, who, *refs):
            server.config("tagwarden.clock", str(T0 + hours * HOUR))
            done = clone.push("--force", *refs, env={"REMOTE_USER": who})
            assert done.ok, done.out

        def deploy(hours, who, slot, version, message=None):
            push(hours, who, clone.set_env(slot, version, message=message))

        clone.commit()
        push(0, "alice", clone.release("v1.0.0"))
        deploy(1, "alice", "staging", "v1.0.0")
        deploy(3, "bob", "production", "v1.0.0")
        clone.commit()
        push(4, "alice", clone.release("v1.1.0"))
        deploy(5, "alice", "staging", "v1.1.0")
        deploy(5 + 1 / 6, "bob", "production", "v1.1.0")  # staging held it for 10 minutes
        deploy(6, "carol", "production", "v1.0.0", "back")  # a rollback
        clone.commit()
        clone.tag(f"{C}/v1.2.0", annotated=False)  # lightweight, released with its deploy
        push(7, "alice", f"{C}/v1.2.0", clone.set_env("staging", "v1.2.0"))
        deploy(8, "dave", "dev", "v1.2.0")
        server.settle()
        git("tag", "-f", f"{C}/dev", f"{C}/v1.1.0", cwd=server.path)  # outside the hooks
        git("tag", ODD, "main", cwd=server.path)
        clone.git("fetch", "-q", "--tags", "--force", "origin")
        deploy(9, "dave", "dev", "v1.2.0", "again")  # the ledger records the jump first
        server.settle()
        yield server.path


def dry(repo, policy=None, text=None, tmp_path=None, **kw) -> tuple[int, str, str]:
    if text is not None:
        policy = tmp_path / "candidate.yaml"
        policy.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    code = run(str(policy or POLICIES / "default.yaml"), str(repo), out, err=err, **kw)
    return code, out.getvalue(), err.getvalue()


def rows(repo, policy=None, text=None, tmp_path=None, **kw) -> list[dict]:
    _, out, _ = dry(repo, policy, text, tmp_path, as_json=True, **kw)
    return [json.loads(line) for line in out.splitlines()]


def found(got: list[dict]) -> list[tuple]:
    return [(r["part"], r["ts"], r["pusher"], r["tag"], r["change"], r["rule"], r["verdict"])
            for r in got]


# ---- the same policy ------------------------------------------------------------------

def test_the_policy_in_use_rejects_nothing_now_or_then(repo):
    code, out, err = dry(repo)
    assert code == 0, out + err
    assert git("rev-parse", f"{C}/staging^{{commit}}", cwd=repo).stdout != \
        git("rev-parse", f"{C}/production^{{commit}}", cwd=repo).stdout
    assert out.endswith("0 of 7 current tags and 0 of 11 recorded changes would be rejected\n")
    # production holds v1.0.0 while staging has moved on to v1.2.0: fine at rest, and
    # each promotion was judged against what staging held at the time
    assert "rejected" not in out.replace("would be rejected", "")


def test_the_header_names_the_policy_its_digest_and_what_was_judged(repo):
    import hashlib

    digest = hashlib.sha256((POLICIES / "default.yaml").read_bytes()).hexdigest()[:12]
    _, out, _ = dry(repo)
    head = out.splitlines()[:3]
    assert head[0] == f"tagwarden policy test: {POLICIES / 'default.yaml'} (sha256 {digest}) on {repo}"
    assert head[1] == ("current tags: 7, each judged as if pushed now (pusher unknown: "
                       "permissions not checked; pipeline order and soak times: see history)")
    assert head[2] == ("history: 11 recorded changes from 10 pushes, each judged against the "
                       "tags as they were just before it")


# ---- stricter candidates --------------------------------------------------------------

def test_a_new_canary_stage_rejects_the_promotions_that_skipped_it(repo, tmp_path):
    got = rows(repo, text=CANARY, tmp_path=tmp_path)
    prod = f"{C}/production"
    assert found(got) == [
        ("history", ts(3), "bob", prod, "promote", "promotion-order", "rejected"),
        ("history", ts(5 + 1 / 6), "bob", prod, "promote", "promotion-order", "rejected")]
    assert got[0]["actual"] == "accepted" and "canary holds nothing" in got[0]["reason"]
    # the rollback went back to what production held: no upstream to pass again
    code, out, _ = dry(repo, text=CANARY, tmp_path=tmp_path)
    assert code == 1
    assert out.endswith("0 of 7 current tags and 2 of 11 recorded changes would be rejected\n")


def test_a_soak_time_is_judged_with_the_clock_and_ledger_of_the_time(repo, tmp_path):
    got = rows(repo, text=SOAK, tmp_path=tmp_path)
    # v1.0.0 reached production 2h after staging took it; v1.1.0 after 10 minutes
    assert found(got) == [("history", ts(5 + 1 / 6), "bob", f"{C}/production", "promote",
                           "soak-time", "rejected")]
    assert "since 2027-01-15T13:00:00Z (10m)" in got[0]["reason"]


def test_lightweight_versions_are_rejected_now_and_when_they_were_pushed(repo, tmp_path):
    got = rows(repo, text=LIGHTWEIGHT, tmp_path=tmp_path)
    v12 = f"{C}/v1.2.0"
    assert found(got) == [
        ("current", "now", None, v12, "create", "version-lightweight", "rejected"),
        ("history", ts(7), "alice", v12, "create", "version-lightweight", "rejected"),
        # pushed with it: without the version, staging lands on an unreleased commit
        ("history", ts(7), "alice", f"{C}/staging", "deploy", "env-unreleased", "rejected")]
    # what happened is what the replay goes on from: dave's later deploy of dev met the
    # version that actually landed
    assert [r["actual"] for r in got] == [None, "accepted", "accepted"]


def test_a_rule_the_candidate_only_warns_about_is_listed_and_exits_0(repo, tmp_path):
    code, out, _ = dry(repo, text=LIGHTWEIGHT + "rules:\n  version-lightweight: warn\n",
                       tmp_path=tmp_path)
    assert code == 0
    warned = [line for line in out.splitlines() if line.startswith("warned")]
    assert len(warned) == 2 and all("version-lightweight" in line for line in warned)
    assert out.endswith("0 of 7 current tags and 0 of 11 recorded changes would be rejected\n")


def test_an_environment_the_candidate_does_not_know_is_rejected(repo, tmp_path):
    code, out, _ = dry(repo, text=NO_DEV, tmp_path=tmp_path)
    assert code == 1
    lines = [line.split() for line in out.splitlines() if line.startswith("rejected")]
    assert [(w[1], w[2], w[3], w[4], w[6]) for w in lines] == [
        ("now", "-", f"{C}/dev", "create", "slot-unknown"),
        (ts(8), "dave", f"{C}/dev", "deploy", "slot-unknown"),
        (ts(9), "dave", f"{C}/dev", "rollback", "slot-unknown")]  # back from the outside move
    assert "slot 'dev' is not an environment of the policy" in out
    assert out.endswith("1 of 7 current tags and 2 of 11 recorded changes would be rejected\n")


def test_a_layered_candidate_is_judged_as_merged(repo, tmp_path):
    override = tmp_path / "override.yaml"
    override.write_text(CANARY)
    code, out, _ = dry(repo, override_path=str(override))
    assert code == 1 and f"default.yaml + {override}" in out.splitlines()[0]
    assert "2 of 11 recorded changes would be rejected" in out


def test_names_from_the_repository_are_printed_escaped(repo, tmp_path):
    code, out, _ = dry(repo, text="unmanaged_tags:\n  other: deny\n", tmp_path=tmp_path)
    assert code == 1
    assert "\u202e" not in out and "rel\\u202eease" in out and "unmanaged-denied" in out
    got = rows(repo, text="unmanaged_tags:\n  other: deny\n", tmp_path=tmp_path)
    assert [r["tag"] for r in got] == ["rel\\u202eease"]


def test_seeded_tags_only_set_the_state_the_pushes_are_judged_against(tmp_path):
    server = Server(tmp_path / "old.git")
    clone = Clone(server, tmp_path / "old-clone")
    clone.commit()
    clone.release("v1.0.0")
    clone.set_env("staging", "v1.0.0")
    assert clone.push("HEAD:refs/heads/main", "--tags").ok  # before tagwarden: no hooks
    server.install("pre-receive")  # seeds the ledger with both tags
    assert clone.deploy("production", "v1.0.0").ok
    assert clone.push("--delete", f"{C}/staging").ok
    server.settle()
    code, out, _ = dry(server.path)
    assert code == 0, out
    assert out.endswith("0 of 2 current tags and 0 of 2 recorded changes would be rejected\n")
    got = rows(server.path, text=CANARY + "environments:\n  protected: [production, staging]\n",
               tmp_path=tmp_path)
    assert [(r["tag"], r["change"], r["rule"]) for r in got] == [
        (f"{C}/production", "promote", "promotion-order"),
        (f"{C}/staging", "delete", "env-protected")]


# ---- output and errors -----------------------------------------------------------------

def test_json_is_one_object_per_line_with_stable_keys(repo, tmp_path):
    code, out, _ = dry(repo, text=NO_DEV, tmp_path=tmp_path, as_json=True)
    assert code == 1
    got = [json.loads(line) for line in out.splitlines()]
    assert len(got) == 3 and all(list(r) == list(KEYS) for r in got)
    assert got[0]["ref"] == f"refs/tags/{C}/dev" and got[0]["ts"] == "now"
    assert got[1]["actual"] == "accepted" and got[1]["verdict"] == "rejected"


def test_without_history_only_the_current_tags_are_judged(repo, tmp_path):
    code, out, _ = dry(repo, text=CANARY, tmp_path=tmp_path, history=False)
    assert code == 0
    assert "history: not replayed (--no-history)" in out
    assert out.endswith("0 of 7 current tags and 0 of 0 recorded changes would be rejected\n")


def test_a_repository_without_a_ledger_is_judged_by_its_tags(repo, tmp_path):
    copy = tmp_path / "copy.git"
    git("clone", "-q", "--bare", str(repo), str(copy), cwd=tmp_path)  # tags, no ledger
    code, out, _ = dry(copy, text=LIGHTWEIGHT, tmp_path=tmp_path)
    assert code == 1
    assert "history: none: no deployment ledger (refs/tagwarden/ledger)" in out
    assert out.endswith("1 of 7 current tags and 0 of 0 recorded changes would be rejected\n")


def test_a_broken_candidate_exits_2_with_file_and_line(repo, tmp_path):
    code, out, err = dry(repo, text="pipelines:\n  default:\n    stagez: [staging]\n",
                         tmp_path=tmp_path)
    assert code == 2 and out == ""
    assert f"{tmp_path / 'candidate.yaml'}:3: pipelines.default.stagez: unknown key" in err
    code, _, err = dry(repo, tmp_path / "missing.yaml")
    assert code == 2 and "missing.yaml: policy invalid: cannot read" in err


def test_a_path_that_is_not_a_repository_exits_2(tmp_path):
    code, out, err = dry(tmp_path)
    assert code == 2 and out == "" and "not a git repository" in err
    code, _, err = dry(tmp_path / "nowhere.git")
    assert code == 2 and "nowhere.git: not a git repository" in err


# ---- permissions: the history knows who pushed ------------------------------------------

def test_permissions_are_judged_with_the_pushers_of_the_time(repo, tmp_path):
    candidate = ("groups:\n  release: [alice]\n  sre: [carol]\n  dev: [dave]\n"
                 "permissions:\n"
                 "  - {action: create-version, allow: release}\n"
                 "  - {action: move-slot, slots: [staging, dev], allow: [release, dev]}\n"
                 "  - {action: [move-slot, delete-slot], slots: [production], allow: sre}\n")
    got = [r for r in rows(repo, text=candidate, tmp_path=tmp_path) if r["verdict"] == "rejected"]
    # bob's two production moves; current tags carry no pusher, so none is listed
    assert [(r["part"], r["pusher"], r["tag"], r["rule"]) for r in got] == \
        [("history", "bob", f"{C}/production", "permission")] * 2
    assert got[0]["reason"].startswith("bob (identity from REMOTE_USER, in no group) may not "
                                       f"move production of {C}; group sre may")


# ---- the command line -----------------------------------------------------------------

def test_the_cli_runs_it(repo, tmp_path):
    import subprocess
    import sys

    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(CANARY)
    out = subprocess.run([sys.executable, "-m", "tagwarden.cli", "policy", "test", str(candidate),
                          str(repo), "--json"], capture_output=True, text=True)
    assert out.returncode == 1, out.stderr
    got = [json.loads(line) for line in out.stdout.splitlines()]
    assert {r["rule"] for r in got} == {"promotion-order"}
    same = subprocess.run([sys.executable, "-m", "tagwarden.cli", "policy", "test",
                           str(POLICIES / "default.yaml"), str(repo), "--no-history"],
                          capture_output=True, text=True)
    assert same.returncode == 0 and "history: not replayed (--no-history)" in same.stdout
