"""``tagwarden policy test POLICY REPO``: what a candidate policy would have rejected.

Before a policy is rolled out, replay the repository against it (docs/rollout.md):

1. **current tags**: every tag the repository holds, judged by the real engine as if it
   were pushed now as a create, while every *other* tag is present as it is. Its own
   presence is hidden (it does not excuse itself, and its current value is not a stale
   one). No pusher is known, so permissions are not checked. Pipeline order and soak
   times are about how a slot got its value, not what it is: they are off here (a slot
   whose upstream has moved on since is fine) and judged in part 2.
2. **history**: every change the deployment ledger recorded from a push, judged against
   the tags as they were just before it (seed and outside entries only set the state),
   with the pusher and clock of the time. A push's changes are judged as one batch. The
   state follows what actually happened: a change the candidate rejects still lands.

Read-only. pygit2 only through gitview, imported when run() is called.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from typing import Mapping, Optional, TextIO

from . import ledger
from .engine import decide
from .model import ENVIRONMENT, REJECTED, TAGS, Identity, PushContext, RefUpdate
from .refname import classify, printable

KEYS = ("part", "ts", "pusher", "ref", "tag", "change", "rule", "verdict", "reason", "actual")
ORDER_RULES = ("promotion-order", "soak-time")  # judged in history, not on tags at rest


class _Delegate:
    """Objects never change: peel, signatures and reachability are the real view's
    (looked up when called, so a GitView without them still serves the rest)."""

    def __init__(self, view):
        self.view = view

    def peel(self, oid: str):
        return self.view.peel(oid)

    def signature(self, oid: str, allowed_signers: str, revoked: Optional[str] = None):
        return self.view.signature(oid, allowed_signers, revoked)

    def reachable(self, commit: str, tips):
        return self.view.reachable(commit, tips)


class _Present(_Delegate):
    """The repository as it is, without the one tag being judged."""

    def __init__(self, view, ref: str, value: str):
        super().__init__(view)
        self.hidden, self.value = ref, value

    def ref(self, name: str) -> Optional[str]:
        return None if name == self.hidden else self.view.ref(name)

    def refs_under(self, prefix: str) -> Mapping[str, str]:
        refs = self.view.refs_under(prefix)
        return {r: v for r, v in refs.items() if r != self.hidden} if self.hidden in refs \
            else refs

    def held_before(self, ref: str, oid: str, own_tag_object: bool) -> Optional[bool]:
        if ref == self.hidden and oid == self.value:
            return False  # what it holds now is not a deploy it moved on from
        return self.view.held_before(ref, oid, own_tag_object)

    def held_commit(self, ref: str, commit: str) -> Optional[bool]:
        return self.view.held_commit(ref, commit)

    def recorded(self, ref: str) -> Optional[Mapping]:
        return self.view.recorded(ref)


class _Replay(_Delegate):
    """The tags the ledger knows as they were after the entries applied so far; other
    refs (branches, tags the ledger never saw) as they are now."""

    def __init__(self, view, known: set[str]):
        super().__init__(view)
        self.known = known
        self.refs: dict[str, str] = {}
        self.folders: dict[str, dict[str, str]] = {}  # the same refs by folder (component)
        self.records: dict[str, dict] = {}
        self.values: dict[str, set[str]] = {}
        self.commits: dict[str, set[str]] = {}

    def apply(self, e: dict) -> None:
        ref, new = e["ref"], e["new"] or ""
        folder = self.folders.setdefault(ref.rpartition("/")[0] + "/", {})
        if new.strip("0"):
            self.refs[ref] = folder[ref] = new
            self.values.setdefault(ref, set()).add(new)
        else:
            self.refs.pop(ref, None)
            folder.pop(ref, None)
        if e.get("new_commit"):
            self.commits.setdefault(ref, set()).add(e["new_commit"])
        self.records[ref] = ledger.current_record(e, self.records.get(ref))

    def ref(self, name: str) -> Optional[str]:
        return self.refs.get(name) if name in self.known else self.view.ref(name)

    def refs_under(self, prefix: str) -> Mapping[str, str]:
        out = {r: v for r, v in self.view.refs_under(prefix).items() if r not in self.known}
        prefix = prefix.rstrip("/") + "/"  # whole path levels, as GitView's for-each-ref
        for folder in (f for f in self.folders if f.startswith(prefix)):
            out.update(self.folders[folder])  # a component's tags, not every tag
        return out

    def held_before(self, ref: str, oid: str, own_tag_object: bool) -> Optional[bool]:
        return None if ref not in self.records else oid in self.values.get(ref, ())

    def held_commit(self, ref: str, commit: str) -> Optional[bool]:
        return None if ref not in self.records else commit in self.commits.get(ref, ())

    def recorded(self, ref: str) -> Optional[Mapping]:
        return self.records.get(ref)


def run(policy_path: str, repo: str, out: TextIO, history: bool = True,
        as_json: bool = False, override_path: Optional[str] = None, *,
        now: Optional[float] = None, err: Optional[TextIO] = None) -> int:
    """0: nothing would be rejected; 1: something would; 2: the policy or the
    repository is unusable (said on ``err``, default stderr)."""
    from .install import load_policy_files
    from .policy import PolicyError

    err = err or sys.stderr
    name = f"{policy_path} + {override_path}" if override_path else policy_path
    try:
        policy = load_policy_files(policy_path, override_path)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"tagwarden: {getattr(exc, 'filename', None) or name}: policy invalid: "
              f"cannot read: {exc}", file=err)
        return 2
    except PolicyError as exc:
        print(f"tagwarden: policy invalid: {exc}", file=err)
        return 2
    try:
        from .gitview import GitView, open_ledger

        if not os.path.isdir(repo):
            raise OSError("no such directory")
        view = GitView(repo)
        led = open_ledger(repo) if history else None
    except Exception as exc:  # noqa: BLE001 - pygit2.GitError, not importable here
        print(f"tagwarden: {printable(repo)}: not a git repository "
              f"({printable(str(exc))})", file=err)
        return 2

    rows: list[dict] = []
    tags = _current(policy, view, time.time() if now is None else now, rows)
    changes = _history(policy, view, led, rows) if led is not None else []
    bad_now = sum(r["verdict"] == REJECTED for r in rows if r["part"] == "current")
    bad_then = sum(r["verdict"] == REJECTED for r in rows if r["part"] == "history")
    if as_json:
        for r in rows:
            out.write(json.dumps({k: printable(r[k]) if isinstance(r[k], str) else r[k]
                                  for k in KEYS}) + "\n")
    else:
        _text(out, name, policy.sha256, repo, tags, changes, led, history, rows)
        out.write(f"{bad_now} of {tags} current tags and {bad_then} of {len(changes)} "
                  "recorded changes would be rejected\n")
    return 1 if bad_now or bad_then else 0


def _current(policy, view, now: float, rows: list[dict]) -> int:
    """Every tag, judged as a create now; listed versions first, then environment
    slots in pipeline order (each is judged alone, so the order changes no verdict)."""
    at_rest = replace(policy, levels={**policy.levels, **{r: "off" for r in ORDER_RULES}})
    context = PushContext("check", atomic=False, now=now, pusher=None)
    named = [(classify(ref, at_rest), ref, value)
             for ref, value in view.refs_under(TAGS).items()]
    for name, ref, value in sorted(named, key=lambda t: (_order(at_rest, t[0]), t[1])):
        update = RefUpdate(ref, "0" * len(value), value)
        d, = decide(at_rest, _Present(view, ref, value), [update], context, [name])
        rows += _rows("current", "now", None, "create", d, None)
    return len(named)


def _order(policy, name) -> tuple:
    if name.kind != ENVIRONMENT:
        return (0, 0)
    pipeline = policy.pipeline_for(name.component)
    return (1, pipeline.index(name.slot) if pipeline else -1)


def _history(policy, view, led, rows: list[dict]) -> list[dict]:
    """Replay the ledger; returns the entries that came from a push."""
    entries = led.entries()
    replay = _Replay(view, {e["ref"] for e in entries})
    judged = []
    for state, push in _pushes(entries):
        for e in state:
            replay.apply(e)
        if not push:
            continue
        first = push[0]
        who = Identity(first["pusher"], first.get("pusher_source") or "unknown") \
            if first.get("pusher") else None
        context = PushContext("check", atomic=False, now=first["epoch"], pusher=who)
        names = {e["ref"]: classify(e["ref"], policy) for e in push}
        push.sort(key=lambda e: _order(policy, names[e["ref"]]))  # listed as judged
        decisions = decide(policy, replay, [RefUpdate(e["ref"], e["old"], e["new"])
                                            for e in push], context,
                           [names[e["ref"]] for e in push])
        for e, d in zip(push, decisions):
            actual = {"warn": f"warned {e.get('rule')}", "unjudged": "unjudged"}.get(
                e["decision"], "accepted")  # it landed: a warning at most
            rows += _rows("history", e["ts"], e.get("pusher"), e.get("change") or d.change,
                          d, actual)
        for e in push:
            replay.apply(e)
        judged += push
    return judged


def _pushes(entries: list[dict]) -> list[tuple[list[dict], list[dict]]]:
    """(state entries to apply first, one push's entries). A push's entries are
    consecutive, with the outside entries of its refs just before each of them."""
    groups: list[tuple[list[dict], list[dict]]] = []
    state: list[dict] = []
    for e in entries:
        if e["decision"] in (ledger.SEED, ledger.OUTSIDE):
            state.append(e)
        elif groups and groups[-1][1] and e.get("push_id") is not None \
                and groups[-1][1][-1].get("push_id") == e.get("push_id"):
            groups[-1][0].extend(state)
            groups[-1][1].append(e)
            state = []
        else:
            groups.append((state, [e]))
            state = []
    return groups + [(state, [])] if state else groups


def _rows(part, ts, pusher, change, d, actual) -> list[dict]:
    base = {"part": part, "ts": ts, "pusher": pusher, "ref": d.update.ref,
            "tag": d.name.tag, "change": change, "actual": actual}
    rows = [dict(base, rule=d.rule, verdict=REJECTED, reason=d.reason)] \
        if d.verdict == REJECTED else []
    return rows + [dict(base, rule=w.rule, verdict="warned", reason=w.reason)
                   for w in d.warnings]


def _text(out, name, sha256, repo, tags, changes, led, history, rows) -> None:
    from .reports import table

    pushes = len({e.get("push_id") or id(e) for e in changes})
    if not history:
        then = "not replayed (--no-history)"
    elif led is None:
        then = f"none: no deployment ledger ({ledger.LEDGER_REF}); only the tags are judged"
    else:
        then = (f"{len(changes)} recorded changes from {pushes} pushes, each judged against "
                f"the tags as they were just before it")
    order = "see history" if changes else "not judged without history"
    out.write(f"tagwarden policy test: {printable(name)} (sha256 {sha256[:12]}) on "
              f"{printable(repo)}\n"
              f"current tags: {tags}, each judged as if pushed now (pusher unknown: "
              f"permissions not checked; pipeline order and soak times: {order})\n"
              f"history: {then}\n")
    if rows:
        out.write("\n")
        for line in table(["verdict", "when", "pusher", "tag", "change", "then", "rule",
                           "reason"],
                          [[r["verdict"], r["ts"], r["pusher"] or "-", r["tag"] or r["ref"],
                            r["change"] or "-", r["actual"] or "-", r["rule"] or "-",
                            r["reason"]] for r in rows]):
            out.write(line + "\n")
    out.write("\n")
