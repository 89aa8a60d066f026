"""The audit log: exactly one JSON line per ref decision, accepted and rejected, with the
keys of the brief; post-receive records what actually landed."""
from __future__ import annotations

import re

from conftest import C

BRIEF_KEYS = {"ts", "event", "push_id", "hook", "repo", "pusher", "pusher_source",
              "remote_addr", "protocol", "ref", "old", "new", "old_commit", "new_commit",
              "action", "kind", "component", "slot", "version", "decision", "rule", "reason",
              "push_options", "policy_sha256", "tagwarden_version"}
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def test_26_one_line_per_ref_decision_with_the_briefs_keys(server, clone, mode):
    clone.release("v1.0.0")
    assert clone.push(f"{C}/v1.0.0").ok                                   # 1 decision
    assert clone.deploy("staging", "v1.0.0").ok                            # 1
    clone.commit()
    clone.release("v1.1.0")
    clone.tag(f"{C}/prod", f"{C}/v1.1.0")
    assert not clone.push(f"{C}/v1.1.0", f"{C}/prod").ok                   # 2 (one bad)
    assert not clone.deploy("production", "v1.1.0").ok                     # 1 rejected
    clone.commit()
    assert clone.push("HEAD:refs/heads/main").ok                           # branch: none

    decisions = server.audit("decision")
    judged = [(r["ref"].rsplit("/", 1)[1], r["decision"]) for r in decisions]
    if mode == "pre-receive":
        assert judged == [("v1.0.0", "accepted"), ("staging", "accepted"),
                          ("v1.1.0", "rejected"), ("prod", "rejected"),
                          ("production", "rejected")]
    else:  # per ref: the good version of the mixed push lands
        assert sorted(judged[2:4]) == [("prod", "rejected"), ("v1.1.0", "accepted")]
        assert judged[4] == ("production", "rejected")
    for record in decisions:
        assert BRIEF_KEYS <= set(record), BRIEF_KEYS - set(record)
        assert RFC3339_UTC.fullmatch(record["ts"])
        assert record["hook"] == mode
        assert record["pusher"] and record["pusher_source"] == "uid"
        assert record["protocol"] == "local"
        assert len(record["policy_sha256"]) == 64
    staging = decisions[1]
    assert staging["kind"] == "environment" and staging["component"] == C
    assert staging["slot"] == "staging" and staging["version"] == "v1.0.0"
    assert staging["action"] == "create" and staging["change"] == "deploy"
    assert staging["new_commit"] == server.commit_of(f"{C}/v1.0.0")
    rejected = decisions[-1]  # v1.1.0 landed only where pushes are judged per ref
    assert rejected["rule"] == ("env-unreleased" if mode == "pre-receive" else "promotion-order")


def test_post_receive_records_what_landed_with_the_push_id(server, clone, mode):
    clone.release("v1.0.0")
    clone.set_env("staging", "v1.0.0")
    assert clone.push(f"{C}/v1.0.0", f"{C}/staging").ok
    decided = server.audit("decision")
    applied = server.audit("applied")
    assert sorted(r["ref"] for r in applied) == sorted(r["ref"] for r in decided)
    assert {r["push_id"] for r in applied} == {r["push_id"] for r in decided}
    assert len({r["push_id"] for r in decided}) == 1  # one push, one id, in both modes
    assert all(r["hook"] == "post-receive" for r in applied)
    by_ref = {r["ref"]: r for r in applied}
    assert by_ref[f"refs/tags/{C}/staging"]["change"] == "deploy"
    assert by_ref[f"refs/tags/{C}/staging"]["new"] == server.ref(f"{C}/staging")
    assert not list((server.path / "tagwarden" / "run").glob("*.state"))  # state cleaned up
