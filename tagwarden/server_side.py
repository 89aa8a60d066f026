"""The ``reference-transaction`` hook: tag changes made on the server itself.

``git tag -d``, ``git tag -f``, ``git update-ref`` or a ``git fetch`` run in the bare
repository write refs without a push, so pre-receive never sees them. Installed with
``tagwarden install --server-side``, this hook judges them in git's ``prepared`` state
(the refs are locked, not yet changed) with the same engine, policy and audit log as a
push, and refuses what the policy refuses: git then aborts the whole transaction.

The shim (hooks/reference-transaction) starts Python only for a prepared transaction
that touches ``refs/tags/`` or ``refs/tagwarden/`` and is not run by git-receive-pack
(pushes were judged by pre-receive; a refusal here would kill receive-pack) nor by
pack-refs (which never changes what a ref resolves to).

An admin may let a change through with ``TAGWARDEN_BYPASS=<reason>``: honoured only for
root and for the users listed in ``tagwarden.bypassUsers`` of /etc/gitconfig, and
audited either way (docs/server-side.md).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from typing import Optional

from .hook import HookInputError, HookRun, Rejected, _exit, _ours, parse_updates

MODE = "reference-transaction"
BYPASS_VARIABLE = "TAGWARDEN_BYPASS"
BYPASS_USERS = "tagwarden.bypassUsers"
SYSTEM_CONFIG = "/etc/gitconfig"  # fixed: GIT_CONFIG_* and -c are the user's to set
BYPASS = "bypass"  # the decision and change of a change let through by the admin
_MARK = "server-side.last"  # in tagwarden/: the last change judged and let through


def main(argv: Optional[list[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    hooks_dir = command = None
    while args[:1] in (["--hooks-dir"], ["--git-command"]) and len(args) > 1:
        if args[0] == "--hooks-dir":
            hooks_dir = args[1]
        else:
            command = args[1]
        args = args[2:]
    if len(args) != 1 or args[0] not in ("prepared", "committed", "aborted"):
        print("usage: python -m tagwarden.server_side [--hooks-dir DIR] [--git-command CMD] "
              "prepared|committed|aborted", file=sys.stderr)
        return 2
    run = ServerSideRun(args, hooks_dir, command or None)
    try:
        run.stdin = sys.stdin.buffer.read()
        if args[0] != "prepared":
            return run.chain()  # only "prepared" can abort; nothing to judge after it
        return run.execute()
    except Exception:
        return run.incident()


def user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def bypass_users(git: str = "git", config_file: str = SYSTEM_CONFIG) -> list[str]:
    """``tagwarden.bypassUsers`` of the system config file only: every value, each a list
    of user names separated by spaces or commas."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_CONFIG")}
    try:
        out = subprocess.run([git, "config", "--file", config_file, "--get-all",
                              BYPASS_USERS], capture_output=True, text=True, env=env)
    except OSError:
        return []
    if out.returncode != 0:
        return []
    return [name for line in out.stdout.splitlines()
            for name in line.replace(",", " ").split()]


def bypass_allowed(uid: int, name: str, git: str = "git",
                   config_file: str = SYSTEM_CONFIG) -> tuple[bool, str]:
    """(honoured, why) for a bypass asked for by the process's real user."""
    if uid == 0:
        return True, "root"
    if name in bypass_users(git, config_file):
        return True, f"{name} is listed in {BYPASS_USERS} of {config_file}"
    return False, (f"user {name} (uid {uid}) may not bypass tagwarden: only root and the "
                   f"users listed in {BYPASS_USERS} of {config_file} may")


def _login_uid() -> Optional[int]:
    """The audit login uid (pam_loginuid): who logged in, through su and sudo."""
    try:
        with open("/proc/self/loginuid") as f:
            value = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return None if value == 0xFFFFFFFF else value


