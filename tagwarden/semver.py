"""Strict SemVer 2.0.0 with a leading ``v``: one parser, one immutable Version.

The grammar is the regular expression published on semver.org, prefixed with ``v``.
Anything that merely looks like a version (``v1.0``, ``v01.2.3``, ``V1.2.3``,
``v1.2.3.4``) is reported by :func:`looks_like_version` so callers never mistake it
for an environment name.
"""
from __future__ import annotations

import re
from typing import NamedTuple

# https://semver.org/#is-there-a-suggested-regular-expression-regex-to-check-a-semver-string
_SEMVER = re.compile(
    r"^v(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<prerelease>(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+(?P<buildmetadata>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$",
    re.ASCII,
)
# Starts with a digit, or "v"/"V" and a digit: meant as a version, valid or not.
_LOOKALIKE = re.compile(r"^[vV]?\d", re.ASCII)


class InvalidVersion(ValueError):
    """The text is not ``v`` + a strict SemVer 2.0.0 version."""


# Identifiers longer than this are refused rather than compared: no real version has
# them, and int() of a 5,000-digit string raises in Python 3.11+.
MAX_DIGITS = 64


class Version(NamedTuple):
    """A parsed version; ``<`` and friends follow SemVer precedence (build ignored),
    not tuple order."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...]
    build: tuple[str, ...]
    text: str

    @property
    def sort_key(self) -> tuple:
        # SemVer §11: a release sorts after its pre-releases; numeric identifiers
        # sort numerically (by length, then digits: no leading zeros) and before
        # alphanumeric ones; build metadata is ignored.
        pre = tuple((0, len(p), p) if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, not self.prerelease, pre)

    def precedes(self, other: "Version") -> bool:
        return self.sort_key < other.sort_key

    def __lt__(self, other):  # type: ignore[override]
        return self.sort_key < other.sort_key if isinstance(other, Version) else NotImplemented

    def __le__(self, other):  # type: ignore[override]
        return self.sort_key <= other.sort_key if isinstance(other, Version) else NotImplemented

    def __gt__(self, other):  # type: ignore[override]
        return self.sort_key > other.sort_key if isinstance(other, Version) else NotImplemented

    def __ge__(self, other):  # type: ignore[override]
        return self.sort_key >= other.sort_key if isinstance(other, Version) else NotImplemented

    def __str__(self) -> str:
        return self.text


_PARSED: dict[str, "Version"] = {}  # a push names the same few versions many times


def parse(text: str) -> Version:
    """Parse ``v1.2.3[-pre][+build]``; raise :class:`InvalidVersion` otherwise."""
    version = _PARSED.get(text) if isinstance(text, str) else None
    if version is None:
        version = _parse(text)
        if len(_PARSED) < 4096:
            _PARSED[text] = version
    return version


def _parse(text: str) -> Version:
    m = _SEMVER.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise InvalidVersion(f"not a SemVer 2.0.0 version with a leading 'v': {text!r}")
    numbers = m.group("major", "minor", "patch")
    if any(len(n) > MAX_DIGITS for n in numbers):
        raise InvalidVersion(f"version numbers above {MAX_DIGITS} digits are not supported")
    pre = m.group("prerelease")
    build = m.group("buildmetadata")
    return Version(
        *(int(n) for n in numbers),
        tuple(pre.split(".")) if pre else (),
        tuple(build.split(".")) if build else (),
        text,
    )


def try_parse(text: str) -> Version | None:
    try:
        return parse(text)
    except InvalidVersion:
        return None


def looks_like_version(text: str) -> bool:
    """True for anything a human meant as a version: valid or not."""
    return bool(_LOOKALIKE.match(text))
