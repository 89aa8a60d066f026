"""tagwarden.engine.decide over an in-memory repository: no git, only the RepoView contract
of tagwarden.model (ref, refs_under, peel -> Peeled with its chain of TagInfo).

Each case builds the server state and the push, and names the (verdict, rule, change) the
engine must decide for each update, in the order of the updates.
"""
from __future__ import annotations

import hashlib
import os
import random

import pytest
from typing import Optional
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tagwarden.paths
from tagwarden.engine import decide
from tagwarden.model import (
    ACCEPTED,
    OTHER,
    REJECTED,
    TAGS,
    WARNED,
    Peeled,
    PushContext,
    RefUpdate,
    TagInfo,
)
from tagwarden.policy import load

PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

ZERO = "0" * 40
C = "components/prompts/extraction"
OTHER_C = "components/prompts/summary"
PRE_RECEIVE = PushContext(hook="pre-receive", atomic=True)
UPDATE = PushContext(hook="update", atomic=False)


def _policy_file(*parts: str):
    with open(os.path.join(tagwarden.paths.policy_dir(), *parts)) as f:
        return load(f.read(), parts[-1])


DEFAULT = _policy_file("default.yaml")  # staging -> production, production protected
AB = _policy_file("examples", "ab.yaml")
BLUE_GREEN = _policy_file("examples", "blue-green.yaml")
RINGS = _policy_file("examples", "rings.yaml")
SAME_PUSH = load("pipelines:\n  default:\n    stages: [staging, production]\n"
                 "    same_push: true\n")
LIGHTWEIGHT_DENIED = load("versions:\n  lightweight: deny\n")


def rules(**levels: str):
    body = "".join(f"  {rule.replace('_', '-')}: '{level}'\n" for rule, level in levels.items())
    return load("rules:\n" + body)


# ---- the fake repository -----------------------------------------------------------------

class FakeRepo:
    """A RepoView over dicts: refs by full name; objects by id, each ("commit",), ("tree",),
    ("blob",) or ("tag", name, target)."""

    def __init__(self):
        self.refs: dict[str, str] = {}
        self.objects: dict[str, tuple] = {}
        self.held: Optional[dict] = None  # ref -> values it held; None: no history
        self.records: dict[str, dict] = {}  # ref -> the ledger's current record

    def _new(self, *obj) -> str:
        oid = hashlib.sha1(f"{len(self.objects)} {obj}".encode()).hexdigest()
        self.objects[oid] = obj
        return oid

    def commit(self) -> str:
        return self._new("commit")

    def tree(self) -> str:
        return self._new("tree")

    def blob(self) -> str:
        return self._new("blob")

    def tag(self, name: str, target: str) -> str:
        """A tag object; its name is the tag header (without refs/tags/)."""
        return self._new("tag", name, target)

    # RepoView
    def ref(self, name: str):
        return self.refs.get(name)

    def refs_under(self, prefix: str):
        return {ref: oid for ref, oid in self.refs.items() if ref.startswith(prefix)}

    def held_before(self, ref: str, oid: str, own_tag_object: bool):
        return None if self.held is None else oid in self.held.get(ref, ())

    def held_commit(self, ref: str, commit: str):
        if self.held is None or ref not in self.held:
            return None
        return commit in {self.peel(oid).commit for oid in self.held[ref]}

    def recorded(self, ref: str):
        return self.records.get(ref)

    def peel(self, oid: str) -> Peeled:
        chain, current = [], oid
        obj = self.objects.get(current)
        while obj is not None and obj[0] == "tag":
            chain.append(TagInfo(current, obj[1], obj[2]))
            current = obj[2]
            obj = self.objects.get(current)
        return Peeled(oid, tuple(chain), current, "missing" if obj is None else obj[0])


def ref(tag: str) -> str:
    return tag if tag.startswith("refs/") else TAGS + tag


