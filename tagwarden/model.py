"""Immutable values shared by the core and the shell.

NamedTuples, not frozen dataclasses: a push of a thousand refs makes thousands of them,
and a frozen dataclass pays object.__setattr__ for every field.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, NamedTuple, Optional, Protocol, Sequence

from .semver import Version

TAGS = "refs/tags/"
RESERVED = "refs/tagwarden/"  # the product's own namespace: no push may write it

_HEX = re.compile(r"[0-9a-f]+", re.ASCII)
_ZEROS = frozenset(("0" * 40, "0" * 64))  # the null ids git sends, checked first


def is_zero(oid: str) -> bool:
    return not oid.strip("0")


def is_object_id(oid: str) -> bool:
    return len(oid) in (40, 64) and bool(_HEX.fullmatch(oid))


def short(oid: Optional[str]) -> str:
    return oid[:7] if oid else "nothing"


# ---- what a ref name is -------------------------------------------------------------

VERSION = "version"
ENVIRONMENT = "environment"
UNMANAGED = "unmanaged"  # a tag outside the managed prefixes
INVALID = "invalid"  # under a managed prefix but outside the grammar
RESERVED_KIND = "reserved"
OTHER = "other"  # branches, notes, anything not a tag: not ours to judge


class RefName(NamedTuple):
    ref: str
    kind: str
    component: Optional[str] = None  # "prefix/type/name"
    slot: Optional[str] = None
    version: Optional[Version] = None
    problem: Optional[tuple[str, str]] = None  # (rule, reason) when kind is INVALID

    @property
    def tag(self) -> Optional[str]:
        """The name below refs/tags/, as users type it."""
        return self.ref[len(TAGS):] if self.ref.startswith(TAGS) else None

    @property
    def audited(self) -> bool:
        return self.kind != OTHER


# ---- what a push asks for ------------------------------------------------------------

CREATE, MOVE, DELETE = "create", "move", "delete"


class RefUpdate(NamedTuple):
    ref: str
    old: str
    new: str

    @property
    def action(self) -> str:
        if self.old in _ZEROS or is_zero(self.old):
            return CREATE
        return DELETE if self.new in _ZEROS or is_zero(self.new) else MOVE


# ---- what the repository holds (read through a view) -----------------------------------

class TagInfo(NamedTuple):
    oid: str
    name: str  # the tag object's own "tag" header
    target: str


class Peeled(NamedTuple):
    """A ref value followed through every annotated tag down to a non-tag object."""

    oid: str
    chain: tuple[TagInfo, ...]  # tag objects passed, outermost first
    target: Optional[str]  # the final object
    target_type: str  # "commit", "tree", "blob", "missing", or "tag" (nested too deep)

    @property
    def commit(self) -> Optional[str]:
        return self.target if self.target_type == "commit" else None


class Signature(NamedTuple):
    """What a tag object's signature proves, checked against an allowed-signers file."""

    status: str  # good | unsigned | untrusted | invalid | unsupported | error
    principal: Optional[str] = None  # who the allowed-signers file says signed (good only)
    key: Optional[str] = None  # the signing key's fingerprint, "ED25519 SHA256:...", if known
    detail: str = ""  # one printable line for the pusher


class RepoView(Protocol):
    """Read-only access to the repository the push goes to (objects include the push)."""

    def ref(self, name: str) -> Optional[str]: ...

    def refs_under(self, prefix: str) -> Mapping[str, str]: ...

    def peel(self, oid: str) -> Peeled: ...

    def held_before(self, ref: str, oid: str, own_tag_object: bool) -> Optional[bool]:
        """Did ``ref`` ever hold the value ``oid`` before this push? None when unknown."""

    def held_commit(self, ref: str, commit: str) -> Optional[bool]:
        """Did ``ref`` ever point at ``commit`` (peeled)? None when the ledger has no
        record of the ref."""

    def recorded(self, ref: str) -> Optional[Mapping]:
        """The ledger's record of what ``ref`` holds: value, commit, version, since
        (epoch seconds it has held that commit), last_commit (what a deleted ref
        held); None when the ledger has no record of it."""

    def signature(self, oid: str, allowed_signers: str,
                  revoked: Optional[str] = None) -> Signature:
        """The signature of tag object ``oid``, verified as ``git verify-tag`` does
        against the allowed-signers file (and the revoked keys)."""

    def reachable(self, commit: str, tips: Sequence[str]) -> bool:
        """Is ``commit`` one of ``tips`` or an ancestor of one of them?"""


# ---- what the engine decides -------------------------------------------------------

ACCEPTED, WARNED, REJECTED = "accepted", "warned", "rejected"
OVERRIDE = "override"  # a denying rule passed under a valid break-glass override


class Finding(NamedTuple):
    rule: str
    reason: str
    fix: tuple[str, ...] = ()


class Identity(NamedTuple):
    """Who pushes, as the host says (never the tag's tagger line)."""

    name: str
    source: str  # the variable that said so: GL_USER, REMOTE_USER, ssh:USER, uid, ...


@dataclass(frozen=True)
class PushContext:
    hook: str  # "pre-receive" | "update" | "reference-transaction" | "check"
    atomic: bool  # the whole push stands or falls together
    earlier: tuple[RefUpdate, ...] = ()  # updates of this push already written (update mode)
    now: float = 0.0  # epoch seconds, for soak times (the shell's clock, injectable)
    pusher: Optional[Identity] = None  # None: unknown (a replay of tags), permissions unchecked
    # the push options git handed over; None where this hook cannot see them (update mode
    # without its planning pre-receive)
    push_options: Optional[tuple[str, ...]] = ()
    bypass: Optional[str] = None  # server-side change under the admin's audited bypass: why


class Decision(NamedTuple):
    update: RefUpdate
    name: RefName
    verdict: str
    rule: Optional[str] = None
    reason: str = ""
    fix: tuple[str, ...] = ()
    warnings: tuple[Finding, ...] = ()
    change: Optional[str] = None  # create, deploy, promote, rollback, redeploy, delete
    old_commit: Optional[str] = None
    new_commit: Optional[str] = None
    version: Optional[str] = None  # the version an env slot ends up on
    held: str = ""  # what the ref holds now, as people say it ("v1.0.0 (1a2b3c4)")
    attempted: str = ""  # what the push tried to put there
    overridden: tuple[Finding, ...] = ()  # denials a break-glass override let pass

    @property
    def accepted(self) -> bool:
        return self.verdict != REJECTED

    def but(self, **changes) -> "Decision":
        return self._replace(**changes)
