"""Who may do what (permissions), break-glass overrides through push options, and
versions only from release branches: real pushes over file://, both hook modes.

Over file:// the hooks inherit the pusher's environment, so REMOTE_USER names the
pusher the way a web server would."""
from __future__ import annotations

import pytest

from conftest import C, git, make_server

POLICY = """\
groups:
  releasers: [rita]
  deployers: [dana, "@releasers"]
  sre: [sam]
permissions:
  - action: create-version
    allow: releasers
  - action: move-slot
    slots: [staging, "canary-*"]
    allow: deployers
  - action: delete-slot
    slots: ["canary-*"]
    allow: deployers
  - action: [move-slot, delete-slot]
    slots: [production]
    allow: sre
overrides:
  allow: sre
  rules: [promotion-order, soak-time, permission]
"""


def as_user(name: str) -> dict:
    return {"REMOTE_USER": name}


@pytest.fixture
def setup(tmp_path, mode):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    server, clone = make_server(tmp_path, mode, policy)
    return server, clone


def release(clone, version="v1.0.0", who="rita"):
    clone.commit()
    return clone.push(clone.release(version), env=as_user(who))


def test_only_releasers_create_versions(setup):
    server, clone = setup
    clone.commit()
    denied = clone.push(clone.release("v1.0.0"), env=as_user("dana"))
    assert not denied.ok
    text = "\n".join(denied.remote)
    assert "rule permission: dana (identity from REMOTE_USER, in group deployers) may not " \
           f"create versions of {C}; group releasers may (permissions[0])" in text
    assert "fix: ask a member of releasers to push it" in text
    assert server.ref(f"{C}/v1.0.0") is None
    record = [r for r in server.audit("decision") if r["ref"].endswith("v1.0.0")][-1]
    assert (record["decision"], record["rule"], record["pusher"],
            record["pusher_source"]) == ("rejected", "permission", "dana", "REMOTE_USER")

    assert clone.push(f"{C}/v1.0.0", env=as_user("rita")).ok
    assert server.ref(f"{C}/v1.0.0") == clone.rev(f"{C}/v1.0.0")


def test_slot_moves_follow_the_slot_patterns(setup):
    server, clone = setup
    assert release(clone).ok
    denied = clone.push("--force", clone.set_env("staging", "v1.0.0"), env=as_user("sam"))
    assert not denied.ok
    assert "sam (identity from REMOTE_USER, in group sre) may not move staging of " \
           f"{C}; group deployers may (permissions[1])" in "\n".join(denied.remote)
    assert clone.push("--force", f"{C}/staging", env=as_user("dana")).ok

    production = clone.set_env("production", "v1.0.0")
    refused = clone.push("--force", production, env=as_user("dana"))
    assert not refused.ok and "group sre may (permissions[3])" in "\n".join(refused.remote)
    assert server.ref(production) is None
    assert clone.push("--force", production, env=as_user("sam")).ok
    assert server.commit_of(production) == clone.rev(f"{C}/v1.0.0^{{commit}}")


def test_deleting_a_slot_needs_its_own_permission(setup):
    server, clone = setup
    assert release(clone).ok
    canary = clone.set_env("canary-5", "v1.0.0")
    assert clone.push("--force", canary, env=as_user("rita")).ok  # rita: @releasers in deployers
    gone = f":refs/tags/{canary}"
    refused = clone.push(gone, env=as_user("sam"))
    assert not refused.ok and "may not delete canary-5" in "\n".join(refused.remote)
    assert clone.push(gone, env=as_user("dana")).ok
    assert server.ref(canary) is None

    assert clone.push("--force", clone.set_env("staging", "v1.0.0"), env=as_user("dana")).ok
    nobody = clone.push(f":refs/tags/{C}/staging", env=as_user("dana"))
    assert not nobody.ok
    assert "no entry of permissions allows delete-slot here, so nobody may" in \
        "\n".join(nobody.remote)


def test_without_permissions_anyone_may(tmp_path, mode):
    server, clone = make_server(tmp_path, mode)
    clone.commit()
    assert clone.push(clone.release("v1.0.0"), env=as_user("anyone")).ok