class ServerSideRun(HookRun):
    """A HookRun for one prepared transaction: the same policy loading, audit appending,
    refusals and incidents; its own identity (the real uid, never a variable the user
    sets), its own updates (what the refs hold now, not what git was told to expect)."""

    noun = "change"

    def __init__(self, args: list[str], hooks_dir: Optional[str],
                 git_command: Optional[str] = None):
        super().__init__(MODE, args, b"", hooks_dir)
        self.git_command = git_command
        self.git_pid = os.getppid()  # the shim execs Python: the parent is git itself
        self.uid = os.getuid()
        self.user = user_name(self.uid)
        self._locks = None

    # ---- who and how: the real uid; nothing from variables the user could set ------

    def _read_base(self) -> dict:
        base = super()._read_base()
        base.update({  # who ran git here, never the identity variables a user can set
            "pusher": self.user, "pusher_source": "uid", "remote_addr": None,
            "protocol": "local", "push_options": [], "uid": self.uid,
            "login_uid": _login_uid(), "git_command": self.git_command,
            "bypass_reason": os.environ.get(BYPASS_VARIABLE),  # asked for, honoured or not
        })
        if self.uid == 0 and os.environ.get("SUDO_USER"):
            base["sudo_user"] = os.environ["SUDO_USER"]
        return base

    def _git(self) -> str:
        """The git that runs this transaction, not whichever ``git`` PATH finds first."""
        try:
            exe = os.readlink(f"/proc/{self.git_pid}/exe")
        except OSError:
            return "git"
        return exe if os.path.basename(exe) == "git" else "git"

    def _owner(self) -> Optional[str]:
        from .session import _stat

        info = _stat(self.git_pid)
        return f"{self.git_pid}-{info[3]}" if info else None

    # ---- the run ---------------------------------------------------------------------

    def execute(self) -> int:
        try:
            asked = parse_updates("pre-receive", [], self.stdin)
        except HookInputError as exc:
            return self._refuse([], Rejected("hook-input", "unexpected input from git",
                                             str(exc)))
        if not any(_ours(u) for u in asked):
            return self.chain()
        mark = self._mark()
        if mark and self._read_mark() == mark:
            # git 2.39 runs prepared twice for a deletion (packed-refs, then the loose
            # ref) with the same input: judged and recorded once
            return self.chain()
        updates: list = []
        try:
            updates = self._current(asked)
            if not updates:
                return self.chain()  # no-ops only
            code = self.judge(updates)
        except Rejected as exc:
            return self._refuse(updates or [u for u in asked if _ours(u)], exc)
        if code == 0 and mark:
            self._write_mark(mark)
        return code

    def _current(self, asked: list) -> list:
        """The updates as they change the repository: from what each ref holds now (git
        gives the all-zero id as old value when the caller forced the update) to the new
        value; refs that are not ours and no-ops are left out."""
        from .model import RefUpdate

        if any(len(u.new) == 64 for u in asked):
            raise Rejected("object-format", "this repository uses SHA-256 object ids",
                           "tagwarden reads SHA-1 repositories only; tag changes stay "
                           "refused until it supports SHA-256")
        from .gitview import GitView

        self.view = GitView(self.repo_dir, from_env=True)
        out = []
        for u in asked:
            if not _ours(u):
                continue
            now = self.view.ref(u.ref) or "0" * len(u.new)
            if now != u.new:
                out.append(RefUpdate(u.ref, now, u.new))
        return out

    def judge(self, updates: list) -> int:
        from . import messages
        from .engine import decide
        from .model import ENVIRONMENT, Identity, PushContext
        from .refname import classify
        from .session import LockTimeout, PushSession

        reason = os.environ.get(BYPASS_VARIABLE)
        if reason is not None:
            reason = reason.strip()
            if not reason:
                raise Rejected("bypass-denied", f"{BYPASS_VARIABLE} is empty",
                               f"a bypass needs its reason: {BYPASS_VARIABLE}='<why>' "
                               "(recorded in the audit log)")
            honoured, why = bypass_allowed(self.uid, self.user, self._git())
            if not honoured:
                raise Rejected("bypass-denied", "bypass refused", why)
        try:
            policy = self.load_policy()
        except Rejected as exc:
            if reason is None:
                raise
            return self._bypass_unjudged(updates, exc, reason)
        names = [classify(u.ref, policy) for u in updates]
        components = sorted({n.component for n in names if n.kind == ENVIRONMENT})
        self._locks = PushSession(self.state_dir, self._owner())
        try:
            # held until this git process exits (right after the refs are written): a
            # push waiting for the component sees its holder gone and breaks the lock
            waited = self._locks.acquire(components, policy.lock_timeout)
        except LockTimeout as exc:
            raise Rejected("lock-timeout", "a push is deploying the same component",
                           f"{', '.join(exc.components)} stayed locked for "
                           f"{policy.lock_timeout:g} s by a push ({', '.join(exc.holders)}); "
                           "try again in a moment") from None
        context = PushContext(self.mode, atomic=True, now=self.now(),
                              pusher=Identity(self.user, "uid"))
        decisions = decide(policy, self.view, updates, context, names)
        accepted = reason is not None or all(d.accepted for d in decisions)
        if accepted and self._chained_path():
            code = self.chain()
            if code != 0:
                accepted, reason = False, None
                decisions = self.refused_by_chain(decisions, code)
        base = self._base()
        wait = round(waited * 1000)
        records = []
        for d in decisions:
            if not d.name.audited:
                continue
            rec = self._record(d, base, lock_wait_ms=wait)
            if reason is not None:  # what the rules said stays: rule, reason, would_*
                rec.update(decision=BYPASS, change=BYPASS, would_decide=d.verdict,
                           would_change=d.change)
            records.append(rec)
        self.append_audit(records)
        if reason is not None:
            print("\n".join(_bypass_lines(decisions, reason, self.user)), file=sys.stderr)
        else:
            lines = messages.report(decisions, self.noun)
            if lines:
                print("\n".join(lines), file=sys.stderr)
        if not accepted:
            self._release()
        return 0 if accepted else 1

    def _bypass_unjudged(self, updates: list, exc: Rejected, reason: str) -> int:
        """An honoured bypass while the policy does not load: the admin's way out."""
        if self._chained_path() and self.chain() != 0:
            return self._refuse(updates, Rejected(
                "chained-hook", "refused", f"the repository's earlier {self.mode} hook "
                "refused the change"))
        records = []
        for u in updates:
            rec = self._refusal_record(u, exc)
            rec.update(decision=BYPASS, change=BYPASS, would_decide=rec["decision"],
                       would_change=None)
            records.append(rec)
        self.append_audit(records)
        from .messages import PREFIX
        from .refname import printable

        print(f"{PREFIX} bypass by {printable(self.user)}: {len(updates)} tag "
              f"change{'' if len(updates) == 1 else 's'} let through unjudged ({exc.what}), "
              f"and recorded: {printable(reason)}", file=sys.stderr)
        return 0

    # ---- refusals, incidents, locks ------------------------------------------------

    def _refuse(self, updates: list, exc: Rejected) -> int:
        code = super()._refuse(updates, exc)
        if exc.rule != "lock-timeout":
            self._release()
        return code

    def incident(self, fatal: bool = True) -> int:
        self._release()
        return super().incident(fatal)

    def _release(self) -> None:
        if self._locks is not None:
            try:
                self._locks.release()
            except OSError:
                pass

    # ---- git's second prepared for the same deletion ---------------------------------

    def _mark(self) -> Optional[str]:
        owner = self._owner()
        if owner is None:
            return None
        return f"{owner} {hashlib.sha256(self.stdin).hexdigest()}"

    def _read_mark(self) -> Optional[str]:
        try:
            with open(os.path.join(self.state_dir, _MARK), encoding="utf-8") as f:
                return f.read().strip()
        except OSError:
            return None

    def _write_mark(self, mark: str) -> None:
        try:
            os.makedirs(self.state_dir, exist_ok=True)
            path = os.path.join(self.state_dir, _MARK)
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                f.write(mark + "\n")
            os.replace(path + ".tmp", path)
        except OSError:
            pass  # then git's second call is judged and recorded again


def _bypass_lines(decisions, reason: str, user: str) -> list[str]:
    from .messages import PREFIX
    from .refname import printable

    judged = [d for d in decisions if d.name.audited]
    lines = [f"{PREFIX} bypass by {printable(user)}: {len(judged)} tag "
             f"change{'' if len(judged) == 1 else 's'} let through whatever the rules say, "
             f"and recorded: {printable(reason)}"]
    for d in judged:
        if not d.accepted:
            lines.append(f"  {printable(d.update.ref)}: rule {d.rule} would have refused it: "
                         f"{printable(d.reason)}")
    return lines


if __name__ == "__main__":
    _exit(main())
