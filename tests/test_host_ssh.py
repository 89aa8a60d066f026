"""tagwarden behind OpenSSH's sshd: bare repositories served to a service account with
a key, the hooks running as that account with a $HOME it cannot read.

Started here: an sshd on 127.0.0.1 at a free port, its own host key and config in a
scratch directory, and an authorized_keys holding a key made for the test. The client
pushes with GIT_SSH_COMMAND; the audit must name the ssh login (docs/hosts/ssh.md)."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.register_assert_rewrite("hosts")
from hosts import (LOOPBACK, SSH_USER, Client, HostRepo, Scenario,  # noqa: E402
                   base_env, chown_tree, keygen, need, run, service_user, ssh_command, sshd)

pytest_plugins = ("hosts",)  # session fixtures shared with the other host tests

IDENTITY = (SSH_USER, "ssh:LOGNAME", LOOPBACK, "ssh")


@dataclass
class SshHost:
    port: int
    key: Path
    repos: Path
    home: Path      # the $HOME the hooks see: root's, mode 0700
    user: object

    @property
    def env(self) -> dict:
        return {"GIT_SSH_COMMAND": ssh_command(self.key, self.port)}


@pytest.fixture(scope="module")
def ssh_host(hosts_root):
    need("ssh", package="openssh-client")
    need("sshd", package="openssh-server")
    user = service_user(SSH_USER)
    dir = Path(tempfile.mkdtemp(prefix="ssh-", dir=hosts_root))
    dir.chmod(0o755)
    env = base_env(hosts_root / "root-home")
    key = keygen(dir / "pusher_ed25519", "pusher@tagwarden-tests", env)
    authorized = dir / "authorized_keys"
    authorized.write_text(Path(f"{key}.pub").read_text())
    authorized.chmod(0o644)
    home = dir / "unreadable-home"
    home.mkdir(mode=0o700)  # root's: the service user can neither list nor read it
    repos = dir / "repos"
    repos.mkdir()
    chown_tree(repos, user)
    # SetEnv overrides the $HOME sshd takes from passwd (/nonexistent, which sshd
    # cannot chdir to: it says so on stderr, not as remote: lines, and carries on)
    with sshd(dir / "sshd", SSH_USER, authorized, env, extra=f"SetEnv HOME={home}\n") as port:
        yield SshHost(port, key, repos, home, user)


@pytest.fixture
def scenario(ssh_host, hook_python, tmp_path, request, trust_service_repos) -> Scenario:
    name = request.node.name.replace("[", "-").rstrip("]") + ".git"
    repo = HostRepo.create(ssh_host.repos / name, hook_python, owner=ssh_host.user)
    twin = HostRepo.create(tmp_path / "twin.git", hook_python)
    client = Client(repo, twin, tmp_path / "work", f"{SSH_USER}@{LOOPBACK}:{repo.path}",
                    ssh_host.env)
    return Scenario(client, IDENTITY)


def test_traditional_flow_over_ssh(scenario):
    scenario.traditional()


def test_rejection_over_ssh_shows_the_same_remote_lines_as_file(scenario):
    host, _ = scenario.rejection()
    assert any(line.startswith("    rule promotion-order: production takes only what "
                               "staging held") for line in host.remote), host.out


def test_atomic_push_over_ssh_lands_nothing(scenario):
    scenario.atomic()


def test_hooks_run_as_the_login_with_an_unreadable_home(scenario, ssh_host):
    """What the tests above rely on: the hooks are the service user's processes, and
    that user cannot read the $HOME it is given."""
    scenario.start()
    out = run(["ssh", *ssh_host.env["GIT_SSH_COMMAND"].split()[1:],
               f"{SSH_USER}@{LOOPBACK}",
               'id -un; echo "$HOME"; ls "$HOME" >/dev/null 2>&1 || echo unreadable'],
              env={**os.environ, **ssh_host.env}).stdout.split()
    assert out == [SSH_USER, str(ssh_host.home), "unreadable"], out
    state = scenario.server.path / "tagwarden"
    assert state.stat().st_uid == ssh_host.user.pw_uid
    assert (state / "audit.jsonl").stat().st_uid == ssh_host.user.pw_uid
