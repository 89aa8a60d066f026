"""gitolite: nothing goes into its repositories (gitolite rewrites their hooks). The
shims go to gitolite's ``LOCAL_CODE/hooks/repo-specific/``, and the admin wires them in
with ``option hook.*`` lines in gitolite.conf, which ``gitolite_conf`` prints (the admin
repository is the source of truth; docs/hosts/gitolite.md).
"""
from __future__ import annotations

import fnmatch
import os
import sys
from typing import Iterable, Optional

from .install import InstallError, _place, is_ours, shim

GITOLITE_HOOKS = {"pre-receive": "tagwarden-pre-receive",
                  "post-receive": "tagwarden-post-receive"}
GITOLITE_ADMIN = "gitolite-admin.git"  # never walked into by --all (docs/install.md)


def gitolite_shims(local_code: str, python: str = sys.executable,
                   dry_run: bool = False) -> list[str]:
    """Write the shims where gitolite's repo-specific-hooks looks for them:
    ``LOCAL_CODE/hooks/repo-specific/tagwarden-{pre,post}-receive``."""
    if not os.path.isdir(local_code):
        raise InstallError(f"{local_code}: no such directory (gitolite's LOCAL_CODE: "
                           "'gitolite query-rc LOCAL_CODE' as the gitolite account)")
    done: list[str] = []
    where = os.path.join(local_code, "hooks", "repo-specific")
    for name, file in GITOLITE_HOOKS.items():
        _place(os.path.join(where, file), shim(name, python), done, dry_run)
    return done


def gitolite_remove_shims(local_code: str, dry_run: bool = False) -> list[str]:
    done: list[str] = []
    for file in GITOLITE_HOOKS.values():
        path = os.path.join(local_code, "hooks", "repo-specific", file)
        if is_ours(path):
            done.append(f"remove {path}")
            if not dry_run:
                os.unlink(path)
    return done


def gitolite_wired(repo: str) -> bool:
    """gitolite has linked tagwarden's shims into this repository's hooks
    (``hooks/pre-receive.h00-tagwarden-pre-receive`` and the post-receive one)."""
    hooks = os.path.join(repo, "hooks")
    try:
        names = os.listdir(hooks)
    except OSError:
        return False
    return all(any(fnmatch.fnmatchcase(n, f"{name}.h[0-9][0-9]-{file}")
                   and is_ours(os.path.join(hooks, n)) for n in names)
               for name, file in GITOLITE_HOOKS.items())


def gitolite_name(repo: str, root: Optional[str] = None) -> str:
    """The repository's name in gitolite.conf: its path below the nearest directory
    called ``repositories`` (gitolite's GL_REPO_BASE), else below ``root`` (the --all
    ROOT it was found under), else its directory's name; without ``.git``."""
    path = os.path.abspath(repo)
    probe = os.path.dirname(path)
    while probe != os.path.dirname(probe) and os.path.basename(probe) != "repositories":
        probe = os.path.dirname(probe)
    if os.path.basename(probe) == "repositories":
        root = probe
    elif root is None:
        root = os.path.dirname(path)
    name = os.path.relpath(path, os.path.abspath(root))
    if name == ".":
        name = os.path.basename(path)
    return name[:-4] if name.endswith(".git") else name


def gitolite_conf(names: Iterable[str], policy: Optional[str] = None,
                  policy_override: Optional[str] = None) -> str:
    """The gitolite.conf lines that run tagwarden for these repositories."""
    lines = [f"repo {' '.join(names)}",
             f"    option  hook.pre-receive    =   {GITOLITE_HOOKS['pre-receive']}",
             f"    option  hook.post-receive   =   {GITOLITE_HOOKS['post-receive']}",
             "    config  receive.advertisePushOptions    =   true"]
    if policy:
        lines.append(f"    config  tagwarden.policy                =   {os.path.abspath(policy)}")
    if policy_override:
        lines.append(f"    config  tagwarden.policyOverride        =   "
                     f"{os.path.abspath(policy_override)}")
    return "\n".join(lines) + "\n"
