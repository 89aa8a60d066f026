"""One push, seen across its hook processes: identity, per-push state, component locks.

git runs pre-receive (or one update hook per ref), writes the refs, then post-receive,
all as children of one git-receive-pack process. That process (pid + start time, so a
reused pid never matches) identifies the push. Its state file carries the push id and
what was decided from the first hook to post-receive; its locks serialise promotions of
one component from the decision until the refs are written. A push whose receive-pack
died (say, every ref lost a race and post-receive never ran) leaves stale files that
the next hook breaks.
"""
from __future__ import annotations

import fcntl
import marshal
import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional


# What post-receive needs to know of each decision, stored as rows in this order (a
# thousand-ref push writes a thousand of them before git may write a ref).
CARRIED = ("ref", "old", "new", "verdict", "rule", "change", "kind", "component", "slot",
           "version", "old_commit", "new_commit")


# A push's state file: written by one hook and read by the next hook of the same push,
# with the same interpreter, so in marshal's format (JSON took about 7% of a big push's
# hook time). It holds only dicts, lists, strings, numbers and None.
STATE_SUFFIX = ".state"


def _read(path: str) -> dict:
    """A state file's content, each decided row as a dict; ValueError when it is not one."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        state = marshal.loads(data)
    except (EOFError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a tagwarden state file ({exc})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a tagwarden state file")
    if "decided" in state:
        state["decided"] = [row if isinstance(row, dict) else dict(zip(CARRIED, row))
                            for row in state["decided"]]
    return state


class LockTimeout(Exception):
    def __init__(self, components: list[str], holders: list[str]):
        super().__init__(", ".join(components))
        self.components, self.holders = components, holders


def _stat(pid: int) -> Optional[tuple[str, str, int, str]]:
    """(comm, state, ppid, starttime) from /proc, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    comm = raw[raw.index("(") + 1:raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2:].split()
    return comm, fields[0], int(fields[1]), fields[19]


def _is_receive_pack(pid: int, comm: str) -> bool:
    if comm.startswith("git-receive-pa"):
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"receive-pack" in f.read()
    except OSError:
        return False


def push_owner() -> Optional[str]:
    """'PID-STARTTIME' of the git-receive-pack this hook runs under (through any
    dispatcher script), or None where it is not an ancestor (a host that runs hooks
    from a service of its own)."""
    pid = os.getppid()
    for _ in range(8):
        info = _stat(pid)
        if info is None or pid <= 1:
            return None
        comm, _, ppid, start = info
        if _is_receive_pack(pid, comm):
            return f"{pid}-{start}"
        pid = ppid
    return None


def lease_owner(seconds: float) -> str:
    """An owner that stays alive for a while: where no receive-pack process can be
    watched, a lock lasts until post-receive releases it or the lease runs out."""
    return f"lease-{uuid.uuid4().hex[:12]}-{time.time() + seconds:.0f}"


def alive(owner: str) -> bool:
    if owner.startswith("lease-"):
        return time.time() < float(owner.rsplit("-", 1)[1])
    pid, _, start = owner.partition("-")
    info = _stat(int(pid)) if pid.isdigit() else None
    return info is not None and info[3] == start and info[1] not in ("Z", "X")


@contextmanager
def _flock(path: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o660)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _lock_name(component: str) -> str:
    return component.replace("/", "%") + ".lock"


# A push whose receive-pack is gone is taken for dead only after this long: its
# post-receive runs in the background and may start after receive-pack has exited.
STALE_AFTER = 60.0


