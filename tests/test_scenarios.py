"""The scenarios of the design (scenarios.md), each a series of real pushes with the real
git client to a bare repository with the hooks installed, in pre-receive and update mode.

"ok": the push is accepted and the server ref holds the pushed value. "no": the push is
rejected, the server refs are unchanged and the pusher sees the rule and a fix.
"""
from __future__ import annotations

import pytest

from conftest import C, make_server


def accepted(push, clone, *tags):
    assert push.ok, push.out
    for tag in tags:
        assert clone.server.ref(tag) == clone.rev(tag), f"server does not hold {tag}"


def rejected(push, server, before, rule, *, ref=None):
    assert not push.ok, push.out
    assert server.refs() == before, "a rejected push changed server refs"
    text = "\n".join(push.remote)
    assert f"rule {rule}:" in text, text
    assert "fix:" in text, text
    if ref:
        assert ref in text
    return text


def traditional_start(clone):
    """Scenario 1: v1.0.0 released, in staging and in production."""
    clone.release("v1.0.0")
    accepted(clone.push(f"{C}/v1.0.0"), clone, f"{C}/v1.0.0")
    accepted(clone.deploy("staging", "v1.0.0"), clone, f"{C}/staging")
    accepted(clone.deploy("production", "v1.0.0"), clone, f"{C}/production")


# ---- Traditional (default policy) ------------------------------------------------------

def test_1_release_then_staging_then_production(server, clone):
    traditional_start(clone)
    assert server.commit_of(f"{C}/production") == server.commit_of(f"{C}/v1.0.0")


def test_2_production_cannot_skip_staging(server, clone):
    traditional_start(clone)
    clone.commit()
    clone.release("v1.1.0")
    accepted(clone.push(f"{C}/v1.1.0"), clone, f"{C}/v1.1.0")
    before = server.refs()
    push = clone.deploy("production", "v1.1.0")
    text = rejected(push, server, before, "promotion-order", ref=f"refs/tags/{C}/production")
    assert "staging holds v1.0.0" in text
    assert "you pushed v1.1.0" in text
    assert f"git tag -f {C}/staging {C}/v1.1.0^{{}}" in text
    assert f"git push --force origin {C}/staging" in text
    assert "pre-receive hook declined" in push.out or "hook declined" in push.out


def test_3_production_after_staging(server, clone):
    traditional_start(clone)
    clone.commit()
    clone.release("v1.1.0")
    accepted(clone.push(f"{C}/v1.1.0"), clone)
    accepted(clone.deploy("staging", "v1.1.0"), clone, f"{C}/staging")
    push = clone.deploy("production", "v1.1.0")
    accepted(push, clone, f"{C}/production")
    assert any(f"accepted: {C}/production -> v1.1.0" in line for line in push.remote)
    assert any("git fetch --tags --force" in line for line in push.remote)


def _at_v110_everywhere(server, clone):
    traditional_start(clone)
    clone.commit()
    clone.release("v1.1.0")
    accepted(clone.push(f"{C}/v1.1.0"), clone)
    accepted(clone.deploy("staging", "v1.1.0"), clone)
    accepted(clone.deploy("production", "v1.1.0"), clone)


def test_4_rollback_is_allowed_and_audited_as_rollback(server, clone):
    _at_v110_everywhere(server, clone)
    push = clone.deploy("production", "v1.0.0")
    accepted(push, clone, f"{C}/production")
    assert any("[rollback]" in line for line in push.remote), push.out
    last = [r for r in server.audit("decision") if r["ref"].endswith("/production")][-1]
    assert last["change"] == "rollback" and last["decision"] == "accepted"
    assert last["version"] == "v1.0.0"


def test_5_redeploy_same_commit_new_tag_object(server, clone):
    traditional_start(clone)
    old = server.ref(f"{C}/production")
    push = clone.deploy("production", "v1.0.0", message="Set extraction to production again")
    accepted(push, clone, f"{C}/production")
    assert server.ref(f"{C}/production") != old
    last = [r for r in server.audit("decision") if r["ref"].endswith("/production")][-1]
    assert last["change"] == "redeploy"


# ---- Immutable versions ----------------------------------------------------------------

