"""The only module that imports structlog: one JSON object per line, appended under a lock.

Records of one hook run are rendered through a fixed processor chain and appended with
a single write while holding an exclusive flock, so concurrent pushes never interleave
or tear lines. Any failure raises AuditError: the caller rejects the push.

Every line is chained to the one before it: ``seq`` is its 1-based position in the
chain and ``prev_sha256`` the sha256 of the previous line's bytes (without its newline;
64 zeros for seq 1). The lock covers reading the last line, so concurrent appends from
many processes still form one gap-free chain. ``tagwarden audit verify`` checks it.

With a syslog target (git config ``tagwarden.syslog``), the lines just written are then
sent, each as one RFC 5424 message, by the shipping module (docs/syslog.md). The file
stays the record of truth: a sink that fails never fails the append; it leaves one
``ship_failed`` line in the file instead.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
from itertools import islice, repeat
from operator import itemgetter
from typing import Iterable, Iterator, NamedTuple, Optional

import structlog
import structlog.tracebacks

GENESIS = "0" * 64  # prev_sha256 of seq 1


class AuditError(OSError):
    """The audit log could not be written; the push must not pass."""


class Head(NamedTuple):
    """The last line of a chain: its seq and the sha256 of its bytes (without newline)."""
    seq: int
    sha256: str


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
# The chain keys are rendered as placeholders, in their sorted places, by the pipeline
# above (outside the lock); under the lock only the values are filled in.
_PREV_MARK, _SEQ_MARK = "\x00prev", -740_106_731
_PREV_TEXT = '"prev_sha256": ' + json.dumps(_PREV_MARK)
_SEQ_TEXT = f'"seq": {_SEQ_MARK}'
_SEQ_KEY = b'"seq": '
_TAIL_CHUNK = 8192
_encode_string = json.encoder.encode_basestring_ascii  # what json.dumps uses for str
_CHAIN_KEYS = frozenset(("ts", "prev_sha256", "seq"))
_FILLED = ("prev_sha256", "seq")  # the values a line gets under the lock


# A line waiting for its chain values: (format, front, middle, back). The format takes
# the values of front, the previous line's sha256, middle, the seq, then back (sorted
# keys put prev_sha256 and seq between other values). Plain tuples: a push makes
# a thousand of them.
Template = tuple


def fill(template: Template, prev: str, seq: int) -> str:
    """The line ``template`` becomes after the line whose sha256 is ``prev``."""
    fmt, front, middle, back = template
    return fmt % (front + (prev,) + middle + (seq,) + back)


def _templates(records: Iterable[dict], shared: Optional[dict] = None,
               table: Optional[dict[str, list]] = None) -> list[Template]:
    """Each record (``shared`` under it) rendered to a line but for its chain values;
    the records of ``table`` first (columns: key -> every record's value, in order).

    The records of one push share most of their values (who, where, which policy):
    those are rendered once (``_Batch``), byte for byte as the pipeline would; a record
    that does not fit the batch's shape, or holds an exception, goes through it."""
    ts = _STAMP(None, "info", {})["ts"]
    out = _table_templates(table, ts, shared or {}) if table else []
    records = list(records)
    fast = _Batch(records, ts, shared).render_all(records) if len(records) > 1 else \
        [None] * len(records)
    return out + [line if line is not None else
                  _template({**shared, **record} if shared else record, ts)
                  for line, record in zip(fast, records)]


def _table_templates(table: dict[str, list], ts: str, shared: dict) -> list[Template]:
    n = len(next(iter(table.values())))
    batch = _Batch.of_keys(table.keys(), ts, shared)
    if batch is not None:
        return list(islice(batch.render_columns(table), n))
    keys = list(table)  # a shape the batch cannot take: one record at a time
    return [_template({**shared, **dict(zip(keys, row))}, ts) for row in zip(*table.values())]


def _template(record: dict, ts: str) -> Template:
    event = {"ts": ts, **record, "prev_sha256": _PREV_MARK, "seq": _SEQ_MARK}
    for processor in _PIPELINE:
        event = processor(None, "info", event)
    # sorted keys: prev_sha256 comes before seq, both at the top level
    head, found_prev, rest = event.partition(_PREV_TEXT)
    middle, found_seq, tail = rest.partition(_SEQ_TEXT)
    if not (found_prev and found_seq):
        raise ValueError("audit record rendered without its chain keys")
    return (f'{_literal(head)}"prev_sha256": "%s"{_literal(middle)}"seq": %s{_literal(tail)}',
            (), (), ())


def _literal(text: str) -> str:
    """``text`` as a piece of a %-format."""
    return text.replace("%", "%%")


def _json(value) -> str:
    """As JSONRenderer(sort_keys=True) renders a value, the common ones without a call."""
    kind = value.__class__
    if kind is str:
        return _encode_string(value)
    if value is None:
        return "null"
    if kind is int:
        return int.__repr__(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is list and not value:  # a decision's warnings, usually
        return "[]"
    if kind is list and all(v.__class__ is str for v in value):
        return f"[{', '.join(map(_encode_string, value))}]"
    return json.dumps(value, sort_keys=True, default=repr)  # records hold JSON types


# a column of values all of one of these types is encoded by one C loop
_COLUMN = {str: _encode_string, int: int.__repr__, type(None): lambda _: "null"}


def _same(a, b) -> bool:
    """Equal as JSON: 0 == False and 1.0 == 1 in Python, not in the line."""
    if a is b:
        return True
    if type(a) is not type(b) or a != b:
        return False
    return not isinstance(a, (list, tuple, dict)) or \
        json.dumps(a, sort_keys=True, default=repr) == json.dumps(b, sort_keys=True, default=repr)


class _Batch:
    """The shape of a push's records: sorted keys, the values they all share rendered
    once, and the literal text between the values that differ."""

    def __init__(self, records: list[dict], ts: str, shared: Optional[dict] = None):
        first = records[0]
        own = frozenset(first)
        if shared and own & shared.keys():
            own = frozenset()  # a record that overrides the shared values: no batch
        same = [r for r in records if r.keys() == own and "exc_info" not in r
                and not own & _CHAIN_KEYS and not (shared or {}).keys() & _CHAIN_KEYS]
        self.fits = {id(r) for r in same}  # records of this shape, rendered here
        if shared:  # said to be shared: nothing to compare
            self.shared = dict(shared)
        else:
            self.shared = {k: first[k] for k in first
                           if all(_same(r[k], first[k]) for r in same)}
        self._lay_out(own | self.shared.keys(), ts)

    @classmethod
    def of_keys(cls, keys, ts: str, shared: dict) -> Optional["_Batch"]:
        """The shape of records that all have ``keys`` (over ``shared``); None when
        the pipeline must render them (a key shadows a shared one, or is a chain key)."""
        keys = frozenset(keys)
        if keys & shared.keys() or (keys | shared.keys()) & _CHAIN_KEYS or "exc_info" in keys:
            return None
        batch = cls.__new__(cls)
        batch.fits, batch.shared = None, dict(shared)
        batch._lay_out(keys | shared.keys(), ts)
        return batch

    def _lay_out(self, keys: frozenset, ts: str) -> None:
        self.keys = keys
        self.shared["ts"] = ts
        pieces, literal = [], "{"
        for key in sorted(self.keys | {"ts", "prev_sha256", "seq"}):
            literal += ("" if literal == "{" else ", ") + _encode_string(key) + ": "
            if key == "prev_sha256":
                pieces.append(literal + '"')
                literal = '"'
            elif key == "seq":
                pieces.append(literal)
                literal = ""
            elif key in self.shared:
                literal += _json(self.shared[key])
            else:
                pieces.append(literal)
                literal = ""
        pieces.append(literal + "}")
        # the values that differ, in line order, each followed by the literal text after
        # it; prev_sha256 and seq cut the line in three
        self.varying = [k for k in sorted(self.keys | {"prev_sha256", "seq"})
                        if k not in self.shared]
        self.pieces = pieces

    def render(self, record: dict) -> Optional[Template]:
        return self.render_all([record])[0]

    def render_all(self, records: list[dict]) -> list[Optional[Template]]:
        """Each record's Template; None for a record of another shape."""
        fits = [r for r in records if id(r) in self.fits]
        if not fits:  # the shape holds a chain key of its own: every record goes the long way
            return [None] * len(records)
        lines = self.render_columns({key: list(map(itemgetter(key), fits))
                                     for key in self.varying if key not in _FILLED})
        return [next(lines) if id(r) in self.fits else None for r in records]

    def render_columns(self, columns: dict[str, list]) -> Iterator[Template]:
        """The Templates of the records whose values of the varying keys are
        ``columns`` (key -> each record's value). Column by column, so that a
        thousand-ref push encodes in C loops, and a column that holds one value
        throughout is rendered once, into the format."""
        fmt, parts = _literal(self.pieces[0]), [[]]
        for key, after in zip(self.varying, self.pieces[1:]):
            if key in _FILLED:
                fmt += "%s" + _literal(after)
                parts.append([])
                continue
            values = columns[key]
            kinds = set(map(type, values))
            kind = kinds.pop() if len(kinds) == 1 else None
            if kind in _COLUMN and len(set(values)) == 1 or kind is list and not any(values):
                fmt += _literal(_json(values[0]) + after)  # the same in all
            else:
                fmt += "%s" + _literal(after)
                parts[-1].append(list(map(_COLUMN.get(kind, _json), values)))
        return zip(repeat(fmt), *[zip(*part) if part else repeat(()) for part in parts])


def _chain(templates: list[Template], after: Head) -> tuple[bytearray, Head]:
    """The lines, newline-terminated and joined as written (ASCII: the renderer escapes
    everything else), and the Head of the last one. A bytearray, not copied to bytes:
    a big push's lines are a megabyte."""
    seq, prev = after
    data = bytearray()
    for template in templates:
        seq += 1
        line = fill(template, prev, seq).encode("utf-8")
        prev = hashlib.sha256(line).hexdigest()
        data += line
        data += b"\n"
    return data, Head(seq, prev)


def render(records: Iterable[dict], after: Head = Head(0, GENESIS)) -> list[str]:
    """The lines ``records`` would become, chained after the line ``after`` describes."""
    return _lines(_chain(_templates(records), after)[0])


def _lines(data: bytearray) -> list[str]:
    """The newline-terminated lines of ``data``, as text."""
    return data.decode("utf-8").split("\n")[:-1]


def append(path: str, records: Iterable[dict], ship: Optional[str] = None,
           shared: Optional[dict] = None,
           table: Optional[dict[str, list]] = None) -> Optional[Head]:
    """Append records to the JSON-lines file at ``path``, chained to its last line; then,
    when ``ship`` names a syslog target, send the lines written there. ``shared``: keys
    every line carries unless its record sets them (one push's who and where).
    ``table``: records of one shape as columns (key -> each record's value), written
    before ``records``: a big push's decisions, without a dict for each.

    Returns the Head of the last line written, or None when there was nothing to write.
    Raises AuditError when the file cannot be written; never because of the target.
    """
    templates = _templates(records, shared, table)
    if not templates:
        return None
    data, head = _write(path, templates)
    if ship:
        head = _ship(path, ship, _lines(data), head)
    return head


def _write(path: str, templates: list[Template]) -> tuple[bytearray, Head]:
    """One locked write of the chained lines; the lines written and the Head of the last."""
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            after, complete = last_line(fd)
            data, head = _chain(templates, after)
            # a torn last line (no newline) stays a line of its own: verify names it
            view = memoryview(data if complete else b"\n" + data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)  # also releases the flock
    except (OSError, ValueError) as exc:
        detail = getattr(exc, "strerror", None) or exc
        raise AuditError(f"cannot write audit log {path}: {detail}") from exc
    return data, head


# copied from the lines that were not shipped into the ship_failed line, to find it by
_SHIP_CONTEXT = ("push_id", "hook", "repo")


def _ship(path: str, target: str, lines: list[str], head: Head) -> Head:
    """Send the lines just written (outside the file's lock: the network does not hold up
    other pushes' appends). On failure append one ship_failed line, chained like any
    other, and return its Head; never raise."""
    try:
        from .shipping import send

        sent, error = send(target, lines)
    except Exception as exc:  # a bug in the sink is still only the sink's failure
        sent, error = 0, f"{type(exc).__name__}: {exc}"
    if error is None:
        return head
    first = head.seq - len(lines) + 1
    record = {"event": "ship_failed", "target": target, "error": error,
              "unshipped": {"from_seq": first + sent, "to_seq": head.seq,
                            "count": len(lines) - sent}}
    try:
        shipped = json.loads(lines[min(sent, len(lines) - 1)])
        record.update({k: shipped[k] for k in _SHIP_CONTEXT if k in shipped})
    except (ValueError, TypeError):
        pass
    try:
        return _write(path, _templates([record]))[1]
    except Exception:  # the records are in the file; this note about them is not vital
        return head


def last_line(fd: int) -> tuple[Head, bool]:
    """The Head the next line chains to, and whether the file ends with a newline.

    One small pread in the usual case. The sha256 is always the last line's, whatever
    it holds; its seq is the last line's own when it has one, else counted from the
    nearest line above that has one (a torn line, or lines written before the chain)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return Head(0, GENESIS), True
    lines = _lines_backward(fd, size)
    last = next(lines)
    digest = hashlib.sha256(last).hexdigest()
    complete = os.pread(fd, 1, size - 1) == b"\n"
    unnumbered, line = 0, last
    while line is not None:
        seq = line_seq(line)
        if seq is not None:
            return Head(seq + unnumbered, digest), complete
        unnumbered += 1
        line = next(lines, None)
    return Head(unnumbered, digest), complete


def line_seq(line: bytes) -> Optional[int]:
    """The seq of a chained line, None for anything else (torn, garbage, unchained)."""
    if _SEQ_KEY not in line:
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    seq = record.get("seq") if isinstance(record, dict) else None
    return seq if type(seq) is int and seq > 0 else None


def _lines_backward(fd: int, size: int) -> Iterator[bytes]:
    """The file's lines, last first, without their newlines, read in growing chunks
    from the end (a line can be long: an incident's traceback)."""
    pos, data, step, first = size, b"", _TAIL_CHUNK, True
    while True:
        if pos > 0:
            n = min(step, pos)
            pos -= n
            data = os.pread(fd, n, pos) + data
            step = min(step * 2, 1 << 20)
            if first and data.endswith(b"\n"):
                data = data[:-1]  # it ends the last line, it does not start another
            first = False
        cut = data.rfind(b"\n")
        while cut >= 0:
            yield data[cut + 1:]
            data = data[:cut]
            cut = data.rfind(b"\n")
        if pos == 0:
            yield data
            return
