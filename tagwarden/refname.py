"""Classify a ref name once: version tag, env slot, unmanaged tag, reserved, other, or
invalid with the rule it breaks."""
from __future__ import annotations

import re

from . import semver
from .model import (
    ENVIRONMENT, INVALID, OTHER, RESERVED, RESERVED_KIND, TAGS, UNMANAGED, VERSION, RefName,
)

# lowercase letters, digits, "-", "_", "."; starts and ends alphanumeric; 1..100 chars
NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,98}[a-z0-9])?", re.ASCII)
# C0/C1 controls, DEL, zero-width and bidi overrides: never printed raw to a terminal
_CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff"
    "\ud800-\udfff]")  # lone surrogates: bytes of a name that were not UTF-8


_RESERVED_ROOT = RESERVED.rstrip("/")


def classify(ref: str, policy) -> RefName:
    if ref.startswith(RESERVED) or ref == _RESERVED_ROOT:
        return RefName(ref, RESERVED_KIND)
    if not ref.startswith(TAGS):
        return RefName(ref, OTHER)
    parts = ref[len(TAGS):].split("/")
    if parts[0] not in policy.prefixes:
        return RefName(ref, UNMANAGED)
    if len(parts) != 4:
        return _invalid(
            ref,
            "tag-levels",
            f"a managed tag has exactly four levels, prefix/type/name/slot; "
            f"this one has {len(parts)}",
        )
    prefix, type_, name, slot = parts
    component = f"{prefix}/{type_}/{name}"
    if type_ not in policy.types:
        return _invalid(
            ref,
            "type-unknown",
            f"type {type_!r} is not one of the policy's types: {', '.join(sorted(policy.types))}",
        )
    if not NAME.fullmatch(name):
        return _invalid(
            ref,
            "name-invalid",
            f"name {name!r} must be 1-100 of a-z 0-9 . _ -, starting and ending with a "
            f"letter or digit",
        )
    if semver.looks_like_version(slot):
        try:
            version = semver.parse(slot)
        except semver.InvalidVersion as exc:
            detail = "" if str(exc).startswith("not a SemVer") else f" ({exc})"
            return _invalid(
                ref,
                "version-invalid",
                f"{slot!r} looks like a version but is not SemVer 2.0.0 with a leading 'v' "
                f"(e.g. v1.2.0, v1.2.0-rc.1){detail}; it can never be an environment",
            )
        return RefName(ref, VERSION, component, slot, version)
    if policy.is_environment(slot):
        return RefName(ref, ENVIRONMENT, component, slot)
    return _invalid(ref, "slot-unknown", f"slot {slot!r} is not an environment of the policy")


def _invalid(ref: str, rule: str, reason: str) -> RefName:
    return RefName(ref, INVALID, problem=(rule, reason))


def is_plain_semver(ref: str) -> bool:
    """refs/tags/v1.2.3: a SemVer tag at the top of refs/tags/."""
    tag = ref[len(TAGS):]
    return "/" not in tag and semver.try_parse(tag) is not None


def printable(text: str) -> str:
    """Escape control characters so nothing a pusher wrote can steer a terminal."""
    return _CONTROL.sub(_escape, text)


def _escape(m: re.Match) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
