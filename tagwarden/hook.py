"""The hooks git runs: ``pre-receive``, ``update`` and ``post-receive``.

Read git's input, call the engine, print for the pusher, audit, answer with the exit
code. Heavy imports (yaml, pygit2, structlog) happen only once a push touches tags.
Anything unexpected rejects the push with an incident id; the traceback goes to the
audit log, never to the pusher.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import traceback
import uuid
from operator import attrgetter
from typing import Optional

from . import __version__, messages
from .model import RESERVED, TAGS, RefUpdate, is_object_id
from .refname import printable

DECIDING = ("pre-receive", "update")
_ASCII_CONTROL = re.compile(r"[\x00-\x20\x7f]")  # git never puts these in a ref name
# git's pre-receive and post-receive input: "OLD NEW REF\n" per ref, ids of one length
_INPUT = re.compile(r"(?:(?:[0-9a-f]{40} [0-9a-f]{40}|[0-9a-f]{64} [0-9a-f]{64}) "
                    r"refs/[^\x00-\x20\x7f]*\n)*")
CHAINED_SUFFIX = ".tagwarden-chained"
# who pushed, and under which policy: carried from the deciding hook to post-receive
# with the push's state (push options reach post-receive itself, never the update hook)
_IDENTITY = ("pusher", "pusher_source", "remote_addr", "protocol", "policy_sha256")
_CARRIED_PUSH_FIELDS = _IDENTITY + ("hook", "push_options")


class HookInputError(ValueError):
    """git handed the hook something it never sends."""


class Rejected(Exception):
    """The push cannot be judged or recorded; carries the rule id and the words to print."""

    def __init__(self, rule: str, what: str, detail: str):
        super().__init__(what)
        self.rule, self.what, self.detail = rule, what, detail


def main(argv: Optional[list[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    hooks_dir = None
    if args[:1] == ["--hooks-dir"] and len(args) > 1:
        hooks_dir, args = args[1], args[2:]
    if not args or args[0] not in DECIDING + ("post-receive",):
        print("usage: python -m tagwarden.hook [--hooks-dir DIR] "
              "pre-receive|update REF OLD NEW|post-receive", file=sys.stderr)
        return 2
    mode, rest = args[0], args[1:]
    receive_pack = None
    if mode == "post-receive" and rest[:1] == ["--receive-pack"] and len(rest) > 1:
        receive_pack, rest = rest[1], rest[2:]
    run = HookRun(mode, rest, b"", hooks_dir, receive_pack)
    try:
        run.stdin = b"" if mode == "update" else sys.stdin.buffer.read()
        return run.execute()
    except Exception:
        return run.incident(fatal=mode != "post-receive")


def parse_updates(mode: str, args: list[str], stdin: bytes) -> list[RefUpdate]:
    if mode == "update":
        if len(args) != 3:
            raise HookInputError("update takes REF OLD NEW")
        return checked_rows([(args[1], args[2], args[0])])
    # ref names are bytes to git; keep any that are not UTF-8 (escaped when shown)
    text = stdin.decode("utf-8", "surrogateescape")
    if _INPUT.fullmatch(text):  # well formed, as git sends it: checked whole, in C
        return [RefUpdate(ref, old, new) for old, new, ref in
                (line.split(" ") for line in text[:-1].split("\n"))] if text else []
    return checked_rows([line.split(" ") for line in text.split("\n") if line])


def checked_rows(rows) -> list[RefUpdate]:
    """(OLD, NEW, REF) rows checked one by one, so that the first bad one is named."""
    updates = []
    for row in rows:
        if len(row) != 3 or not is_object_id(row[0]) or len(row[0]) != len(row[1]) \
                or not is_object_id(row[1]) or not row[2].startswith("refs/") \
                or _ASCII_CONTROL.search(row[2]):
            raise HookInputError(f"unexpected hook input line: {printable(' '.join(row))}")
        updates.append(RefUpdate(row[2], row[0], row[1]))
    return updates


def _ours(update: RefUpdate) -> bool:
    return update.ref.startswith(TAGS) or update.ref.startswith(RESERVED)


class HookRun:
    noun = "push"  # what a refusal refuses, in the reader's words
    def __init__(self, mode: str, args: list[str], stdin: bytes, hooks_dir: Optional[str],
                 receive_pack: Optional[str] = None):
        self.mode, self.args, self.stdin, self.hooks_dir = mode, args, stdin, hooks_dir
        self.receive_pack = receive_pack  # post-receive may outlive it: the shim names it
        self.repo_dir = os.path.abspath(os.environ.get("GIT_DIR", "."))
        self.push_id = uuid.uuid4().hex[:16]
        self._config: Optional[dict[str, str]] = None
        self._base_fields: Optional[dict] = None
        self._session = None
        self.policy = None
        self.planned_options: Optional[list[str]] = None  # update mode: the planner's

    # ---- configuration (git config of the repository) ------------------------------

    def config(self, key: str) -> Optional[str]:
        if self._config is None:
            out = subprocess.run(["git", "config", "--get-regexp", r"^tagwarden\."],
                                 cwd=self.repo_dir, capture_output=True, text=True)
            self._config = {}
            for line in out.stdout.splitlines():
                name, _, value = line.partition(" ")
                self._config[name.lower()] = value
        return self._config.get(key.lower())

    def now(self) -> float:
        """The clock soak times and the ledger read: ``tagwarden.clock`` (epoch seconds)
        when an admin or a test sets it, else the system's."""
        fixed = self.config("tagwarden.clock")
        if fixed:
            try:
                return float(fixed)
            except ValueError:
                raise Rejected("config-invalid", "tagwarden.clock is not a number",
                               f"git config tagwarden.clock is {printable(fixed)!r}; "
                               "unset it or give epoch seconds") from None
        import time

        return time.time()

    def _repo_path(self, value: str) -> str:
        return value if os.path.isabs(value) else os.path.join(self.repo_dir, value)

    @property
    def audit_path(self) -> str:
        configured = self.config("tagwarden.auditLog")
        return self._repo_path(configured) if configured else \
            os.path.join(self.repo_dir, "tagwarden", "audit.jsonl")

    @property
    def state_dir(self) -> str:
        return os.path.join(self.repo_dir, "tagwarden")

    def session(self, lease: float = 30.0):
        from .session import PushSession, lease_owner, push_owner

        if self._session is None:
            owner = push_owner()
            if owner is None and self.mode == "pre-receive":
                owner = lease_owner(lease)  # no receive-pack to watch: a lease instead
            self._session = PushSession(self.state_dir, owner)
        return self._session

    # ---- the run ---------------------------------------------------------------------

    def execute(self) -> int:
        try:
            updates = parse_updates(self.mode, self.args, self.stdin)
        except HookInputError as exc:
            if self.mode == "post-receive":
                raise
            return self._refuse([], Rejected("hook-input", "unexpected input from git", str(exc)))
        if self.mode == "post-receive":
            return self.post_receive(updates)
        if not any(_ours(u) for u in updates):
            return self.chain()  # branches only: not ours to judge, nothing to import
        try:
            return self.decide(updates)
        except Rejected as exc:
            return self._refuse(updates, exc)

    def decide(self, updates: list[RefUpdate]) -> int:
        if any(len(u.new) == 64 for u in updates):
            raise Rejected("object-format", "this repository uses SHA-256 object ids",
                           "tagwarden reads SHA-1 repositories only; tag pushes stay refused "
                           "until it supports SHA-256")
        if self.mode == "pre-receive" and self._update_mode_installed():
            return self.plan(updates)
        policy = self.load_policy()
        from .engine import decide
        from .gitview import GitView
        from .model import ENVIRONMENT, Identity, PushContext
        from .refname import classify
        from .session import LockTimeout

        session = self.session(lease=max(policy.lock_timeout, 60.0))
        if session.owner is None:
            raise Rejected("host-unsupported", "update mode cannot follow this push",
                           "no git-receive-pack process is above the hook on this host, so "
                           "the update hooks of one push cannot find each other; install "
                           "tagwarden in pre-receive mode here")
        stale = session.stale()
        state = session.load()
        self.push_id = state.get("push_id") or self.push_id
        if self.mode == "update":  # git gives push options to pre-receive only: the planner
            self.planned_options = state.get("push_options") if "planned" in state else None
        # update mode: the rest of the push, as pre-receive recorded it
        planned = state.get("planned", [])
        own = {u.ref for u in updates} if planned else ()
        others = [RefUpdate(p["ref"], p["old"], p["new"]) for p in planned
                  if p["ref"] not in own]
        names = [classify(u.ref, policy) for u in updates]
        components = sorted({n.component for n in names if n.kind == ENVIRONMENT})
        try:
            waited = session.acquire(components, policy.lock_timeout)
        except LockTimeout as exc:
            raise Rejected("lock-timeout", "another push is deploying the same component",
                           f"{', '.join(exc.components)} stayed locked for "
                           f"{policy.lock_timeout:g} s by another push "
                           f"({', '.join(exc.holders)}); try again in a moment") from None
        view = GitView(self.repo_dir, from_env=True)
        # Judge this ref together with the not-yet-written refs of its component, so a
        # version created in the same push counts as it does in pre-receive.
        touched = tuple(f"{TAGS}{n.component}/" for n in names if n.component) \
            if others else ()
        companions = [u for u in others if touched and u.ref.startswith(touched)
                      and view.ref(u.ref) != (None if u.action == "delete" else u.new)]
        base = self._base()
        options = tuple(base["push_options"]) if self.mode == "pre-receive" or \
            self.planned_options is not None else None
        context = PushContext(self.mode, atomic=self.mode == "pre-receive",
                              earlier=tuple(others), now=self.now(),
                              pusher=Identity(base["pusher"], base["pusher_source"]),
                              push_options=options)
        decisions = decide(policy, view, updates + companions, context,
                           names + [classify(u.ref, policy) for u in companions])
        if companions:  # judged with this ref, decided by their own update hooks
            decisions = [d for d in decisions if d.update.ref in own]

        accepted = all(d.accepted for d in decisions)
        if accepted and self._chained_path():
            code = self.chain()
            if code != 0:
                accepted = False
                decisions = self.refused_by_chain(decisions, code)
        base = self._base()
        wait = round(waited * 1000)
        audited = [d for d in decisions if d.name.audited]
        table = self._decision_table(audited, lock_wait_ms=wait)
        records = [] if table else [self._fields(d, lock_wait_ms=wait) for d in audited]
        records += self._not_applied(stale)
        try:
            self.append_audit(records, shared=base, table=table)
        except Exception:
            if self.mode == "pre-receive":
                session.release()
            raise
        if accepted:
            base = self._base()
            push = {k: base[k] for k in _CARRIED_PUSH_FIELDS}
            # rows as lists, as every earlier version wrote them: the state file may
            # outlive an upgrade or a downgrade (a stale push's state is read later)
            session.record(self.push_id, list(map(list, map(_carried, audited))), push)
        elif self.mode == "pre-receive":
            session.release()
        lines = messages.report(decisions, self.noun)
        if lines:
            print("\n".join(lines), file=sys.stderr)
        return 0 if accepted else 1

    def _update_mode_installed(self) -> bool:
        from .install import is_ours  # the shim's own marker

        path = os.path.join(self.hooks_dir or "", "update")
        return bool(self.hooks_dir) and os.access(path, os.X_OK) and is_ours(path)

    def plan(self, updates: list[RefUpdate]) -> int:
        """Update mode's pre-receive: judge nothing, record the whole push for the update
        hooks, then run the repository's own pre-receive if it had one."""
        self.session().plan(self.push_id, [{"ref": u.ref, "old": u.old, "new": u.new}
                                           for u in updates],
                            list(self._base()["push_options"]))
        code = self.chain()
        if code != 0:
            self.append_audit([self._refusal_record(u, Rejected(
                "chained-hook", "refused", f"the repository's earlier pre-receive hook refused "
                f"the push (exit {code})")) for u in updates if _ours(u)])
        return code

    def load_policy(self):
        """``tagwarden.policy`` (any git config level; the shipped default without it),
        with ``tagwarden.policyOverride`` layered on top when set (docs/policy.md,
        Layering)."""
        from .paths import default_policy
        from .policy import PolicyError, load, load_layered

        configured = self.config("tagwarden.policy")
        path = self._repo_path(configured) if configured else default_policy()
        configured = self.config("tagwarden.policyOverride")
        override = self._repo_path(configured) if configured else None
        try:
            text = _policy_text(path, "the policy")
            if override is None:
                self.policy = load(text, path)
            else:
                self.policy = load_layered(text, path,
                                           _policy_text(override, "the policy override"),
                                           override)
        except PolicyError as exc:
            raise Rejected("policy-invalid", "policy invalid",
                           f"{exc}; every push is refused until an admin fixes it "
                           "(not your fault)") from None
        return self.policy

    # ---- post-receive: what actually landed ------------------------------------------

    def post_receive(self, landed: list[RefUpdate]) -> int:
        from .session import PushSession

        session = PushSession.for_landed(self.state_dir, [(u.ref, u.old, u.new)
                                                          for u in landed if _ours(u)],
                                         self.receive_pack)
        self.chain()  # the repository's own post-receive first, whatever happens below
        state = session.load()
        self.push_id = state.get("push_id") or self.push_id
        decided = {d["ref"]: d for d in state.get("decided", [])}
        push = state.get("push", {})
        records = []
        for u in landed:
            if _ours(u):
                records.append(self._applied("applied", u.ref, u.old, u.new,
                                             decided.get(u.ref), push))
        landed_refs = {u.ref for u in landed}
        for ref, d in decided.items():
            if ref not in landed_refs and d["verdict"] != "rejected":
                rec = self._applied("not_applied", ref, d["old"], d["new"], d, push)
                rec["reason"] = ("approved, but git did not write it (another push won "
                                 "the ref, or an atomic push failed)")
                records.append(rec)
        records += self._not_applied(session.stale())
        try:
            head = self.append_audit(records)
        except Exception:
            head = None
            self.incident(fatal=False)
        try:
            self.record_ledger(landed, decided, push, head)
        except Exception:
            self.incident(fatal=False)
        finally:
            session.finish()  # the refs are written and recorded: let the next push in
        return 0

    def record_ledger(self, landed: list[RefUpdate], decided: dict, push: dict,
                      head) -> None:
        from .recorder import record

        ours = [(u.ref, u.old, u.new) for u in landed if u.ref.startswith(TAGS)]
        audit_head = {"seq": head.seq, "sha256": head.sha256, "log": self.audit_path} \
            if head is not None else None
        if ours or audit_head:
            record(self.repo_dir, ours, decided, dict(push, push_id=self.push_id),
                   self.now(), audit_head, self.load_policy)

    def _not_applied(self, stale_states: list[dict]) -> list[dict]:
        """Approved updates of pushes that died before post-receive: nothing says they
        landed, so record that they were not seen landing."""
        out = []
        for state in stale_states:
            push = state.get("push", {})
            for d in state.get("decided", []):
                if d["verdict"] != "rejected":
                    rec = self._applied("not_applied", d["ref"], d["old"], d["new"], d, push)
                    rec["push_id"] = state.get("push_id")
                    rec["hook"] = push.get("hook", rec["hook"])  # its own push's, not ours
                    rec["push_options"] = push.get("push_options", [])
                    rec["reason"] = "the push ended before post-receive saw this ref land"
                    out.append(rec)
        return out

    # ---- audit records -------------------------------------------------------------

    def _base(self) -> dict:
        if self._base_fields is None:
            self._base_fields = self._read_base()
        return dict(self._base_fields, push_id=self.push_id,
                    policy_sha256=self.policy.sha256 if self.policy else None)

    def _read_base(self) -> dict:
        from . import pushenv

        info = pushenv.read(self.repo_dir)
        policy = self.policy
        return {
            "push_id": self.push_id, "hook": self.mode, "repo": info.repo,
            "pusher": info.pusher, "pusher_source": info.pusher_source,
            "remote_addr": info.remote_addr, "protocol": info.protocol,
            "push_options": list(info.push_options) if self.mode != "update" else
            list(self.planned_options or ()),
            "policy_sha256": policy.sha256 if policy else None,
            "tagwarden_version": __version__,
        }

    def _record(self, d, base: Optional[dict] = None, **extra) -> dict:
        rec = dict(base) if base else self._base()
        rec.update(self._fields(d, **extra))
        return rec

    def _fields(self, d, **extra) -> dict:
        """A decision record's own keys; the push's (``_base``) go under them."""
        rec = {"event": "decision"}
        rec.update((key, get(d)) for key, get in _DECISION_FIELDS)
        if _has_override(d):
            rec["override"] = self._override(d)
        rec.update(extra)
        return rec

    def _decision_table(self, decisions: list, **extra) -> Optional[dict[str, list]]:
        """The decisions' records as columns (audit.append's table), or None when one
        carries more keys than the others (an override)."""
        if not decisions or any(map(_has_override, decisions)):
            return None
        table = {key: list(map(get, decisions)) for key, get in _DECISION_FIELDS}
        table.update((key, [value] * len(decisions))
                     for key, value in dict(extra, event="decision").items())
        return table

    def _override(self, d) -> dict:
        from . import access

        rules, reason = access.requested(tuple(self._base()["push_options"]))
        return {"asked": list(rules), "reason": reason, "passed": [f.rule for f in d.overridden]}

    def _applied(self, event: str, ref: str, old: str, new: str, decided: Optional[dict],
                 push: dict) -> dict:
        decided = decided or {}
        rec = self._base()
        rec.update({k: push[k] for k in _IDENTITY if k in push})  # the pusher's, not ours
        rec.update({
            "event": event, "ref": ref, "old": old, "new": new,
            "old_commit": decided.get("old_commit"), "new_commit": decided.get("new_commit"),
            "action": RefUpdate(ref, old, new).action, "kind": decided.get("kind"),
            "component": decided.get("component"), "slot": decided.get("slot"),
            "version": decided.get("version"), "decision": decided.get("verdict"),
            "rule": decided.get("rule"), "reason": None, "change": decided.get("change"),
        })
        return rec

    def append_audit(self, records: list[dict], shared: Optional[dict] = None,
                     table: Optional[dict[str, list]] = None):
        """Append (each record over ``shared``, ``table``'s first); return the chain
        head of the last line written (None: nothing)."""
        if not records and not table:
            return None
        from .audit import AuditError, append

        try:
            return append(self.audit_path, records, ship=self.config("tagwarden.syslog"),
                          shared=shared, table=table)
        except AuditError as exc:
            raise Rejected("audit-unwritable", "the audit log cannot be written",
                           f"{exc}; a push that cannot be audited is refused") from None

    # ---- refusals and incidents ------------------------------------------------------

    def _refuse(self, updates: list[RefUpdate], exc: Rejected) -> int:
        records = [self._refusal_record(u, exc) for u in updates if _ours(u)]
        if exc.rule != "audit-unwritable":
            try:
                self.append_audit(records)
            except Rejected as audit_exc:
                exc = Rejected(exc.rule, exc.what, f"{exc.detail}; also: {audit_exc.detail}")
        if self.mode == "pre-receive" and exc.rule != "lock-timeout":
            try:
                self.session().release()
            except OSError:
                pass
        print("\n".join(messages.failure(exc.what, exc.detail, noun=self.noun)),
              file=sys.stderr)
        return 1

    def _refusal_record(self, u: RefUpdate, exc: Rejected) -> dict:
        rec = self._base()
        rec.update({"event": "decision", "ref": u.ref, "old": u.old, "new": u.new,
                    "old_commit": None, "new_commit": None, "action": u.action, "kind": None,
                    "component": None, "slot": None, "version": None, "decision": "rejected",
                    "rule": exc.rule, "reason": f"{exc.what}: {exc.detail}", "change": None,
                    "warnings": []})
        return rec

    def incident(self, fatal: bool = True) -> int:
        incident = uuid.uuid4().hex[:12]
        record = {"event": "incident", "incident": incident, "hook": self.mode,
                  "push_id": self.push_id, "repo": self.repo_dir,
                  "decision": "rejected" if fatal else None, "rule": "internal-error",
                  "exc_info": sys.exc_info()}
        where = "the audit log"
        try:
            from .audit import append

            append(self.audit_path, [record], ship=self.config("tagwarden.syslog"))
        except Exception:
            where = self._incident_file(incident)
        if fatal and self.mode == "pre-receive":
            try:
                self.session().release()
            except Exception:
                pass
        what = "internal error" if fatal else "internal error after the push (refs are written)"
        detail = f"the details are in {where}; tell your git admin the incident id"
        print("\n".join(messages.failure(what, detail, incident, self.noun)), file=sys.stderr)
        return 1 if fatal else 0

    def _incident_file(self, incident: str) -> str:
        path = os.path.join(self.state_dir, f"incident-{incident}.txt")
        try:
            os.makedirs(self.state_dir, exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(traceback.format_exc())
            return f"tagwarden/incident-{incident}.txt in the repository"
        except OSError:
            return "nowhere: the repository's tagwarden/ directory is not writable"

    # ---- the repository's own earlier hook, kept by the installer ------------------

    def _chained_path(self) -> Optional[str]:
        if not self.hooks_dir:
            return None
        path = os.path.join(self.hooks_dir, self.mode + CHAINED_SUFFIX)
        return path if os.access(path, os.X_OK) else None

    def refused_by_chain(self, decisions: list, code: int) -> list:
        """The decisions, each judged ref refused because the chained hook exited ``code``."""
        from .model import REJECTED

        return [d.but(verdict=REJECTED, rule="chained-hook", fix=(),
                      reason=f"the repository's earlier {self.mode} hook refused the "
                             f"{self.noun} (exit {code})")
                if d.name.audited else d for d in decisions]

    def chain(self) -> int:
        path = self._chained_path()
        if path is None:
            return 0
        sys.stderr.flush()
        return subprocess.run([path, *self.args], input=self.stdin).returncode


def _policy_text(path: str, what: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Rejected("policy-invalid", "policy invalid",
                       f"{path}: cannot read {what}: {getattr(exc, 'strerror', None) or exc}"
                       "; every push is refused until an admin fixes it") from None


# A decision record's own keys (and "event": "decision"), each read off the Decision;
# the push's keys go under them
_DECISION_FIELDS = (
    ("ref", attrgetter("update.ref")),
    ("old", attrgetter("update.old")), ("new", attrgetter("update.new")),
    ("old_commit", attrgetter("old_commit")), ("new_commit", attrgetter("new_commit")),
    ("action", attrgetter("update.action")), ("kind", attrgetter("name.kind")),
    ("component", attrgetter("name.component")), ("slot", attrgetter("name.slot")),
    ("version", attrgetter("version")), ("decision", attrgetter("verdict")),
    ("rule", attrgetter("rule")), ("reason", lambda d: d.reason or None),
    ("change", attrgetter("change")), ("warnings", lambda d: [w.rule for w in d.warnings]),
)


def _has_override(d) -> bool:
    """Its record carries an ``override`` object: what was asked, why, what passed."""
    return bool(d.overridden) or d.rule in ("override-denied", "override-invalid")


# What post-receive needs to know of a decision (no policy, no pygit2 there): a row of
# session.CARRIED, read in one C call
_carried = attrgetter("update.ref", "update.old", "update.new", "verdict", "rule", "change",
                      "name.kind", "name.component", "name.slot", "version", "old_commit",
                      "new_commit")


def _exit(code: int) -> None:
    """Leave without the interpreter's teardown: freeing pygit2, structlog and every
    object of a big push costs tens of milliseconds, on every push. All files are
    closed by now; only the standard streams need flushing."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # the pusher hung up: nothing left to tell
        pass
    os._exit(code)


if __name__ == "__main__":
    # A hook lives for one push and makes few reference cycles: the cyclic collector
    # would only rescan every live object again and again (a fifth of a thousand-ref
    # push's time). Memory is freed by reference counting as before.
    import gc

    gc.disable()
    _exit(main())
