"""tagwarden.refname: classify a ref once, under the shipped default policy; printable()."""
from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tagwarden.paths
import tagwarden.policy
from tagwarden.model import ENVIRONMENT, INVALID, OTHER, RESERVED_KIND, UNMANAGED, VERSION
from tagwarden.refname import classify, is_plain_semver, printable
from tagwarden.rules import RULES
from tagwarden.semver import looks_like_version, try_parse

PROPERTY = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

with open(tagwarden.paths.default_policy()) as _f:
    DEFAULT = tagwarden.policy.load(_f.read(), "default.yaml")
# every slot that does not look like a version is an environment here
CATCH_ALL = tagwarden.policy.load("version: 1\nenvironments:\n  patterns: ['.*']\n")

C = "components/prompts/extraction"
T = f"refs/tags/{C}"


# ---- versions and environments ----------------------------------------------------------

VERSIONS = [
    f"{T}/v1.0.0",
    f"{T}/v0.0.0",
    f"{T}/v1.2.3-rc.1",
    f"{T}/v1.2.3-rc.1+build.7",
    f"{T}/v1.2.3+20240101",
    "refs/tags/logic/agents/a/v10.20.30",
    "refs/tags/components/routes/" + "a" * 100 + "/v1.0.0",
]


@pytest.mark.parametrize("ref", VERSIONS)
def test_version_slot_is_classified_as_version(ref):
    name = classify(ref, DEFAULT)
    slot = ref.rsplit("/", 1)[1]
    assert name.kind == VERSION
    assert name.component == ref[len("refs/tags/"):].rsplit("/", 1)[0]
    assert name.slot == slot
    assert name.version == try_parse(slot)
    assert name.problem is None
    assert name.tag == ref[len("refs/tags/"):]
    assert name.audited


ENVIRONMENTS = [
    "dev", "staging", "production", "canary", "blue", "green", "control", "treatment",
    "canary-0", "canary-5", "canary-25", "canary-100",
    "ring-0", "ring-1", "ring-3", "ring-10",
    "rollout-1pct", "rollout-9pct", "rollout-10pct", "rollout-50pct", "rollout-99pct",
    "rollout-100pct",
]


@pytest.mark.parametrize("slot", ENVIRONMENTS)
def test_default_environment_slot_is_classified_as_environment(slot):
    name = classify(f"{T}/{slot}", DEFAULT)
    assert (name.kind, name.component, name.slot, name.version, name.problem) == \
        (ENVIRONMENT, C, slot, None, None)


@pytest.mark.parametrize("type_", sorted(DEFAULT.types))
def test_every_default_type_is_managed(type_):
    assert classify(f"refs/tags/logic/{type_}/x/staging", DEFAULT).kind == ENVIRONMENT


# ---- invalid names: each with the rule it breaks ----------------------------------------

