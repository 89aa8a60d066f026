"""tagwarden.semver: strict SemVer 2.0.0 with a leading "v".

An ordered list checked pairwise (semver.org §11, like packaging's ordered version list),
tables of valid and invalid strings, and properties checked against an independent
reading of §11.
"""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tagwarden.semver import InvalidVersion, Version, looks_like_version, parse, try_parse

PROPERTY = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

# ---- precedence: every version sorts strictly before every later one -------------------

ORDERED = [
    "v0.0.0-0",
    "v0.0.0-0.0",  # a larger set of identifiers, equal so far, has higher precedence
    "v0.0.0-1",
    "v0.0.0-9",
    "v0.0.0-10",  # numeric identifiers compare numerically
    "v0.0.0--",  # alphanumeric beats any numeric identifier; "-" (0x2d) is lowest in ASCII
    "v0.0.0-0a",  # alphanumeric even with a leading digit
    "v0.0.0-A",
    "v0.0.0-Z",
    "v0.0.0-a",  # uppercase before lowercase (ASCII)
    "v0.0.0",
    "v0.0.1",
    "v0.1.0",
    "v0.9.0",
    "v0.10.0",  # numeric, not lexical
    "v1.0.0-alpha",  # the example list of semver.org §11
    "v1.0.0-alpha.1",
    "v1.0.0-alpha.beta",
    "v1.0.0-alpha10",  # alphanumeric identifiers compare lexically: "alpha10" < "alpha9"
    "v1.0.0-alpha9",
    "v1.0.0-beta",
    "v1.0.0-beta.2",
    "v1.0.0-beta.11",
    "v1.0.0-rc.1",
    "v1.0.0",
    "v1.0.1-rc.1",
    "v1.0.1",
    "v1.2.3-rc.1",
    "v1.2.3-rc.2",
    "v1.2.3-rc.10",
    "v1.2.3",
    "v1.10.0",
    "v2.0.0-0",
    "v2.0.0",
    "v10.0.0",
    "v18446744073709551616.0.0",  # beyond 64 bits
]

# the same precedence: build metadata is ignored
SAME = [
    ("v1.0.0", "v1.0.0+build"),
    ("v1.0.0+a", "v1.0.0+b"),
    ("v1.0.0+001", "v1.0.0+20130313144700"),
    ("v1.0.0-beta+exp.sha.5114f85", "v1.0.0-beta"),
    ("v1.0.0-rc.1+build.1", "v1.0.0-rc.1+build.2"),
]


@pytest.mark.parametrize("index", range(len(ORDERED)), ids=ORDERED)
def test_version_follows_every_earlier_and_precedes_every_later_version(index):
    v = parse(ORDERED[index])
    wrong = []
    for other_text in ORDERED[:index]:
        other = parse(other_text)
        if not (other.precedes(v) and not v.precedes(other) and other.sort_key < v.sort_key):
            wrong.append(f"{other_text} should precede {v}")
    for other_text in ORDERED[index + 1:]:
        other = parse(other_text)
        if not (v.precedes(other) and not other.precedes(v) and v.sort_key < other.sort_key):
            wrong.append(f"{v} should precede {other_text}")
    assert not wrong


def test_sorting_shuffled_versions_by_sort_key_restores_the_ordered_list():
    versions = [parse(v) for v in ORDERED]
    for seed in range(5):
        shuffled = versions[:]
        random.Random(seed).shuffle(shuffled)
        assert [str(v) for v in sorted(shuffled, key=lambda v: v.sort_key)] == ORDERED


@pytest.mark.parametrize("a, b", SAME, ids=[f"{a}={b}" for a, b in SAME])
def test_build_metadata_is_ignored_for_precedence(a, b):
    va, vb = parse(a), parse(b)
    assert va.sort_key == vb.sort_key
    assert not va.precedes(vb) and not vb.precedes(va)


def test_a_version_does_not_precede_itself():
    for text in ORDERED:
        v = parse(text)
        assert not v.precedes(v)


def test_version_comparison_operators_follow_precedence():
    assert parse("v1.0.0-alpha") < parse("v1.0.0")
    assert sorted(parse(v) for v in reversed(ORDERED)) == [parse(v) for v in ORDERED]


# ---- what parses --------------------------------------------------------------------

