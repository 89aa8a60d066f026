"""Install the hook shims into repositories, keeping and chaining any hook found there.

A foreign hook ``hooks/NAME`` is renamed to ``hooks/NAME.tagwarden-chained`` (bytes and
mode untouched) and run by tagwarden with the same input; uninstall renames it back.
Re-running install changes nothing.
"""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Optional

from .hook import CHAINED_SUFFIX
from .paths import hook_template

MARKER = "tagwarden-managed hook"
# Update mode keeps a pre-receive too: it only records the push's ref list, since git
# shows each update hook one ref and a version created in the same push must count.
MODES = {"pre-receive": ("pre-receive", "post-receive"),
         "update": ("pre-receive", "update", "post-receive")}
ALL_HOOKS = ("pre-receive", "update", "post-receive")


class InstallError(Exception):
    pass


def hooks_dir(repo: str) -> str:
    if not os.path.isdir(repo):
        raise InstallError(f"{repo}: no such directory")
    out = subprocess.run(["git", "rev-parse", "--git-path", "hooks"], cwd=repo,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise InstallError(f"{repo}: not a git repository")
    path = out.stdout.strip()
    return path if os.path.isabs(path) else os.path.join(repo, path)


def is_ours(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return MARKER.encode() in f.read(512)
    except OSError:
        return False


def shim(name: str, python: str) -> str:
    with open(hook_template(name), encoding="utf-8") as f:
        return f.read().replace("@PYTHON@", python.replace("'", "'\\''"))


def install(repo: str, mode: str = "pre-receive", policy: Optional[str] = None,
            python: str = sys.executable, dry_run: bool = False) -> list[str]:
    """Install into one repository; return what was (or would be) done."""
    repo = os.path.abspath(repo)
    hooks = hooks_dir(repo)
    done: list[str] = []
    for name in ALL_HOOKS:
        path = os.path.join(hooks, name)
        chained = path + CHAINED_SUFFIX
        if name not in MODES[mode]:
            if is_ours(path):  # switching modes: take back the other mode's shim
                done.append(f"remove {path}")
                if not dry_run:
                    os.unlink(path)
                    if os.path.exists(chained):
                        os.rename(chained, path)
            continue
        text = shim(name, python)
        if is_ours(path):
            with open(path, encoding="utf-8") as f:
                if f.read() == text:
                    continue
            done.append(f"update {path}")
        elif os.path.lexists(path):
            if os.path.lexists(chained):
                raise InstallError(f"{path}: a foreign hook and {chained} both exist; "
                                   "merge them by hand first")
            done.append(f"keep {path} as {chained} (chained)")
            if not dry_run:
                os.rename(path, chained)
        else:
            done.append(f"write {path}")
        if not dry_run:
            os.makedirs(hooks, exist_ok=True)
            tmp = path + ".tagwarden-tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o755)
            os.replace(tmp, path)
    settings = {"receive.advertisePushOptions": "true"}
    if policy:
        settings["tagwarden.policy"] = os.path.abspath(policy)
    for key, value in settings.items():
        if _git_config(repo, key) != value:
            done.append(f"git config {key} {value}")
            if not dry_run:
                subprocess.run(["git", "config", key, value], cwd=repo, check=True)
    done += _start_ledger(repo, dry_run)
    return done


def _start_ledger(repo: str, dry_run: bool) -> list[str]:
    """A repository gets its ledger at install, seeded from the tags it holds, so the
    hooks know history from the first push."""
    import time

    from .gitview import open_ledger
    from .paths import default_policy
    from .policy import load
    from .recorder import seed

    if (_git_config(repo, "extensions.objectFormat") or "sha1").lower() != "sha1":
        return []  # tagwarden reads SHA-1 repositories only; tag pushes stay refused there
    if open_ledger(repo) is not None:
        return []
    if dry_run:
        return ["start the deployment ledger (refs/tagwarden/ledger) from the tags present"]
    configured = _git_config(repo, "tagwarden.policy")
    path = configured if configured and os.path.isabs(configured) else \
        os.path.join(repo, configured) if configured else default_policy()
    with open(path, encoding="utf-8") as f:
        policy = load(f.read(), path)
    count = seed(repo, policy, time.time())
    return [f"start the deployment ledger (refs/tagwarden/ledger) with {count} managed "
            f"tag{'' if count == 1 else 's'}"]


def uninstall(repo: str, dry_run: bool = False) -> list[str]:
    repo = os.path.abspath(repo)
    hooks = hooks_dir(repo)
    done = []
    for name in ALL_HOOKS:
        path = os.path.join(hooks, name)
        chained = path + CHAINED_SUFFIX
        if is_ours(path):
            done.append(f"remove {path}")
            if not dry_run:
                os.unlink(path)
        if os.path.lexists(chained) and not os.path.lexists(path) or \
                (dry_run and os.path.lexists(chained)):
            done.append(f"restore {path} from {chained}")
            if not dry_run:
                os.rename(chained, path)
    return done


def _git_config(repo: str, key: str) -> Optional[str]:
    out = subprocess.run(["git", "config", "--get", key], cwd=repo, capture_output=True,
                         text=True)
    return out.stdout.strip() if out.returncode == 0 else None
