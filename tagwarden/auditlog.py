"""``tagwarden audit``: query the audit log, and verify its hash chain.

    tagwarden audit [REPO] [--log FILE] [--component GLOB] [--slot SLOT] [--pusher NAME]
                    [--decision D] [--event E] [--change C] [--since TIME] [--until TIME]
                    [--json] [--limit N]
    tagwarden audit verify [REPO] [--log FILE]

The command only: reading the log is audit_file.py, the chain check audit_verify.py,
the search audit_query.py.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from .audit_file import LogError, log_path, read_log
from .audit_query import DECISIONS, EVENTS, FILTERS, Query, json_line, parse_time, search, table
from .audit_verify import ledger_head, verify

USAGE = """tagwarden audit [REPO] [--log FILE] [FILTERS] [--json] [--limit N]
       tagwarden audit verify [REPO] [--log FILE]"""


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
    result = verify(read_log(path), head)._replace(note=note)
    print(result)
    return 1 if result.problem else 0


def _query(path: str, args) -> int:
    buf = read_log(path)
    stats: dict = {}
    found = search(buf, Query.from_args(args), args.limit, stats)
    out = sys.stdout.buffer
    if args.json:
        for i in range(0, len(found), 4096):
            out.write(b"".join(json_line(f) + b"\n" for f in found[i:i + 4096]))
    elif found:
        out.write(("\n".join(table([f.record for f in found])) + "\n").encode())
    out.flush()
    if stats.get("unreadable"):
        print(f"tagwarden: {stats['unreadable']} line(s) of {path} that might match are not "
              f"JSON; run tagwarden audit verify", file=sys.stderr)
    return 0