VALID = [
    # text, major, minor, patch, prerelease, build
    ("v0.0.0", 0, 0, 0, (), ()),
    ("v1.2.3", 1, 2, 3, (), ()),
    ("v10.20.30", 10, 20, 30, (), ()),
    ("v1.1.2-prerelease+meta", 1, 1, 2, ("prerelease",), ("meta",)),
    ("v1.1.2+meta-valid", 1, 1, 2, (), ("meta-valid",)),
    ("v1.0.0-alpha", 1, 0, 0, ("alpha",), ()),
    ("v1.0.0-0", 1, 0, 0, ("0",), ()),
    ("v1.0.0-0a", 1, 0, 0, ("0a",), ()),
    ("v1.0.0--", 1, 0, 0, ("-",), ()),
    ("v1.0.0-a-b", 1, 0, 0, ("a-b",), ()),
    ("v1.0.0-alpha.0valid", 1, 0, 0, ("alpha", "0valid"), ()),
    ("v1.0.0-rc.1+build.1", 1, 0, 0, ("rc", "1"), ("build", "1")),
    ("v1.2.3-beta+001", 1, 2, 3, ("beta",), ("001",)),  # build identifiers may lead with 0
    ("v1.2.3+0", 1, 2, 3, (), ("0",)),
    ("v1.0.0-alpha-a.b-c-somethinglong+build.1-aef.1-its-okay", 1, 0, 0,
     ("alpha-a", "b-c-somethinglong"), ("build", "1-aef", "1-its-okay")),
    ("v1.2.3----RC-SNAPSHOT.12.9.1--.12+788", 1, 2, 3,
     ("---RC-SNAPSHOT", "12", "9", "1--", "12"), ("788",)),
    ("v1.2.3----R-S.12.9.1--.12+meta", 1, 2, 3, ("---R-S", "12", "9", "1--", "12"), ("meta",)),
    ("v2.0.0+build.1848", 2, 0, 0, (), ("build", "1848")),
    ("v99999999999999999999999.999999999999999999.99999999999999999",
     99999999999999999999999, 999999999999999999, 99999999999999999, (), ()),
]


@pytest.mark.parametrize("text, major, minor, patch, pre, build", VALID,
                         ids=[v[0] for v in VALID])
def test_valid_version_parses_into_its_parts_and_prints_back(text, major, minor, patch, pre,
                                                            build):
    v = parse(text)
    assert (v.major, v.minor, v.patch, v.prerelease, v.build) == (major, minor, patch, pre, build)
    assert str(v) == text
    assert try_parse(text) == v


INVALID = [
    "",
    "v",
    "V",
    "1.2.3",  # the leading v is required
    "V1.2.3",  # and lowercase
    "vv1.2.3",
    "v1",
    "v1.0",
    "v1.2.3.4",
    "v1.0.0.1",
    "v01.2.3",
    "v1.02.3",
    "v1.2.03",
    "v00.0.0",
    "v1.2.3-01",  # numeric pre-release identifiers have no leading zeros
    "v1.2.3-rc.01",
    "v1.2.3-0123",
    "v1.2.3-",
    "v1.2.3+",
    "v1.2.3-+",
    "v1.2.3-pre+",
    "v1.2.3-rc..1",
    "v1.2.3-rc.",
    "v1.2.3-.rc",
    "v1.2.3+a..b",
    "v1.2.3+a.",
    "v1.2.3+a+b",
    "v1.2.3-rc_1",  # underscore is not in the identifier alphabet
    "v1.2.3+build_1",
    "v1.2.3-ä",
    "v1.2.3+ß",
    "v1.2",
    "v1..3",
    "v.1.2.3",
    "v-1.2.3",
    "v1.2.-3",
    "v+1.2.3",
    "v1.2.3\n",  # trailing newline ($ would match before it; fullmatch must not)
    "v1.2.3\r\n",
    "\nv1.2.3",
    " v1.2.3",
    "v1.2.3 ",
    "v 1.2.3",
    "v1.2.3\t",
    "v1.2.3\x00",
    "v١.2.3",  # ARABIC-INDIC DIGIT ONE: \d without re.ASCII would take it
    "v1.٢.3",
    "v1.2.٣",
    "v1.2.3-١",
    "v１.2.3",  # FULLWIDTH DIGIT ONE
    "ｖ1.2.3",  # FULLWIDTH LATIN SMALL LETTER V
    "v1.2.3/x",
    "v1.2.3-rc.1/",
]


@pytest.mark.parametrize("text", INVALID, ids=[repr(t) for t in INVALID])
def test_invalid_version_raises_invalid_version(text):
    with pytest.raises(InvalidVersion):
        parse(text)
    assert try_parse(text) is None


@pytest.mark.parametrize("value", [None, b"v1.2.3", 123, 1.2, ("v1.2.3",)], ids=repr)
def test_non_string_raises_invalid_version(value):
    with pytest.raises(InvalidVersion):
        parse(value)


def test_invalid_version_is_a_value_error():
    assert issubclass(InvalidVersion, ValueError)


def test_version_is_immutable():
    v = parse("v1.2.3")
    with pytest.raises(AttributeError):
        v.major = 2  # type: ignore[misc]


@pytest.mark.parametrize("text", ["v" + "1" * 5000 + ".0.0", "v1.0.0-" + "1" * 5000],
                         ids=["huge-major", "huge-numeric-prerelease"])
