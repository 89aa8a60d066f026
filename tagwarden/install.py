"""Install the hook shims into repositories, where each kind of host runs hooks.

Layouts (``LAYOUTS``; docs/install.md, Host layouts):

plain
    ``hooks/NAME`` in git's own hooks directory. A foreign ``hooks/NAME`` is renamed to
    ``hooks/NAME.tagwarden-chained`` (bytes and mode untouched) and run by tagwarden with
    the same input; uninstall renames it back.
gitea, gitlab
    The host runs every executable in ``NAME.d/`` of a directory of its own: Gitea's
    dispatcher ``hooks/NAME`` runs ``hooks/NAME.d/*``; GitLab's Gitaly runs
    ``custom_hooks/NAME.d/*`` of the repository. tagwarden writes its shims into a
    directory of its own there (``tagwarden/NAME``, so the hooks of one push find each
    other as in git's hooks directory) and one entry ``NAME.d/tagwarden`` per hook that
    execs the shim. The host's own files are never touched.
    ``--server-side`` adds ``hooks/reference-transaction`` (plain only), which judges tag
    changes made on the server itself (tagwarden.server_side; docs/server-side.md).
gitolite
    Nothing in the repository: gitolite rewrites its hooks. The shims go to gitolite's
    ``LOCAL_CODE/hooks/repo-specific/`` and the admin wires them in with ``option
    hook.*`` lines in gitolite.conf (the admin repository is the source of truth;
    ``gitolite_conf`` prints the lines): install_gitolite.py.

An install by root works in each repository as its owner: owner.py.

Re-running install changes nothing; installing another layout or mode takes back what
the previous one wrote; uninstall takes back all of it, whatever the layout.
"""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Callable, Iterable, Optional

from .hook import CHAINED_SUFFIX
from .paths import hook_template

MARKER = "tagwarden-managed hook"
# Update mode keeps a pre-receive too: it only records the push's ref list, since git
# shows each update hook one ref and a version created in the same push must count.
MODES = {"pre-receive": ("pre-receive", "post-receive"),
         "update": ("pre-receive", "update", "post-receive")}
ALL_HOOKS = ("pre-receive", "update", "post-receive")
SERVER_SIDE = "reference-transaction"  # --server-side, plain layout only
PLAIN_HOOKS = ALL_HOOKS + (SERVER_SIDE,)
# receive.advertisePushOptions as it was in the repository's own config before the
# install set it (SAVED_UNSET: not set there); uninstall puts it back
SAVED_PUSH_OPTIONS = "tagwarden.saved.advertisePushOptions"
SAVED_UNSET = "--unset"
LAYOUTS = ("plain", "gitea", "gitlab", "gitolite")
OWN_DIR = "tagwarden"    # the shims' directory in the gitea and gitlab layouts
D_ENTRY = "tagwarden"    # their entry in each NAME.d/


class InstallError(Exception):
    pass


# ---- what gets written ---------------------------------------------------------------

def hooks_dir(repo: str) -> str:
    if not os.path.isdir(repo):
        raise InstallError(f"{repo}: no such directory")
    out = subprocess.run(["git", "rev-parse", "--git-path", "hooks"], cwd=repo,
                         capture_output=True, text=True)
    if out.returncode != 0:
        why = "owned by another user (git calls it dubious)" \
            if "dubious ownership" in out.stderr else "not a git repository"
        raise InstallError(f"{repo}: {why}")
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


def entry(name: str) -> str:
    """``NAME.d/tagwarden`` of the gitea and gitlab layouts: execs the shim in
    ``../tagwarden/``, whose directory is then the one the hooks of a push share."""
    return (f"#!/bin/sh\n"
            f"# {MARKER} ({name}.d): runs tagwarden's {name} shim, kept in ../{OWN_DIR}/.\n"
            f"# Written by 'tagwarden install'; 'tagwarden uninstall' removes it.\n"
            f"exec \"${{0%/*}}/../{OWN_DIR}/{name}\" \"$@\"\n")


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = path + ".tagwarden-tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)


