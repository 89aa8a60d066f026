"""``tagwarden audit verify``: check the audit log's hash chain (audit.py writes it),
and against the ledger's record of its last line, with line ranges checked in forked
processes on big logs.
"""
from __future__ import annotations

import hashlib
import json
from typing import Iterator, NamedTuple, Optional

from .audit_file import (LogError, collect_work, fork_work, git_dir, line_ranges, line_spans,
                         workers_for)

GENESIS = "0" * 64  # prev_sha256 of seq 1 (audit.GENESIS, without importing structlog)


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
    ranges = line_ranges(buf, workers or workers_for(len(buf))) if buf else []
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
    for start, end in line_spans(buf, lo, hi):
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
    children = [fork_work(lambda lo=lo, hi=hi: _pack_facts(_facts(buf, lo, hi)))
                for lo, hi in ranges[1:]]
    try:
        yield from _facts(buf, *ranges[0])
        for (lo, hi), child in zip(ranges[1:], children):
            data = collect_work(child)
            yield from _facts(buf, lo, hi) if data is None else _unpack_facts(data)
    finally:  # stopped at a problem: the others are not needed
        for child in children:
            collect_work(child, kill=True)


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
    spans = list(line_spans(buf))

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