def test_huge_numeric_identifier_either_parses_and_sorts_or_is_invalid(text):
    try:
        v = parse(text)
    except InvalidVersion:
        return
    assert isinstance(v.sort_key, tuple)


# ---- what looks like a version --------------------------------------------------------

LOOKS = [
    ("v1.2.3", True),
    ("v1", True),
    ("v1.0", True),
    ("V1.2.3", True),
    ("v01.2.3", True),
    ("v1.2.3.4", True),
    ("v1.2.3-01", True),
    ("1.2.3", True),
    ("0", True),
    ("1st", True),
    ("v0-beta", True),
    ("", False),
    ("v", False),
    ("V", False),
    ("version", False),
    ("vx1", False),
    ("dev", False),
    ("staging", False),
    ("production", False),
    ("canary-5", False),
    ("ring-0", False),
    ("rollout-1pct", False),
    ("release-1.0", False),
    ("-v1.0.0", False),
    (" v1.0.0", False),
]


@pytest.mark.parametrize("text, expected", LOOKS, ids=[repr(t) for t, _ in LOOKS])
def test_looks_like_version(text, expected):
    assert looks_like_version(text) is expected


# ---- properties -----------------------------------------------------------------------

IDENT = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-"
numeric = st.one_of(st.integers(0, 12), st.integers(0, 10**30)).map(str)
alphanumeric = st.builds(  # at least one non-digit, so never numeric
    lambda head, nondigit, tail: head + nondigit + tail,
    st.text(IDENT, max_size=3), st.sampled_from(IDENT[10:]), st.text(IDENT, max_size=3))
build_identifier = st.text(IDENT, min_size=1, max_size=6)


@st.composite
def versions(draw, build=True):
    core = tuple(draw(numeric) for _ in range(3))
    pre = tuple(draw(st.lists(st.one_of(numeric, alphanumeric), max_size=4)))
    meta = tuple(draw(st.lists(build_identifier, max_size=3))) if build else ()
    text = "v" + ".".join(core)
    if pre:
        text += "-" + ".".join(pre)
    if meta:
        text += "+" + ".".join(meta)
    return text, core, pre, meta


def reference_compare(a: Version, b: Version) -> int:
    """semver.org §11, read independently of the product: -1, 0 or 1."""
    def cmp(x, y):
        return (x > y) - (x < y)

    for x, y in ((a.major, b.major), (a.minor, b.minor), (a.patch, b.patch)):
        if x != y:
            return cmp(x, y)
    if not a.prerelease or not b.prerelease:
        # §11.3: a pre-release version has lower precedence than the normal version
        return cmp(not a.prerelease, not b.prerelease)
    for x, y in zip(a.prerelease, b.prerelease):
        if x == y:
            continue
        xn, yn = x.isdigit(), y.isdigit()
        if xn and yn:
            return cmp(int(x), int(y))
        if xn != yn:
            return -1 if xn else 1  # numeric identifiers have lower precedence
        return cmp(x, y)  # ASCII order
    return cmp(len(a.prerelease), len(b.prerelease))


@PROPERTY
@given(versions())
def test_any_valid_semver_with_v_parses_and_round_trips(drawn):
    text, core, pre, meta = drawn
    v = parse(text)
    assert str(v) == text
    assert (v.major, v.minor, v.patch) == tuple(int(c) for c in core)
    assert v.prerelease == pre
    assert v.build == meta
    assert looks_like_version(text)


@PROPERTY
@given(st.one_of(st.text(), st.text("vV0123456789.+-_abcz\n ١", max_size=24)))
def test_parse_raises_only_invalid_version_on_arbitrary_text(text):
    try:
        v = parse(text)
    except InvalidVersion:
        assert try_parse(text) is None
    else:
        assert str(v) == text
        assert looks_like_version(text)


@PROPERTY
@given(versions(), versions(), versions())
def test_sort_key_is_a_total_order_consistent_with_precedes(a, b, c):
    va, vb, vc = parse(a[0]), parse(b[0]), parse(c[0])
    for x, y in ((va, vb), (vb, vc), (va, vc)):
        # exactly one of x < y, y < x, same precedence
        assert [x.precedes(y), y.precedes(x), x.sort_key == y.sort_key].count(True) == 1
        assert x.precedes(y) == (x.sort_key < y.sort_key)
        assert reference_compare(x, y) == ((x.sort_key > y.sort_key) - (x.sort_key < y.sort_key))
    if va.precedes(vb) and vb.precedes(vc):
        assert va.precedes(vc)


@PROPERTY
@given(versions(build=False), st.lists(build_identifier, min_size=1, max_size=3))
def test_build_metadata_does_not_change_sort_key(drawn, build):
    text = drawn[0]
    with_build = parse(text + "+" + ".".join(build))
    assert with_build.sort_key == parse(text).sort_key
    assert with_build.build == tuple(build)

