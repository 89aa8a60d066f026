"""The only module that imports pygit2: a read-only view of the repository.

In pre-receive the pushed objects sit in git's receive quarantine; opening the
repository from the environment (GIT_DIR, GIT_OBJECT_DIRECTORY,
GIT_ALTERNATE_OBJECT_DIRECTORIES) makes them visible.
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
from typing import Mapping, Optional

import pygit2
from pygit2.enums import ConfigLevel, FileMode, ObjectType, Option, RepositoryOpenFlag

from . import ledger
from .model import Peeled, Signature, TagInfo

_MAX_NESTING = 16
_TAG = ObjectType.TAG
_TYPE_NAMES = {ObjectType.COMMIT: "commit", ObjectType.TREE: "tree", ObjectType.BLOB: "blob"}
_UNREAD = object()
_NO_RECORD = (None, None)


def _harden() -> None:
    # A service user's $HOME may be unreadable or foreign: read no global/XDG config,
    # and accept a repository owned by another user (the host decided who runs us).
    for level in (ConfigLevel.GLOBAL, ConfigLevel.XDG):
        pygit2.option(Option.SET_SEARCH_PATH, level, "")
    pygit2.option(Option.SET_OWNER_VALIDATION, 0)
    # Reading an object re-hashes it by default (SHA-1 with collision detection, a sixth
    # of a tag's read). git itself hashes on write and in fsck, not on read; index-pack
    # hashed every pushed object just before the hook ran.
    pygit2.option(Option.ENABLE_STRICT_HASH_VERIFICATION, 0)
    # libgit2 caches trees only up to 4 KiB: the ledger's tree of a busy prefix is
    # bigger, and every lookup would inflate and parse it again
    pygit2.settings.cache_object_limit(ObjectType.TREE, 16 << 20)


class GitView:
    def __init__(self, path: str, from_env: bool = False):
        _harden()
        flags = RepositoryOpenFlag.FROM_ENV if from_env else RepositoryOpenFlag.NO_SEARCH
        self.repo = pygit2.Repository(path, flags=flags)
        self.path = self.repo.path
        self.odb = self.repo.odb
        self._listed: dict[str, dict[str, str]] = {}
        self._main: Optional[pygit2.Repository] = None
        self._ledger = _UNREAD
        self._records: dict[str, tuple] = {}

    # ---- the ledger (refs/tagwarden/ledger): what each managed tag held --------------

    def _record(self, ref: str):
        """(record, tree) of ``ref`` in the ledger: its ``current`` record and the tree
        that holds it (with ``values/`` and ``commits/``); (None, None) when the ledger
        has no record of it. Looked up once per ref: a push asks up to three times."""
        found = self._records.get(ref)
        if found is None:
            if self._ledger is _UNREAD:
                self._ledger = _ledger_tree(self.repo)
                self._layout = _layout(self._ledger)
            found = _NO_RECORD
            if self._ledger is not None:
                path = f"{ledger.ref_dir(ref, self._layout)}/current"
                if path in self._ledger:  # a miss costs no exception: most refs have none
                    tree = self._ledger[path.rpartition("/")[0]]
                    found = (json.loads(tree["current"].data), tree)
            self._records[ref] = found
        return found

    def recorded(self, ref: str) -> Optional[dict]:
        return self._record(ref)[0]

    def held_before(self, ref: str, oid: str, own_tag_object: bool) -> Optional[bool]:
        """Did the ref hold ``oid`` before? Where the ledger's record of the ref does not
        reach back to its creation (it started at install), pre-receive can still tell
        an env tag object of its own that the repository already had: pushed objects
        sit in quarantine, which a repository opened plainly does not see."""
        record, tree = self._record(ref)
        if record is not None:
            if ledger.fanout("values", oid) in tree:
                return True
            if record.get("complete"):
                return False
        if own_tag_object and os.environ.get("GIT_QUARANTINE_PATH"):
            if self._main is None:
                self._main = pygit2.Repository(self.path, flags=RepositoryOpenFlag.NO_SEARCH)
            return oid in self._main
        return None if record is None else False

    def held_commit(self, ref: str, commit: str) -> Optional[bool]:
        record, tree = self._record(ref)
        return None if record is None else ledger.fanout("commits", commit) in tree

    def ref(self, name: str) -> Optional[str]:
        ref = self.repo.references.get(name)
        if ref is None:
            return None
        target = ref.resolve().target
        return str(target)

    def refs_under(self, prefix: str) -> Mapping[str, str]:
        # pygit2 can only list every ref (0.2 s at 100,000 tags); git lists a prefix from
        # packed-refs by binary search.
        if prefix not in self._listed:
            out = subprocess.run(
                ["git", "for-each-ref", "--format=%(objectname) %(refname)", prefix.rstrip("/")],
                cwd=self.path, capture_output=True, text=True, check=True).stdout
            self._listed[prefix] = {ref: oid for oid, _, ref in
                                    (line.partition(" ") for line in out.splitlines())}
        return self._listed[prefix]

    def peel(self, oid: str) -> Peeled:
        # Only tag objects are read whole; the final object's type comes from its header,
        # which needs no inflating (a thousand-tag push reads a thousand commits less).
        chain = []
        current, kind = oid, self._kind(oid)
        while kind == _TAG and len(chain) <= _MAX_NESTING:
            tag = self._get(current)
            if tag is None:
                kind = None
                break
            # the tag header is bytes; a name that is not UTF-8 stays visible, escaped
            target = str(tag.target)
            chain.append(TagInfo(current, tag.raw_name.decode("utf-8", "backslashreplace"),
                                 target))
            current, kind = target, self._kind(tag.target)  # an Oid: no hex to parse
        if kind is None or kind == _TAG:
            target = chain[-1].target if chain else oid
            return Peeled(oid, tuple(chain), target, "missing" if kind is None else "tag")
        return Peeled(oid, tuple(chain), current, _TYPE_NAMES.get(kind, "missing"))

    def _kind(self, oid):
        """The object's type from its header; None when it is missing or unreadable."""
        try:
            return self.odb.read_header(oid)[0]
        except (ValueError, KeyError, pygit2.GitError):
            return None

    def reachable(self, commit: str, tips) -> bool:
        for tip in tips:
            try:
                if tip == commit or self.repo.descendant_of(tip, commit):
                    return True
            except (ValueError, KeyError, pygit2.GitError):
                continue  # a tip that is not a commit holds no commit
        return False

    def signature(self, oid: str, allowed_signers: str,
                  revoked: Optional[str] = None) -> Signature:
        from .signatures import verify_tag

        try:
            raw = self.repo.odb.read(oid)[1]
        except (KeyError, ValueError, pygit2.GitError):
            return Signature("error", detail=f"tag object {oid[:7]} is unreadable")
        sig = verify_tag(raw, allowed_signers, revoked)
        if sig.status in ("good", "error"):
            return sig
        own = sig.detail if sig.status != "unsigned" else ""  # the rule says it already
        return sig._replace(detail="; ".join(filter(None, (own, _expected(allowed_signers)))))

    def _get(self, oid: str):
        try:  # what Repository.get does, without its Python frame
            return self.repo.git_object_lookup_prefix(oid)
        except (ValueError, KeyError):
            return None

    def config(self, key: str) -> Optional[str]:
        try:
            return self.repo.config[key]
        except KeyError:
            return None


