"""The rules: one registry entry and one small pure function each.

A rule function looks at the facts of one ref update and returns a Finding when the
update breaks the rule, else None. The engine turns findings into decisions according
to the policy's level for the rule (deny, warn or off).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

from . import semver
from .model import (
    CREATE, DELETE, ENVIRONMENT, Finding, Peeled, RefName, RefUpdate, Signature, short,
)


@dataclass(frozen=True)
class Rule:
    id: str
    summary: str
    fixed: bool = False  # always deny: the policy may not relax it


RULES: dict[str, Rule] = {r.id: r for r in (
    Rule("tag-levels", "a managed tag has exactly four levels: prefix/type/name/slot"),
    Rule("type-unknown", "the type level is one of the policy's types"),
    Rule("name-invalid", "the name level is 1-100 of a-z 0-9 . _ -, alphanumeric at both ends"),
    Rule("slot-unknown", "the slot is a version or one of the policy's environments"),
    Rule("version-invalid", "a slot that looks like a version is strict SemVer 2.0.0 with 'v'"),
    Rule("version-immutable", "a version tag is never moved, re-made or deleted"),
    Rule("version-tombstone", "a deleted version is never re-made on another commit"),
    Rule("version-target", "a version tag points at a commit, directly or through its own tag"),
    Rule("version-lightweight", "version tags are annotated (when the policy says so)"),
    Rule("tag-name-mismatch", "a tag object's own name is the ref it is pushed to"),
    Rule("env-target", "an environment slot points at a commit through at most one version tag"),
    Rule("env-unreleased", "an environment slot points at a released version of its component"),
    Rule("env-wrong-component", "an environment slot points at a version of its own component"),
    Rule("env-version-mismatch", "a wrapped version tag object is the server's own, not a copy"),
    Rule("env-protected", "protected environment slots are never deleted"),
    Rule("env-stale", "an env tag object the slot held before is not sent back (stale clone)"),
    Rule("promotion-order", "a slot takes only what its upstream stage holds"),
    Rule("soak-time", "a slot takes a version only after its upstream held it long enough"),
    Rule("permission", "only the policy's groups create versions and move or delete slots "
         "(when the policy declares permissions)"),
    Rule("tag-signature", "version tags and moves of named slots are signed by an allowed "
         "key (when the policy says so)"),
    Rule("version-branch", "a version tags a commit on one of the policy's release branches "
         "(when the policy names them)"),
    Rule("unmanaged-immutable", "tags outside the managed prefixes are not moved or deleted"),
    Rule("unmanaged-denied", "tags outside the managed prefixes are not pushed at all"),
    Rule("reserved-namespace", "refs/tagwarden/ belongs to tagwarden; pushes never write it",
         fixed=True),
    Rule("chained-hook", "the repository's own earlier hook accepts the push", fixed=True),
    Rule("override-denied", "only the policy's override groups may ask for a break-glass "
         "override", fixed=True),
    Rule("override-invalid", "an override names one overridable rule and gives a reason",
         fixed=True),
)}


class Facts(NamedTuple):
    """What one rule may look at; built once per ref update by the engine."""

    update: RefUpdate
    name: RefName
    new: Optional[Peeled]  # None for a delete
    old: Optional[Peeled]  # None for a create
    describe: Callable[[Optional[str]], str]  # oid -> "v1.0.0 (1a2b3c4)"


def fetch_back(tag: str) -> str:
    return f"git fetch --force origin refs/tags/{tag}:refs/tags/{tag}"


def _next_patch(version: semver.Version) -> str:
    return f"v{version.major}.{version.minor}.{version.patch + 1}"


def version_tombstone(f: Facts, record: Optional[dict]) -> Finding:
    """Called when the ledger says the version ref existed on another commit."""
    ver, tag = f.name.version, f.name.tag
    was = (record or {}).get("commit") or (record or {}).get("last_commit")
    where = f" at commit {short(was)}" if was else ""
    return Finding(
        "version-tombstone",
        f"{ver} existed before{where} and was deleted; a version name is never re-made on "
        f"another commit (you pushed commit {short(f.new.commit)}), or consumers holding the "
        f"old {ver} would disagree with new ones",
        (f"git tag -d {tag}",
         f"git tag -a -m 'Release {f.name.component.rsplit('/', 1)[1]} {_next_patch(ver)}' "
         f"{f.name.component}/{_next_patch(ver)} {short(f.new.commit)}",
         f"git push origin {f.name.component}/{_next_patch(ver)}"))


def version_immutable(f: Facts) -> Optional[Finding]:
    if f.update.action == CREATE:
        return None
    tag, ver = f.name.tag, f.name.version
    successor = f"{f.name.component}/{_next_patch(ver)}"
    release = f"git tag -a -m 'Release {f.name.component.rsplit('/', 1)[1]} {_next_patch(ver)}'"
    if f.update.action == DELETE:
        return Finding("version-immutable",
                       f"{ver} is released, at {f.describe(f.update.old)}; versions are never "
                       "deleted",
                       (f"nothing to undo: retire {ver} by releasing {_next_patch(ver)} and "
                        f"moving the slots to it",))
    same = f.old and f.new and f.old.commit and f.old.commit == f.new.commit
    why = ("a re-made tag object on the same commit is a change too"
           if same else "versions never change once pushed")
    commit = short(f.new.commit if f.new else None)
    return Finding(
        "version-immutable",
        f"{ver} is released at {f.describe(f.update.old)}; you pushed a new tag object on "
        f"commit {commit}: {why}",
        (f"{fetch_back(tag)}   # take back the server's {ver}",
         f"{release} {successor} {commit} && git push origin {successor}   # ship the change "
         f"as a new version"),
    )


def version_target(f: Facts) -> Optional[Finding]:
    new = f.new
    if new.target_type == "commit" and len(new.chain) < 2:
        return None  # the usual case, decided before any words are made
    label = f"git tag -f -a -m 'Release {f.name.component.rsplit('/', 1)[1]} {f.name.version}' {f.name.tag}"
    if new.target_type == "tag":  # gave up peeling
        return Finding("version-target", f"{f.name.tag} is nested more than "
                       f"{len(new.chain) - 1} tags deep; a version tags its commit directly",
                       (f"{label} <commit>",))
    if new.target_type == "missing":
        return Finding("version-target", f"object {short(new.target or new.oid)} is missing or "
                       "unreadable on the server", (f"{label} <commit>",))
    if new.target_type != "commit":
        return Finding("version-target", f"{f.name.tag} points at a {new.target_type} "
                       f"({short(new.target)}), not a commit", (f"{label} <commit>",))
    if len(new.chain) > 1:
        return Finding("version-target", f"{f.name.tag} wraps another tag object "
                       f"({new.chain[1].name}); a version tags its commit directly",
                       (f"{label} {short(new.commit)}",))
    return None


def version_lightweight(f: Facts, allowed: bool) -> Optional[Finding]:
    if allowed or f.new.chain:
        return None
    return Finding("version-lightweight", f"{f.name.tag} is a lightweight tag; this policy "
                   "requires annotated version tags",
                   (f"git tag -f -a -m 'Release {f.name.component.rsplit('/', 1)[1]} "
                    f"{f.name.version}' {f.name.tag} {f.name.tag}^{{commit}}",
                    f"git push origin {f.name.tag}"))


def tag_name_mismatch(f: Facts) -> Optional[Finding]:
    """The outermost tag object must carry the ref's own name.

    The one exception: an environment ref pointing straight at a version tag object of its
    component (a lightweight env tag); env-version-mismatch then checks that object.
    """
    if f.new is None or not f.new.chain or f.new.chain[0].name == f.name.tag:
        return None
    inner = f.new.chain[0].name
    if f.name.kind == ENVIRONMENT and is_version_tag(inner):
        return None  # a lightweight env tag on a version tag object: the env rules judge it
    return Finding("tag-name-mismatch", f"the tag object {short(f.new.oid)} is named "
                   f"{inner!r}, not {f.name.tag!r}",
                   (f"git tag -f -a -m '<message>' {f.name.tag} {short(f.new.target)}   "
                    "# make a tag object of its own name",
                    f"git push --force origin {f.name.tag}"))


def is_version_tag_of(tag: str, component: Optional[str]) -> bool:
    head, _, slot = tag.rpartition("/")
    return head == component and semver.try_parse(slot) is not None


def is_version_tag(tag: str) -> bool:
    """Names a version of some component: prefix/type/name/vX.Y.Z."""
    parts = tag.split("/")
    return len(parts) == 4 and semver.try_parse(parts[3]) is not None


def env_protected(f: Facts, protected: frozenset[str]) -> Optional[Finding]:
    if f.update.action != DELETE or f.name.slot not in protected:
        return None
    return Finding("env-protected", f"{f.name.slot} is a protected slot and is never deleted "
                   f"(it holds {f.describe(f.update.old)})",
                   (f"git tag -f -a -m '<message>' {f.name.tag} <version tag> && "
                    f"git push --force origin {f.name.tag}   # move it instead",))


def unmanaged(f: Facts, mode: str, scope: str) -> Optional[Finding]:
    if mode == "deny":
        return Finding("unmanaged-denied", f"{scope} tags are not accepted by this repository's "
                       "policy", (f"git tag -d {f.name.tag}   # drop it locally",))
    if mode == "immutable" and f.update.action != CREATE:
        what = "deleted" if f.update.action == DELETE else "moved"
        return Finding("unmanaged-immutable", f"{scope} tag {f.name.tag} is immutable and cannot "
                       f"be {what} (it holds {f.describe(f.update.old)})",
                       (f"{fetch_back(f.name.tag)}   # take back the server's tag",))
    return None


def reserved(f: Facts) -> Finding:
    return Finding("reserved-namespace", f"{f.update.ref} is tagwarden's own namespace; "
                   "pushes never write it",
                   (f"git push origin :{f.update.ref} is refused too; drop the refspec that "
                    "sends refs/tagwarden/* from your push",))


_UNTRUSTED = {"unsigned": "unsigned", "untrusted": "signed by a key that is not allowed",
              "invalid": "signed, but the signature does not verify",
              "unsupported": "signed in a format tagwarden does not verify (only SSH)",
              "error": "not checkable right now"}


def tag_signature(f: Facts, sig: Optional[Signature], what: str) -> Optional[Finding]:
    """``what``: "version tags" or "moves of <slot>". ``sig`` is None when the ref has no
    tag object of its own (a lightweight tag carries no signature)."""
    if sig is not None and sig.status == "good":
        return None
    tag, target = f.name.tag, short(f.new.commit or f.new.target)
    state = _UNTRUSTED.get(sig.status, sig.status) if sig else \
        "a lightweight tag (no tag object of its own, so no signature)"
    detail = f": {sig.detail}" if sig and sig.detail else ""
    sign = (f"git -c gpg.format=ssh -c user.signingkey=<your key.pub> tag -s -f "
            f"-m '<message>' {tag} {target}")
    fix = (f"git tag -d {tag} && {sign.replace(' -f ', ' ')}", f"git push origin {tag}") \
        if f.name.kind == "version" else (sign, f"git push --force origin {tag}")
    if sig is not None and sig.status == "error":
        fix = ("not your fault: tell your git admin; the push is refused until the signature "
               "can be checked",)
    return Finding("tag-signature", f"{tag} is {state}{detail}; this policy requires {what} "
                   "to be annotated tags signed by an allowed key", fix)


def version_branch(f: Facts, branches: dict[str, str], globs: tuple[str, ...],
                   on_branch: bool) -> Optional[Finding]:
    """``branches``: the release branches the server holds (name -> tip)."""
    if on_branch:
        return None
    commit = short(f.new.commit)
    wanted = " or ".join(globs)
    if branches:
        held = ", ".join(f"{b} at {short(oid)}" for b, oid in sorted(branches.items()))
        why = f"commit {commit} is not on {wanted} ({held})"
    else:
        why = f"the server has no branch {wanted}, so no commit is on it yet"
    first = sorted(branches)[0] if branches else globs[0]
    return Finding("version-branch", f"{why}; a version tags reviewed code from {wanted}",
                   (f"merge {commit} into {first} (through review), then tag the merged commit:",
                    f"git tag -d {f.name.tag} && git fetch origin {first} && git tag -a -m "
                    f"'<message>' {f.name.tag} FETCH_HEAD && git push origin {f.name.tag}"))
