"""The pure core of who may do what: policy keys, permission and override judgement."""
from __future__ import annotations

import pytest

from tagwarden import access
from tagwarden.model import Identity, RefUpdate
from tagwarden.policy import PolicyError, load, load_layered
from tagwarden.refname import classify

Z, A = "0" * 40, "a" * 40
C = "components/prompts/extraction"
POLICY = load("""
groups:
  releasers: [rita]
  deployers: [dana, "@releasers"]
  sre: [sam]
  everyone: ["*"]
permissions:
  - {action: create-version, allow: releasers}
  - {action: move-slot, slots: [staging, "canary-*"], allow: deployers}
  - {action: [move-slot, delete-slot], slots: [production], components: ["components/*"],
     allow: sre}
  - {action: move-slot, slots: [dev], allow: everyone}
overrides:
  allow: sre
  rules: [promotion-order]
""", "/etc/tw/p.yaml")


def judge(who, tag, old=Z, new=A):
    update = RefUpdate(f"refs/tags/{tag}", old, new)
    return access.permission(POLICY, Identity(who, "GL_USER"), classify(update.ref, POLICY),
                             update)


@pytest.mark.parametrize("who, tag, old, new, allowed", [
    ("rita", f"{C}/v1.0.0", Z, A, True),
    ("dana", f"{C}/v1.0.0", Z, A, False),
    ("dana", f"{C}/staging", Z, A, True),
    ("rita", f"{C}/canary-5", A, "b" * 40, True),     # through @releasers
    ("sam", f"{C}/staging", Z, A, False),
    ("sam", f"{C}/production", A, "b" * 40, True),
    ("sam", f"{C}/production", A, Z, True),
    ("sam", "logic/prompts/x/production", Z, A, False),  # components/* only
    ("dana", f"{C}/canary-5", A, Z, False),          # no delete-slot entry for canaries
    ("anyone", f"{C}/dev", Z, A, True),              # "*"
    ("anyone", f"{C}/v1.0.0", A, "b" * 40, True),    # versions never move: not a permission
    ("anyone", "v1.0.0", Z, A, True),                # unmanaged: not a permission
])
def test_permission_table(who, tag, old, new, allowed):
    assert (judge(who, tag, old, new) is None) is allowed


def test_a_refusal_names_identity_source_groups_and_who_may():
    f = judge("dana", f"{C}/production", A, "b" * 40)
    assert f.rule == "permission"
    assert f.reason == ("dana (identity from GL_USER, in group deployers, everyone) may not "
                        f"move production of {C}; group sre may (permissions[2])")
    assert f.fix[1] == "or ask your git admin to add dana to group sre in /etc/tw/p.yaml"


def test_without_permissions_or_identity_nothing_is_checked():
    update = RefUpdate(f"refs/tags/{C}/v1.0.0", Z, A)
    free = load("version: 1")
    assert access.permission(free, Identity("x", "uid"), classify(update.ref, free), update) \
        is None
    assert access.permission(POLICY, None, classify(update.ref, POLICY), update) is None


def test_an_empty_permissions_list_denies_everything():
    strict = load("permissions: []")
    update = RefUpdate(f"refs/tags/{C}/staging", Z, A)
    f = access.permission(strict, Identity("root", "uid"), classify(update.ref, strict), update)
    assert "so nobody may" in f.reason


@pytest.mark.parametrize("who, options, rule, granted", [
    ("sam", ("tagwarden.override=promotion-order", "tagwarden.reason=INC-1"), None,
     {"promotion-order"}),
    ("sam", ("tagwarden.override=promotion-order",), "override-invalid", set()),
    ("sam", ("tagwarden.override=promotion-order", "tagwarden.reason=  "), "override-invalid",
     set()),
    ("sam", ("tagwarden.override=soak-time", "tagwarden.reason=x"), "override-invalid", set()),
    ("sam", ("tagwarden.override=nope", "tagwarden.reason=x"), "override-invalid", set()),
    ("dana", ("tagwarden.override=promotion-order", "tagwarden.reason=x"), "override-denied",
     set()),
    (None, ("tagwarden.override=promotion-order", "tagwarden.reason=x"), "override-denied",
     set()),
])
def test_override_table(who, options, rule, granted):
    request = access.override(POLICY, Identity(who, "GL_USER") if who else None, options)
    assert (request.problem.rule if request.problem else None) == rule
    assert request.granted == granted


def test_no_override_asked():
    assert access.override(POLICY, Identity("sam", "x"), ("tagwarden.reason=x", "ci.skip")) \
        is None
    assert access.override(POLICY, Identity("sam", "x"), None) is None
    assert access.requested(("tagwarden.override=a", "tagwarden.override=b",
                             "tagwarden.override=a", "tagwarden.reason=1",
                             "tagwarden.reason=2")) == (("a", "b"), "2")


@pytest.mark.parametrize("text, message", [
    ("groups: {a: ['@b']}", "groups.a[0]: no group named 'b'"),
    ("groups: {a: ['@a']}", "groups.a[0]: groups include each other: a -> a"),
    ("groups: {a: ['@b'], b: ['@a']}", "groups include each other: a -> b -> a"),
    ("permissions: [{action: create-version, allow: x}]",
     "permissions[0].allow: no group named 'x'"),
    ("groups: {a: [x]}\npermissions: [{action: create-version, slots: [p], allow: a}]",
     "permissions[0].slots: create-version has no slot"),
    ("groups: {a: [x]}\npermissions: [{allow: a}]", "permissions[0]: each entry needs action"),
    ("permissions: [{action: move, allow: a}]", "permissions[0].action: expected one of"),
    ("overrides: {rules: [chained-hook]}", "overrides.rules[0]: this rule protects"),
    ("overrides: {rules: [nope]}", "overrides.rules[0]: unknown rule"),
    ("overrides: {allow: x}", "overrides.allow: no group named 'x'"),
    ("signatures: {versions: required}", "signatures: signatures needs allowed_signers"),
    ("signatures: {allowed_signers: a, versions: yes}", "signatures.versions: expected one of"),
    ("versions: {from_branches: main}", "versions.from_branches: expected a list"),
])
def test_bad_access_keys_name_file_and_key(text, message):
    with pytest.raises(PolicyError) as err:
        load(text, "p.yaml")
    assert message in str(err.value)


def test_signer_files_are_relative_to_the_file_that_names_them():
    p = load("signatures: {allowed_signers: keys/allowed, revoked: /etc/krl}", "/etc/tw/p.yaml")
    assert (p.signatures.allowed_signers, p.signatures.revoked) == ("/etc/tw/keys/allowed",
                                                                    "/etc/krl")
    layered = load_layered("version: 1", "/etc/fleet/base.yaml",
                           "signatures: {allowed_signers: signers, slots: [production]}",
                           "/srv/app/override.yaml")
    assert layered.signatures.allowed_signers == "/srv/app/signers"
    assert layered.signatures.required_for("environment", "production")
    assert not layered.signatures.required_for("version", None)