def _place(path: str, text: str, done: list[str], dry_run: bool) -> None:
    """Write one of our files; a foreign file in its place stops the install."""
    if is_ours(path):
        with open(path, encoding="utf-8") as f:
            if f.read() == text and os.access(path, os.X_OK):
                return
        done.append(f"update {path}")
    elif os.path.lexists(path):
        raise InstallError(f"{path}: exists and is not tagwarden's; move it away first")
    else:
        done.append(f"write {path}")
    if not dry_run:
        _write(path, text)


# ---- finding repositories and their layout ------------------------------------------

def _git_dir_like(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "HEAD")) and \
        os.path.isdir(os.path.join(path, "objects")) and \
        os.path.isdir(os.path.join(path, "refs"))


def is_bare_repo(path: str) -> bool:
    """HEAD, objects/ and refs/, and ``core.bare`` true (or, where the config does not
    say, a directory named ``*.git`` other than a work tree's ``.git``)."""
    if not _git_dir_like(path):
        return False
    out = subprocess.run(["git", "config", "--file", os.path.join(path, "config"),
                          "--type=bool", "--get", "core.bare"],
                         capture_output=True, text=True)
    if out.returncode == 0:
        return out.stdout.strip() == "true"
    name = os.path.basename(os.path.normpath(path))
    return name.endswith(".git") and name != ".git"


def find_repos(root: str, on_error: Optional[Callable[[OSError], None]] = None) -> list[str]:
    """Every bare repository under ``root`` (``root`` itself included), sorted; the walk
    does not descend into repositories, work trees' ``.git`` or symbolic links."""
    found = []
    for top, dirs, _ in os.walk(root, onerror=on_error):
        if _git_dir_like(top):
            if is_bare_repo(top):
                found.append(top)
            dirs[:] = []
        else:
            dirs.sort()
    return sorted(found)


def _text(path: str, limit: int = 4096) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


def detect_layout(repo: str) -> tuple[str, str]:
    """(layout, the evidence) for one repository; ``plain`` when nothing else shows."""
    hooks = os.path.join(repo, "hooks")
    update = os.path.join(hooks, "update")
    if os.path.isfile(os.path.join(repo, "gl-conf")) or \
            "gitolite" in _text(update).lower():
        return "gitolite", "its update hook is gitolite's"
    parts = os.path.abspath(repo).split(os.sep)
    if "@hashed" in parts or "@cluster" in parts:
        return "gitlab", "it lies in a Gitaly storage (@hashed or @cluster)"
    if os.path.isdir(os.path.join(repo, "custom_hooks")):
        return "gitlab", "it has GitLab's custom_hooks/"
    for name in ("pre-receive", "pre-receive" + CHAINED_SUFFIX):
        text = _text(os.path.join(hooks, name))
        if "AUTO GENERATED BY GITEA" in text or "AUTO GENERATED BY FORGEJO" in text:
            return "gitea", "hooks/pre-receive is Gitea's dispatcher"
    if os.path.isfile(os.path.join(hooks, "pre-receive.d", "gitea")):
        return "gitea", "it has hooks/pre-receive.d/gitea"
    return "plain", "no host's hooks found"


# ---- install and uninstall -----------------------------------------------------------

