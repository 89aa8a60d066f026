"""What the pusher reads: git shows each line as ``remote: ...``. Pure text rendering;
every piece that came from a push (names, reasons quoting them) is escaped."""
from __future__ import annotations

from typing import Iterable

from .model import ACCEPTED, ENVIRONMENT, OVERRIDE, REJECTED, WARNED, Decision
from .refname import printable

PREFIX = "tagwarden:"
_STALE_RULES = {"version-immutable", "env-version-mismatch", "unmanaged-immutable",
                "env-stale"}


def report(decisions: Iterable[Decision], noun: str = "push") -> list[str]:
    """``noun``: what was refused, as the reader knows it ("push"; "change" for a
    change made on the server itself)."""
    judged = [d for d in decisions if d.name.audited]
    rejected = [d for d in judged if d.verdict == REJECTED]
    lines: list[str] = []
    if rejected:
        broken = [d for d in rejected if d.rule != "atomic-push"]
        lines.append(f"{PREFIX} {noun} rejected: {len(broken)} of {len(judged)} ref updates "
                     "break the policy")
        for d in broken:
            lines += _rejection(d)
        siblings = [d for d in rejected if d.rule == "atomic-push"]
        if siblings:
            names = [printable(d.name.tag or d.update.ref) for d in siblings[:10]]
            more = f" and {len(siblings) - 10} more" if len(siblings) > 10 else ""
            lines.append(f"  not applied either (the push is all or nothing): "
                         f"{', '.join(names)}{more}")
        if any(d.rule in _STALE_RULES and d.update.action == "move" for d in broken):
            lines.append(f"{PREFIX} if this clone's tags are stale, every push --tags --force "
                         "re-sends them; refresh first: git fetch --tags --force origin")
    for d in judged:
        for w in d.warnings:
            lines.append(f"{PREFIX} warning: {printable(d.update.ref)}: rule {w.rule}: "
                         f"{printable(w.reason)}")
    if not rejected:
        for d in judged:
            for f in d.overridden:
                lines.append(f"{PREFIX} OVERRIDE: {printable(d.update.ref)}: rule {f.rule} "
                             f"passed by break-glass override, recorded in the audit log: "
                             f"{printable(f.reason)}")
    moved = [d for d in judged if d.verdict in (ACCEPTED, WARNED, OVERRIDE)
             and d.name.kind == ENVIRONMENT
             and d.update.action != "delete"]
    if moved and not rejected:
        for d in moved:
            what = f"{d.version} ({d.new_commit[:7]})" if d.version else d.new_commit[:7]
            lines.append(f"{PREFIX} accepted: {printable(d.name.tag)} -> {what} [{d.change}]")
        lines.append(f"{PREFIX} clones that already have these tags see the move only after: "
                     "git fetch --tags --force")
    return lines


def _rejection(d: Decision) -> list[str]:
    out = [f"  {printable(d.update.ref)}",
           f"    rule {d.rule}: {printable(d.reason)}"]
    if d.held or d.attempted:
        tried = "delete" if d.update.action == "delete" else \
            f"{d.update.action} to {printable(d.attempted)}"
        out.append(f"    now: {printable(d.held)}; attempted: {tried}")
    for i, command in enumerate(d.fix):
        out.append(f"    {'fix: ' if i == 0 else '     '}{printable(command)}")
    return out


def failure(what: str, detail: str, incident: str = "", noun: str = "push") -> list[str]:
    """A push rejected for a reason that is not the pusher's fault."""
    tail = f" (incident {incident})" if incident else ""
    return [f"{PREFIX} {noun} rejected: {printable(what)}{tail}", f"  {printable(detail)}"]