def _expected(allowed_signers: str, shown: int = 6) -> str:
    """Who the allowed-signers file lets sign, for the pusher: its principals."""
    try:
        with open(allowed_signers, encoding="utf-8", errors="replace") as f:
            lines = [line.split()[0] for line in f
                     if line.strip() and not line.lstrip().startswith("#")]
    except OSError:
        return ""
    names = [n for line in lines for n in line.split(",")]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"allowed signers: {', '.join(names[:shown])}{more}" if names else \
        "the allowed-signers file lists nobody"


# ---- the ledger: reading it whole, and appending to it -------------------------------

def _layout(tree) -> str:
    return ledger.LAYOUT if tree is None or ledger.LAYOUT_FILE in tree else "1"


def _ledger_tree(repo: pygit2.Repository):
    ref = repo.references.get(ledger.LEDGER_REF)
    return repo[ref.target].peel(pygit2.Tree) if ref is not None else None


class Ledger:
    """The whole ledger, for the auditor's commands."""

    def __init__(self, repo: pygit2.Repository, head):
        self.repo, self.head = repo, head

    def entries(self) -> list[dict]:
        """Every entry, oldest first."""
        batches = []
        for commit in self.repo.walk(self.head.id, pygit2.enums.SortMode.TOPOLOGICAL):
            text = commit.message
            if ledger.in_tree(text) and ledger.BATCH_FILE in commit.tree:
                text = commit.tree[ledger.BATCH_FILE].data.decode("utf-8")
            batches.append(ledger.entries_of(text))
        return [e for batch in reversed(batches) for e in batch]

    def current(self) -> dict[str, dict]:
        """tag name -> its record (value, commit, version, since, ...), for every ref the
        ledger knows, deleted ones included (value "")."""
        out: dict[str, dict] = {}

        def walk(tree, path):
            for item in tree:
                if item.name == "current" and item.type_str == "blob":
                    out[path] = json.loads(self.repo[item.id].data)
                elif item.type_str == "tree" and item.name not in ("values", "commits"):
                    walk(self.repo[item.id], f"{path}/{item.name}" if path else item.name)

        tags = self.head.tree["tags"] if "tags" in self.head.tree else None
        if tags is not None and _layout(self.head.tree) == ledger.LAYOUT:
            for fan in tags:  # tags/<xx>/<tag>
                walk(self.repo[fan.id], "")
        elif tags is not None:
            walk(tags, "")
        return out

    def audit_head(self) -> Optional[dict]:
        tree = self.head.tree
        return json.loads(tree["audit"].data) if "audit" in tree else None