INVALID_REFS = [
    # levels
    ("refs/tags/components", "tag-levels"),
    ("refs/tags/components/", "tag-levels"),
    ("refs/tags/components/prompts", "tag-levels"),
    (f"refs/tags/{C}", "tag-levels"),
    (f"{T}/staging/eu", "tag-levels"),
    (f"{T}/v1.0.0/x", "tag-levels"),
    (f"{T}/a/b/c/d", "tag-levels"),
    ("refs/tags/logic/agents/x", "tag-levels"),
    # type
    ("refs/tags/components/widgets/x/v1.0.0", "type-unknown"),
    ("refs/tags/components/prompt/x/v1.0.0", "type-unknown"),  # singular
    ("refs/tags/components/Prompts/x/v1.0.0", "type-unknown"),
    ("refs/tags/components//x/v1.0.0", "type-unknown"),  # empty level
    # name
    ("refs/tags/components/prompts//v1.0.0", "name-invalid"),
    ("refs/tags/components/prompts/" + "a" * 101 + "/v1.0.0", "name-invalid"),
    ("refs/tags/components/prompts/-x/v1.0.0", "name-invalid"),
    ("refs/tags/components/prompts/x-/v1.0.0", "name-invalid"),
    ("refs/tags/components/prompts/.x/v1.0.0", "name-invalid"),
    ("refs/tags/components/prompts/x./v1.0.0", "name-invalid"),
    ("refs/tags/components/prompts/_x/v1.0.0", "name-invalid"),
    ("refs/tags/components/prompts/x_/v1.0.0", "name-invalid"),
    ("refs/tags/components/prompts/Extraction/v1.0.0", "name-invalid"),
    ("refs/tags/components/prompts/eXtraction/staging", "name-invalid"),
    ("refs/tags/components/prompts/ext@ion/v1.0.0", "name-invalid"),
    ("refs/tags/components/prompts/extracción/v1.0.0", "name-invalid"),
    ("refs/tags/components/prompts/ex traction/v1.0.0", "name-invalid"),
    # slot
    (f"{T}/prod", "slot-unknown"),
    (f"{T}/Production", "slot-unknown"),
    (f"{T}/STAGING", "slot-unknown"),
    (f"{T}/", "slot-unknown"),  # empty slot
    (f"{T}/rollout-0pct", "slot-unknown"),
    (f"{T}/rollout-101pct", "slot-unknown"),
    (f"{T}/rollout-1000pct", "slot-unknown"),
    (f"{T}/rollout-01pct", "slot-unknown"),
    (f"{T}/rollout-pct", "slot-unknown"),
    (f"{T}/rollout-5", "slot-unknown"),
    (f"{T}/canary-05", "slot-unknown"),
    (f"{T}/canary-", "slot-unknown"),
    (f"{T}/canary-x", "slot-unknown"),
    (f"{T}/ring-01", "slot-unknown"),
    (f"{T}/ring--1", "slot-unknown"),
    (f"{T}/latest", "slot-unknown"),
    (f"{T}/version", "slot-unknown"),
    # looks like a version, is not one: never an environment
    (f"{T}/v1.0", "version-invalid"),
    (f"{T}/v1", "version-invalid"),
    (f"{T}/v1.2.3.4", "version-invalid"),
    (f"{T}/v1.0.0.1", "version-invalid"),
    (f"{T}/v01.2.3", "version-invalid"),
    (f"{T}/V1.2.3", "version-invalid"),
    (f"{T}/1.2.3", "version-invalid"),
    (f"{T}/v1.2.3-01", "version-invalid"),
    (f"{T}/v1.2.3-", "version-invalid"),
    (f"{T}/v1.2.3+", "version-invalid"),
    (f"{T}/v1.2.3-rc..1", "version-invalid"),
    (f"{T}/v1.2.3_rc1", "version-invalid"),
    (f"{T}/0", "version-invalid"),
    (f"{T}/1st", "version-invalid"),
]


@pytest.mark.parametrize("ref, rule", INVALID_REFS, ids=[r[len("refs/tags/"):] or "-" for r, _ in
                                                          INVALID_REFS])
def test_invalid_managed_ref_names_the_rule_it_breaks(ref, rule):
    name = classify(ref, DEFAULT)
    assert name.kind == INVALID
    assert name.problem[0] == rule
    assert name.problem[1]  # a reason for the pusher
    assert rule in RULES
    assert name.audited


@pytest.mark.parametrize("slot", ["v1.0", "v1.2.3.4", "v01.2.3", "V1.2.3", "1.2.3", "v1"])
def test_version_lookalike_is_invalid_even_when_a_pattern_would_take_it(slot):
    name = classify(f"{T}/{slot}", CATCH_ALL)
    assert name.kind == INVALID
    assert name.problem[0] == "version-invalid"


def test_version_with_unicode_digits_is_never_a_version_or_environment():
    name = classify(f"{T}/v١.2.3", DEFAULT)
    assert name.kind == INVALID
    assert name.problem[0] in ("version-invalid", "slot-unknown")