class World:
    """The server before the push, the policy, the push context, and update builders."""

    def __init__(self):
        self.repo = FakeRepo()
        self.policy = DEFAULT
        self.context = PRE_RECEIVE

    def commit_of(self, oid: str) -> str:
        return self.repo.peel(oid).commit

    def release(self, version: str, component: str = C, commit: str | None = None) -> str:
        """An annotated version tag on the server; returns the tag object id."""
        name = f"{component}/{version}"
        oid = self.repo.tag(name, commit or self.repo.commit())
        self.repo.refs[ref(name)] = oid
        return oid

    def env_tag(self, slot: str, version_tag: str, component: str = C) -> str:
        """The common client's env tag: annotated, wrapping the version *tag object*."""
        return self.repo.tag(f"{component}/{slot}", version_tag)

    def deployed(self, slot: str, version_tag: str, component: str = C) -> str:
        oid = self.env_tag(slot, version_tag, component)
        self.repo.refs[ref(f"{component}/{slot}")] = oid
        return oid

    def create(self, tag: str, new: str) -> RefUpdate:
        assert ref(tag) not in self.repo.refs
        return RefUpdate(ref(tag), ZERO, new)

    def move(self, tag: str, new: str) -> RefUpdate:
        return RefUpdate(ref(tag), self.repo.refs[ref(tag)], new)

    def delete(self, tag: str) -> RefUpdate:
        return RefUpdate(ref(tag), self.repo.refs[ref(tag)], ZERO)

    def set_env(self, slot: str, version_tag: str, component: str = C) -> RefUpdate:
        """Point a slot at a version the way the client does, creating or moving it."""
        new = self.env_tag(slot, version_tag, component)
        name = f"{component}/{slot}"
        return self.move(name, new) if ref(name) in self.repo.refs else self.create(name, new)

    def decide(self, updates):
        return decide(self.policy, self.repo, updates, self.context)


# ---- the table --------------------------------------------------------------------------

CASES = []


def case(*expected, xfail: str | None = None):
    """Register a builder: build(world) -> [RefUpdate]; expected (verdict, rule, change)s."""
    def register(build):
        marks = [pytest.mark.xfail(reason=xfail, strict=True)] if xfail else []
        CASES.append(pytest.param(build, list(expected), id=build.__name__, marks=marks))
        return build
    return register




def ok(change):
    return (ACCEPTED, None, change)


def no(rule, change):
    return (REJECTED, rule, change)


def warned(rule, change):
    return (WARNED, rule, change)


# -- versions

@case(ok("create"))
def version_create_of_an_annotated_tag_on_a_commit_is_accepted(w):
    return [w.create(f"{C}/v1.0.0", w.repo.tag(f"{C}/v1.0.0", w.repo.commit()))]


@case(ok("create"))
def version_create_of_a_prerelease_with_build_metadata_is_accepted(w):
    name = f"{C}/v1.0.0-rc.1+build.7"
    return [w.create(name, w.repo.tag(name, w.repo.commit()))]


@case(ok("create"))
def lightweight_version_is_accepted_by_default(w):
    return [w.create(f"{C}/v1.0.0", w.repo.commit())]


@case(no("version-lightweight", "create"))
def lightweight_version_is_rejected_when_the_policy_denies_lightweight_versions(w):
    w.policy = LIGHTWEIGHT_DENIED
    return [w.create(f"{C}/v1.0.0", w.repo.commit())]


@case(ok("create"))
def annotated_version_is_accepted_when_the_policy_denies_lightweight_versions(w):
    w.policy = LIGHTWEIGHT_DENIED
    return [w.create(f"{C}/v1.0.0", w.repo.tag(f"{C}/v1.0.0", w.repo.commit()))]


@case(no("version-immutable", "move"))
def version_moved_to_another_commit_is_rejected(w):
    w.release("v1.0.0")
    return [w.move(f"{C}/v1.0.0", w.repo.tag(f"{C}/v1.0.0", w.repo.commit()))]


@case(no("version-immutable", "move"))
def version_remade_as_a_new_tag_object_on_the_same_commit_is_rejected(w):
    old = w.release("v1.0.0")
    return [w.move(f"{C}/v1.0.0", w.repo.tag(f"{C}/v1.0.0", w.commit_of(old)))]


@case(no("version-immutable", "move"))
def lightweight_version_replaced_by_an_annotated_tag_on_its_commit_is_rejected(w):
    commit = w.repo.commit()
    w.repo.refs[ref(f"{C}/v1.0.0")] = commit
    return [w.move(f"{C}/v1.0.0", w.repo.tag(f"{C}/v1.0.0", commit))]


@case(no("version-immutable", "delete"))
def version_delete_is_rejected(w):
    w.release("v1.0.0")
    return [w.delete(f"{C}/v1.0.0")]


@case(no("version-target", "create"))
def version_tag_of_a_tree_is_rejected(w):
    return [w.create(f"{C}/v1.0.0", w.repo.tag(f"{C}/v1.0.0", w.repo.tree()))]


@case(no("version-target", "create"))
def version_tag_of_a_blob_is_rejected(w):
    return [w.create(f"{C}/v1.0.0", w.repo.tag(f"{C}/v1.0.0", w.repo.blob()))]


@case(no("version-target", "create"))
def lightweight_version_on_a_tree_is_rejected(w):
    return [w.create(f"{C}/v1.0.0", w.repo.tree())]


