"""The audit log as a file for its readers: where it is, mapped whole, split into line
ranges, and work on those ranges forked over the CPUs (``audit verify`` and queries
of big logs). No structlog here: the readers do not need the writer's imports.
"""
from __future__ import annotations

import os
from typing import Iterator, Optional


class LogError(Exception):
    """The log cannot be found or read: exit 2."""


def git_dir(repo: str) -> str:
    if not os.path.isdir(repo):
        raise LogError(f"{repo}: no such repository")
    dot_git = os.path.join(repo, ".git")
    return dot_git if os.path.isdir(dot_git) else repo


def log_path(repo: str) -> str:
    """The repository's audit log, as the hooks find it: git config tagwarden.auditLog
    (relative to the repository), else tagwarden/audit.jsonl inside it."""
    import subprocess

    where = git_dir(repo)
    try:
        # an explicit --git-dir: no discovery upwards, no ownership check for reading
        out = subprocess.run(["git", "--git-dir", where, "config", "--get",
                              "tagwarden.auditLog"], capture_output=True, text=True)
    except OSError as exc:
        raise LogError(f"cannot run git: {exc}") from None
    configured = out.stdout.rstrip("\n") if out.returncode == 0 else ""
    if configured:
        return configured if os.path.isabs(configured) else os.path.join(where, configured)
    return os.path.join(where, "tagwarden", "audit.jsonl")


def read_log(path: str):
    """The whole log as a read-only buffer (mmap; bytes when empty)."""
    import mmap

    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return b""
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise LogError(f"cannot read audit log {path}: {exc.strerror or exc}") from None
    if hasattr(mm, "madvise"):
        mm.madvise(mmap.MADV_SEQUENTIAL)
    return mm


def line_spans(buf, lo: int = 0, hi: Optional[int] = None) -> Iterator[tuple[int, int]]:
    """(start, end) of every line in [lo, hi), newline excluded; a last line without
    one counts."""
    pos, size, find = lo, len(buf) if hi is None else hi, buf.find
    while pos < size:
        end = find(b"\n", pos, size)
        if end < 0:
            yield pos, size
            return
        yield pos, end
        pos = end + 1


# ---- work over line ranges, forked --------------------------------------------------

_PARALLEL_BYTES = 64 << 20  # below this, one process is as fast


def workers_for(size: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8, size // _PARALLEL_BYTES))


def line_ranges(buf, parts: int) -> list[tuple[int, int]]:
    """``parts`` ranges of whole lines covering the buffer."""
    size, cuts = len(buf), [0]
    for k in range(1, parts):
        cut = buf.find(b"\n", max(cuts[-1], size * k // parts))
        if cut < 0:
            break
        cuts.append(cut + 1)
    cuts.append(size)
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def fork_work(work):
    """Run ``work() -> bytes`` in a forked child (the log's map is shared); its result
    goes to an unnamed temporary file, so a child never waits for the parent to read."""
    import tempfile

    out = tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:  # the child: leave without running any cleanup of the parent's
        code = 1
        try:
            data = memoryview(work())
            while data:
                data = data[os.write(out.fileno(), data):]
            code = 0
        finally:
            os._exit(code)
    return [pid, out]


def collect_work(child, kill: bool = False) -> Optional[bytes]:
    """The child's result; None if it failed (the caller redoes its work)."""
    pid, out = child
    if pid is None:
        return None
    if kill:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    _, status = os.waitpid(pid, 0)
    child[0] = None
    with out:
        if status != 0 or kill:
            return None
        out.seek(0)
        return out.read()
