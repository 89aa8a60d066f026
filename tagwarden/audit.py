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


# The processor pipeline, configured once. Records of one hook run share one timestamp:
# they are one decision. Called as structlog's BoundLogger would call it, minus the
# logger object per event (a thousand-ref push renders a thousand records).
_STAMP = structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts")
_PIPELINE = (
    # tracebacks as data, without local variables: they may hold secrets
    structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False)),
    structlog.processors.JSONRenderer(sort_keys=True),
)


def render(records: Iterable[dict]) -> list[str]:
    ts = _STAMP(None, "info", {})["ts"]
    lines = []
    for record in records:
        event = {"ts": ts, **record}
        for processor in _PIPELINE:
            event = processor(None, "info", event)
        lines.append(event)
    return lines


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
