"""``tagwarden history | status | report``: what the deployment ledger says.

Read-only views of ``refs/tagwarden/ledger`` (see ledger.py) for auditors::

    tagwarden history COMPONENT [SLOT] [--repo REPO] [--json]   who moved what, when
    tagwarden status [REPO] [--json]                            what each slot holds now
    tagwarden report --html FILE [REPO]                         one self-contained HTML page

The HTML page is drawn by report_html.py, loaded only by ``report``. Everything below
the handlers is pure: it turns the ledger's entries and current
records (plain dicts) into text. The ledger is read through gitview.open_ledger,
imported only when a command runs, so ``tagwarden --help`` never loads pygit2.
Everything the ledger says is untrusted text (pushers, tag names): terminal output is
stripped of control characters (the HTML page escapes them too).
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
import time
from typing import Callable, Iterable, Optional

TAGS = "refs/tags/"
LEDGER_REF = "refs/tagwarden/ledger"


def register(sub) -> dict[str, Callable]:
    p = sub.add_parser(
        "history", help="who moved a component's tags, when, to what (from the ledger)",
        description="Every recorded move of a component's environment slots and every "
                    "version it released, oldest first, from the repository's deployment "
                    "ledger (refs/tagwarden/ledger). Times are UTC.")
    p.add_argument("component", metavar="COMPONENT",
                   help="prefix/type/name, e.g. components/prompts/extraction")
    p.add_argument("slot", nargs="?", metavar="SLOT",
                   help="only this slot: production, staging, v1.2.0 ...")
    p.add_argument("--repo", default=".", help="bare repository (default: .)")
    p.add_argument("--json", action="store_true", help="the ledger entries as JSON lines")

    p = sub.add_parser(
        "status", help="what every environment slot holds now, and since when",
        description="One row per component: its latest version and, per environment "
                    "slot, the version the slot holds and since when (UTC), from the "
                    "repository's deployment ledger. Deleted slots are not shown.")
    p.add_argument("repo", nargs="?", default=".", metavar="REPO",
                   help="bare repository (default: .)")
    p.add_argument("--json", action="store_true", help="one JSON object per component")

    p = sub.add_parser(
        "report", help="write a self-contained HTML report: status and timelines",
        description="Write one HTML file (inline CSS and SVG, no scripts, nothing "
                    "fetched) with the status matrix and, per component, a timeline of "
                    "what each environment slot held.")
    p.add_argument("--html", required=True, metavar="FILE", help="where to write it ('-': stdout)")
    p.add_argument("repo", nargs="?", default=".", metavar="REPO",
                   help="bare repository (default: .)")
    p.add_argument("--now", type=float, help=argparse.SUPPRESS)  # epoch: reproducible output
    return {"history": history_main, "status": status_main, "report": report_main}


# ---- the handlers ---------------------------------------------------------------------

def _open(repo: str):
    """The repository's ledger, or None after saying why there is none."""
    from .gitview import open_ledger

    if not os.path.exists(repo):
        _fail(f"{repo}: no such repository")
        return None
    try:
        led = open_ledger(repo)
    except Exception as exc:  # noqa: BLE001 - pygit2.GitError, not importable here
        _fail(f"{repo}: not a git repository ({_clean(exc)})")
        return None
    if led is None:
        _fail(f"{repo} has no deployment ledger ({LEDGER_REF}). It is written by the "
              "post-receive hook of 'tagwarden install'; on a mirror, fetch it with: "
              f"git fetch origin {LEDGER_REF}:{LEDGER_REF}")
    return led


def _fail(message: str) -> None:
    print(f"tagwarden: {message}", file=sys.stderr)


def history_main(args) -> int:
    led = _open(args.repo)
    if led is None:
        return 1
    entries = led.entries()
    component, slot = args.component.removeprefix(TAGS).rstrip("/"), args.slot
    mine = [e for e in entries if e.get("component") == component]
    if not mine and slot is None:
        # a whole tag name: components/prompts/extraction/production
        head, _, last = component.rpartition("/")
        if any(e.get("component") == head and e.get("slot") == last for e in entries):
            component, slot = head, last
            mine = [e for e in entries if e.get("component") == component]
    if not mine:
        known = sorted({e["component"] for e in entries if e.get("component")})
        close = difflib.get_close_matches(component, known, n=3)
        hint = (f"; did you mean {', '.join(close)}?" if close else
                f"; 'tagwarden status' lists its {len(known)} components" if known else
                "; it has recorded no managed tag yet")
        _fail(f"no component {_clean(component)!r} in the ledger of {args.repo}{hint}")
        return 1
    rows = [e for e in mine if slot is None or e.get("slot") == slot]
    if not rows:
        slots = sorted({e.get("slot") or "" for e in mine}, key=slot_key)
        _fail(f"{component} has no recorded slot {_clean(slot)!r}; "
              f"its slots: {', '.join(slots)}")
        return 1
    if args.json:
        for e in rows:
            print(json.dumps(e, sort_keys=True))
        return 0
    for line in history_table(rows):
        print(line)
    return 0


def status_main(args) -> int:
    led = _open(args.repo)
    if led is None:
        return 1
    matrix = status_matrix(led.current())
    if args.json:
        for row in matrix["rows"]:  # keys in the table's order: slots as the columns
            print(json.dumps(row))
        return 0
    if not matrix["rows"]:
        print(f"{args.repo}: the ledger records no managed tag yet")
        return 0
    for line in status_table(matrix):
        print(line)
    return 0


