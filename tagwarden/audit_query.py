"""``tagwarden audit`` queries: filters, and a search that never parses the whole file.

It looks for the filters' exact JSON spelling in the raw bytes first (the writer's
spelling: sorted keys, ``"key": "value"``) and parses only the lines that hold them;
the parsed record then decides. Big logs are searched in forked processes.
"""
from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta, timezone
from typing import Iterator, NamedTuple, Optional

from .audit_file import collect_work, fork_work, line_ranges, line_spans, workers_for

DECISIONS = ("accepted", "warned", "rejected", "override", "bypass")
EVENTS = ("decision", "applied", "not_applied", "incident", "ship_failed")
FILTERS = ("component", "slot", "pusher", "decision", "event", "change")
COLUMNS = ("ts", "event", "pusher", "ref", "change", "decision", "version", "rule")
_GLOB = "*?["


def parse_time(text: str) -> tuple[datetime, bool]:
    """RFC 3339 / ISO 8601 as UTC unless it says otherwise; True when it is a date."""
    value = text.strip()
    date_only = len(value) == 10
    value = value.replace(" ", "T", 1)
    if value[-1:] in "Zz":
        value = value[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use 2026-11-22, 2026-11-22T10:00 or "
            f"2026-11-22T10:00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc), date_only


def _time_key(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")


def ts_key(ts) -> Optional[str]:
    """A record's ts as a string that sorts in time order ("…SS.ffffff", UTC)."""
    if not isinstance(ts, str):
        return None
    if len(ts) == 27 and ts[26] == "Z" and ts[19] == ".":
        return ts[:26]  # what the writer produces
    try:
        return _time_key(parse_time(ts)[0])
    except (argparse.ArgumentTypeError, IndexError):
        return None


class Query(NamedTuple):
    exact: dict           # key -> value the record must hold
    component: Optional[str]  # glob
    since: Optional[str]  # ts_key bounds: since <= key < until
    until: Optional[str]

    @classmethod
    def from_args(cls, args) -> "Query":
        exact = {k: getattr(args, k) for k in FILTERS
                 if k != "component" and getattr(args, k) is not None}
        glob = args.component
        if glob is not None and not any(c in glob for c in _GLOB):
            exact["component"], glob = glob, None
        since = until = None
        if args.since:
            since = _time_key(args.since[0])
        if args.until:
            when, date_only = args.until
            until = _time_key(when + (timedelta(days=1) if date_only
                                      else timedelta(microseconds=1)))
        return cls(exact, glob, since, until)

    def needles(self) -> list[bytes]:
        """Byte strings every matching line holds, as the writer spells them: sorted
        keys, ``"key": "value"``, ASCII with \\u escapes. A value is searched for up to
        its first character another writer could spell differently (non-ASCII, control)."""
        out = [_needle(key, value) for key, value in self.exact.items()]
        if self.component is not None:
            literal = self.component
            cut = min((literal.find(c) for c in _GLOB if c in literal), default=len(literal))
            if cut > 0:  # the glob's literal start, in its key
                out.append(_needle("component", literal[:cut], whole=False))
            else:
                pieces = [p for p in _split_glob(literal) if p]
                if pieces:
                    out.append(_spelled(max(pieces, key=len)))
        return [n for n in out if n]

    def matches(self, record: dict) -> bool:
        for key, value in self.exact.items():
            if record.get(key) != value:
                return False
        if self.component is not None:
            from fnmatch import fnmatchcase

            component = record.get("component")
            if not isinstance(component, str) or not fnmatchcase(component, self.component):
                return False
        if self.since or self.until:
            key = ts_key(record.get("ts"))
            if key is None or (self.since and key < self.since) or \
                    (self.until and key >= self.until):
                return False
        return True


def _spelled(text: str) -> bytes:
    """``text`` as it appears inside a JSON string written by tagwarden, cut before the
    first character that need not be spelled that way."""
    cut = next((i for i, ch in enumerate(text) if not " " <= ch <= "~"), len(text))
    return json.dumps(text[:cut])[1:-1].encode()


def _needle(key: str, value, whole: bool = True) -> bytes:
    if not isinstance(value, str):
        return f'"{key}": {json.dumps(value)}'.encode()
    spelled = _spelled(value)
    closed = whole and len(json.loads(b'"' + spelled + b'"')) == len(value)
    return f'"{key}": "'.encode() + spelled + (b'"' if closed else b"")


def _split_glob(glob: str) -> list[str]:
    import re

    return re.split(r"\*|\?|\[[^\]]*\]?", glob)


def _pick(buf, needles: list[bytes]) -> bytes:
    """The needle with the fewest hits in the log's last few megabytes (the likeliest
    to be rare in all of it), the longest on a tie."""
    sample = bytes(buf[max(0, len(buf) - (4 << 20)):])
    return min(needles, key=lambda n: (sample.count(n), -len(n)))


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


_TS = b'"ts": "'


class Plan(NamedTuple):
    """How to scan: the needle to search for, the others a line must also hold, and the
    time bounds to check on the raw line before parsing it."""
    first: Optional[bytes]
    rest: tuple
    since: Optional[bytes]
    until: Optional[bytes]

    @classmethod
    def make(cls, buf, query: Query) -> "Plan":
        needles = query.needles()
        since = query.since.encode() if query.since else None
        until = query.until.encode() if query.until else None
        if since or until:
            # every time in [since, until) starts with what the two bounds share, to the
            # second ("…SSZ", without a fraction, is a time the writer can write too)
            prefix = _common_prefix(query.since, query.until)[:19] if since and until else ""
            needles.append(b'"ts": "' + prefix.encode())
        first = _pick(buf, needles) if needles else None
        return cls(first, tuple(n for n in needles if n not in (first, _TS)), since, until)


def _spans(buf, plan: Plan, lo: int, hi: int) -> Iterator[tuple[int, int]]:
    """Candidate lines in [lo, hi) (a range of whole lines), in order: each holds the
    first needle and every other one. The hot loop of a query: kept flat."""
    needle = plan.first
    if needle is None:
        yield from line_spans(buf, lo, hi)
        return
    if needle == _TS:  # time alone, and the bounds share no prefix to search for
        yield from _ts_spans(buf, plan, lo, hi)
        return
    find, rfind, rest, pos = buf.find, buf.rfind, plan.rest, lo
    while True:
        hit = find(needle, pos, hi)
        if hit < 0:
            return
        start = rfind(b"\n", lo, hit) + 1 or lo
        end = find(b"\n", hit, hi)
        if end < 0:
            end = hi
        pos = end + 1
        for other in rest:
            if find(other, start, end) < 0:
                break
        else:
            yield start, end


def _ts_spans(buf, plan: Plan, lo: int, hi: int) -> Iterator[tuple[int, int]]:
    """Time alone: every line's time, compared as bytes, found from its end (the ts
    key sorts near the end of a record)."""
    find, rfind, skip = buf.find, buf.rfind, len(_TS)
    since = plan.since
    # the writer's ts is "YYYY-MM-DDTHH:MM:SS.ffffffZ"; a time without the fraction
    # ("…SSZ") sorts after every fraction of its second: compare the until bound to the
    # second only, so such a line is parsed and judged instead of skipped
    until = plan.until[:19] + b"\x7f" if plan.until else None
    pos = lo
    while pos < hi:
        end = find(b"\n", pos, hi)
        if end < 0:
            end = hi
        at = rfind(_TS, pos, end)
        if at < 0:
            yield pos, end  # not a record: parsing will say so
        else:
            ts = buf[at + skip:at + skip + 26]
            if not ((since and ts < since) or (until and ts >= until)):
                yield pos, end
        pos = end + 1


def _scan(buf, query: Query, plan: Plan, lo: int, hi: int,
          limit: Optional[int] = None) -> tuple[list, int]:
    """(start, end, record) of the matching lines in [lo, hi), and how many candidate
    lines were not JSON. With ``limit``, the last ``limit`` matches: blocks of growing size
    are searched from the end, each forwards, until there are enough."""
    if limit is not None:
        out, unreadable, size = [], 0, 1 << 20
        while hi > lo and len(out) < limit:
            cut = lo if hi - lo <= size else (buf.find(b"\n", hi - size, hi) + 1 or lo)
            found, bad = _scan(buf, query, plan, cut, hi)
            out[:0], unreadable, hi = found, unreadable + bad, cut
            size = min(size * 2, 64 << 20)
        return out[-limit:], unreadable
    rfind, loads = buf.rfind, json.loads
    since, until = plan.since, plan.until
    out, unreadable = [], 0
    for start, end in _spans(buf, plan, lo, hi):
        if since or until:
            # the writer's ts ("…SS.ffffffZ") compares as bytes: no need to parse
            at = rfind(_TS, start, end) + len(_TS)
            ts = buf[at:at + 27] if at >= len(_TS) else b""
            if len(ts) == 27 and ts[26:] == b"Z" and ts[19:20] == b"." and \
                    ((since and ts[:26] < since) or (until and ts[:26] >= until)):
                continue
        try:
            record = loads(buf[start:end])
        except ValueError:
            unreadable += 1
            continue
        if isinstance(record, dict) and query.matches(record):
            out.append((start, end, record))
    return out, unreadable


def _forked(buf, query: Query, plan: Plan, ranges) -> tuple[list, int]:
    """_scan over each range, all but the first in a forked child that sends back its
    line offsets. A child that fails is redone here."""
    import array

    def work(lo: int, hi: int) -> bytes:
        spans, unreadable = _scan(buf, query, plan, lo, hi)
        flat = array.array("q", [unreadable])
        for start, end, _ in spans:
            flat.extend((start, end))
        return flat.tobytes()

    children = [fork_work(lambda lo=lo, hi=hi: work(lo, hi)) for lo, hi in ranges[1:]]
    try:
        spans, unreadable = _scan(buf, query, plan, *ranges[0])
        for (lo, hi), child in zip(ranges[1:], children):
            data = collect_work(child)
            flat = array.array("q")
            if data and len(data) % flat.itemsize == 0:
                flat.frombytes(data)
                unreadable += flat[0]
                spans.extend((start, end, None) for start, end in zip(flat[1::2], flat[2::2]))
            else:
                more, bad = _scan(buf, query, plan, lo, hi)
                spans.extend(more)
                unreadable += bad
    finally:
        for child in children:
            collect_work(child, kill=True)
    return spans, unreadable


class Found(NamedTuple):
    raw: bytes
    record: dict


def search(buf, query: Query, limit: Optional[int] = None,
           stats: Optional[dict] = None, workers: Optional[int] = None) -> list[Found]:
    """Matching records in file order; with ``limit``, only the last ``limit`` of them.

    The file is searched for the rarest of the filters' JSON spellings; only lines that
    hold all of them (and whose time is in range) are parsed. Without a limit, big logs
    are split by line among processes, one per CPU."""
    if not buf:
        return []
    plan = Plan.make(buf, query)
    if limit is not None:  # from the end, stopping at the limit: one process
        spans, unreadable = _scan(buf, query, plan, 0, len(buf), limit)
    else:
        ranges = line_ranges(buf, workers or workers_for(len(buf)))
        if len(ranges) > 1:
            spans, unreadable = _forked(buf, query, plan, ranges)
        else:
            spans, unreadable = _scan(buf, query, plan, 0, len(buf))
    if stats is not None:
        stats["unreadable"] = unreadable
    found = []
    for start, end, record in spans:
        raw = buf[start:end]
        found.append(Found(raw, json.loads(raw) if record is None else record))
    return found


def _cell(record: dict, column: str) -> str:
    value = record.get(column)
    if column == "ts" and isinstance(value, str) and len(value) > 20 and value[19] == ".":
        value = value[:19] + "Z"  # to the second; --json has the rest
    elif column == "ref":
        if isinstance(value, str) and value.startswith("refs/tags/"):
            value = value[len("refs/tags/"):]
        elif value is None and record.get("incident"):
            value = f"incident {record['incident']}"
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value)


def table(records: list[dict]) -> list[str]:
    from .refname import printable

    rows = [list(COLUMNS)] + [[printable(_cell(r, c)) for c in COLUMNS] for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def json_line(found: Found) -> bytes:
    # the writer's lines are ASCII; anything else was not written by tagwarden and is
    # escaped again, so no raw control or bidi character reaches the terminal
    return found.raw if found.raw.isascii() else \
        json.dumps(found.record, sort_keys=True).encode()