@case(no("version-target", "create"))
def version_pointing_at_a_missing_object_is_rejected(w):
    return [w.create(f"{C}/v1.0.0", "f" * 40)]


@case(no("version-target", "create"))
def version_tag_wrapping_another_version_tag_object_is_rejected(w):
    inner = w.release("v1.0.0")
    return [w.create(f"{C}/v2.0.0", w.repo.tag(f"{C}/v2.0.0", inner))]


@case(no("tag-name-mismatch", "create"))
def version_tag_object_pushed_under_another_version_name_is_rejected(w):
    return [w.create(f"{C}/v1.0.1", w.repo.tag(f"{C}/v1.0.0", w.repo.commit()))]


@case(no("tag-name-mismatch", "create"))
def version_tag_object_of_another_component_is_rejected(w):
    return [w.create(f"{C}/v1.0.0", w.repo.tag(f"{OTHER_C}/v1.0.0", w.repo.commit()))]


@case(no("version-invalid", "create"))
def version_lookalike_slot_is_rejected(w):
    return [w.create(f"{C}/v1.0", w.repo.tag(f"{C}/v1.0", w.repo.commit()))]


# -- what an environment slot may point at (staging: first stage of the default pipeline)

@case(ok("deploy"))
def env_tag_wrapping_the_servers_version_tag_object_is_accepted(w):
    return [w.set_env("staging", w.release("v1.0.0"))]


@case(no("env-version-mismatch", "create"))
def env_tag_wrapping_a_rewritten_copy_of_the_version_tag_is_rejected(w):
    server = w.release("v1.0.0")
    copy = w.repo.tag(f"{C}/v1.0.0", w.commit_of(server))  # same name and commit, new object
    return [w.set_env("staging", copy)]


@case(no("env-version-mismatch", "create"))
def lightweight_env_on_a_rewritten_copy_of_the_version_tag_is_rejected(w):
    server = w.release("v1.0.0")
    return [w.create(f"{C}/staging", w.repo.tag(f"{C}/v1.0.0", w.commit_of(server)))]


@case(ok("deploy"))
def lightweight_env_pointing_straight_at_the_version_tag_object_is_accepted(w):
    return [w.create(f"{C}/staging", w.release("v1.0.0"))]


@case(ok("deploy"))
def lightweight_env_on_a_released_commit_is_accepted(w):
    return [w.create(f"{C}/staging", w.commit_of(w.release("v1.0.0")))]


@case(ok("deploy"))
def annotated_env_tag_of_its_own_name_on_a_released_commit_is_accepted(w):
    commit = w.commit_of(w.release("v1.0.0"))
    return [w.create(f"{C}/staging", w.repo.tag(f"{C}/staging", commit))]


@case(no("env-wrong-component", "create"))
def env_tag_wrapping_a_version_of_another_component_is_rejected(w):
    w.release("v1.0.0")
    return [w.set_env("staging", w.release("v1.0.0", OTHER_C))]


@case(no("env-unreleased", "create"))
def lightweight_env_on_a_commit_released_only_by_another_component_is_rejected(w):
    return [w.create(f"{C}/staging", w.commit_of(w.release("v1.0.0", OTHER_C)))]


@case(no("env-unreleased", "create"))
def env_on_an_unreleased_commit_is_rejected(w):
    w.release("v1.0.0")
    return [w.create(f"{C}/staging", w.repo.commit())]


@case(no("env-unreleased", "create"))
def env_wrapping_a_version_tag_the_server_does_not_have_is_rejected(w):
    unpushed = w.repo.tag(f"{C}/v1.0.0", w.repo.commit())
    return [w.set_env("staging", unpushed)]


@case(no("env-target", "create"))
def env_on_a_tree_is_rejected(w):
    return [w.create(f"{C}/staging", w.repo.tree())]


@case(no("env-target", "create"))
def env_tag_nested_two_tags_deep_is_rejected(w):
    staging = w.deployed("staging", w.release("v1.0.0"))
    return [w.create(f"{C}/production", w.repo.tag(f"{C}/production", staging))]


@case(no("tag-name-mismatch", "create"))
def env_tag_object_of_another_slot_pushed_to_production_is_rejected(w):
    staging = w.deployed("staging", w.release("v1.0.0"))
    return [w.create(f"{C}/production", staging)]


@case(ok("create"), ok("deploy"))
def env_may_take_a_version_created_in_the_same_push(w):
    version = w.repo.tag(f"{C}/v1.0.0", w.repo.commit())
    return [w.create(f"{C}/v1.0.0", version), w.set_env("staging", version)]


@case(ok("deploy"), ok("create"))
def decisions_come_back_in_the_order_of_the_updates(w):
    version = w.repo.tag(f"{C}/v1.0.0", w.repo.commit())
    return [w.set_env("staging", version), w.create(f"{C}/v1.0.0", version)]