# ---- break-glass overrides ------------------------------------------------------------

def _out_of_order(clone):
    """v1.0.0 in staging and production, v1.1.0 released: production -> v1.1.0 skips
    staging."""
    assert release(clone).ok
    assert clone.push("--force", clone.set_env("staging", "v1.0.0"), env=as_user("dana")).ok
    assert clone.push("--force", clone.set_env("production", "v1.0.0"), env=as_user("sam")).ok
    assert release(clone, "v1.1.0").ok
    return clone.set_env("production", "v1.1.0")


def test_override_with_reason_passes_one_rule_and_is_audited(setup):
    server, clone = setup
    production = _out_of_order(clone)
    plain = clone.push("--force", production, env=as_user("sam"))
    assert not plain.ok and "rule promotion-order" in "\n".join(plain.remote)
    hint = "break glass only if you must (you may; it is audited): git push --force -o " \
           "tagwarden.override=promotion-order -o tagwarden.reason=\"<why>\" origin " \
           f"{production}"
    assert hint in "\n".join(plain.remote)
    others = clone.push("--force", production, env=as_user("dana"))
    assert "break glass" not in others.out  # only for those on the override list

    push = clone.push("--force", "-o", "tagwarden.override=promotion-order",
                      "-o", "tagwarden.reason=INC-42 hotfix", production, env=as_user("sam"))
    assert push.ok, push.out
    text = "\n".join(push.remote)
    assert f"tagwarden: OVERRIDE: refs/tags/{production}: rule promotion-order passed by " \
           "break-glass override" in text
    assert server.commit_of(production) == clone.rev(f"{C}/v1.1.0^{{commit}}")
    decided = [r for r in server.audit("decision") if r["ref"].endswith("production")][-1]
    assert decided["decision"] == "override" and decided["rule"] == "promotion-order"
    assert decided["override"] == {"asked": ["promotion-order"], "reason": "INC-42 hotfix",
                                   "passed": ["promotion-order"]}
    assert decided["push_options"] == ["tagwarden.override=promotion-order",
                                       "tagwarden.reason=INC-42 hotfix"]
    applied = [r for r in server.audit("applied") if r["ref"].endswith("production")][-1]
    assert applied["decision"] == "override" and applied["pusher"] == "sam"


def test_override_without_reason_is_refused(setup):
    server, clone = setup
    production = _out_of_order(clone)
    before = server.ref(production)
    push = clone.push("--force", "-o", "tagwarden.override=promotion-order", production,
                      env=as_user("sam"))
    assert not push.ok
    assert "rule override-invalid: a break-glass override needs a reason" in \
        "\n".join(push.remote)
    assert server.ref(production) == before
    record = [r for r in server.audit("decision") if r["ref"].endswith("production")][-1]
    assert record["rule"] == "override-invalid" and record["override"]["reason"] == ""


def test_override_by_someone_not_listed_is_refused_and_audited(setup):
    server, clone = setup
    production = _out_of_order(clone)
    before = server.ref(production)
    push = clone.push("--force", "-o", "tagwarden.override=promotion-order",
                      "-o", "tagwarden.reason=let me", production, env=as_user("dana"))
    assert not push.ok
    assert "rule override-denied: dana (identity from REMOTE_USER) asked to override " \
           "promotion-order; only group sre may break glass" in "\n".join(push.remote)
    assert server.ref(production) == before
    record = [r for r in server.audit("decision") if r["ref"].endswith("production")][-1]
    assert (record["decision"], record["rule"], record["pusher"]) == \
        ("rejected", "override-denied", "dana")
    assert record["override"]["asked"] == ["promotion-order"]


def test_an_override_refuses_rules_outside_the_policys_list(setup):
    server, clone = setup
    assert release(clone).ok
    clone.commit()
    clone.tag(f"{C}/v1.0.0", force=True, message="moved")
    push = clone.push("--force", "-o", "tagwarden.override=version-immutable",
                      "-o", "tagwarden.reason=oops", f"{C}/v1.0.0", env=as_user("sam"))
    assert not push.ok
    assert "version-immutable cannot be overridden under this policy" in "\n".join(push.remote)
    unknown = clone.push("--force", "-o", "tagwarden.override=no-such-rule",
                         "-o", "tagwarden.reason=x", f"{C}/v1.0.0", env=as_user("sam"))
    assert not unknown.ok and "no rule named no-such-rule" in "\n".join(unknown.remote)


