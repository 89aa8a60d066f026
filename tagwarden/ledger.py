"""The deployment ledger: what every managed tag held, kept inside the repository.

Pure: the layout and the entry format. gitview.py reads and writes it with pygit2.

The ledger is a chain of commits at ``refs/tagwarden/ledger``, so every mirror and
replica that copies the repository's refs carries it. Each commit is one batch (one
push as post-receive saw it land, or the seed made at install):

* its message holds the batch's entries, one JSON object per line (``git log`` of the
  ref reads like a journal); a batch of more than INLINE_MAX entries (the seed of a big
  repository, a big push) is kept in ``batch.jsonl`` of its tree instead, and the
  message says so: every push reads the newest commit to find the tree, and a
  100,000-entry message took half a second to read;
* its tree is an index the hooks look things up in without reading the journal::

      tags/<xx>/<tag>/current                   {"value", "commit", "version", "since", ...}
      tags/<xx>/<tag>/values/<oid[:2]>/<rest>   every value the ref held   (blob: first time)
      tags/<xx>/<tag>/commits/<oid[:2]>/<rest>  every commit it peeled to  (blob: first time)
      audit                                     the audit log's chain head for the batch
      layout                                    "2"

Lookups cost a few small tree reads whatever the ledger's length: the two-hex fan-outs
keep each tree small, for a slot moved a hundred thousand times (values/, commits/) as
for a hundred thousand components of one type (<xx>: the first two hex digits of the
sha1 of the tag's component, prefix/type/name). A ledger without the layout file (the
first layout) has no <xx> level; it keeps its layout.
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import Iterable, Optional

LEDGER_REF = "refs/tagwarden/ledger"
LAYOUT_FILE, LAYOUT = "layout", "2"
SUMMARY = "tagwarden ledger: "
INLINE_MAX = 200  # entries kept in a commit message; more go to BATCH_FILE
BATCH_FILE = "batch.jsonl"

# what an entry says happened, by the engine's change and verdict
SEED, OUTSIDE = "seed", "outside"  # present at install; moved without passing the hooks


def ref_dir(ref: str, layout: str = LAYOUT) -> str:
    """The tree path of a managed tag's record: refs/tags/a/b/c/d -> tags/<xx>/a/b/c/d,
    <xx> from the component a/b/c (layout 1: tags/a/b/c/d)."""
    tag = ref[len("refs/tags/"):]
    if layout != LAYOUT:
        return f"tags/{tag}"
    component = tag.rpartition("/")[0].encode("utf-8", "surrogateescape")
    return f"tags/{hashlib.sha1(component).hexdigest()[:2]}/{tag}"


def fanout(kind: str, oid: str) -> str:
    return f"{kind}/{oid[:2]}/{oid[2:]}"


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def decision_of(change: Optional[str], verdict: Optional[str]) -> Optional[str]:
    """The one word an auditor filters on: the change, ``warn`` when a rule only
    warned, ``override`` when a break-glass override passed a rule (the rule says which)."""
    return "warn" if verdict == "warned" else "override" if verdict == "override" else change


def entry(now: float, push: dict, ref: str, old: str, new: str, decided: dict) -> dict:
    """One ledger entry for a ref update that landed. ``decided`` is what the deciding
    hook recorded for the ref (see hook._carried); ``push`` who pushed."""
    change, verdict = decided.get("change"), decided.get("verdict")
    return {
        "ts": iso(now), "epoch": round(now, 3),
        "push_id": push.get("push_id"), "pusher": push.get("pusher"),
        "pusher_source": push.get("pusher_source"),
        "ref": ref, "kind": decided.get("kind"), "component": decided.get("component"),
        "slot": decided.get("slot"), "version": decided.get("version"),
        "old": old, "new": new, "old_commit": decided.get("old_commit"),
        "new_commit": decided.get("new_commit"),
        "decision": decision_of(change, verdict), "change": change, "verdict": verdict,
        "rule": decided.get("rule"),
    }


def current_record(e: dict, previous: Optional[dict]) -> dict:
    """The ``current`` blob of a ref after entry ``e``. ``since`` is when it started
    holding its commit (a redeploy, same commit in a new tag object, keeps the clock);
    ``complete`` that the ledger saw the ref created, so it knows every value it held;
    a deleted ref keeps the commit it had as ``last_commit``."""
    deleted = not (e["new"] or "").strip("0")
    previous = previous or {}
    commit = None if deleted else e["new_commit"]
    same = commit is not None and previous.get("commit") == commit
    return {
        "value": "" if deleted else e["new"], "commit": commit,
        "version": None if deleted else e["version"],
        "since": previous.get("since", e["epoch"]) if same else e["epoch"],
        "at": e["epoch"], "pusher": e["pusher"], "decision": e["decision"],
        "push_id": e["push_id"],
        "last_commit": commit or previous.get("commit") or previous.get("last_commit"),
        "complete": previous.get("complete", False) if previous else
        (e["change"] != SEED and not (e["old"] or "").strip("0")),
    }


def outside_entry(previous: dict, e: dict) -> Optional[dict]:
    """The ref did not hold, when this push came, what the ledger last saw: it was moved
    on the server without passing the hooks (``git tag -f`` in the bare repo, a restore).
    Recorded so the ledger never silently jumps."""
    had = previous.get("value") or ""
    found = e["old"] if (e["old"] or "").strip("0") else ""
    if had == found:
        return None
    return dict(e, old=had or "0" * len(e["old"]), new=found or "0" * len(e["old"]),
                old_commit=previous.get("commit"), new_commit=None, version=None,
                decision=OUTSIDE, change=OUTSIDE, verdict=None, rule=None,
                push_id=None, pusher=None, pusher_source=None)


def message(entries: list[dict]) -> str:
    refs = sorted({e["ref"] for e in entries})
    head = f"{SUMMARY}{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}"
    if len(refs) == 1:
        head += f" ({refs[0][len('refs/tags/'):]})"
    if len(entries) > INLINE_MAX:
        return f"{head}\n\nThe entries are in {BATCH_FILE} of this commit's tree.\n"
    return f"{head}\n\n{batch(entries)}"


def batch(entries: list[dict]) -> str:
    """The entries as JSON lines (a message's body, or BATCH_FILE)."""
    return "".join(json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n"
                   for e in entries)


def in_tree(msg: str) -> bool:
    """The commit keeps its entries in BATCH_FILE, not in its message."""
    return f"are in {BATCH_FILE} of this commit's tree" in msg.partition("\n\n")[2][:200]


def entries_of(msg: str) -> list[dict]:
    """The entries of one ledger commit's message (or of its BATCH_FILE), in order."""
    _, _, body = msg.partition("\n\n") if not msg.startswith("{") else ("", "", msg)
    return [json.loads(line) for line in body.splitlines() if line.startswith("{")]


def seed_entries(now: float, refs: Iterable[tuple[str, str, dict]]) -> list[dict]:
    """Entries for the managed tags a repository holds when its ledger starts:
    (ref, value, facts) with facts kind/component/slot/version/new_commit."""
    out = []
    for ref, value, facts in refs:
        e = entry(now, {"pusher": None, "pusher_source": None, "push_id": None},
                  ref, "0" * len(value), value, dict(facts, change=SEED, verdict="accepted"))
        out.append(e)
    return out