@case(no("version-lightweight", "create"), no("env-unreleased", "create"))
def env_does_not_count_a_version_rejected_in_the_same_push(w):
    w.policy = LIGHTWEIGHT_DENIED
    commit = w.repo.commit()
    return [w.create(f"{C}/v1.0.0", commit), w.create(f"{C}/staging", commit)]


@case(no("env-unreleased", "create"))
def commit_tagged_only_by_a_misnamed_deeper_ref_is_not_a_release(w):
    commit = w.repo.commit()
    w.repo.refs[ref(f"{C}/old/v9.0.0")] = commit
    return [w.create(f"{C}/staging", commit)]


# -- promotion order (default: staging -> production, strict)

def two_versions(w):
    """v1.0.0 in staging and production, v1.1.0 released; returns both tag objects."""
    v1 = w.release("v1.0.0")
    v2 = w.release("v1.1.0")
    w.deployed("staging", v1)
    w.deployed("production", v1)
    return v1, v2


@case(ok("promote"))
def production_takes_the_version_staging_holds(w):
    _, v2 = two_versions(w)
    w.deployed("staging", v2)
    return [w.set_env("production", v2)]


@case(no("promotion-order", "out-of-order"))
def production_cannot_skip_staging(w):
    _, v2 = two_versions(w)
    return [w.set_env("production", v2)]


@case(no("promotion-order", "out-of-order"))
def production_cannot_be_created_before_staging_holds_the_version(w):
    return [w.set_env("production", w.release("v1.0.0"))]


@case(ok("promote"))
def production_can_be_created_from_what_staging_holds(w):
    v1 = w.release("v1.0.0")
    w.deployed("staging", v1)
    return [w.set_env("production", v1)]


@case(ok("deploy"))
def first_stage_takes_any_released_version(w):
    _, v2 = two_versions(w)
    return [w.set_env("staging", v2)]


@case(ok("deploy"))
def slot_outside_the_pipeline_takes_any_released_version(w):
    _, v2 = two_versions(w)
    return [w.set_env("canary", v2)]


@case(ok("deploy"))
def component_without_a_pipeline_has_free_slots(w):
    w.policy = load("components:\n  - match: 'logic/*'\n    pipeline: default\n")
    _, v2 = two_versions(w)
    return [w.set_env("production", v2)]


@case(no("atomic-push", "deploy"), no("promotion-order", "out-of-order"))
def strict_promotion_does_not_count_staging_set_in_the_same_push(w):
    _, v2 = two_versions(w)
    return [w.set_env("staging", v2), w.set_env("production", v2)]


@case(ok("deploy"), ok("promote"))
def same_push_policy_counts_staging_set_in_the_same_push(w):
    w.policy = SAME_PUSH
    _, v2 = two_versions(w)
    return [w.set_env("staging", v2), w.set_env("production", v2)]


@case(ok("promote"), ok("deploy"), ok("create"))
def same_push_policy_releases_and_promotes_in_one_push_in_any_order(w):
    w.policy = SAME_PUSH
    two_versions(w)
    v3 = w.repo.tag(f"{C}/v1.2.0", w.repo.commit())
    return [w.set_env("production", v3), w.set_env("staging", v3),
            w.create(f"{C}/v1.2.0", v3)]


@case(no("env-version-mismatch", "move"), no("promotion-order", "out-of-order"))
def same_push_policy_does_not_count_a_rejected_upstream_update(w):
    w.policy, w.context = SAME_PUSH, UPDATE
    _, v2 = two_versions(w)
    copy = w.repo.tag(f"{C}/v1.1.0", w.commit_of(v2))
    return [w.set_env("staging", copy), w.set_env("production", v2)]


@case(ok("deploy"), ok("promote"))
def same_push_policy_still_accepts_what_staging_held_before_the_push(w):
    w.policy = SAME_PUSH
    _, v2 = two_versions(w)
    w.deployed("staging", v2)
    v3 = w.release("v1.2.0")
    return [w.set_env("staging", v3), w.set_env("production", v2)]


@case(ok("deploy"), ok("promote"))
def strict_policy_accepts_shifting_the_pipeline_in_one_push(w):
    _, v2 = two_versions(w)
    w.deployed("staging", v2)
    v3 = w.release("v1.2.0")
    return [w.set_env("staging", v3), w.set_env("production", v2)]


# -- A/B: {control, treatment} -> production

def ab_start(w):
    w.policy = AB
    v1 = w.release("v1.0.0")
    v2 = w.release("v1.1.0")
    for slot in ("control", "treatment", "production"):
        w.deployed(slot, v1)
    return v1, v2


