"""tagwarden under gitolite3 (Debian's), as gitolite's repo-specific pre-receive and
post-receive hooks. gitolite owns each repository's ``update`` hook, so tagwarden runs in
pre-receive mode, through gitolite's multi-hook driver.

Started here: ``gitolite setup`` for an admin key in a scratch $HOME of the gitolite
account, the rc edited (LOCAL_CODE, repo-specific-hooks, GIT_CONFIG_KEYS), tagwarden's
shims placed in $LOCAL_CODE/hooks/repo-specific/, and an sshd on 127.0.0.1 at a free
port whose authorized_keys is the one gitolite writes. The repositories, their hooks and
their tagwarden config come from a push of gitolite-admin, as an admin would do it. The
audit must name the gitolite user (GL_USER), not the unix account (docs/hosts/gitolite.md).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.register_assert_rewrite("hosts")
from conftest import C, ROOT, git  # noqa: E402
from hosts import (GITOLITE_USER, LOOPBACK, Client, HostRepo, Scenario,  # noqa: E402
                   base_env, chown_tree, keygen, need, run, service_user, ssh_command, sshd)
from tagwarden.install import shim  # noqa: E402

pytest_plugins = ("hosts",)  # session fixtures shared with the other host tests

IDENTITY = ("alice", "GL_USER", LOOPBACK, "ssh")
REPOS = ("tw-traditional", "tw-rejection", "tw-atomic", "tw-denied", "tw-perms")

GITOLITE_CONF = """\
repo gitolite-admin
    RW+     =   admin

repo {repos}
    RW+     =   alice
    option  hook.pre-receive    =   tagwarden-pre-receive
    option  hook.post-receive   =   tagwarden-post-receive
    config  receive.advertisePushOptions    =   true
    config  tagwarden.policy                =   {policy}

# bob may release versions of the component, not deploy it
repo tw-denied
    RW+ refs/tags/{component}/v     =   bob

# gitolite lets bob write everything; tagwarden's permissions decide who deploys
repo tw-perms
    RW+     =   bob
    config  tagwarden.policyOverride        =   {perms}
"""
# alice releases and deploys; only alice may break glass; bob may do neither
PERMS = """\
groups: {release: [alice], sre: [alice], dev: [bob]}
permissions:
  - {action: create-version, allow: release}
  - {action: [move-slot, delete-slot], allow: sre}
