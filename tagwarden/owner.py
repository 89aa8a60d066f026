"""Running as the repository's owner: an install by root writes hooks, config and the
ledger as the user who owns each repository (a forked child that drops to that user),
and checks first that this user can run the hook interpreter.
"""
from __future__ import annotations

import json
import os
import stat
import sys
from typing import Callable, Iterable, Optional

from .install import InstallError


def interpreter_problem(python: str) -> Optional[str]:
    """Why this process's user cannot execute ``python`` (None: it can), in the words
    of the shims (hooks/pre-receive)."""
    if os.access(python, os.X_OK):
        return None
    seen = ""
    for part in [p for p in python.split("/") if p]:
        seen += "/" + part
        if os.path.lexists(seen):  # lstat fails where a directory above is not searchable
            continue
        up = os.path.dirname(seen)
        if os.access(up, os.X_OK):
            return f"it is missing ({seen} does not exist)"
        return f"directory {up} is not searchable"
    if os.path.islink(python) and not os.path.exists(python):
        return f"it links to {os.readlink(python)}, which cannot be reached or is missing"
    return "it is not executable"


def world_problems(paths: Iterable[str]) -> list[str]:
    """What keeps other users (service accounts) from running a program or reading a
    file at each path: a directory on the way without o+x, a file without o+r."""
    problems = []
    for path in paths:
        real = os.path.abspath(path)  # directories on the way are followed where linked
        probe = "/"
        for part in [p for p in real.split("/") if p][:-1]:
            probe = os.path.join(probe, part)
            if not os.stat(probe).st_mode & stat.S_IXOTH:
                problems.append(f"{path}: directory {probe} is not searchable by other "
                                f"users (mode {stat.S_IMODE(os.stat(probe).st_mode):04o})")
                break
        else:
            mode = os.stat(real).st_mode
            need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) or
                                   mode & stat.S_IXUSR else 0)
            if mode & need != need:
                problems.append(f"{path}: {real} is mode {stat.S_IMODE(mode):04o}, not "
                                "readable by other users")
    return problems


def _preload() -> None:
    """What a forked child running as another user would import lazily: that user may
    not be able to read this interpreter's files (a pyenv in a closed home)."""
    import pwd  # noqa: F401
    import time  # noqa: F401

    from . import gitview, policy, recorder  # noqa: F401


def as_owner(path: str, func: Callable, *args, check_python: Optional[str] = None, **kwargs):
    """``func(*args, **kwargs)`` as the owner of ``path`` when this process is root and
    the owner is not: what the install writes then belongs to the owner, git does not
    call the repository dubious, and a policy or interpreter the owner cannot read shows
    now (``check_python``: the hooks' interpreter, checked first)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InstallError(f"{path}: {exc.strerror}") from None
    if os.geteuid() != 0 or st.st_uid == 0:
        return func(*args, **kwargs)
    import pwd

    _preload()
    try:
        user = pwd.getpwuid(st.st_uid)
        name, gid, home = user.pw_name, user.pw_gid, user.pw_dir
    except KeyError:
        name, gid, home = None, st.st_gid, "/nonexistent"
    who = f"user id {st.st_uid}" + (f" ({name})" if name else "")
    sys.stdout.flush()
    sys.stderr.flush()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into the caller
        result = ["error", f"{path}: failed as {who}"]
        try:
            os.close(read)
            if name:
                os.initgroups(name, gid)
            else:
                os.setgroups([])
            os.setgid(gid)
            os.setuid(st.st_uid)
            os.environ["HOME"] = home
            problem = interpreter_problem(check_python) if check_python else None
            if problem:
                raise InstallError(
                    f"{path}: its owner, {who}, cannot run the hook interpreter "
                    f"{check_python}: {problem}; the hooks would refuse every tag "
                    "push (install with an interpreter that user can run: install.sh "
                    "--prefix DIR)")
            result = ["ok", func(*args, **kwargs)]
        except InstallError as exc:
            result = ["error", str(exc)]
        except OSError as exc:
            result = ["error", f"{exc.filename or path}: {exc.strerror} (as {who})"]
        except Exception as exc:  # noqa: BLE001 - reported to the parent, not raised
            result = ["error", f"{path}: {type(exc).__name__}: {exc} (as {who})"]
        finally:
            try:
                data = json.dumps(result).encode()
                while data:
                    data = data[os.write(write, data):]
            finally:
                os._exit(0)
    os.close(write)
    chunks = []
    while True:
        chunk = os.read(read, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    try:
        status, value = json.loads(b"".join(chunks) or b'["error", "no answer"]')
    except ValueError:
        status, value = "error", f"{path}: the install as {who} died"
    if status != "ok":
        raise InstallError(value)
    return value