def test_name_of_100_characters_is_valid_and_101_is_not():
    ok = classify(f"refs/tags/components/prompts/{'a' * 99}b/v1.0.0", DEFAULT)
    too_long = classify(f"refs/tags/components/prompts/{'a' * 100}b/v1.0.0", DEFAULT)
    assert ok.kind == VERSION
    assert (too_long.kind, too_long.problem[0]) == (INVALID, "name-invalid")


@pytest.mark.parametrize("name", ["a", "0", "9x", "a-b", "a.b", "a_b", "a--b", "x1.2",
                                  "my_agent-v2.final"])
def test_name_of_lowercase_digits_dot_dash_underscore_alphanumeric_at_both_ends_is_valid(name):
    assert classify(f"refs/tags/components/prompts/{name}/v1.0.0", DEFAULT).kind == VERSION


# ---- outside the managed tree ---------------------------------------------------------

OUTSIDE = [
    ("refs/tags/v1.2.3", UNMANAGED),
    ("refs/tags/release-1", UNMANAGED),
    ("refs/tags/other/prompts/x/v1.0.0", UNMANAGED),
    ("refs/tags/Components/prompts/x/v1.0.0", UNMANAGED),
    ("refs/tags/component/prompts/x/v1.0.0", UNMANAGED),
    ("refs/tags/componentsx/prompts/x/v1.0", UNMANAGED),
    ("refs/tagwarden/lock", RESERVED_KIND),
    ("refs/tagwarden/state/x", RESERVED_KIND),
    ("refs/tagwarden/", RESERVED_KIND),
    ("refs/heads/main", OTHER),
    ("refs/heads/components/prompts/x/v1.0", OTHER),
    ("refs/notes/commits", OTHER),
    ("refs/meta/config", OTHER),
    ("refs/tagwardenx/a", OTHER),
    ("refs/tag/components/prompts/x/v1.0", OTHER),
    ("HEAD", OTHER),
    ("", OTHER),
]


@pytest.mark.parametrize("ref, kind", OUTSIDE, ids=[r or "-" for r, _ in OUTSIDE])
def test_ref_outside_managed_prefixes_is_unmanaged_reserved_or_other(ref, kind):
    name = classify(ref, DEFAULT)
    assert name.kind == kind
    assert name.component is None and name.slot is None and name.problem is None
    assert name.audited is (kind != OTHER)


@pytest.mark.parametrize("ref, plain", [
    ("refs/tags/v1.2.3", True),
    ("refs/tags/v1.2.3-rc.1+b", True),
    ("refs/tags/v1.2", False),
    ("refs/tags/V1.2.3", False),
    ("refs/tags/1.2.3", False),
    ("refs/tags/release/v1.2.3", False),
    ("refs/tags/release-1", False),
])
def test_plain_semver_tag_is_a_semver_version_at_the_top_of_refs_tags(ref, plain):
    assert is_plain_semver(ref) is plain


# ---- printable: nothing a pusher wrote steers a terminal --------------------------------

ESCAPED = [
    ("\x1b[31mred", "\\x1b[31mred"),
    ("a\x00b", "a\\x00b"),
    ("tab\there", "tab\\x09here"),
    ("line\nbreak", "line\\x0abreak"),
    ("cr\rover", "cr\\x0dover"),
    ("bell\x07", "bell\\x07"),
    ("back\x08space", "back\\x08space"),
    ("del\x7f", "del\\x7f"),
    ("nel\x85", "nel\\x85"),  # C1 NEXT LINE
    ("csi\x9b31m", "csi\\x9b31m"),  # C1 CONTROL SEQUENCE INTRODUCER
    ("osc\x9d0;title\x9c", "osc\\x9d0;title\\x9c"),
    ("rlo\u202eevil", "rlo\\u202eevil"),
    ("zwsp\u200bhere", "zwsp\\u200bhere"),
    ("\u2066isolate\u2069", "\\u2066isolate\\u2069"),
]


@pytest.mark.parametrize("raw, shown", ESCAPED, ids=[repr(r) for r, _ in ESCAPED])
def test_printable_escapes_control_characters(raw, shown):
    assert printable(raw) == shown