@case(ok("promote"))
def production_takes_the_version_control_holds(w):
    _, v2 = ab_start(w)
    w.deployed("control", v2)
    return [w.set_env("production", v2)]


@case(ok("promote"))
def production_takes_the_version_treatment_holds(w):
    _, v2 = ab_start(w)
    w.deployed("treatment", v2)
    return [w.set_env("production", v2)]


@case(no("promotion-order", "out-of-order"))
def production_rejects_a_version_neither_alternative_holds(w):
    _, v2 = ab_start(w)
    return [w.set_env("production", v2)]


@case(ok("deploy"))
def alternatives_of_the_first_stage_take_any_released_version(w):
    _, v2 = ab_start(w)
    return [w.set_env("treatment", v2)]


# -- rings (a longer pipeline)

@case(no("promotion-order", "out-of-order"))
def ring_2_cannot_take_what_only_ring_0_holds(w):
    w.policy = RINGS
    v1 = w.release("v1.0.0")
    w.deployed("ring-0", v1)
    return [w.set_env("ring-2", v1)]


@case(ok("promote"))
def ring_3_takes_what_ring_2_holds(w):
    w.policy = RINGS
    v1 = w.release("v1.0.0")
    w.deployed("ring-2", v1)
    return [w.set_env("ring-3", v1)]


# -- rollback, redeploy, forward skip

@case(ok("rollback"))
def production_rolls_back_to_an_earlier_version_without_passing_staging(w):
    v1, v2 = two_versions(w)
    w.deployed("staging", v2)
    w.deployed("production", v2)
    return [w.set_env("production", v1)]


@case(ok("rollback"))
def lightweight_production_rolls_back_by_commit(w):
    v1, v2 = two_versions(w)
    w.deployed("staging", v2)
    w.repo.refs[ref(f"{C}/production")] = w.commit_of(v2)
    return [w.move(f"{C}/production", w.commit_of(v1))]


@case(no("promotion-order", "out-of-order"))
def production_cannot_skip_forward_past_what_staging_holds(w):
    _, v2 = two_versions(w)
    v3 = w.release("v1.2.0")
    w.deployed("staging", v2)
    return [w.set_env("production", v3)]


@case(ok("redeploy"))
def production_redeploys_its_commit_with_a_new_tag_object(w):
    v1, v2 = two_versions(w)
    w.deployed("staging", v2)
    return [w.set_env("production", v1)]


@case(ok("rollback"))
def first_stage_slot_moved_back_to_an_earlier_version_is_recorded_as_a_rollback(w):
    v1, v2 = two_versions(w)
    w.deployed("staging", v2)
    return [w.set_env("staging", v1)]


# -- deleting slots

@case(no("env-protected", "delete"))
def deleting_protected_production_is_rejected(w):
    two_versions(w)
    return [w.delete(f"{C}/production")]


@case(ok("delete"))
def deleting_an_unprotected_slot_is_accepted(w):
    two_versions(w)
    return [w.delete(f"{C}/staging")]


@case(no("env-protected", "delete"))
def deleting_a_slot_the_policy_protects_is_rejected(w):
    w.policy = BLUE_GREEN
    w.deployed("blue", w.release("v1.0.0"))
    return [w.delete(f"{C}/blue")]


@case(ok("delete"))
def deleting_production_is_accepted_when_the_policy_protects_other_slots(w):
    w.policy = BLUE_GREEN
    w.deployed("production", w.release("v1.0.0"))
    return [w.delete(f"{C}/production")]


# -- atomicity

@case(no("atomic-push", "deploy"), no("slot-unknown", "create"))
def valid_update_is_rejected_with_an_invalid_sibling_in_an_atomic_push(w):
    v1 = w.release("v1.0.0")
    return [w.set_env("staging", v1), w.create(f"{C}/prod", w.env_tag("prod", v1))]


@case(ok("deploy"), no("slot-unknown", "create"))
def valid_update_stands_alone_when_the_push_is_not_atomic(w):
    w.context = UPDATE
    v1 = w.release("v1.0.0")
    return [w.set_env("staging", v1), w.create(f"{C}/prod", w.env_tag("prod", v1))]


@case(ok(None), no("atomic-push", "create"), no("version-immutable", "delete"))
def branch_update_is_not_judged_even_in_a_rejected_atomic_push(w):
    w.release("v1.0.0")
    return [RefUpdate("refs/heads/main", ZERO, w.repo.commit()),
            w.create(f"{C}/v2.0.0", w.repo.tag(f"{C}/v2.0.0", w.repo.commit())),
            w.delete(f"{C}/v1.0.0")]


# -- warn and off