def install(repo: str, mode: str = "pre-receive", policy: Optional[str] = None,
            python: str = sys.executable, dry_run: bool = False, layout: str = "plain",
            policy_override: Optional[str] = None, server_side: bool = False) -> list[str]:
    """Install into one repository; return what was (or would be) done. Layouts plain,
    gitea and gitlab; gitolite repositories are wired in by gitolite.conf instead
    (``gitolite_shims``, ``gitolite_conf``). ``server_side`` adds the
    reference-transaction hook (plain only); without it, one installed before is
    removed, as the shims of the other mode are."""
    repo = os.path.abspath(repo)
    if layout == "gitolite":
        raise InstallError(f"{repo}: gitolite runs its repositories' hooks; tagwarden "
                           "writes nothing into them (see gitolite_shims)")
    if layout not in LAYOUTS:
        raise InstallError(f"{repo}: unknown layout {layout!r}")
    if server_side and layout != "plain":
        raise InstallError(server_side_unsupported(repo, layout))
    if layout == "gitlab" and mode == "update":
        raise InstallError(f"{repo}: GitLab runs custom hooks from Gitaly, not under "
                           "git-receive-pack, so the update hooks of one push cannot find "
                           "each other there; use --mode pre-receive")
    hooks = hooks_dir(repo)
    settings = {"receive.advertisePushOptions": "true"}
    if policy:
        settings["tagwarden.policy"] = os.path.abspath(policy)
    if policy_override:
        settings["tagwarden.policyOverride"] = os.path.abspath(policy_override)
    if policy or policy_override:  # the combination this repository would get
        _check_policy(repo, settings)
    done: list[str] = []
    gitea_hooks = os.path.join(repo, "hooks")
    gitlab_hooks = os.path.join(repo, "custom_hooks")
    if layout == "plain":
        names = MODES[mode] + ((SERVER_SIDE,) if server_side else ())
        _check_plain(hooks, names)
        _remove_d(gitea_hooks, ALL_HOOKS, done, dry_run, prune=False)
        _remove_d(gitlab_hooks, ALL_HOOKS, done, dry_run, prune=True)
        _install_plain(hooks, names, python, done, dry_run)
    else:
        base = gitea_hooks if layout == "gitea" else gitlab_hooks
        _check_d(base, MODES[mode])
        if layout == "gitea":
            _check_dispatchers(gitea_hooks, MODES[mode])
        _remove_plain(hooks, PLAIN_HOOKS, done, dry_run)
        if layout == "gitea":
            _remove_d(gitlab_hooks, ALL_HOOKS, done, dry_run, prune=True)
        else:
            _remove_d(gitea_hooks, ALL_HOOKS, done, dry_run, prune=False)
        _install_d(base, mode, python, done, dry_run)
    for key, value in settings.items():
        if _git_config(repo, key) != value:
            note = ""
            if key == "receive.advertisePushOptions":
                before = _git_config(repo, key, local=True)
                note = f" (was {before})" if before is not None else ""
                if not dry_run and _git_config(repo, SAVED_PUSH_OPTIONS, local=True) is None:
                    subprocess.run(["git", "config", "--local", SAVED_PUSH_OPTIONS,
                                    SAVED_UNSET if before is None else before],
                                   cwd=repo, check=True)
            done.append(f"git config {key} {value}{note}")
            if not dry_run:
                subprocess.run(["git", "config", key, value], cwd=repo, check=True)
    done += _start_ledger(repo, dry_run, settings)
    return done


def uninstall(repo: str, dry_run: bool = False) -> list[str]:
    """Take back whatever any layout wrote; foreign hooks are restored byte for byte."""
    repo = os.path.abspath(repo)
    hooks = hooks_dir(repo)
    done: list[str] = []
    _remove_plain(hooks, PLAIN_HOOKS, done, dry_run)
    _remove_d(os.path.join(repo, "hooks"), ALL_HOOKS, done, dry_run, prune=False)
    _remove_d(os.path.join(repo, "custom_hooks"), ALL_HOOKS, done, dry_run, prune=True)
    _restore_push_options(repo, done, dry_run)
    return done


def server_side_unsupported(repo: str, layout: str) -> str:
    why = {"gitea": "Gitea changes tags itself (web UI, API, mirrors) as its service user, "
                    "so the hook could neither tell its users apart nor let them bypass",
           "gitlab": "Gitaly runs git with hooks of its own, so a reference-transaction "
                     "hook in the repository would never run",
           "gitolite": "gitolite owns the repository's hooks, and tagwarden writes nothing "
                       "into its repositories"}.get(layout, f"layout {layout}")
    return (f"{repo}: --server-side is for plain repositories only: {why} "
            "(docs/server-side.md)")