@dataclass
class PushSession:
    """Per-push state under ``<state_dir>/run``; locks under ``<state_dir>/locks``."""

    state_dir: str
    owner: Optional[str]

    @classmethod
    def for_landed(cls, state_dir: str, landed: list[tuple[str, str, str]],
                   pid_hint: Optional[str] = None) -> "PushSession":
        """post-receive's push: the one whose approved updates include what landed.

        Matching by ref updates, not by process, works behind hook dispatchers and when
        post-receive runs after receive-pack has exited.
        """
        landed_set = set(landed)
        best, best_key = None, None
        run_dir = os.path.join(state_dir, "run")
        try:
            names = [n for n in os.listdir(run_dir) if n.endswith(STATE_SUFFIX)]
        except OSError:
            names = []
        for name in names if landed_set else []:
            path = os.path.join(run_dir, name)
            try:
                state = _read(path)
                mtime = os.stat(path).st_mtime
            except (OSError, ValueError):
                continue
            approved = {(d["ref"], d["old"], d["new"]) for d in state.get("decided", [])
                        if d.get("verdict") != "rejected"}
            if not landed_set <= approved:
                continue
            key = (bool(pid_hint) and name.startswith(f"{pid_hint}-"), mtime)
            if best_key is None or key > best_key:
                best, best_key = name[:-len(STATE_SUFFIX)], key
        return cls(state_dir, best)

    @property
    def run_dir(self) -> str:
        return os.path.join(self.state_dir, "run")

    @property
    def lock_dir(self) -> str:
        return os.path.join(self.state_dir, "locks")

    def _file(self, owner: str) -> str:
        return os.path.join(self.run_dir, owner + STATE_SUFFIX)

    # ---- state carried from the deciding hooks to post-receive ----------------------

    def load(self) -> dict:
        if self.owner is None:
            return {}
        try:
            return _read(self._file(self.owner))
        except FileNotFoundError:
            return {}

    def push_id(self) -> str:
        return self.load().get("push_id") or uuid.uuid4().hex[:16]

    def plan(self, push_id: str, planned: list[dict], push_options: list[str]) -> None:
        """Record every ref update of the push and its push options (update mode:
        pre-receive sees them all, each update hook only its own ref and no options)."""
        self._change(push_id, lambda state: state.update(planned=planned,
                                                         push_options=push_options))

    def record(self, push_id: str, decided: list[list], push: dict) -> None:
        """Add decided ref updates, rows of CARRIED, to this push's state (update mode
        calls it per ref); ``push`` holds what is the same for all of them (who, which
        policy). Readers get each row back as a dict."""
        def change(state: dict) -> None:
            state.setdefault("decided", []).extend(decided)
            state.setdefault("push", push)
        self._change(push_id, change)

    def _change(self, push_id: str, change) -> None:
        if self.owner is None:
            return
        os.makedirs(self.run_dir, exist_ok=True)
        with _flock(os.path.join(self.run_dir, ".mutex")):
            state = self.load()
            state["push_id"] = push_id
            change(state)
            tmp = self._file(self.owner) + ".tmp"
            with open(tmp, "wb") as f:
                f.write(marshal.dumps(state))
            os.replace(tmp, self._file(self.owner))

    def finish(self) -> dict:
        """Take this push's state away (post-receive) and release its locks."""
        state = self.load()
        if self.owner is not None:
            try:
                os.unlink(self._file(self.owner))
            except FileNotFoundError:
                pass
            self.release()
        return state

    def stale(self) -> list[dict]:
        """Remove state files of pushes whose receive-pack is gone; return their states."""
        try:
            names = os.listdir(self.run_dir)
        except FileNotFoundError:
            return []
        found = []
        now = time.time()
        for name in names:
            owner = name[:-len(STATE_SUFFIX)]
            if not name.endswith(STATE_SUFFIX) or owner == self.owner or alive(owner):
                continue
            path = os.path.join(self.run_dir, name)
            try:
                if now - os.stat(path).st_mtime < STALE_AFTER:
                    continue
                found.append(_read(path))
                os.unlink(path)
            except (OSError, ValueError):
                continue
        return found

    # ---- component locks ------------------------------------------------------------

    def acquire(self, components: list[str], timeout: float, poll: float = 0.05) -> float:
        """Lock the components for this push; return seconds waited or raise LockTimeout.

        Re-entrant for the same push (update mode takes the lock once per ref).
        """
        if not components or self.owner is None:
            return 0.0
        os.makedirs(self.lock_dir, exist_ok=True)
        started = time.monotonic()
        while True:
            with _flock(os.path.join(self.lock_dir, ".mutex")):
                holders = {c: self._holder(c) for c in components}
                busy = {c: h for c, h in holders.items()
                        if h and h != self.owner and alive(h)}
                if not busy:
                    for component in components:
                        with open(os.path.join(self.lock_dir, _lock_name(component)), "w") as f:
                            f.write(self.owner)
                    return time.monotonic() - started
            if time.monotonic() - started >= timeout:
                raise LockTimeout(sorted(busy), sorted(set(busy.values())))
            time.sleep(poll)

    def _holder(self, component: str) -> Optional[str]:
        try:
            with open(os.path.join(self.lock_dir, _lock_name(component))) as f:
                return f.read().strip() or None
        except FileNotFoundError:
            return None

    def release(self) -> None:
        if self.owner is None or not os.path.isdir(self.lock_dir):
            return
        with _flock(os.path.join(self.lock_dir, ".mutex")):
            for name in os.listdir(self.lock_dir):
                if not name.endswith(".lock"):
                    continue
                path = os.path.join(self.lock_dir, name)
                try:
                    with open(path) as f:
                        if f.read().strip() == self.owner:
                            os.unlink(path)
                except FileNotFoundError:
                    pass