@case(warned("promotion-order", "out-of-order"))
def promotion_order_at_warn_accepts_with_a_warning(w):
    _, v2 = two_versions(w)
    w.policy = rules(promotion_order="warn")
    return [w.set_env("production", v2)]


@case(ok("out-of-order"))
def promotion_order_off_accepts_silently(w):
    _, v2 = two_versions(w)
    w.policy = rules(promotion_order="off")
    return [w.set_env("production", v2)]


@case(warned("env-unreleased", "deploy"))
def env_unreleased_at_warn_accepts_with_a_warning(w):
    w.policy = rules(env_unreleased="warn")
    return [w.create(f"{C}/staging", w.repo.commit())]


@case(warned("version-immutable", "move"))
def version_immutable_at_warn_accepts_a_move_with_a_warning(w):
    w.policy = rules(version_immutable="warn")
    w.release("v1.0.0")
    return [w.move(f"{C}/v1.0.0", w.repo.tag(f"{C}/v1.0.0", w.repo.commit()))]


@case(warned("slot-unknown", "create"))
def invalid_name_at_warn_accepts_with_a_warning(w):
    w.policy = rules(slot_unknown="warn")
    return [w.create(f"{C}/prod", w.repo.commit())]


@case(warned("promotion-order", "out-of-order"), ok("create"))
def warned_update_does_not_reject_its_siblings_in_an_atomic_push(w):
    _, v2 = two_versions(w)
    w.policy = rules(promotion_order="warn")
    return [w.set_env("production", v2),
            w.create(f"{C}/v2.0.0", w.repo.tag(f"{C}/v2.0.0", w.repo.commit()))]


@case(no("atomic-push", "out-of-order"), no("slot-unknown", "create"))
def warned_update_is_rejected_with_an_invalid_sibling_in_an_atomic_push(w):
    _, v2 = two_versions(w)
    w.policy = rules(promotion_order="warn")
    return [w.set_env("production", v2), w.create(f"{C}/prod", w.repo.commit())]


# -- update mode: refs this push already wrote

def staging_written_earlier_in_this_push(w, policy):
    """Update mode: staging was moved to v1.1.0 by this push before production's turn."""
    _, v2 = two_versions(w)
    before = w.repo.refs[ref(f"{C}/staging")]
    written = w.deployed("staging", v2)
    w.policy = policy
    w.context = PushContext(hook="update", atomic=False,
                            earlier=(RefUpdate(ref(f"{C}/staging"), before, written),))
    return v2


@case(no("promotion-order", "out-of-order"))
def update_mode_strict_promotion_reads_staging_as_it_was_before_the_push(w):
    v2 = staging_written_earlier_in_this_push(w, DEFAULT)
    return [w.set_env("production", v2)]


@case(ok("promote"))
def update_mode_same_push_promotion_counts_staging_written_earlier_in_the_push(w):
    v2 = staging_written_earlier_in_this_push(w, SAME_PUSH)
    return [w.set_env("production", v2)]


@case(no("promotion-order", "out-of-order"))
def update_mode_staging_created_earlier_in_the_push_held_nothing_before(w):
    v1 = w.release("v1.0.0")
    written = w.deployed("staging", v1)
    w.context = PushContext(hook="update", atomic=False,
                            earlier=(RefUpdate(ref(f"{C}/staging"), ZERO, written),))
    return [w.set_env("production", v1)]


@case(ok("deploy"))
def update_mode_env_takes_a_version_written_earlier_in_the_push(w):
    v1 = w.release("v1.0.0")
    w.context = PushContext(hook="update", atomic=False,
                            earlier=(RefUpdate(ref(f"{C}/v1.0.0"), ZERO, v1),))
    return [w.set_env("staging", v1)]


# -- outside the managed tree

@case(ok("create"))
def plain_semver_tag_create_is_accepted(w):
    return [w.create("v3.1.4", w.repo.tag("v3.1.4", w.repo.commit()))]


@case(no("unmanaged-immutable", "move"))
def plain_semver_tag_move_is_rejected(w):
    w.repo.refs[ref("v3.1.4")] = w.repo.commit()
    return [w.move("v3.1.4", w.repo.commit())]


@case(no("unmanaged-immutable", "delete"))
def plain_semver_tag_delete_is_rejected(w):
    w.repo.refs[ref("v3.1.4")] = w.repo.commit()
    return [w.delete("v3.1.4")]


@case(ok("move"), ok("delete"))
def other_unmanaged_tags_move_and_delete_freely(w):
    w.repo.refs[ref("nightly")] = w.repo.commit()
    w.repo.refs[ref("old/build-1")] = w.repo.commit()
    return [w.move("nightly", w.repo.commit()), w.delete("old/build-1")]


