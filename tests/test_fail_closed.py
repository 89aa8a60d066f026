"""Fail closed: a broken policy, an unwritable audit log or an internal error refuses the
push with a short message (and an incident id), never a traceback, and changes nothing."""
from __future__ import annotations

import json
import re

import pytest

from conftest import C, make_server
from tagwarden.cli import main as cli

BAD_POLICIES = {
    "duplicate-key": ("pipelines:\n  default:\n    stages: [staging, production]\n"
                      "pipelines: {}\n", ":4: pipelines: duplicate key"),
    "float-slot": ("environments:\n  names: [dev, 1.10]\n",
                   ":2: environments.names[1]: expected a slot name, got float '1.10'"),
}


def _assert_no_traceback(push):
    assert "Traceback" not in push.out and 'File "' not in push.out, push.out


@pytest.mark.parametrize("case", sorted(BAD_POLICIES))
def test_27_invalid_policy_rejects_every_tag_push_and_policy_check_agrees(
        tmp_path, mode, case, capsys):
    text, where = BAD_POLICIES[case]
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    server, clone = make_server(tmp_path, mode)
    server.config("tagwarden.policy", str(policy))
    clone.tag(f"{C}/v1.0.0")
    before = server.refs()
    push = clone.push(f"{C}/v1.0.0")
    assert not push.ok
    assert server.refs() == before
    remote = "\n".join(push.remote)
    assert "push rejected: policy invalid" in remote
    assert f"{policy}{where}" in remote
    assert "not your fault" in remote
    _assert_no_traceback(push)
    record = server.audit("decision")[-1]
    assert record["rule"] == "policy-invalid" and record["decision"] == "rejected"

    assert cli(["policy", "check", str(policy)]) == 1
    assert f"{policy}{where}" in capsys.readouterr().err
    # branches are not tagwarden's to judge: they still pass
    clone.commit()
    assert clone.push("HEAD:refs/heads/main").ok


def test_missing_policy_file_rejects(tmp_path, mode):
    server, clone = make_server(tmp_path, mode)
    server.config("tagwarden.policy", str(tmp_path / "nope.yaml"))
    clone.tag(f"{C}/v1.0.0")
    push = clone.push(f"{C}/v1.0.0")
    assert not push.ok and server.ref(f"{C}/v1.0.0") is None
    assert "policy invalid" in push.out and "nope.yaml" in push.out


def test_shipped_policies_pass_policy_check(capsys):
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "policy"
    files = [str(root / "default.yaml")] + sorted(str(p) for p in (root / "examples").glob("*.yaml"))
    assert len(files) == 8
    assert cli(["policy", "check", *files]) == 0
    assert capsys.readouterr().out.count(": ok (") == 8


def test_unwritable_audit_log_rejects_the_push(tmp_path, mode):
    server, clone = make_server(tmp_path, mode)
    server.audit_path.parent.mkdir(exist_ok=True)
    server.audit_path.mkdir()  # a directory where the log should be: every write fails
    clone.tag(f"{C}/v1.0.0")
    push = clone.push(f"{C}/v1.0.0")
    assert not push.ok
    assert server.ref(f"{C}/v1.0.0") is None
    assert "the audit log cannot be written" in push.out
    assert "refused" in push.out
    _assert_no_traceback(push)


def test_audit_log_configured_elsewhere(tmp_path, mode):
    server, clone = make_server(tmp_path, mode)
    central = tmp_path / "central" / "audit.jsonl"
    server.config("tagwarden.auditLog", str(central))
    clone.tag(f"{C}/v1.0.0")
    assert clone.push(f"{C}/v1.0.0").ok
    server.settle()  # post-receive records in the background
    events = [json.loads(line)["event"] for line in central.read_text().splitlines()]
    assert events == ["decision", "applied"]


def test_internal_error_rejects_with_an_incident_id_found_in_the_audit(tmp_path, mode):
    server, clone = make_server(tmp_path, mode)
    state = server.path / "tagwarden"
    state.mkdir(exist_ok=True)
    (state / "run").write_text("not a directory")  # tagwarden's own state is broken
    clone.tag(f"{C}/v1.0.0")
    push = clone.push(f"{C}/v1.0.0")
    assert not push.ok and server.ref(f"{C}/v1.0.0") is None
    _assert_no_traceback(push)
    match = re.search(r"push rejected: internal error \(incident ([0-9a-f]{12})\)", push.out)
    assert match, push.out
    incidents = [r for r in server.audit("incident") if r["incident"] == match.group(1)]
    assert len(incidents) == 1
    frames = incidents[0]["exception"][0]["frames"]
    assert frames and incidents[0]["exception"][0]["exc_type"] in (
        "NotADirectoryError", "FileExistsError")
    assert all("locals" not in frame for frame in frames)  # locals may hold secrets