def open_ledger(path: str) -> Optional[Ledger]:
    _harden()
    repo = pygit2.Repository(path, flags=RepositoryOpenFlag.NO_SEARCH)
    ref = repo.references.get(ledger.LEDGER_REF)
    return Ledger(repo, repo[ref.target].peel(pygit2.Commit)) if ref is not None else None


class LedgerWriter:
    """Appends batches of entries under a lock, so concurrent post-receives never lose
    one. Runs after git wrote the refs; never inside a push's quarantine."""

    def __init__(self, path: str, lock_path: str):
        _harden()
        self.repo = pygit2.Repository(path, flags=RepositoryOpenFlag.NO_SEARCH)
        self.lock_path = lock_path

    def exists(self) -> bool:
        return self.repo.references.get(ledger.LEDGER_REF) is not None

    def append(self, entries: list[dict], audit_head: Optional[dict] = None,
               when: Optional[float] = None) -> Optional[str]:
        """Append one batch; an empty batch only starts a ledger that does not exist."""
        if not entries and audit_head is None and self.exists():
            return None
        os.makedirs(os.path.dirname(self.lock_path), exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return self._append_locked(entries, audit_head, when)
        finally:
            os.close(fd)

    def _append_locked(self, entries, audit_head, when) -> str:
        repo = self.repo
        ref = repo.references.get(ledger.LEDGER_REF)
        parent = repo[ref.target].peel(pygit2.Commit) if ref is not None else None
        base = parent.tree if parent is not None else None
        layout = _layout(base)
        changes: dict[str, Optional[pygit2.Oid]] = {}
        if base is None:
            changes[ledger.LAYOUT_FILE] = repo.create_blob(f"{ledger.LAYOUT}\n".encode())
        records: dict[str, Optional[dict]] = {}

        def record_of(d: str) -> Optional[dict]:
            if d not in records:
                path = f"{d}/current"
                records[d] = json.loads(repo[base[path].id].data) \
                    if base is not None and path in base else None
            return records[d]

        stamps: dict[float, pygit2.Oid] = {}  # one blob per time, shared by every mark

        def mark(d: str, kind: str, oid: Optional[str], epoch: float) -> None:
            if not oid or not oid.strip("0"):
                return
            path = f"{d}/{ledger.fanout(kind, oid)}"
            if path not in changes and not (base is not None and path in base):
                if epoch not in stamps:
                    stamps[epoch] = repo.create_blob(f"{epoch}\n".encode())
                changes[path] = stamps[epoch]

        written = []
        for landed in entries:
            d = ledger.ref_dir(landed["ref"], layout)
            previous = record_of(d)
            gap = ledger.outside_entry(previous, landed) if previous is not None else None
            for e in filter(None, (gap, landed)):
                self._apply(d, e, record_of(d), records, changes, mark)
                written.append(e)
        entries = written
        if audit_head is not None:
            changes["audit"] = repo.create_blob(json.dumps(audit_head, sort_keys=True).encode())
        # a big batch's entries live in the tree; a small one's in the message only
        changes[ledger.BATCH_FILE] = repo.create_blob(ledger.batch(entries).encode()) \
            if len(entries) > ledger.INLINE_MAX else None
        tree = _write_tree(repo, base, changes)
        stamp = int(when if when is not None else (entries[-1]["epoch"] if entries else 0))
        sig = pygit2.Signature("tagwarden", "tagwarden@localhost", stamp, 0)
        oid = repo.create_commit(None, sig, sig, ledger.message(entries), tree,
                                 [parent.id] if parent is not None else [])
        repo.references.create(ledger.LEDGER_REF, oid, force=True)
        return str(oid)


    def _apply(self, d, e, previous, records, changes, mark) -> None:
        record = ledger.current_record(e, previous)
        records[d] = record
        changes[f"{d}/current"] = self.repo.create_blob(
            json.dumps(record, sort_keys=True).encode())
        mark(d, "values", e["new"], e["epoch"])
        mark(d, "commits", e["new_commit"], e["epoch"])


def _write_tree(repo, base, changes: Mapping[str, Optional[pygit2.Oid]]) -> pygit2.Oid:
    """``base`` with the blobs at ``changes`` (paths with slashes) put in place; a
    top-level name mapped to None is removed."""
    builder = repo.TreeBuilder(base) if base is not None else repo.TreeBuilder()
    below: dict[str, dict] = {}
    for path, oid in changes.items():
        head, sep, rest = path.partition("/")
        if sep:
            below.setdefault(head, {})[rest] = oid
        elif oid is None:
            if builder.get(head) is not None:
                builder.remove(head)
        else:
            builder.insert(head, oid, FileMode.BLOB)
    for head, sub in below.items():
        subtree = base[head] if base is not None and head in base else None
        if subtree is not None and subtree.type_str != "tree":
            subtree = None
        builder.insert(head, _write_tree(repo, subtree, sub), FileMode.TREE)
    return builder.write()


def repo_dir_from_env() -> str:
    return os.path.abspath(os.environ.get("GIT_DIR", "."))

