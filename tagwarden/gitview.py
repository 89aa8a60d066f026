"""The only module that imports pygit2: a read-only view of the repository.

In pre-receive the pushed objects sit in git's receive quarantine; opening the
repository from the environment (GIT_DIR, GIT_OBJECT_DIRECTORY,
GIT_ALTERNATE_OBJECT_DIRECTORIES) makes them visible.
"""
from __future__ import annotations

import os
import subprocess
from typing import Mapping, Optional

import pygit2
from pygit2.enums import ConfigLevel, ObjectType, Option, RepositoryOpenFlag

from .model import Peeled, TagInfo

_MAX_NESTING = 16


def _harden() -> None:
    # A service user's $HOME may be unreadable or foreign: read no global/XDG config,
    # and accept a repository owned by another user (the host decided who runs us).
    for level in (ConfigLevel.GLOBAL, ConfigLevel.XDG):
        pygit2.option(Option.SET_SEARCH_PATH, level, "")
    pygit2.option(Option.SET_OWNER_VALIDATION, 0)


class GitView:
    def __init__(self, path: str, from_env: bool = False):
        _harden()
        flags = RepositoryOpenFlag.FROM_ENV if from_env else RepositoryOpenFlag.NO_SEARCH
        self.repo = pygit2.Repository(path, flags=flags)
        self.path = self.repo.path
        self._listed: dict[str, dict[str, str]] = {}
        self._main: Optional[pygit2.Repository] = None
        self._history: dict[str, Optional[set[str]]] = {}

    def history(self, ref: str) -> Optional[set[str]]:
        """Every value the ref held, from its reflog (the hooks start one for each env
        slot they let move; the installer keeps tag reflogs from expiring); None without
        one. Both sides of each entry count: a reflog started on an existing ref begins
        with the value it had."""
        if ref not in self._history:
            held = None
            if os.path.exists(os.path.join(self.path, "logs", ref)):
                found = self.repo.references.get(ref)
                held = set()
                for entry in found.log() if found is not None else ():
                    held.update((str(entry.oid_old), str(entry.oid_new)))
                held = {oid for oid in held if oid.strip("0")}  # not the zero id
            self._history[ref] = held
        return self._history[ref]

    def held_before(self, ref: str, oid: str, own_tag_object: bool) -> Optional[bool]:
        """Did the ref hold ``oid`` before? Without a reflog, pre-receive can still tell
        an env tag object of its own that the repository already had (pushed objects
        sit in quarantine, which a repository opened plainly does not see)."""
        held = self.history(ref)
        if held is not None:
            return oid in held
        if own_tag_object and os.environ.get("GIT_QUARANTINE_PATH"):
            if self._main is None:
                self._main = pygit2.Repository(self.path, flags=RepositoryOpenFlag.NO_SEARCH)
            return oid in self._main
        return None

    def held_commits(self, ref: str) -> Optional[set[str]]:
        """The commits the ref pointed at, peeled, from its reflog; None without one."""
        held = self.history(ref)
        if held is None:
            return None
        return {p.commit for p in map(self.peel, held) if p.commit}

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
        chain = []
        obj = self._get(oid)
        while obj is not None and obj.type == ObjectType.TAG and len(chain) <= _MAX_NESTING:
            # the tag header is bytes; a name that is not UTF-8 stays visible, escaped
            name = obj.raw_name.decode("utf-8", "backslashreplace")
            chain.append(TagInfo(str(obj.id), name, str(obj.target)))
            obj = self._get(str(obj.target))
        if obj is None or obj.type == ObjectType.TAG:
            target = chain[-1].target if chain else oid
            return Peeled(oid, tuple(chain), target, "missing" if obj is None else "tag")
        return Peeled(oid, tuple(chain), str(obj.id), obj.type_str)

    def _get(self, oid: str):
        try:
            return self.repo.get(oid)
        except (ValueError, KeyError):
            return None

    def config(self, key: str) -> Optional[str]:
        try:
            return self.repo.config[key]
        except KeyError:
            return None


def repo_dir_from_env() -> str:
    return os.path.abspath(os.environ.get("GIT_DIR", "."))

