"""The only module that imports structlog: one JSON object per line, appended under a lock.

Records of one hook run are rendered through a fixed processor chain and appended with
a single write while holding an exclusive flock, so concurrent pushes never interleave
or tear lines. Any failure raises AuditError: the caller rejects the push.
"""
from __future__ import annotations

import fcntl
import os
from typing import Iterable

import structlog
import structlog.tracebacks


class AuditError(OSError):
    """The audit log could not be written; the push must not pass."""


class _Lines:
    """A structlog logger that keeps rendered lines until they are appended together."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def msg(self, message: str) -> None:
        self.lines.append(message)

    info = warning = error = msg


def render(records: Iterable[dict]) -> list[str]:
    sink = _Lines()
    log = structlog.wrap_logger(
        sink,
        processors=[
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            # tracebacks as data, without local variables: they may hold secrets
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)),
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
    ).bind()  # a concrete logger: the lazy proxy would rebuild itself on every event
    for record in records:
        record = dict(record)
        log.info(record.pop("event"), **record)
    return sink.lines


def append(path: str, records: Iterable[dict]) -> int:
    """Append records to the JSON-lines file at ``path``; return how many were written."""
    lines = render(records)
    if not lines:
        return 0
    data = ("\n".join(lines) + "\n").encode("utf-8")
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)  # also releases the flock
    except OSError as exc:
        raise AuditError(f"cannot write audit log {path}: {exc.strerror or exc}") from exc
    return len(lines)