def test_6_moving_a_version_is_rejected(server, clone):
    traditional_start(clone)
    clone.commit()
    clone.tag(f"{C}/v1.0.0", "HEAD", "Release extraction v1.0.0", force=True)
    before = server.refs()
    text = rejected(clone.push("--force", f"{C}/v1.0.0"), server, before, "version-immutable")
    assert "v1.0.0 is released at v1.0.0" in text
    assert f"git fetch --force origin refs/tags/{C}/v1.0.0:refs/tags/{C}/v1.0.0" in text
    assert "git fetch --tags --force origin" in text


def test_7_remaking_a_version_on_the_same_commit_is_rejected(server, clone):
    traditional_start(clone)
    clone.tag(f"{C}/v1.0.0", f"{C}/v1.0.0^{{commit}}", "Release again", force=True)
    before = server.refs()
    text = rejected(clone.push("--force", f"{C}/v1.0.0"), server, before, "version-immutable")
    assert "same commit" in text


def test_8_deleting_a_version_is_rejected(server, clone):
    traditional_start(clone)
    before = server.refs()
    rejected(clone.push(f":refs/tags/{C}/v1.0.0"), server, before, "version-immutable")


def test_9_lightweight_version_is_allowed(server, clone):
    clone.commit()
    clone.tag(f"{C}/v2.0.0", annotated=False)
    accepted(clone.push(f"{C}/v2.0.0"), clone, f"{C}/v2.0.0")


# ---- Names -------------------------------------------------------------------------

def test_10_unknown_slot_is_rejected(server, clone):
    traditional_start(clone)
    clone.tag(f"{C}/prod", f"{C}/v1.0.0", "Set extraction to prod")
    before = server.refs()
    text = rejected(clone.push(f"{C}/prod"), server, before, "slot-unknown")
    assert f"{C}/production" in text  # the fix names the slot that was meant


@pytest.mark.parametrize("slot", ["v1.0", "v1.2.3.4", "v01.2.3", "V1.2.3"])
def test_11_semver_lookalikes_are_rejected_never_movable(server, clone, slot):
    clone.tag(f"{C}/{slot}")
    before = server.refs()
    rejected(clone.push(f"{C}/{slot}"), server, before, "version-invalid")


@pytest.mark.parametrize("name", ["components/prompts/extraction", f"{C}/staging/eu"])
def test_12_three_or_five_levels_are_rejected(server, clone, name):
    clone.tag(name)
    before = server.refs()
    rejected(clone.push(f"refs/tags/{name}"), server, before, "tag-levels")


def test_13_unknown_type_is_rejected(server, clone):
    clone.tag("components/widgets/x/v1.0.0")
    before = server.refs()
    rejected(clone.push("components/widgets/x/v1.0.0"), server, before, "type-unknown")


def test_14_plain_semver_tag_create_ok_move_no(server, clone):
    clone.tag("v3.1.4")
    accepted(clone.push("v3.1.4"), clone, "v3.1.4")
    clone.commit()
    clone.tag("v3.1.4", force=True)
    before = server.refs()
    rejected(clone.push("--force", "v3.1.4"), server, before, "unmanaged-immutable")


# ---- Environment targets -------------------------------------------------------------

def test_15_env_on_unreleased_commit_is_rejected(server, clone):
    traditional_start(clone)
    clone.commit()
    clone.tag(f"{C}/staging", "HEAD", "Set extraction to staging", force=True)
    before = server.refs()
    rejected(clone.push("--force", f"{C}/staging"), server, before, "env-unreleased")


def test_16_env_on_another_components_version_is_rejected(server, clone):
    traditional_start(clone)
    other = "components/prompts/summary"
    clone.commit()
    clone.release("v1.0.0", component=other)
    accepted(clone.push(f"{other}/v1.0.0"), clone)
    clone.tag(f"{C}/staging", f"{other}/v1.0.0", "Set extraction to staging", force=True)
    before = server.refs()
    rejected(clone.push("--force", f"{C}/staging"), server, before, "env-wrong-component")
    # the same commit, pointed at directly, is not a release of C either
    clone.tag(f"{C}/staging", f"{other}/v1.0.0^{{commit}}", "Set", force=True)
    rejected(clone.push("--force", f"{C}/staging"), server, before, "env-unreleased")


def test_17_one_push_creates_a_version_and_moves_staging_to_it(server, clone):
    traditional_start(clone)
    clone.commit()
    clone.release("v1.2.0")
    clone.set_env("staging", "v1.2.0")
    push = clone.push("--force", f"{C}/v1.2.0", f"{C}/staging")
    accepted(push, clone, f"{C}/v1.2.0", f"{C}/staging")


