"""Who may do what: the policy's permissions and break-glass overrides. Pure.

Permissions hold once a policy declares them: an action on a managed tag needs a
permission entry that matches it and names a group the pusher is in. An override is
asked for with push options (``-o tagwarden.override=RULE -o tagwarden.reason=...``),
which only git hands to the hooks, never the pusher's environment.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

from .model import CREATE, DELETE, ENVIRONMENT, VERSION, Finding, Identity, RefName, RefUpdate
from .policy import Policy
from .rules import RULES

OVERRIDE_OPTION = "tagwarden.override="
REASON_OPTION = "tagwarden.reason="


def action_of(name: RefName, update: RefUpdate) -> Optional[str]:
    """The permission an update needs; None when permissions do not apply (versions are
    never moved or deleted: version-immutable refuses that for everyone)."""
    if name.kind == VERSION:
        return "create-version" if update.action == CREATE else None
    if name.kind == ENVIRONMENT:
        return "delete-slot" if update.action == DELETE else "move-slot"
    return None


def permission(policy: Policy, pusher: Optional[Identity], name: RefName,
               update: RefUpdate) -> Optional[Finding]:
    if policy.permissions is None or pusher is None:
        return None
    action = action_of(name, update)
    if action is None:
        return None
    slot = None if action == "create-version" else name.slot
    entries = [p for p in policy.permissions if p.matches(action, name.component, slot)]
    mine = set(policy.groups_of(pusher.name))
    if any(mine.intersection(p.allow) for p in entries):
        return None
    what = {"create-version": "create versions of", "move-slot": f"move {slot} of",
            "delete-slot": f"delete {slot} of"}[action]
    groups = f"in group {', '.join(sorted(mine))}" if mine else "in no group"
    would = sorted({g for p in entries for g in p.allow})
    if would:
        where = ", ".join(f"permissions[{p.index}]" for p in entries)
        allowed = f"group {' or '.join(would)} may ({where})"
        fix = (f"ask a member of {' or '.join(would)} to push it",
               f"or ask your git admin to add {pusher.name} to group {would[0]} "
               f"in {policy.source}")
    else:
        allowed = f"no entry of permissions allows {action} here, so nobody may"
        fix = (f"ask your git admin for a permissions entry for {action} of {name.component}",)
    return Finding("permission",
                   f"{pusher.name} (identity from {pusher.source}, {groups}) may not {what} "
                   f"{name.component}; {allowed}", fix)


class Override(NamedTuple):
    """A push's break-glass request: the rules it names and why."""

    rules: tuple[str, ...]
    reason: str
    problem: Optional[Finding] = None  # the request itself is refused: every ref is

    @property
    def granted(self) -> frozenset[str]:
        return frozenset(self.rules) if self.problem is None else frozenset()


def requested(options: Optional[tuple[str, ...]]) -> tuple[tuple[str, ...], str]:
    """(rules, reason) the push options ask for; each -o tagwarden.override= names one
    rule, the last -o tagwarden.reason= counts."""
    rules = tuple(dict.fromkeys(o[len(OVERRIDE_OPTION):].strip() for o in options or ()
                                if o.startswith(OVERRIDE_OPTION)))
    reasons = [o[len(REASON_OPTION):].strip() for o in options or ()
               if o.startswith(REASON_OPTION)]
    return rules, reasons[-1] if reasons else ""


def override(policy: Policy, pusher: Optional[Identity],
             options: Optional[tuple[str, ...]]) -> Optional[Override]:
    """The push's override request, judged; None when it asks for none."""
    rules, reason = requested(options)
    if not rules:
        return None
    named = ", ".join(rules)
    drop = "push again without -o tagwarden.override"
    if pusher is None or not policy.may_override(pusher.name):
        who = f"{pusher.name} (identity from {pusher.source})" if pusher else "an unknown pusher"
        groups = " or ".join(policy.override_groups)
        allowed = f"only group {groups} may" if groups else "this policy lets nobody"
        return Override(rules, reason, Finding(
            "override-denied", f"{who} asked to override {named}; {allowed} break glass. "
            "Nothing was changed", (drop, f"or ask a member of {groups} to push it"
                                    if groups else "or ask your git admin")))
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        return Override(rules, reason, Finding(
            "override-invalid", f"no rule named {', '.join(unknown)}; an override names the "
            "rule id a rejection printed", (f"rules: {', '.join(sorted(policy.override_rules))}",)))
    closed = [r for r in rules if r not in policy.override_rules]
    if closed:
        return Override(rules, reason, Finding(
            "override-invalid", f"{', '.join(closed)} cannot be overridden under this policy "
            f"(overrides.rules: {', '.join(sorted(policy.override_rules)) or 'none'})", (drop,)))
    if not reason:
        return Override(rules, reason, Finding(
            "override-invalid", "a break-glass override needs a reason, for the audit log",
            (f"git push -o tagwarden.override={rules[0]} -o tagwarden.reason=\"<why, "
             "e.g. the incident id>\" ...",)))
    return Override(rules, reason)