def _restore_push_options(repo: str, done: list[str], dry_run: bool) -> None:
    """receive.advertisePushOptions back to what it was before the install set it."""
    key = "receive.advertisePushOptions"
    saved = _git_config(repo, SAVED_PUSH_OPTIONS, local=True)
    if saved is None:
        return
    if saved == SAVED_UNSET:
        done.append(f"git config --unset {key} (as before the install)")
        command = ["--unset-all", key]
    else:
        done.append(f"git config {key} {saved} (as before the install)")
        command = [key, saved]
    if not dry_run:
        out = subprocess.run(["git", "config", "--local", *command], cwd=repo,
                             capture_output=True, text=True)
        if out.returncode not in (0, 5):  # 5: already unset
            raise InstallError(f"{repo}: git config {' '.join(command)}: "
                               f"{out.stderr.strip()}")
        subprocess.run(["git", "config", "--local", "--remove-section",
                        SAVED_PUSH_OPTIONS.rsplit(".", 1)[0]], cwd=repo, capture_output=True)


def _check_plain(hooks: str, names: Iterable[str]) -> None:
    for name in names:
        path = os.path.join(hooks, name)
        chained = path + CHAINED_SUFFIX
        if os.path.lexists(path) and not is_ours(path) and os.path.lexists(chained):
            raise InstallError(f"{path}: a foreign hook and {chained} both exist; "
                               "merge them by hand first")


def _install_plain(hooks: str, names: tuple[str, ...], python: str, done: list[str],
                   dry_run: bool) -> None:
    _remove_plain(hooks, [n for n in PLAIN_HOOKS if n not in names], done, dry_run)
    for name in names:
        path = os.path.join(hooks, name)
        chained = path + CHAINED_SUFFIX
        if os.path.lexists(path) and not is_ours(path):
            done.append(f"keep {path} as {chained} (chained)")
            if not dry_run:
                os.rename(path, chained)
                _write(path, shim(name, python))
            continue
        _place(path, shim(name, python), done, dry_run)


def _remove_plain(hooks: str, names: Iterable[str], done: list[str], dry_run: bool) -> None:
    """Remove our shims among ``names``, putting back the hooks they had kept."""
    for name in names:
        path = os.path.join(hooks, name)
        chained = path + CHAINED_SUFFIX
        ours = is_ours(path)
        if ours:
            done.append(f"remove {path}")
            if not dry_run:
                os.unlink(path)
        if os.path.lexists(chained) and (ours or not os.path.lexists(path)):
            done.append(f"restore {path} from {chained}")
            if not dry_run:
                os.rename(chained, path)


def _check_d(base: str, names: Iterable[str]) -> None:
    own = os.path.join(base, OWN_DIR)
    if os.path.lexists(own) and (os.path.islink(own) or not os.path.isdir(own)):
        raise InstallError(f"{own}: exists and is not tagwarden's directory; move it away")
    for name in names:
        for path in (os.path.join(own, name), os.path.join(base, f"{name}.d", D_ENTRY)):
            if os.path.lexists(path) and not is_ours(path):
                raise InstallError(f"{path}: exists and is not tagwarden's; move it away first")


def _check_dispatchers(hooks: str, names: Iterable[str]) -> None:
    """Gitea's hooks/NAME must run hooks/NAME.d/*, or tagwarden would never run."""
    for name in names:
        path = os.path.join(hooks, name)
        if is_ours(path) and os.path.lexists(path + CHAINED_SUFFIX):
            path += CHAINED_SUFFIX  # put back by this install (it was plain before)
        text = _text(path)
        if f"{name}.d" not in text and "hookname}.d" not in text:
            raise InstallError(f"{os.path.join(hooks, name)}: not a dispatcher that runs "
                               f"{name}.d/ (Gitea writes one); tagwarden would never run: "
                               "use --layout plain, or let Gitea resynchronise its hooks")


def _install_d(base: str, mode: str, python: str, done: list[str], dry_run: bool) -> None:
    _remove_d(base, [n for n in ALL_HOOKS if n not in MODES[mode]], done, dry_run,
              prune=False)
    for name in MODES[mode]:
        _place(os.path.join(base, OWN_DIR, name), shim(name, python), done, dry_run)
        _place(os.path.join(base, f"{name}.d", D_ENTRY), entry(name), done, dry_run)