def report_main(args) -> int:
    led = _open(args.repo)
    if led is None:
        return 1
    now = args.now if args.now is not None else time.time()
    from .report_html import render_html

    page = render_html(repo_name(args.repo), led.entries(), led.current(), now)
    if args.html == "-":
        sys.stdout.write(page)
        return 0
    try:
        with open(args.html, "w", encoding="utf-8") as f:
            f.write(page)
    except OSError as exc:
        _fail(f"cannot write {args.html}: {exc.strerror or exc}")
        return 1
    print(f"wrote {args.html}")
    return 0


def repo_name(repo: str) -> str:
    """app.git for /srv/git/app.git; the work tree's name for a .git directory."""
    path = os.path.realpath(repo)
    name = os.path.basename(path)
    if name == ".git":
        name = os.path.basename(os.path.dirname(path))
    return name or path


# ---- shared pieces --------------------------------------------------------------------

_NUMBERED = (("canary", 5), ("rollout", 6), ("ring", 7))
_NAMED = {"dev": 0, "development": 0, "test": 1, "qa": 1, "integration": 1,
          "staging": 2, "stage": 2, "preprod": 3, "pre-production": 3, "uat": 3,
          "canary": 4, "production": 9, "prod": 9}


def slot_key(slot: str) -> tuple:
    """Pipeline order, roughly: dev, staging, canary, canary-N, rollout-Npct, ring-N,
    production, then anything else alphabetically (blue, control, green ...); version
    slots last, by precedence. A fixed heuristic: the policy is not consulted."""
    from .semver import try_parse

    if slot in _NAMED:
        return (_NAMED[slot], 0, slot)
    m = re.fullmatch(r"(canary|rollout|ring)-(\d+)(pct)?", slot)
    if m and (m.group(1) == "rollout") == bool(m.group(3)):
        return (dict(_NUMBERED)[m.group(1)], int(m.group(2)), slot)
    version = try_parse(slot)
    if version is not None:
        return (11, version.sort_key, slot)
    return (10, 0, slot)


def is_version(slot: str) -> bool:
    from .semver import try_parse

    return try_parse(slot) is not None


def when(epoch: Optional[float]) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(epoch)) if epoch is not None else "-"


def short(oid: Optional[str]) -> str:
    return oid[:7] if oid else "-"


def _deleted(e: dict) -> bool:
    return not (e.get("new") or "").strip("0")


def _clean(text) -> str:
    from .refname import printable

    return printable(str(text))


def table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    rows = [[_clean(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
            for row in [header] + rows]


# ---- history --------------------------------------------------------------------------

HISTORY_COLUMNS = ["ts", "slot", "decision", "version", "commit", "pusher", "push_id"]


def history_row(e: dict) -> list[str]:
    """One entry as the history table shows it. A deleted ref holds nothing ("-"); a move
    made outside tagwarden left what it moved to unknown ("?")."""
    gone = _deleted(e)
    commit = e.get("new_commit")
    version = e.get("version") or ("-" if gone or commit else "?")
    return [e.get("ts") or "-", e.get("slot") or "-", e.get("decision") or "-", version,
            short(commit) if commit or gone else "?", e.get("pusher") or "-",
            e.get("push_id") or "-"]


def history_table(entries: list[dict]) -> list[str]:
    return table(HISTORY_COLUMNS, [history_row(e) for e in entries])


# ---- status ---------------------------------------------------------------------------

def _held(rec: dict) -> dict:
    return {"version": rec.get("version"), "commit": rec.get("commit"),
            "since": rec.get("since"),
            "since_ts": _iso(rec.get("since")), "at": rec.get("at"),
            "pusher": rec.get("pusher"), "decision": rec.get("decision"),
            "push_id": rec.get("push_id")}


def _iso(epoch: Optional[float]) -> Optional[str]:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)) if epoch is not None \
        else None


def status_matrix(current: dict[str, dict]) -> dict:
    """{"slots": [env slots, ordered], "rows": [{"component", "latest", "slots"}]} from
    the ledger's current records; deleted refs are left out."""
    from .semver import try_parse

    comps: dict[str, dict] = {}
    for tag, rec in current.items():
        if not rec.get("value"):
            continue
        component, _, slot = tag.rpartition("/")
        c = comps.setdefault(component, {"versions": {}, "slots": {}})
        if try_parse(slot) is not None:
            c["versions"][slot] = rec
        else:
            c["slots"][slot] = _held(rec)
    slots = sorted({s for c in comps.values() for s in c["slots"]}, key=slot_key)
    rows = []
    for component in sorted(comps):
        c = comps[component]
        latest = max(c["versions"], key=lambda v: try_parse(v).sort_key, default=None)
        rows.append({
            "component": component,
            "latest": None if latest is None else
            dict(_held(c["versions"][latest]), version=latest),
            "slots": {s: c["slots"][s] for s in sorted(c["slots"], key=slot_key)},
        })
    return {"slots": slots, "rows": rows}


def cell(held: Optional[dict]) -> str:
    """v1.2.0 · 2027-01-15 08:00: what a slot holds, and since when (UTC). A slot on a
    commit no version tag names shows the commit."""
    if not held:
        return "-"
    what = held.get("version") or short(held.get("commit"))
    return f"{what} · {when(held.get('since'))}"


def status_table(matrix: dict) -> list[str]:
    header = ["component", "latest"] + matrix["slots"]
    rows = [[row["component"], cell(row["latest"])] +
            [cell(row["slots"].get(s)) for s in matrix["slots"]] for row in matrix["rows"]]
    return table(header, rows)