@pytest.mark.parametrize("code", list(range(0x20)) + [0x7f] + list(range(0x80, 0xa0)),
                         ids=lambda c: f"U+{c:04X}")
def test_printable_escapes_every_c0_c1_control_and_del(code):
    assert printable(chr(code)) == f"\\x{code:02x}"


# Unicode's Bidi_Control property (PropList.txt): the characters of "Trojan Source"
BIDI_CONTROLS = [0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E,
                 0x2066, 0x2067, 0x2068, 0x2069]


@pytest.mark.parametrize("code", BIDI_CONTROLS + [
    0x061C,
], ids=lambda c: f"U+{c:04X}")
def test_printable_escapes_every_bidi_control(code):
    assert printable(f"a{chr(code)}b") == f"a\\u{code:04x}b"


@pytest.mark.parametrize("text", ["café", "naïve", "Привет", "日本語", "ελληνικά", "🚀 ship",
                                  "١٢٣", "components/prompts/extraction/v1.0.0",
                                  "a\u00a0b", "quote ' \" \\ back"])
def test_printable_keeps_ordinary_text_and_unicode(text):
    assert printable(text) == text


@PROPERTY
@given(st.text())
def test_printable_output_has_no_control_or_bidi_override_characters(text):
    out = printable(text)
    assert not any(unicodedata.category(ch) == "Cc" for ch in out)
    assert not any(ord(ch) in BIDI_CONTROLS for ch in out)


@PROPERTY
@given(st.text(st.characters(blacklist_categories=("Cc", "Cf", "Cs"))))
def test_printable_is_identity_on_text_without_controls_or_format_characters(text):
    assert printable(text) == text


# ---- properties -----------------------------------------------------------------------

SEGMENT = st.text(st.sampled_from("abcvV019.-_/+éA"), max_size=12)


@st.composite
def tag_refs(draw):
    levels = draw(st.lists(st.one_of(st.sampled_from(["components", "logic", "prompts",
                                                      "agents", "staging", "v1.0.0", ""]),
                                     SEGMENT), min_size=1, max_size=6))
    return "refs/tags/" + "/".join(levels)


@PROPERTY
@given(st.one_of(st.text(), tag_refs(), st.builds(lambda s: f"{T}/{s}", st.text())))
def test_classify_never_raises_and_gives_a_consistent_answer(ref):
    for policy in (DEFAULT, CATCH_ALL):
        name = classify(ref, policy)
        assert name.ref == ref
        assert name.kind in (VERSION, ENVIRONMENT, UNMANAGED, INVALID, RESERVED_KIND, OTHER)
        if name.kind == INVALID:
            assert name.problem[0] in RULES
        else:
            assert name.problem is None
        if name.kind == VERSION:
            assert name.version is not None
            assert try_parse(name.slot) == name.version
        if name.kind == ENVIRONMENT:
            assert policy.is_environment(name.slot)
            assert not looks_like_version(name.slot)


lookalike_slots = st.builds(lambda v, d, rest: v + d + rest,
                            st.sampled_from(["", "v", "V"]),
                            st.sampled_from("0123456789"),
                            st.text(st.sampled_from("0123456789.+-abcrvV_x"), max_size=12))


@PROPERTY
@given(lookalike_slots)
def test_slot_that_looks_like_a_version_is_never_an_environment(slot):
    assert looks_like_version(slot)
    for policy in (DEFAULT, CATCH_ALL):
        name = classify(f"{T}/{slot}", policy)
        assert name.kind != ENVIRONMENT
        if try_parse(slot) is None:
            assert (name.kind, name.problem[0]) == (INVALID, "version-invalid")
        else:
            assert name.kind == VERSION


def test_classify_does_not_raise_on_a_version_slot_with_a_huge_number():
    name = classify(f"{T}/v{'1' * 5000}.0.0", DEFAULT)
    assert name.kind in (VERSION, INVALID)