# ---- Atomicity and feedback ----------------------------------------------------------

def test_18_mixed_push_is_all_or_nothing_in_pre_receive_per_ref_in_update(server, clone, mode):
    traditional_start(clone)
    clone.commit()
    clone.release("v1.1.0")
    accepted(clone.push(f"{C}/v1.1.0"), clone)
    clone.set_env("staging", "v1.1.0")
    clone.tag(f"{C}/prod", f"{C}/v1.1.0", "Set extraction to prod")
    before = server.refs()
    push = clone.push("--force", f"{C}/staging", f"{C}/prod")
    assert not push.ok
    assert server.ref(f"{C}/prod") is None
    if mode == "pre-receive":
        assert server.refs() == before
        assert "not applied either" in push.out
        staging = [r for r in server.audit("decision") if r["ref"].endswith("/staging")][-1]
        assert staging["decision"] == "rejected" and staging["rule"] == "atomic-push"
    else:
        assert server.ref(f"{C}/staging") == clone.rev(f"{C}/staging")


def test_19_every_rejection_names_ref_rule_current_value_and_fix(server, clone):
    traditional_start(clone)
    clone.commit()
    clone.release("v1.1.0")
    accepted(clone.push(f"{C}/v1.1.0"), clone)
    push = clone.deploy("production", "v1.1.0")
    lines = push.remote
    assert f"  refs/tags/{C}/production" in lines
    assert any(line.startswith("    rule promotion-order:") for line in lines)
    assert any(line.startswith("    now: v1.0.0 (") and "attempted: move to v1.1.0" in line
               for line in lines), lines
    assert any(line.startswith("    fix: git ") for line in lines)


# ---- Strategies (policy/examples) ----------------------------------------------------

def _release(clone, version):
    clone.commit()
    clone.release(version)
    accepted(clone.push(f"{C}/{version}"), clone)


def _no(clone, server, slot, version, rule="promotion-order"):
    before = server.refs()
    return rejected(clone.deploy(slot, version), server, before, rule)


@pytest.mark.parametrize("winner", ["control", "treatment"])
def test_22_ab_either_alternative_feeds_production(tmp_path, mode, winner):
    server, clone = make_server(tmp_path, mode, "examples/ab.yaml")
    _release(clone, "v1.0.0")
    _release(clone, "v1.1.0")
    accepted(clone.deploy("control", "v1.0.0"), clone)
    accepted(clone.deploy("treatment", "v1.0.0"), clone)
    text = _no(clone, server, "production", "v1.1.0")
    assert "control or treatment" in text
    accepted(clone.deploy(winner, "v1.1.0"), clone)
    accepted(clone.deploy("production", "v1.1.0"), clone, f"{C}/production")


# Scenarios 20, 21, 23, 24, 25 and the traditional example: walk each linear pipeline.
# Before a stage is deployed the next one refuses the version (so production needs the
# canary, blue needs green, ring-2 needs ring-1, ...); then the stage takes it.
LINEAR = [
    pytest.param("examples/canary.yaml", ["canary", "production"], id="20-canary"),
    pytest.param("examples/blue-green.yaml", ["green", "blue"], id="21-blue-green"),
    pytest.param("examples/progressive.yaml",
                 ["rollout-1pct", "rollout-10pct", "rollout-50pct", "production"],
                 id="23-progressive"),
    pytest.param("examples/rings.yaml", ["ring-0", "ring-1", "ring-2", "ring-3"], id="24-rings"),
    pytest.param("examples/staged-canary.yaml",
                 ["dev", "staging", "canary-5", "canary-25", "production"], id="25-staged-canary"),
    pytest.param("examples/traditional.yaml", ["dev", "staging", "production"],
                 id="traditional"),
]


@pytest.mark.parametrize("policy, stages", LINEAR)
def test_linear_pipelines_take_each_stage_only_after_the_one_before(tmp_path, mode, policy,
                                                                   stages):
    server, clone = make_server(tmp_path, mode, policy)
    _release(clone, "v1.1.0")
    for i, slot in enumerate(stages):
        if i + 1 < len(stages):
            _no(clone, server, stages[i + 1], "v1.1.0")
        accepted(clone.deploy(slot, "v1.1.0"), clone, f"{C}/{slot}")