def _remove_d(base: str, names: Iterable[str], done: list[str], dry_run: bool,
              prune: bool) -> None:
    """Remove our entries and shims among ``names``; then our directory when empty, and
    with ``prune`` (GitLab's custom_hooks, which tagwarden may have created) the empty
    NAME.d/ and base directories too."""
    gone = set()
    for name in names:
        for path in (os.path.join(base, f"{name}.d", D_ENTRY),
                     os.path.join(base, OWN_DIR, name)):
            if is_ours(path):
                done.append(f"remove {path}")
                gone.add(path)
                if not dry_run:
                    os.unlink(path)
    dirs = [os.path.join(base, OWN_DIR)]
    if prune:
        dirs += [os.path.join(base, f"{n}.d") for n in ALL_HOOKS] + [base]
    for path in dirs:
        if not gone or os.path.islink(path) or not os.path.isdir(path):
            continue
        left = [n for n in os.listdir(path) if os.path.join(path, n) not in gone]
        if not left:
            done.append(f"remove {path}/")
            gone.add(path)
            if not dry_run:
                os.rmdir(path)


def _check_policy(repo: str, settings: dict) -> None:
    base, override = policy_paths(repo, settings)
    from .policy import PolicyError

    try:
        load_policy_files(base, override)
    except (OSError, UnicodeDecodeError) as exc:
        raise InstallError(f"{repo}: policy invalid: cannot read {exc.filename or base}: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None
    except PolicyError as exc:
        raise InstallError(f"{repo}: policy invalid: {exc}") from None


def policy_paths(repo: str, settings: Optional[dict] = None) -> tuple[str, Optional[str]]:
    """The policy file and the override a repository's hooks read (``settings``: keys
    about to be set), as the hooks resolve them."""
    from .paths import default_policy

    settings = settings or {}

    def resolve(key: str) -> Optional[str]:
        value = settings.get(key) or _git_config(repo, key)
        return (value if os.path.isabs(value) else os.path.join(repo, value)) \
            if value else None

    return resolve("tagwarden.policy") or default_policy(), \
        resolve("tagwarden.policyOverride")


def load_policy_files(base: str, override: Optional[str] = None):
    """The policy of ``base``, with ``override`` layered on top when given."""
    from .policy import load, load_layered

    with open(base, "rb") as f:
        text = f.read().decode("utf-8")
    if override is None:
        return load(text, base)
    with open(override, "rb") as f:
        return load_layered(text, base, f.read().decode("utf-8"), override)


def _start_ledger(repo: str, dry_run: bool, settings: dict) -> list[str]:
    """A repository gets its ledger at install, seeded from the tags it holds, so the
    hooks know history from the first push."""
    import time

    from .gitview import open_ledger
    from .policy import PolicyError
    from .recorder import seed

    if (_git_config(repo, "extensions.objectFormat") or "sha1").lower() != "sha1":
        return []  # tagwarden reads SHA-1 repositories only; tag pushes stay refused there
    if open_ledger(repo) is not None:
        return []
    if dry_run:
        return ["start the deployment ledger (refs/tagwarden/ledger) from the tags present"]
    base, override = policy_paths(repo, settings)
    try:
        policy = load_policy_files(base, override)
    except (OSError, UnicodeDecodeError, PolicyError) as exc:
        raise InstallError(f"{repo}: hooks installed, but the deployment ledger was not "
                           f"started: the policy does not load ({exc}); fix it and install "
                           "again") from None
    count = seed(repo, policy, time.time())
    return [f"start the deployment ledger (refs/tagwarden/ledger) with {count} managed "
            f"tag{'' if count == 1 else 's'}"]


def _git_config(repo: str, key: str, local: bool = False) -> Optional[str]:
    """The value git reads in ``repo`` (with ``local``: of the repository's own config
    only); None when unset."""
    out = subprocess.run(["git", "config", *(["--local"] if local else []), "--get", key],
                         cwd=repo, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None