def test_push_options_in_the_pushers_environment_are_not_overrides(setup):
    """Over file:// receive-pack inherits the client's environment; git sets (or clears)
    GIT_PUSH_OPTION_COUNT for pre-receive, and update mode takes the options from its
    planning pre-receive, never from its own environment."""
    server, clone = setup
    production = _out_of_order(clone)
    forged = {"GIT_PUSH_OPTION_COUNT": "2", "GIT_PUSH_OPTION_0":
              "tagwarden.override=promotion-order", "GIT_PUSH_OPTION_1": "tagwarden.reason=x"}
    push = clone.push("--force", production, env={**as_user("sam"), **forged})
    assert not push.ok and "rule promotion-order" in "\n".join(push.remote)


def test_installer_advertises_push_options(setup):
    server, _ = setup
    out = git("config", "--get", "receive.advertisePushOptions", cwd=server.path)
    assert out.stdout.strip() == "true"


# ---- versions only from release branches -----------------------------------------------

def test_versions_only_from_release_branches(tmp_path, mode):
    policy = tmp_path / "policy.yaml"
    policy.write_text("versions:\n  from_branches: [main, 'release/*']\n")
    server, clone = make_server(tmp_path, mode, policy)
    clone.commit()
    clone.push("HEAD:refs/heads/main")
    assert clone.push(clone.release("v1.0.0")).ok  # on main

    clone.git("checkout", "-q", "-b", "feature")
    feature = clone.commit("unreviewed")
    clone.push("HEAD:refs/heads/feature")
    refused = clone.push(clone.release("v1.1.0"))
    assert not refused.ok
    text = "\n".join(refused.remote)
    main = server.ref("refs/heads/main")
    assert f"rule version-branch: commit {feature[:7]} is not on main or release/* " \
           f"(main at {main[:7]}); a version tags reviewed code from main or release/*" in text
    assert server.ref(f"{C}/v1.1.0") is None

    # the branch and the version in one push: the branch counts as it stands after it
    assert clone.push("HEAD:refs/heads/release/1.1", f"{C}/v1.1.0").ok
    assert server.commit_of(f"{C}/v1.1.0") == feature


def test_update_mode_without_its_planning_pre_receive_sees_no_override(tmp_path):
    """git gives push options to pre-receive, never to update. Where only tagwarden's
    update hook runs (its planning pre-receive removed), an override request cannot be
    seen: the rule refuses as it would without one, and says nothing of the request."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    server, clone = make_server(tmp_path, "update", policy)
    production = _out_of_order(clone)
    (server.path / "hooks" / "pre-receive").unlink()
    push = clone.push("--force", "-o", "tagwarden.override=promotion-order",
                      "-o", "tagwarden.reason=INC-9", production, env=as_user("sam"))
    assert not push.ok
    assert "rule promotion-order" in "\n".join(push.remote)
    record = [r for r in server.audit("decision") if r["ref"].endswith("production")][-1]
    assert record["push_options"] == [] and "override" not in record


def test_judge_checks_permissions_only_for_a_named_pusher(setup):
    import subprocess
    import sys

    server, clone = setup
    commit = clone.commit()
    assert clone.push("HEAD:refs/heads/main").ok
    line = f"{'0' * 40} {commit} refs/tags/{C}/v1.0.0\n"

    def judge(*extra):
        return subprocess.run([sys.executable, "-m", "tagwarden.cli", "judge",
                               str(server.path), *extra], input=line, capture_output=True,
                              text=True)

    denied = judge("--as", "dana")
    assert denied.returncode == 1
    assert "rule permission: dana (identity from --as, in group deployers) may not create " \
           "versions" in denied.stdout
    assert judge("--as", "rita").returncode == 0
    assert judge().returncode == 0  # no identity: permissions are not checked