@case(no("unmanaged-denied", "create"))
def unmanaged_tag_is_rejected_when_the_policy_denies_them(w):
    w.policy = load("unmanaged_tags:\n  other: deny\n")
    return [w.create("nightly", w.repo.commit())]


@case(no("tag-name-mismatch", "create"))
def unmanaged_tag_object_pushed_under_another_name_is_rejected(w):
    return [w.create("release-1", w.repo.tag("release-2", w.repo.commit()))]


@case(no("reserved-namespace", "create"))
def writing_the_reserved_namespace_is_rejected(w):
    return [w.create("refs/tagwarden/lock", w.repo.commit())]


@case(no("reserved-namespace", "delete"))
def deleting_from_the_reserved_namespace_is_rejected(w):
    w.repo.refs["refs/tagwarden/state"] = w.repo.commit()
    return [w.delete("refs/tagwarden/state")]


@case(ok("delete"))
def deleting_a_misnamed_managed_tag_is_accepted_as_cleanup(w):
    w.repo.refs[ref(f"{C}/prod")] = w.repo.commit()
    return [w.delete(f"{C}/prod")]




@pytest.mark.parametrize("build, expected", CASES)
def test_engine_decides(build, expected):
    w = World()
    updates = build(w)
    refs_before = dict(w.repo.refs)
    decisions = w.decide(updates)
    assert [(d.verdict, d.rule, d.change) for d in decisions] == expected
    assert [d.update for d in decisions] == updates
    assert w.repo.refs == refs_before  # decide only reads
    for d in decisions:
        if d.verdict == REJECTED and d.rule != "atomic-push":
            assert d.reason
            assert d.fix, d  # every rejection comes with a command that fixes it
        if d.verdict == WARNED:
            assert d.accepted and d.warnings and d.warnings[0].rule == d.rule


# ---- the details of a decision ------------------------------------------------------------

def test_rejected_promotion_says_what_the_slot_holds_and_what_was_pushed():
    w = World()
    v1, v2 = two_versions(w)
    [d] = w.decide([w.set_env("production", v2)])
    c1, c2 = w.commit_of(v1), w.commit_of(v2)
    assert d.held == f"v1.0.0 ({c1[:7]})"
    assert d.attempted == f"v1.1.0 ({c2[:7]})"
    assert "staging" in d.reason
    assert d.fix[0] == f"git tag -f {C}/staging {C}/v1.1.0^{{}}"
    assert (d.old_commit, d.new_commit, d.version) == (c1, c2, "v1.1.0")


def test_accepted_env_decision_names_the_version_it_lands_on():
    w = World()
    v1, v2 = two_versions(w)
    w.deployed("staging", v2)
    [d] = w.decide([w.set_env("production", v2)])
    assert (d.verdict, d.version, d.new_commit, d.old_commit) == \
        (ACCEPTED, "v1.1.0", w.commit_of(v2), w.commit_of(v1))
    assert d.held == d.attempted == ""  # words only for decisions someone reads


def test_lightweight_env_on_a_commit_lands_on_the_highest_version_there():
    w = World()
    commit = w.repo.commit()
    for version in ("v1.0.0-rc.1", "v1.0.0", "v0.9.0"):
        w.release(version, commit=commit)
    [d] = w.decide([w.create(f"{C}/staging", commit)])
    assert (d.verdict, d.version) == (ACCEPTED, "v1.0.0")


def test_version_decision_names_its_version():
    w = World()
    [d] = w.decide([w.create(f"{C}/v1.2.3-rc.1", w.repo.commit())])
    assert d.version == "v1.2.3-rc.1"


def test_atomic_sibling_rejection_explains_itself_without_a_fix():
    w = World()
    v1 = w.release("v1.0.0")
    staging, prod = w.decide([w.set_env("staging", v1), w.create(f"{C}/prod", v1)])
    assert staging.rule == "atomic-push" and staging.fix == ()
    assert "another ref" in staging.reason
    assert prod.rule == "slot-unknown"


def test_warned_decision_carries_every_warning():
    w = World()
    _, v2 = two_versions(w)
    w.policy = rules(env_version_mismatch="warn", promotion_order="warn")
    copy = w.repo.tag(f"{C}/v1.1.0", w.commit_of(v2))
    [d] = w.decide([w.move(f"{C}/production", copy)])
    assert d.verdict == WARNED and d.accepted
    assert [f.rule for f in d.warnings] == ["env-version-mismatch", "promotion-order"]
    assert d.rule == "env-version-mismatch"
    assert all(f.reason in d.reason for f in d.warnings)


