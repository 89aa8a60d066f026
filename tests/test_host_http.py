"""tagwarden behind nginx + fcgiwrap + git http-backend with HTTP basic auth.

Started here: fcgiwrap as the service user on a unix socket, and nginx (master as root,
workers as the service user) on 127.0.0.1 at a free port, each with its own config and
logs in a scratch directory. http-backend enables receive-pack because nginx sets
REMOTE_USER from the authenticated user; the audit must name that user, not the unix
account the hooks run as (docs/hosts/http.md)."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.register_assert_rewrite("hosts")
from conftest import C  # noqa: E402
from hosts import (LOOPBACK, SSH_USER, Client, HostRepo, Scenario, base_env,  # noqa: E402
                   chown_tree, need, nginx_git, service_user)

pytest_plugins = ("hosts",)  # session fixtures shared with the other host tests

PUSHER, PASSWORD = "alice", "correct horse battery staple"
IDENTITY = (PUSHER, "REMOTE_USER", LOOPBACK, "http")

# A hook the repository had before tagwarden (kept and chained by the install): writes
# the environment git hands the hooks, so the test can see what nginx passed on.
ENV_DUMP = """#!/bin/sh
env > "$(dirname "$0")/../hook-env.txt"
cat >/dev/null
"""


@dataclass
class HttpHost:
    port: int
    repos: Path
    home: Path    # the $HOME fcgiwrap (so the hooks) got: root's, mode 0700
    user: object

    def url(self, repo: Path, user=PUSHER, password=PASSWORD) -> str:
        auth = f"{user}:{password.replace(' ', '%20')}@" if user else ""
        return f"http://{auth}{LOOPBACK}:{self.port}/git/{repo.name}"


@pytest.fixture(scope="module")
def http_host(hosts_root):
    need("nginx", package="nginx")
    need("fcgiwrap", package="fcgiwrap")
    user = service_user(SSH_USER)
    dir = Path(tempfile.mkdtemp(prefix="http-", dir=hosts_root))
    dir.chmod(0o755)
    home = dir / "unreadable-home"
    home.mkdir(mode=0o700)
    repos = dir / "repos"
    repos.mkdir()
    chown_tree(repos, user)
    env = base_env(hosts_root / "root-home")
    with nginx_git(dir / "nginx", repos, user, {PUSHER: PASSWORD}, env, home) as port:
        yield HttpHost(port, repos, home, user)


def _repo(http_host, hook_python, request, before=None) -> HostRepo:
    name = request.node.name.replace("[", "-").rstrip("]") + ".git"
    path = http_host.repos / name
    if before:
        from conftest import Server

        Server(path)
        (path / "hooks" / "pre-receive").write_text(before)
        (path / "hooks" / "pre-receive").chmod(0o755)
    return HostRepo.create(path, hook_python, owner=http_host.user)


@pytest.fixture
def scenario(http_host, hook_python, tmp_path, request, trust_service_repos) -> Scenario:
    repo = _repo(http_host, hook_python, request)
    twin = HostRepo.create(tmp_path / "twin.git", hook_python)
    client = Client(repo, twin, tmp_path / "work", http_host.url(repo.path))
    return Scenario(client, IDENTITY)


def test_traditional_flow_over_http(scenario):
    scenario.traditional()


def test_rejection_over_http_shows_the_same_remote_lines_as_file(scenario):
    host, _ = scenario.rejection()
    assert any(line.startswith("    rule promotion-order: production takes only what "
                               "staging held") for line in host.remote), host.out


def test_atomic_push_over_http_lands_nothing(scenario):
    scenario.atomic()


def test_the_password_reaches_neither_the_hooks_nor_the_audit(http_host, hook_python,
                                                              tmp_path, request,
                                                              trust_service_repos):
    repo = _repo(http_host, hook_python, request, before=ENV_DUMP)
    twin = HostRepo.create(tmp_path / "twin.git", hook_python)
    client = Client(repo, twin, tmp_path / "work", http_host.url(repo.path))
    scenario = Scenario(client, IDENTITY)
    scenario.start()  # a branch push runs the kept hook directly; tag pushes after tagwarden
    env = dict(line.partition("=")[::2] for line in
               (repo.path / "hook-env.txt").read_text().splitlines() if "=" in line)
    assert env["REMOTE_USER"] == PUSHER and env["REMOTE_ADDR"] == LOOPBACK
    assert env.get("HTTP_AUTHORIZATION", "") == "", "nginx passed the credentials on"
    assert env["HOME"] == str(http_host.home)
    assert (repo.path / "hook-env.txt").stat().st_uid == http_host.user.pw_uid
    text = repo.audit_path.read_text()
    assert PASSWORD not in text and "Basic " not in text
    scenario.check_identity()


def test_pushing_without_credentials_is_refused_before_any_hook(http_host, hook_python,
                                                                 tmp_path, request,
                                                                 trust_service_repos):
    repo = _repo(http_host, hook_python, request)
    twin = HostRepo.create(tmp_path / "twin.git", hook_python)
    client = Client(repo, twin, tmp_path / "work", http_host.url(repo.path, user=None))
    client.commit()
    client.release("v1.0.0")
    before = repo.refs()
    push = client.push("HEAD:refs/heads/main", f"{C}/v1.0.0")
    assert not push.ok
    assert "could not read Username" in push.out or "401" in push.out, push.out
    assert repo.refs() == before
    assert repo.audit() == []
