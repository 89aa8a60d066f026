"""Who pushes, from where, how: read from named variables the server sets, never from the
tag's tagger line and never by dumping the environment (it can hold secrets, such as
HTTP_AUTHORIZATION behind nginx)."""
from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from typing import Mapping, Optional

from .refname import printable

# In this order; the first one set wins and is recorded as pusher_source.
IDENTITY_VARIABLES = ("GL_USER", "GL_USERNAME", "GL_ID", "GITEA_PUSHER_NAME",
                      "GITHUB_USER_LOGIN", "REMOTE_USER")


@dataclass(frozen=True)
class PushInfo:
    repo: str
    pusher: str
    pusher_source: str
    remote_addr: Optional[str]
    protocol: str
    push_options: tuple[str, ...]


def read(repo: str, env: Mapping[str, str] = os.environ) -> PushInfo:
    pusher, source = _identity(env)
    ssh = env.get("SSH_CONNECTION", "").split()
    if ssh:
        remote_addr, protocol = ssh[0], "ssh"
    elif env.get("REMOTE_ADDR") or env.get("GATEWAY_INTERFACE"):
        remote_addr, protocol = env.get("REMOTE_ADDR"), "http"
    else:
        remote_addr, protocol = None, "local"
    return PushInfo(repo, printable(pusher), source, remote_addr, protocol, _push_options(env))


def _identity(env: Mapping[str, str]) -> tuple[str, str]:
    for name in IDENTITY_VARIABLES:
        if env.get(name):
            return env[name], name
    if env.get("SSH_CONNECTION"):
        for name in ("LOGNAME", "USER"):
            if env.get(name):
                return env[name], f"ssh:{name}"
    try:
        return pwd.getpwuid(os.getuid()).pw_name, "uid"
    except KeyError:
        return str(os.getuid()), "uid"


def _push_options(env: Mapping[str, str]) -> tuple[str, ...]:
    try:
        count = int(env.get("GIT_PUSH_OPTION_COUNT", "0"))
    except ValueError:
        return ()
    return tuple(printable(env.get(f"GIT_PUSH_OPTION_{i}", "")) for i in range(min(count, 100)))
