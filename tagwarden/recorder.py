"""Turns what landed into ledger entries, and starts a ledger for a repository.

The shell around ledger.py: reads refs and objects through gitview, classifies with the
policy, appends with gitview.LedgerWriter. Used by post-receive and the installer.
"""
from __future__ import annotations

import os
import subprocess
from typing import Callable, Iterable, Mapping, Optional

from . import ledger
from .gitview import GitView, LedgerWriter
from .model import ENVIRONMENT, TAGS, VERSION
from .refname import classify
from .semver import try_parse


def lock_path(repo_dir: str) -> str:
    return os.path.join(repo_dir, "tagwarden", "ledger.lock")


def writer(repo_dir: str) -> LedgerWriter:
    return LedgerWriter(repo_dir, lock_path(repo_dir))


def facts(view: GitView, policy, ref: str, value: str,
          refs: Optional[Mapping[str, str]] = None) -> Optional[dict]:
    """kind, component, slot, version and commit of a managed tag's value; None for a tag
    the ledger does not keep (unmanaged, misnamed)."""
    name = classify(ref, policy)
    if name.kind not in (VERSION, ENVIRONMENT):
        return None
    peeled = view.peel(value) if value.strip("0") else None
    commit = peeled.commit if peeled else None
    version = str(name.version) if name.version else None
    if name.kind == ENVIRONMENT and peeled is not None:
        version = _version_of(view, name.component, peeled, commit, refs)
    return {"kind": name.kind, "component": name.component, "slot": name.slot,
            "version": version, "new_commit": commit}


def _version_of(view, component, peeled, commit, refs) -> Optional[str]:
    for tag in peeled.chain:
        head, _, slot = tag.name.rpartition("/")
        if head == component and try_parse(slot):
            return slot
    prefix = f"{TAGS}{component}/"
    listed = refs if refs is not None else view.refs_under(prefix)
    found = [v for ref, oid in listed.items() if ref.startswith(prefix)
             and (v := try_parse(ref[len(prefix):])) and view.peel(oid).commit == commit]
    return str(max(found, key=lambda v: v.sort_key)) if found else None


def seed(repo_dir: str, policy, now: float,
         before: Optional[Mapping[str, str]] = None) -> int:
    """Start the ledger from the managed tags the repository holds. ``before`` gives
    the values some refs had before the push that is being recorded (zero: absent)."""
    view = GitView(repo_dir)
    refs = dict(view.refs_under(TAGS))
    for ref, old in (before or {}).items():
        if old.strip("0"):
            refs[ref] = old
        else:
            refs.pop(ref, None)
    rows = []
    for ref, value in sorted(refs.items()):
        found = facts(view, policy, ref, value, refs)
        if found is not None:
            rows.append((ref, value, found))
    entries = ledger.seed_entries(now, rows)
    writer(repo_dir).append(entries, when=now)
    if len(entries) > 100:
        # a seed writes a few loose objects per tag: pack them now, or git's next
        # `gc --auto` (after a push) and every object lookup pay for them
        subprocess.run(["git", "repack", "-d", "-q"], cwd=repo_dir, check=False,
                       capture_output=True)
    return len(entries)


def record(repo_dir: str, landed: Iterable[tuple[str, str, str]], decided: Mapping[str, dict],
           push: dict, now: float, audit_head: Optional[dict],
           load_policy: Callable[[], object]) -> int:
    """Append what landed to the ledger (starting one first if the repository has none).
    ``decided`` carries the deciding hook's facts per ref; refs without them (the state
    was lost) are classified here."""
    landed = list(landed)
    out = writer(repo_dir)
    policy = None
    if not out.exists():
        policy = load_policy()
        seed(repo_dir, policy, now, {ref: old for ref, old, _ in landed})
    view = None
    entries = []
    for ref, old, new in landed:
        facts_of = decided.get(ref)
        if facts_of is None:
            policy = policy or load_policy()
            view = view or GitView(repo_dir)
            facts_of = facts(view, policy, ref, new)
            if facts_of is None:
                continue
            facts_of = dict(facts_of, change="unjudged", verdict=None)
        if facts_of.get("kind") not in (VERSION, ENVIRONMENT):
            continue
        entries.append(ledger.entry(now, push, ref, old, new, facts_of))
    if entries or audit_head is not None:
        out.append(entries, audit_head, now)
    return len(entries)