def test_env_slot_on_a_tree_is_rejected_with_a_fix_command():
    w = World()
    w.release("v1.0.0")
    [d] = w.decide([w.create(f"{C}/staging", w.repo.tree())])
    assert (d.verdict, d.rule) == (REJECTED, "env-target")
    assert d.fix


def test_empty_push_decides_nothing():
    assert decide(DEFAULT, FakeRepo(), [], PRE_RECEIVE) == []


def test_sha256_zero_ids_count_as_absent():
    w = World()
    commit = w.commit_of(w.release("v1.0.0"))
    [d] = w.decide([RefUpdate(ref(f"{C}/staging"), "0" * 64, commit)])
    assert (d.verdict, d.change, d.update.action) == (ACCEPTED, "deploy", "create")


# ---- properties over one small world -------------------------------------------------------

def property_world():
    w = World()
    v1, v2 = two_versions(w)
    other = w.release("v1.0.0", OTHER_C)
    w.repo.refs[ref("v3.1.4")] = w.repo.commit()
    unpushed = w.repo.tag(f"{C}/v1.2.0", w.repo.commit())
    copy = w.repo.tag(f"{C}/v1.0.0", w.commit_of(v1))
    values = [ZERO, v1, v2, other, unpushed, copy, w.commit_of(v1), w.commit_of(v2),
              w.repo.commit(), w.repo.tree(), "e" * 40]
    values += [w.env_tag(slot, v) for slot in ("staging", "production", "canary", "prod")
               for v in (v1, v2, unpushed, copy)]
    refs = [ref(f"{C}/{slot}") for slot in ("v1.0.0", "v1.1.0", "v1.2.0", "staging",
                                             "production", "canary", "prod", "v1.0")]
    refs += [ref(f"{OTHER_C}/staging"), ref("v3.1.4"), ref("nightly"), "refs/heads/main",
             "refs/tagwarden/x", ref("components/prompts")]
    return w, refs, values


WORLD, REFS, VALUES = property_world()
POLICIES = [DEFAULT, SAME_PUSH, AB, LIGHTWEIGHT_DENIED,
            rules(promotion_order="warn", env_unreleased="off", version_immutable="warn")]


@st.composite
def pushes(draw):
    names = draw(st.lists(st.sampled_from(REFS), unique=True, max_size=6))
    updates = []
    for name in names:
        old = WORLD.repo.refs.get(name, ZERO)
        new = draw(st.sampled_from([v for v in VALUES if v != old]))
        if old == ZERO and new == ZERO:
            continue
        updates.append(RefUpdate(name, old, new))
    return updates


@PROPERTY
@given(pushes(), st.sampled_from(POLICIES))
def test_atomic_push_accepts_all_tag_updates_or_none(updates, policy):
    decisions = decide(policy, WORLD.repo, updates, PRE_RECEIVE)
    judged = [d for d in decisions if d.name.kind != OTHER]
    assert all(d.accepted for d in judged) or not any(d.accepted for d in judged)
    assert all(d.accepted for d in decisions if d.name.kind == OTHER)


@PROPERTY
@given(pushes(), st.sampled_from(POLICIES), st.booleans(), st.randoms(use_true_random=False))
def test_decisions_do_not_depend_on_the_order_of_the_updates(updates, policy, atomic, rnd):
    # the judgement, not its wording: "attempted" may name a version a sibling creates
    def judged(decisions):
        return {d.update.ref: (d.verdict, d.rule, d.change, d.version, d.old_commit,
                               d.new_commit, tuple(f.rule for f in d.warnings))
                for d in decisions}

    context = PushContext(hook="pre-receive", atomic=atomic)
    first = judged(decide(policy, WORLD.repo, updates, context))
    shuffled = updates[:]
    rnd.shuffle(shuffled)
    assert judged(decide(policy, WORLD.repo, shuffled, context)) == first


@PROPERTY
@given(pushes(), st.sampled_from(POLICIES))
def test_every_decision_names_a_rule_exactly_when_it_is_not_plainly_accepted(updates, policy):
    for d in decide(policy, WORLD.repo, updates, UPDATE):
        assert d.verdict in (ACCEPTED, WARNED, REJECTED)
        assert (d.rule is None) == (d.verdict == ACCEPTED)


def test_property_world_is_not_changed_by_deciding():
    before = dict(WORLD.repo.refs)
    rnd = random.Random(0)
    for _ in range(20):
        names = rnd.sample(REFS, 3)
        updates = [RefUpdate(n, WORLD.repo.refs.get(n, ZERO), rnd.choice(VALUES[1:]))
                   for n in names]
        decide(DEFAULT, WORLD.repo, updates, PRE_RECEIVE)
    assert WORLD.repo.refs == before
