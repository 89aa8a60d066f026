"""``tagwarden audit``: query the audit log, and verify its hash chain.

    tagwarden audit [REPO] [--log FILE] [--component GLOB] [--slot SLOT] [--pusher NAME]
                    [--decision D] [--event E] [--change C] [--since TIME] [--until TIME]
                    [--json] [--limit N]
    tagwarden audit verify [REPO] [--log FILE]

A query never parses the whole file: it looks for the filters' exact JSON spelling in
the raw bytes first (the writer's spelling: sorted keys, ``"key": "value"``) and parses
only the lines that hold them; the parsed record then decides. No structlog here: the
reader does not need the writer's imports.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from datetime import datetime, timedelta, timezone
from typing import Iterator, NamedTuple, Optional

GENESIS = "0" * 64  # prev_sha256 of seq 1 (audit.GENESIS, without importing structlog)
DECISIONS = ("accepted", "warned", "rejected", "override", "bypass")
EVENTS = ("decision", "applied", "not_applied", "incident", "ship_failed")
FILTERS = ("component", "slot", "pusher", "decision", "event", "change")
COLUMNS = ("ts", "event", "pusher", "ref", "change", "decision", "version", "rule")
USAGE = """tagwarden audit [REPO] [--log FILE] [FILTERS] [--json] [--limit N]
       tagwarden audit verify [REPO] [--log FILE]"""
_GLOB = "*?["


class LogError(Exception):
    """The log cannot be found or read: exit 2."""


# ---- where the log is ------------------------------------------------------------------

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


def _open(path: str):
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


def _lines(buf, lo: int = 0, hi: Optional[int] = None) -> Iterator[tuple[int, int]]:
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


# ---- verify --------------------------------------------------------------------------

class Problem(NamedTuple):
    line: int
    kind: str  # edited, removed, reordered, inserted, torn, not-json, truncated, rewritten
    detail: str

    def __str__(self) -> str:
        if self.kind in ("truncated", "rewritten"):
            return f"log {self.kind}: {self.detail}"
        return f"line {self.line}: {self.kind}: {self.detail}"


class Verified(NamedTuple):
    lines: int
    unchained: int  # lines before the chain began (written before tagwarden chained them)
    seq: int
    sha256: str
    problem: Optional[Problem]
    ledger: Optional[dict]
    note: str = ""

    def __str__(self) -> str:
        if self.problem:
            return str(self.problem)
        before = f" (the first {self.unchained} from before the chain began)" \
            if self.unchained else ""
        text = f"ok: {self.lines} lines{before}, chain intact, head seq {self.seq} " \
               f"sha256 {self.sha256}"
        if self.ledger:
            text += f"; the ledger's head (seq {self.ledger['seq']}) is in it"
        return text + (f"; {self.note}" if self.note else "")


def verify(buf, ledger: Optional[dict] = None, workers: Optional[int] = None) -> Verified:
    """Check every line of the log: a JSON object, seq one more than the line before,
    prev_sha256 the sha256 of the line before. Stops at the first problem. ``ledger``
    is the head the deployment ledger recorded ({"seq", "sha256"}): the log must still
    hold that line, unchanged. Big logs are read by one process per CPU (hashing and
    parsing); the chain is followed here, in order."""
    ranges = _ranges(buf, workers or _workers(len(buf))) if buf else []
    if len(ranges) > 1:
        facts = _facts_forked(buf, ranges)
        try:
            return _check(buf, facts, ledger)
        finally:
            facts.close()
    return _check(buf, _facts(buf, 0, len(buf)), ledger)


# what a line is, for the chain
_NOT_JSON, _UNCHAINED, _BAD_KEYS, _CHAINED, _ODD_PREV = range(5)


def _facts(buf, lo: int, hi: int) -> Iterator[tuple]:
    """(start, end, kind, seq, sha256 digest, prev_sha256) of each line in [lo, hi)."""
    sha256, loads = hashlib.sha256, json.loads
    for start, end in _lines(buf, lo, hi):
        raw = buf[start:end]
        digest = sha256(raw).digest()
        try:
            record = loads(raw)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            yield start, end, _NOT_JSON, 0, digest, None
            continue
        seq, prev = record.get("seq"), record.get("prev_sha256")
        if seq is None and prev is None:
            yield start, end, _UNCHAINED, 0, digest, None
        elif type(seq) is not int or not isinstance(prev, str) or not 0 < seq < 1 << 62:
            yield start, end, _BAD_KEYS, 0, digest, None
        else:
            yield start, end, _CHAINED, seq, digest, prev


def _check(buf, facts: Iterator[tuple], ledger: Optional[dict]) -> Verified:
    lineno, unchained, seq, prev = 0, 0, 0, GENESIS
    started, size = False, len(buf)
    ledger_seq = ledger.get("seq") if ledger else None

    def done(problem=None):
        return Verified(lineno, unchained, seq, prev, problem, ledger)

    for start, end, kind, got_seq, digest, got_prev in facts:
        if kind == _NOT_JSON:
            torn = end == size  # the last line, and no newline after it
            return done(Problem(lineno + 1, "torn" if torn else "not-json",
                                "the last line is cut short (no newline, not complete JSON)"
                                if torn else "not a JSON object (torn, or garbage)"))
        if kind == _UNCHAINED and not started:
            lineno += 1  # written before the chain began: only the last one is covered
            unchained, seq, prev = lineno, lineno, digest.hex()
            continue
        if kind != _CHAINED:
            return done(Problem(lineno + 1, "inserted",
                                "no chain keys (seq, prev_sha256) after the chain began"
                                if kind == _UNCHAINED else "its seq or prev_sha256 is not "
                                "a chain key's value"))
        if got_seq != seq + 1 or got_prev != prev:
            return done(_classify(buf, lineno + 1, got_seq, got_prev, seq, prev))
        lineno += 1
        started = True
        seq, prev = got_seq, digest.hex()
        if seq == ledger_seq and prev != ledger.get("sha256"):
            return done(Problem(lineno, "rewritten",
                                f"line {lineno} is not the line the ledger saw (sha256 "
                                f"{prev[:12]}…, the ledger has "
                                f"{str(ledger.get('sha256'))[:12]}…)"))
    if type(ledger_seq) is int and ledger_seq > seq:
        return done(Problem(lineno, "truncated",
                            f"the ledger saw line {ledger_seq}, the log ends at line {seq}"))
    return done()


def _pack_facts(facts: Iterator[tuple]) -> bytes:
    import array

    ints, digests, prevs = array.array("q"), [], []
    zero = bytes(32)
    for start, end, kind, seq, digest, prev in facts:
        if kind == _CHAINED:
            try:
                packed = bytes.fromhex(prev)
            except ValueError:
                packed = b""
            if len(packed) != 32 or packed.hex() != prev:
                kind, packed = _ODD_PREV, zero  # no sha256 spells it that way
        else:
            packed = zero
        ints.extend((start, end, kind, seq))
        digests.append(digest)
        prevs.append(packed)
    n = len(ints) // 4
    return n.to_bytes(8, "little") + ints.tobytes() + b"".join(digests) + b"".join(prevs)


def _unpack_facts(data: bytes) -> Iterator[tuple]:
    import array

    n = int.from_bytes(data[:8], "little")
    ints = array.array("q")
    ints.frombytes(data[8:8 + 32 * n])
    digests, prevs = 8 + 32 * n, 8 + 64 * n
    for i in range(n):
        start, end, kind, seq = ints[4 * i:4 * i + 4]
        digest = data[digests + 32 * i:digests + 32 * i + 32]
        prev = data[prevs + 32 * i:prevs + 32 * i + 32].hex() if kind == _CHAINED else \
            "-" if kind == _ODD_PREV else None
        yield start, end, _CHAINED if kind == _ODD_PREV else kind, seq, digest, prev


def _facts_forked(buf, ranges) -> Iterator[tuple]:
    children = [_fork(lambda lo=lo, hi=hi: _pack_facts(_facts(buf, lo, hi)))
                for lo, hi in ranges[1:]]
    try:
        yield from _facts(buf, *ranges[0])
        for (lo, hi), child in zip(ranges[1:], children):
            data = _collect(child)
            yield from _facts(buf, lo, hi) if data is None else _unpack_facts(data)
    finally:  # stopped at a problem: the others are not needed
        for child in children:
            _collect(child, kill=True)


_SEQ_RE = None


def _seq_in(raw: bytes) -> Optional[int]:
    """The seq a line claims, read without parsing it (classification only)."""
    global _SEQ_RE
    if _SEQ_RE is None:
        import re

        _SEQ_RE = re.compile(rb'"seq": (\d+)[,}]')
    m = _SEQ_RE.search(raw)
    return int(m.group(1)) if m else None


def _classify(buf, lineno: int, got_seq: int, got_prev: str, seq: int,
              prev: str) -> Problem:
    """Line ``lineno`` does not continue the chain (seq ``seq``, sha256 ``prev`` so far):
    say what most likely happened. Runs once, on the first problem."""
    expected = seq + 1
    spans = list(_lines(buf))

    def line(n: int) -> bytes:
        start, end = spans[n - 1]
        return buf[start:end]

    def digest(n: int) -> str:
        return hashlib.sha256(line(n)).hexdigest() if n > 0 else GENESIS

    if got_seq == expected:
        if lineno == 1:
            return Problem(1, "edited", "the first line of a chain has a prev_sha256 of "
                                        "64 zeros")
        chained_to = next((n for n in range(lineno - 2, -1, -1) if digest(n) == got_prev),
                          None)
        if chained_to is not None:
            return Problem(lineno - 1, "inserted",
                           f"line {lineno} chains to line {chained_to}, not to this one: "
                           f"lines {chained_to + 1}..{lineno - 1} were inserted or moved "
                           f"here")
        return Problem(lineno - 1, "edited",
                       f"its sha256 is no longer the prev_sha256 that line {lineno} (seq "
                       f"{got_seq}) recorded for it")
    if got_seq > expected:
        later = next((n for n in range(lineno + 1, len(spans) + 1)
                      if _seq_in(line(n)) == expected), None)
        if later is not None:
            return Problem(lineno, "reordered",
                           f"seq {got_seq} where seq {expected} was due; seq {expected} "
                           f"comes later, at line {later}")
        following = _seq_in(line(lineno + 1)) if lineno < len(spans) else None
        if got_prev == prev and following in (None, expected + 1):
            return Problem(lineno, "edited", f"its seq says {got_seq}, its place in the "
                                             f"chain is seq {expected}")
        missing = got_seq - expected
        what = f"seq {expected}" if missing == 1 else f"seq {expected}..{got_seq - 1}"
        return Problem(lineno, "removed",
                       f"{what} missing before this line ({missing} line"
                       f"{'s' if missing > 1 else ''} removed)")
    # the seq goes back, or repeats
    same = next((n for n in range(lineno - 1, 0, -1) if _seq_in(line(n)) == got_seq), None)
    if same is not None and got_prev == digest(same - 1):
        return Problem(lineno, "inserted", f"seq {got_seq} again, after seq {seq}: line "
                                           f"{same} has it too and chains to the same line; "
                                           f"one of the two was inserted")
    where = f"; line {same} has seq {got_seq}" if same is not None else ""
    return Problem(lineno, "reordered", f"seq {got_seq} after seq {seq}{where}")


def ledger_head(repo: str) -> Optional[dict]:
    """The audit head the repository's deployment ledger recorded: {"seq", "sha256"}
    (and "log", the file it was of), or None without a ledger."""
    try:
        from .gitview import open_ledger
    except ImportError:
        return None
    try:
        led = open_ledger(git_dir(repo))
        head = led.audit_head() if led else None
    except AttributeError:
        return None
    except Exception as exc:  # pygit2's errors: not a repository, a broken ledger
        raise LogError(f"{repo}: cannot read its ledger: {exc}") from None
    if not isinstance(head, dict) or type(head.get("seq")) is not int:
        return None
    return head


# ---- query ---------------------------------------------------------------------------

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
        yield from _lines(buf, lo, hi)
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


_PARALLEL_BYTES = 64 << 20  # below this, one process is as fast


def _workers(size: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8, size // _PARALLEL_BYTES))


def _ranges(buf, parts: int) -> list[tuple[int, int]]:
    """``parts`` ranges of whole lines covering the buffer."""
    size, cuts = len(buf), [0]
    for k in range(1, parts):
        cut = buf.find(b"\n", max(cuts[-1], size * k // parts))
        if cut < 0:
            break
        cuts.append(cut + 1)
    cuts.append(size)
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def _fork(work):
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


def _collect(child, kill: bool = False) -> Optional[bytes]:
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

    children = [_fork(lambda lo=lo, hi=hi: work(lo, hi)) for lo, hi in ranges[1:]]
    try:
        spans, unreadable = _scan(buf, query, plan, *ranges[0])
        for (lo, hi), child in zip(ranges[1:], children):
            data = _collect(child)
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
            _collect(child, kill=True)
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
        ranges = _ranges(buf, workers or _workers(len(buf)))
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


def _json_line(found: Found) -> bytes:
    # the writer's lines are ASCII; anything else was not written by tagwarden and is
    # escaped again, so no raw control or bidi character reaches the terminal
    return found.raw if found.raw.isascii() else \
        json.dumps(found.record, sort_keys=True).encode()


# ---- the command ---------------------------------------------------------------------

def register(sub) -> dict:
    p = sub.add_parser(
        "audit", usage=USAGE,
        help="query the audit log; 'audit verify' checks its hash chain",
        description="Query the audit log (the default), or with 'verify' check that no "
                    "line of it was edited, removed, reordered or inserted.",
        epilog="REPO is a bare repository (default: the current directory); its log is "
               "git config tagwarden.auditLog or tagwarden/audit.jsonl. TIME is UTC "
               "unless it says otherwise: 2026-11-22, 2026-11-22T10:00, "
               "2026-11-22T10:00:00Z; --until DATE includes that whole day.")
    p.add_argument("words", nargs="*", metavar="ARG", help="[verify] [REPO]")
    p.add_argument("--log", metavar="FILE", help="read this log instead of the repository's")
    g = p.add_argument_group("filters (all must match)")
    g.add_argument("--component", metavar="GLOB",
                   help="prefix/type/name, or a glob: 'components/prompts/*'")
    g.add_argument("--slot", help="v1.2.0, staging, production ...")
    g.add_argument("--pusher", metavar="NAME")
    g.add_argument("--decision", choices=DECISIONS)
    g.add_argument("--event", choices=EVENTS)
    g.add_argument("--change", metavar="CHANGE",
                   help="deploy, promote, rollback, redeploy, out-of-order, create, move, "
                        "delete")
    g.add_argument("--since", metavar="TIME", type=parse_time, help="at or after TIME")
    g.add_argument("--until", metavar="TIME", type=parse_time, help="at or before TIME")
    p.add_argument("--json", action="store_true", help="print the matching lines as they are")
    p.add_argument("--limit", metavar="N", type=_positive,
                   help="only the last N matches (still oldest first)")
    return {"audit": audit_main}


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def audit_main(args) -> int:
    words = list(args.words)
    verifying = words[:1] == ["verify"]
    if verifying:
        words = words[1:]
    if len(words) > 1:
        return _usage(f"one REPO at most, got {len(words)}: "
                      + " ".join(_quote(w) for w in words))
    repo = words[0] if words else None
    if verifying:
        used = [f"--{k}" for k in FILTERS + ("since", "until", "limit")
                if getattr(args, k) is not None] + (["--json"] if args.json else [])
        if used:
            return _usage(f"audit verify takes REPO and --log only, not {', '.join(used)}")
    try:
        if args.log is None:
            repo = repo or "."
            path = log_path(repo)
        else:
            path = args.log
        return _verify(path, repo, args.log is not None) if verifying else _query(path, args)
    except LogError as exc:
        print(f"tagwarden: {_quote(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # | head: the reader has seen enough
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _quote(text: str) -> str:
    from .refname import printable

    return printable(text)


def _usage(message: str) -> int:
    print(f"usage: {USAGE}\ntagwarden audit: error: {_quote(message)}", file=sys.stderr)
    return 2


def _verify(path: str, repo: Optional[str], named: bool) -> int:
    """``named``: the log was given with --log, a copy of the repository's perhaps: it
    is compared with the ledger whatever its path."""
    head = ledger_head(repo) if repo is not None else None
    note = ""
    if head and head.get("log") and not named and \
            os.path.realpath(str(head["log"])) != os.path.realpath(path):
        # tagwarden.auditLog was changed since: that head is of the other file
        note = f"the ledger's head is of another log, {_quote(str(head['log']))}: not compared"
        head = None
    result = verify(_open(path), head)._replace(note=note)
    print(result)
    return 1 if result.problem else 0


def _query(path: str, args) -> int:
    buf = _open(path)
    stats: dict = {}
    found = search(buf, Query.from_args(args), args.limit, stats)
    out = sys.stdout.buffer
    if args.json:
        for i in range(0, len(found), 4096):
            out.write(b"".join(_json_line(f) + b"\n" for f in found[i:i + 4096]))
    elif found:
        out.write(("\n".join(table([f.record for f in found])) + "\n").encode())
    out.flush()
    if stats.get("unreadable"):
        print(f"tagwarden: {stats['unreadable']} line(s) of {path} that might match are not "
              f"JSON; run tagwarden audit verify", file=sys.stderr)
    return 0