overrides: {allow: sre}
"""


def gitolite_rc(text: str) -> str:
    """Debian's default .gitolite.rc with LOCAL_CODE, repo-specific hooks and the config
    keys tagwarden reads enabled."""
    edits = [
        (r"#\s*(LOCAL_CODE\s*=>\s*\"\$ENV\{HOME\}/local\",)", r"\1"),
        (r"#\s*('repo-specific-hooks',)", r"\1"),
        (r"GIT_CONFIG_KEYS(\s*)=>\s*'',",
         r"GIT_CONFIG_KEYS\1=>  'tagwarden\\..* receive\\.advertisePushOptions',"),
    ]
    for pattern, repl in edits:
        text, count = re.subn(pattern, repl, text, count=1)
        if count != 1:
            raise RuntimeError(f"gitolite rc: no line matches {pattern!r}; this gitolite's "
                               "default rc differs from Debian's 3.6")
    return text


@dataclass
class GitoliteHost:
    port: int
    keys: dict
    home: Path
    policy: Path
    admin_push: str

    def repo(self, name: str) -> HostRepo:
        return HostRepo((self.home / "repositories" / f"{name}.git").resolve())

    def env(self, user: str) -> dict:
        return {"GIT_SSH_COMMAND": ssh_command(self.keys[user], self.port)}


@pytest.fixture(scope="module")
def gitolite_host(hosts_root, request):
    (gitolite,) = need("gitolite", package="gitolite3")
    need("ssh", package="openssh-client")
    need("sshd", package="openssh-server")
    hook_python = request.getfixturevalue("hook_python")  # after the cheap checks
    user = service_user(GITOLITE_USER)
    dir = Path(tempfile.mkdtemp(prefix="gitolite-", dir=hosts_root))
    dir.chmod(0o755)
    env = base_env(hosts_root / "root-home")
    keys = {name: keygen(dir / name, name, env) for name in ("admin", "alice", "bob")}

    # gitolite's $HOME: the rc, the admin repo, the repositories, .ssh/authorized_keys
    home = dir / "home"
    home.mkdir()
    shutil.copy(f"{keys['admin']}.pub", home / "admin.pub")
    chown_tree(home, user)
    # the account's own environment, as its login would have it (not root's PATH)
    path = os.pathsep.join([os.path.dirname(shutil.which("git")), os.defpath])
    gl_env = {"PATH": path, "HOME": str(home), "USER": user.pw_name,
              "LOGNAME": user.pw_name, "LANG": "C.UTF-8"}
    run([gitolite, "setup", "-pk", home / "admin.pub"], env=gl_env, user=user, cwd=home)
    rc = home / ".gitolite.rc"
    rc.write_text(gitolite_rc(rc.read_text()))

    # the shims, where repo-specific-hooks looks for them (written by the server admin)
    hooks = home / "local" / "hooks" / "repo-specific"
    hooks.mkdir(parents=True)
    for name in ("pre-receive", "post-receive"):
        (hooks / f"tagwarden-{name}").write_text(shim(name, hook_python))
        (hooks / f"tagwarden-{name}").chmod(0o755)
    chown_tree(home / "local", user)
    policy = dir / "policy.yaml"
    shutil.copy(ROOT / "policy" / "default.yaml", policy)
    policy.chmod(0o644)
    perms = dir / "perms.yaml"
    perms.write_text(PERMS)
    perms.chmod(0o644)

    with sshd(dir / "sshd", GITOLITE_USER, home / ".ssh" / "authorized_keys", env,
              extra=f"SetEnv HOME={home}\n") as port:
        # the admin's side: clone gitolite-admin, add users and repositories, push
        admin = dir / "gitolite-admin"
        admin_env = dict(env, GIT_SSH_COMMAND=ssh_command(keys["admin"], port))
        run(["git", "clone", "-q", f"{GITOLITE_USER}@{LOOPBACK}:gitolite-admin", admin],
            env=admin_env)
        for name in ("alice", "bob"):
            shutil.copy(f"{keys[name]}.pub", admin / "keydir" / f"{name}.pub")
        (admin / "conf" / "gitolite.conf").write_text(GITOLITE_CONF.format(
            repos=" ".join(REPOS), policy=policy, component=C, perms=perms))
        run(["git", "add", "-A"], env=admin_env, cwd=admin)
        run(["git", "commit", "-q", "-m", "tagwarden repositories"], env=admin_env, cwd=admin)
        pushed = run(["git", "push", "origin", "HEAD"], env=admin_env, cwd=admin)
        admin_push = pushed.stdout + pushed.stderr
        for name in REPOS:
            hook = home / "repositories" / f"{name}.git" / "hooks" / \
                "pre-receive.h00-tagwarden-pre-receive"
            if not hook.is_symlink():
                raise RuntimeError(f"gitolite did not install tagwarden's hook as {hook}; "
                                   f"the admin push said:\n{admin_push}")
        yield GitoliteHost(port, keys, home, policy, admin_push)


@pytest.fixture
def scenario(gitolite_host, hook_python, tmp_path, request, trust_service_repos) -> Scenario:
    name = request.param  # each test has a repository of its own
    repo = gitolite_host.repo(name)
    twin = HostRepo.create(tmp_path / "twin.git", hook_python)
    git("config", "tagwarden.policy", str(gitolite_host.policy), cwd=twin.path)
    client = Client(repo, twin, tmp_path / "work", f"{GITOLITE_USER}@{LOOPBACK}:{name}",
                    gitolite_host.env("alice"))
    return Scenario(client, IDENTITY)


def test_gitolite_wired_tagwarden_in_as_repo_specific_hooks(gitolite_host):
    hooks = gitolite_host.repo("tw-traditional").path / "hooks"
    local = gitolite_host.home / "local" / "hooks"
    assert (hooks / "pre-receive").resolve() == (local / "multi-hook-driver").resolve()
    assert (hooks / "post-receive").resolve() == (local / "multi-hook-driver").resolve()
    for name in ("pre-receive", "post-receive"):
        assert (hooks / f"{name}.h00-tagwarden-{name}").resolve() == \
            (local / "repo-specific" / f"tagwarden-{name}").resolve()
    assert "tagwarden-managed hook" not in (hooks / "update").read_text()  # gitolite's
    config = (gitolite_host.repo("tw-traditional").path / "config").read_text()
    assert f"policy = {gitolite_host.policy}" in config
    assert "advertisePushOptions = true" in config


@pytest.mark.parametrize("scenario", ["tw-traditional"], indirect=True)
def test_traditional_flow_under_gitolite(scenario):
    scenario.traditional()


@pytest.mark.parametrize("scenario", ["tw-rejection"], indirect=True)
def test_rejection_under_gitolite_shows_the_same_remote_lines_as_file(scenario):
    host, _ = scenario.rejection()
    assert any(line.startswith("    rule promotion-order: production takes only what "
                               "staging held") for line in host.remote), host.out


@pytest.mark.parametrize("scenario", ["tw-atomic"], indirect=True)
def test_atomic_push_under_gitolite_lands_nothing(scenario):
    scenario.atomic()


def bob_deploys_staging(scenario, gitolite_host):
    """v1.0.0 everywhere, v1.1.0 released; bob's push of staging -> v1.1.0, refused.
    (client, the server's refs before, bob's push)"""
    scenario.start()
    scenario.release_next()
    cl = scenario.client
    cl.set_env("staging", "v1.1.0")
    before = scenario.server.refs()
    denied = cl.push("--force", f"{C}/staging", env=gitolite_host.env("bob"))
    assert not denied.ok
    return cl, before, denied


@pytest.mark.parametrize("scenario", ["tw-denied"], indirect=True)
def test_gitolite_decides_access_after_tagwarden(scenario, gitolite_host):
    """gitolite checks write access in its update hook, which git runs after
    pre-receive: tagwarden has already recorded its decision when gitolite refuses a
    ref. The audit then holds an accepted decision and no applied record for it, and the
    component is not left locked."""
    cl, before, denied = bob_deploys_staging(scenario, gitolite_host)
    assert "DENIED" in denied.out, denied.out
    assert scenario.server.refs() == before
    last = scenario.server.audit("decision")[-1]
    assert (last["pusher"], last["ref"], last["decision"]) == \
        ("bob", f"refs/tags/{C}/staging", "accepted")
    assert last["push_id"] not in {r["push_id"] for r in scenario.server.audit("applied")}
    # alice deploys the same right after: no lock-timeout, the ref lands
    host = cl.push("--force", f"{C}/staging")
    assert host.ok, host.out
    assert scenario.server.ref(f"{C}/staging") == cl.rev(f"{C}/staging")


@pytest.mark.parametrize("scenario", ["tw-perms"], indirect=True)
def test_permissions_and_overrides_use_gitolites_identity(scenario, gitolite_host):
    """GL_USER names the pusher; push options reach pre-receive over ssh."""
    cl, before, denied = bob_deploys_staging(scenario, gitolite_host)
    assert "    rule permission: bob (identity from GL_USER, in group dev) may not move " \
           f"staging of {C}; group sre may (permissions[1])" in denied.remote, denied.out
    assert scenario.server.refs() == before

    cl.set_env("production", "v1.1.0")  # staging still holds v1.0.0: out of order
    asked = cl.push("--force", "-o", "tagwarden.override=promotion-order", "-o",
                    "tagwarden.reason=INC-7 over ssh", f"{C}/production",
                    env=gitolite_host.env("bob"))
    assert not asked.ok and "rule override-denied: bob (identity from GL_USER) asked to " \
        "override promotion-order" in asked.out
    done = cl.push("--force", "-o", "tagwarden.override=promotion-order", "-o",
                   "tagwarden.reason=INC-7 over ssh", f"{C}/production")
    assert done.ok, done.out
    assert scenario.server.ref(f"{C}/production") == cl.rev(f"{C}/production")
    last = scenario.server.audit("decision")[-1]
    assert (last["pusher"], last["pusher_source"], last["decision"], last["override"]) == \
        ("alice", "GL_USER", "override", {"asked": ["promotion-order"],
                                          "reason": "INC-7 over ssh",
                                          "passed": ["promotion-order"]})
