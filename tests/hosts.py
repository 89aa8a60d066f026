"""Real git hosts for the transport tests: OpenSSH's sshd, nginx + fcgiwrap + git
http-backend, and gitolite3 behind sshd.

Each server listens on 127.0.0.1 at a free high port, with its own throwaway
configuration in a temporary directory, and is stopped by the fixture that started it:
its whole process group is killed at teardown, also when the start-up or a test fails.

The hooks run as a service user, never as root: ``twgit`` (the ssh account, and the user
fcgiwrap runs as) and ``twgl`` (gitolite's account), created with useradd when absent.
That user cannot read an interpreter under root's home (pyenv and friends), so the hooks
exec a world-readable venv made for the session from a system Python, with tagwarden
installed into it non-editable from a copy of this checkout (see ``hook_python``).
The service user's $HOME is foreign (passwd says /nonexistent) and, for ssh and HTTP,
the hooks see a $HOME they cannot read: tagwarden must not need it.

What is checked through every transport (``Scenario``): the traditional flow, a rejection
whose ``remote:`` lines are compared with the same push over file:// to a twin repository
holding the same objects, an atomic push of a good and a bad ref, and the identity the
audit log records (``pusher``, ``pusher_source``, ``remote_addr``, ``protocol``).
"""
from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import pytest

from conftest import ROOT, C, Clone, Push, Server
from tagwarden.install import install

SSH_USER = "twgit"        # the ssh login, and the user fcgiwrap (so the hooks) runs as
GITOLITE_USER = "twgl"    # gitolite's account
FOREIGN_HOME = "/nonexistent"  # what passwd says the service users' home is
LOOPBACK = "127.0.0.1"
# sbin is where Debian puts sshd, nginx, fcgiwrap and useradd; not every PATH has it
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin",
                               "/sbin"])
START_TIMEOUT = 15.0


# ---- preconditions ------------------------------------------------------------------

def need(*names: str, package: str) -> list[str]:
    """Absolute paths of the binaries, or skip the test naming the Debian package."""
    found = []
    for name in names:
        path = shutil.which(name, path=SEARCH_PATH)
        if path is None:
            pytest.skip(f"{name} not installed (Debian package {package})")
        found.append(path)
    return found


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the host tests start servers for a separate service user: run as root")


# ---- processes ------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Daemon:
    """A server process in a process group of its own, its output in a log file."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict,
                 user: Optional[pwd.struct_passwd] = None, cwd: Optional[str] = None):
        self.name, self.argv, self.log, self.stopped = name, argv, log, False
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=env, cwd=cwd or "/", start_new_session=True, **_as(user))

    def failure(self, what: str, *more_logs: Path) -> str:
        text = f"{self.name} {what}\ncommand: {' '.join(self.argv)}\n--- {self.log}:\n" \
               f"{_tail(self.log)}"
        for log in more_logs:
            text += f"\n--- {log}:\n{_tail(log)}"
        return text

    def wait_for_port(self, port: int, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.failure(f"exited with {self.proc.returncode} "
                                                f"before listening on port {port}"))
            try:
                with socket.create_connection((LOOPBACK, port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(self.failure(f"did not accept connections on port {port} "
                                        f"within {timeout:g} s"))

    def wait_for_path(self, path: Path, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(self.failure(f"exited with {self.proc.returncode} "
                                                f"before creating {path}"))
            if time.monotonic() > deadline:
                raise RuntimeError(self.failure(f"did not create {path} in {timeout:g} s"))
            time.sleep(0.05)

    def stop(self) -> None:
        """Kill the process group we started (the server and any worker it forked)."""
        if self.stopped:
            return
        self.stopped = True
        if self.proc.poll() is None:
            _killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        _killpg(self.proc.pid, signal.SIGKILL)  # workers left behind by the leader
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@contextmanager
def daemons() -> Iterator[list[Daemon]]:
    """Collects the daemons a fixture starts; stops them all, whatever happens."""
    started: list[Daemon] = []
    try:
        yield started
    finally:
        for d in reversed(started):
            d.stop()


def _as(user: Optional[pwd.struct_passwd]) -> dict:
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def run(argv: list, *, env: dict, user: Optional[pwd.struct_passwd] = None, cwd=None,
        input: Optional[str] = None, timeout: float = 60, check: bool = True
        ) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in argv], env=env, cwd=str(cwd or "/"), input=input,
                         capture_output=True, text=True, timeout=timeout,
                         stdin=None if input is not None else subprocess.DEVNULL, **_as(user))
    if check and out.returncode != 0:
        who = f" (as {user.pw_name})" if user else ""
        raise RuntimeError(f"{' '.join(map(str, argv))}{who} exited {out.returncode}:\n"
                           f"{out.stdout}{out.stderr}")
    return out


def chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    os.lchown(path, user.pw_uid, user.pw_gid)
    for top, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(top, name), user.pw_uid, user.pw_gid)


def settle_under(root: Path, timeout: float = 20.0) -> None:
    """Wait for background post-receive hooks working in any repository under root."""
    prefix = str(root) + os.sep
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = False
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                if (b"tagwarden.hook" in cmd or b"post-receive" in cmd) and \
                        os.readlink(f"/proc/{pid}/cwd").startswith(prefix):
                    busy = True
                    break
            except OSError:
                continue
        if not busy:
            return
        time.sleep(0.05)


# ---- users ------------------------------------------------------------------------

def service_user(name: str) -> pwd.struct_passwd:
    """A system account for the hooks, created when absent: no home directory (passwd
    says /nonexistent), shell /bin/sh, password field '*' (not '!': sshd without PAM
    refuses accounts whose password is locked, even for key logins)."""
    need_root()
    (useradd,) = need("useradd", package="passwd")
    for _ in range(20):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
        out = subprocess.run([useradd, "--system", "--user-group", "--no-create-home",
                              "--home-dir", FOREIGN_HOME, "--shell", "/bin/sh",
                              "--password", "*", "--comment", "tagwarden host tests", name],
                             capture_output=True, text=True)
        if out.returncode not in (0, 9):  # 9: made by a concurrent worker meanwhile
            if "lock" not in out.stderr:
                raise RuntimeError(f"useradd {name} failed: {out.stderr}")
            time.sleep(0.2)  # /etc/passwd locked by another useradd: try again
    return pwd.getpwnam(name)


# ---- the session: a scratch root and an interpreter the service users can run -------

def base_env(home: Path) -> dict:
    """A predictable environment for the commands the fixtures run."""
    return {"PATH": SEARCH_PATH, "HOME": str(home), "LANG": "C.UTF-8",
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}


GITCONFIG = ("[user]\n\tname = Dev Eloper\n\temail = dev@example.com\n"
             "[init]\n\tdefaultBranch = main\n[advice]\n\tnestedTag = false\n"
             "\tdetachedHead = false\n[protocol \"file\"]\n\tallow = always\n"
             # repositories owned by the service users, read by root here
             "[safe]\n\tdirectory = *\n")


@contextmanager
def scratch_root(prefix: str = "tagwarden-hosts-") -> Iterator[Path]:
    """A world-traversable scratch directory for everything the servers use (pytest's
    own tmp directories are 0700 root's: the service users could not enter them), with
    root's git config in ``root-home``; removed on exit, once background hooks are done.
    (Also used outside pytest, by bench/hosts.py.)"""
    need_root()
    root = Path(tempfile.mkdtemp(prefix=prefix)).resolve()
    root.chmod(0o755)
    home = root / "root-home"
    home.mkdir()
    (home / ".gitconfig").write_text(GITCONFIG)
    try:
        yield root
    finally:
        settle_under(root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def hosts_root() -> Iterator[Path]:
    with scratch_root() as root:
        yield root


def _runs_as(python: str, user: pwd.struct_passwd, code: str) -> bool:
    try:
        out = subprocess.run([python, "-I", "-c", code], capture_output=True, cwd="/",
                             env={"PATH": SEARCH_PATH, "HOME": FOREIGN_HOME}, timeout=60,
                             **_as(user))
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


@pytest.fixture(scope="session")
def hook_python(hosts_root) -> str:
    return make_hook_python(hosts_root)


def make_hook_python(hosts_root: Path) -> str:
    """The interpreter the hook shims exec, runnable by the service users.

    The tests' own interpreter if those users can run it and import tagwarden from this
    checkout with it; otherwise a venv in the scratch directory, made from the first
    system Python they can run (Debian's python3 with python3-venv), with a copy of this
    checkout installed into it non-editable (installing from the checkout itself would
    build in it: build/, *.egg-info)."""
    user = service_user(SSH_USER)
    service_user(GITOLITE_USER)
    here = str(ROOT / "tagwarden" / "__init__.py")
    probe = ("import tagwarden, pygit2, yaml, structlog, os, sys; "
             f"sys.exit(os.path.realpath(tagwarden.__file__) != {here!r})")
    if _runs_as(sys.executable, user, probe):
        return sys.executable
    candidates = [getattr(sys, "_base_executable", ""),
                  shutil.which("python3", path=SEARCH_PATH),
                  shutil.which("python3", path=os.defpath)]  # past pyenv's shims
    base = next((c for c in candidates if c and
                 _runs_as(c, user, "import sys, venv; sys.exit(sys.version_info < (3, 9))")),
                None)
    if base is None:
        pytest.skip(f"no Python >= 3.9 that user {SSH_USER} can run (install python3 and "
                    "python3-venv)")
    venv = hosts_root / "venv"
    env = base_env(hosts_root / "root-home")
    src = hosts_root / "src"
    for name in ("tagwarden", "policy", "hooks"):
        shutil.copytree(ROOT / name, src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "setup.cfg", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    run([base, "-m", "venv", "--without-pip", venv], env=env)
    python = str(venv / "bin" / "python")
    pip = [sys.executable, "-m", "pip", "--python", python]  # pip >= 22.3 drives any venv
    if run(pip + ["--version"], env=env, check=False).returncode != 0:
        shutil.rmtree(venv)
        run([base, "-m", "venv", venv], env=env, timeout=180)
        pip = [python, "-m", "pip"]
    run(pip + ["install", "-q", "--disable-pip-version-check", "--no-input", src], env=env,
        timeout=300)
    if not _runs_as(python, user, "import tagwarden.hook, pygit2, yaml, structlog"):
        raise RuntimeError(f"{python} cannot import tagwarden as {SSH_USER}")
    return python


# ---- repositories and clients -----------------------------------------------------

class HostRepo(Server):
    """A bare repository a server serves; read by root here, written by the hooks as the
    service user. (conftest's Server gives refs(), audit(), settle().)"""

    def __init__(self, path: Path):  # the repository exists: no git init here
        self.path = path

    @classmethod
    def create(cls, path: Path, python: str, owner: Optional[pwd.struct_passwd] = None,
               mode: str = "pre-receive") -> "HostRepo":
        """git init --bare, tagwarden install with the hook interpreter, then hand the
        repository to its owner (the hooks must create tagwarden/ and write refs)."""
        Server(path)
        install(str(path), mode, python=python)
        if owner is not None:
            chown_tree(path, owner)
        return cls(path.resolve())


class Client(Clone):
    """A working repository with two remotes holding the same objects: ``origin``, the
    host under test, and ``twin``, a file:// repository with the hooks installed."""

    def __init__(self, server: HostRepo, twin: HostRepo, path: Path, url: str,
                 env: Optional[dict] = None):
        self.server, self.twin, self.path, self.counter = server, twin, path, 0
        self.env = dict(env or {}, GIT_TERMINAL_PROMPT="0")
        path.mkdir()
        self.git("init", "-q")
        self.git("remote", "add", "origin", url)
        self.git("remote", "add", "twin", str(twin.path))

    def push(self, *args, env=None, remote="origin") -> Push:
        full_env = {**os.environ, **self.env, **(env or {})}
        out = subprocess.run(["git", "push", "--porcelain", remote, *args], cwd=self.path,
                             capture_output=True, text=True, env=full_env,
                             stdin=subprocess.DEVNULL, timeout=120)
        return Push(out.returncode, out.stdout + out.stderr)

    def both(self, *args) -> tuple[Push, Push]:
        """The same push to the host and to the twin."""
        return self.push(*args), self.push(*args, remote="twin")


def identity_of(records: list[dict]) -> set[tuple]:
    return {(r["pusher"], r["pusher_source"], r["remote_addr"], r["protocol"])
            for r in records}


class Scenario:
    """The checks every transport runs; ``identity`` is what the audit must record for
    the host's pushes: (pusher, pusher_source, remote_addr, protocol)."""

    def __init__(self, client: Client, identity: tuple):
        self.client, self.identity = client, identity
        self.server, self.twin = client.server, client.twin

    def ok(self, pushes: tuple[Push, Push], *tags: str) -> None:
        host, twin = pushes
        assert host.ok, f"the push over the host was refused:\n{host.out}"
        assert twin.ok, f"the push over file:// was refused:\n{twin.out}"
        assert host.remote == twin.remote, _diff(host, twin)
        for tag in tags:
            assert self.server.ref(tag) == self.client.rev(tag), f"server lacks {tag}"

    def start(self) -> None:
        """An initial branch, then v1.0.0 released, in staging, in production."""
        cl = self.client
        cl.commit("initial")
        for push in cl.both("HEAD:refs/heads/main"):
            assert push.ok, push.out
        cl.release("v1.0.0")
        self.ok(cl.both(f"{C}/v1.0.0"), f"{C}/v1.0.0")
        cl.set_env("staging", "v1.0.0")
        self.ok(cl.both("--force", f"{C}/staging"), f"{C}/staging")
        cl.set_env("production", "v1.0.0")
        self.ok(cl.both("--force", f"{C}/production"), f"{C}/production")

    def release_next(self, version="v1.1.0") -> None:
        self.client.commit()
        self.client.release(version)
        self.ok(self.client.both(f"{C}/{version}"), f"{C}/{version}")

    def check_identity(self) -> list[dict]:
        """Every record of the host's pushes carries the authenticated user."""
        decisions = self.server.audit("decision")
        assert decisions, "no decision records in the host's audit log"
        applied = self.wait_applied(decisions)
        assert identity_of(decisions) == {self.identity}, identity_of(decisions)
        assert applied, "post-receive recorded nothing (it runs as the service user)"
        assert identity_of(applied) == {self.identity}, identity_of(applied)
        decided_ids = {r["push_id"] for r in decisions}
        assert {r["push_id"] for r in applied} <= decided_ids, \
            "applied records under a push id of their own: post-receive lost the push"
        return decisions

    def wait_applied(self, decisions: list[dict], timeout: float = 20.0) -> list[dict]:
        """post-receive records in the background, as the service user: wait until
        every accepted decision has its applied record (or the time is up)."""
        wanted = {(r["push_id"], r["ref"]) for r in decisions if r["decision"] == "accepted"}
        deadline = time.monotonic() + timeout
        while True:
            applied = self.server.audit("applied")
            if wanted <= {(r["push_id"], r["ref"]) for r in applied} or \
                    time.monotonic() > deadline:
                return applied
            time.sleep(0.1)

    # ---- the three flows --------------------------------------------------------

    def traditional(self) -> None:
        self.start()
        self.release_next()
        cl = self.client
        cl.set_env("staging", "v1.1.0")
        self.ok(cl.both("--force", f"{C}/staging"), f"{C}/staging")
        cl.set_env("production", "v1.1.0")
        host, twin = cl.both("--force", f"{C}/production")
        self.ok((host, twin), f"{C}/production")
        assert any(f"accepted: {C}/production -> v1.1.0" in line for line in host.remote), \
            host.out
        assert self.server.commit_of(f"{C}/production") == \
            self.server.commit_of(f"{C}/v1.1.0")
        decisions = self.check_identity()
        assert [r["decision"] for r in decisions] == ["accepted"] * len(decisions)
        assert len(self.wait_applied(decisions)) == len(decisions) == 6
        assert self.server.ref("refs/tagwarden/ledger"), "post-receive wrote no ledger"

    def rejection(self) -> tuple[Push, Push]:
        """production skipping staging: refused, with the same remote: lines as over
        file://."""
        self.start()
        self.release_next()
        before = self.server.refs()
        self.client.set_env("production", "v1.1.0")
        host, twin = self.client.both("--force", f"{C}/production")
        assert not host.ok and not twin.ok, host.out + twin.out
        assert self.server.refs() == before, "a rejected push changed the host's refs"
        text = "\n".join(host.remote)
        assert "rule promotion-order:" in text and "fix:" in text, host.out
        assert host.remote == twin.remote, _diff(host, twin)
        last = self.check_identity()[-1]
        assert (last["ref"], last["decision"], last["rule"]) == \
            (f"refs/tags/{C}/production", "rejected", "promotion-order")
        return host, twin

    def atomic(self) -> tuple[Push, Push]:
        """git push --atomic of a good ref (staging -> v1.1.0) and a bad one (an unknown
        slot): nothing lands."""
        self.start()
        self.release_next()
        cl = self.client
        cl.set_env("staging", "v1.1.0")
        cl.tag(f"{C}/prod", f"{C}/v1.1.0", "Set extraction to prod")
        before = self.server.refs()
        host, twin = cl.both("--atomic", "--force", f"{C}/staging", f"{C}/prod")
        assert not host.ok and not twin.ok, host.out + twin.out
        assert self.server.refs() == before, "an atomic push that failed changed refs"
        assert self.server.ref(f"{C}/prod") is None
        assert "rule slot-unknown:" in "\n".join(host.remote), host.out
        assert "not applied either" in host.out, host.out
        assert host.remote == twin.remote, _diff(host, twin)
        decisions = self.check_identity()
        last = {r["ref"]: r for r in decisions[-2:]}
        assert (last[f"refs/tags/{C}/staging"]["decision"],
                last[f"refs/tags/{C}/staging"]["rule"]) == ("rejected", "atomic-push")
        assert last[f"refs/tags/{C}/prod"]["rule"] == "slot-unknown"
        return host, twin


def _diff(host: Push, twin: Push) -> str:
    return ("remote: lines differ between the host and file://\n--- host:\n" +
            "\n".join(host.remote) + "\n--- file://:\n" + "\n".join(twin.remote) +
            "\n--- host output:\n" + host.out)


@pytest.fixture
def trust_service_repos(git_env):
    """Root reads repositories the service users own: without safe.directory git calls
    them dubious and refuses (the function-level HOME comes from conftest's git_env)."""
    with open(Path(os.environ["HOME"]) / ".gitconfig", "a", encoding="utf-8") as f:
        f.write("[safe]\n\tdirectory = *\n")


# ---- OpenSSH --------------------------------------------------------------------------

def keygen(path: Path, comment: str, env: dict) -> Path:
    (ssh_keygen,) = need("ssh-keygen", package="openssh-client")
    run([ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path], env=env)
    return path


def ssh_command(key: Path, port: int) -> str:
    return (f"ssh -i {key} -p {port} -o StrictHostKeyChecking=no "
            "-o UserKnownHostsFile=/dev/null -F /dev/null -o BatchMode=yes "
            "-o IdentitiesOnly=yes -o LogLevel=ERROR")


SSHD_CONFIG = """\
# throwaway sshd for the tagwarden host tests
Port {port}
ListenAddress 127.0.0.1
HostKey {dir}/ssh_host_ed25519_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {authorized_keys}
AllowUsers {user}
PermitRootLogin no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# the key files live under /tmp (mode 1777), which StrictModes refuses
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowTcpForwarding no
LogLevel VERBOSE
{extra}"""


@contextmanager
def sshd(dir: Path, user: str, authorized_keys: Path, env: dict,
         extra: str = "") -> Iterator[int]:
    """An sshd on a free port for one user; yields the port."""
    (sshd_bin,) = need("sshd", package="openssh-server")
    dir.mkdir(parents=True, exist_ok=True)
    keygen(dir / "ssh_host_ed25519_key", "host", env)
    with daemons() as started:
        for attempt in range(3):
            port = free_port()
            config = dir / "sshd_config"
            config.write_text(SSHD_CONFIG.format(port=port, dir=dir, user=user, extra=extra,
                                                 authorized_keys=authorized_keys))
            check = run([sshd_bin, "-t", "-f", config], env=env, check=False)
            missing = re.search(r"Missing privilege separation directory: (\S+)",
                                check.stdout + check.stderr)
            if missing:  # Debian's /run/sshd, made by the service's start-up normally
                os.makedirs(missing.group(1), mode=0o755, exist_ok=True)
                check = run([sshd_bin, "-t", "-f", config], env=env, check=False)
            if check.returncode != 0:
                raise RuntimeError(f"sshd -t -f {config}:\n{check.stdout}{check.stderr}")
            # sshd insists on an absolute path to itself (it re-executes for each login)
            daemon = Daemon("sshd", [sshd_bin, "-D", "-e", "-f", str(config)],
                            dir / f"sshd-{attempt}.log", env)
            started.append(daemon)
            try:
                daemon.wait_for_port(port)
                break
            except RuntimeError:
                if attempt == 2 or daemon.proc.poll() is None:
                    raise
                daemon.stop()  # the port was taken meanwhile: another one
        yield port


# ---- nginx + fcgiwrap + git http-backend --------------------------------------------

NGINX_CONF = """\
# throwaway nginx for the tagwarden host tests
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
{user_line}
events {{ worker_connections 64; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/tmp/body;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    proxy_temp_path {dir}/tmp/proxy;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;               # packs of any size
        location ~ ^/git(/.*) {{
            auth_basic "git";
            auth_basic_user_file {dir}/htpasswd;
            fastcgi_pass unix:{dir}/run/fcgiwrap.sock;
            fastcgi_param SCRIPT_FILENAME     {http_backend};
            fastcgi_param GIT_PROJECT_ROOT    {repos};
            fastcgi_param GIT_HTTP_EXPORT_ALL "";
            fastcgi_param PATH_INFO           $1;
            fastcgi_param REMOTE_USER         $remote_user;
            fastcgi_param REMOTE_ADDR         $remote_addr;
            fastcgi_param QUERY_STRING        $query_string;
            fastcgi_param REQUEST_METHOD      $request_method;
            fastcgi_param CONTENT_TYPE        $content_type;
            fastcgi_param CONTENT_LENGTH      $content_length;
            fastcgi_param SERVER_PROTOCOL     $server_protocol;
            fastcgi_param GATEWAY_INTERFACE   CGI/1.1;
            # every request header reaches the hooks as HTTP_*: not the password
            fastcgi_param HTTP_AUTHORIZATION  "";
        }}
    }}
}}
"""


def htpasswd_line(user: str, password: str) -> str:
    """An {SSHA} entry (salted SHA-1, RFC 2307 syntax), which nginx reads; htpasswd
    (apache2-utils) or openssl passwd -apr1 make lines nginx reads too."""
    import base64
    import hashlib

    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return f"{user}:{{SSHA}}{base64.b64encode(digest + salt).decode()}\n"


@contextmanager
def nginx_git(dir: Path, repos: Path, user: pwd.struct_passwd, users: dict[str, str],
              env: dict, hook_home: Path) -> Iterator[int]:
    """nginx (master as root, workers as ``user``) in front of fcgiwrap (as ``user``)
    running git http-backend for the repositories under ``repos``; yields the port."""
    nginx_bin, fcgiwrap_bin = need("nginx", package="nginx")[0], \
        need("fcgiwrap", package="fcgiwrap")[0]
    exec_path = run(["git", "--exec-path"], env=env).stdout.strip()
    http_backend = os.path.join(exec_path, "git-http-backend")
    if not os.access(http_backend, os.X_OK):
        pytest.skip(f"git http-backend not found in {exec_path}")
    dir.mkdir(parents=True, exist_ok=True)
    (dir / "tmp").mkdir(exist_ok=True)
    (dir / "htpasswd").write_text("".join(htpasswd_line(u, p) for u, p in users.items()))
    (dir / "htpasswd").chmod(0o644)
    with daemons() as started:
        # fcgiwrap hands its own environment to every CGI, so to git and the hooks:
        # start it with a clean one. Its $HOME is one the user cannot read, as when an
        # admin starts it from a root shell with sudo -u.
        fcgi_env = {"PATH": os.defpath, "HOME": str(hook_home)}
        (dir / "run").mkdir(exist_ok=True)  # the socket's directory: fcgiwrap's to write
        chown_tree(dir / "run", user)
        sock = dir / "run" / "fcgiwrap.sock"
        fcgi = Daemon("fcgiwrap", [fcgiwrap_bin, "-c", "2", "-s", f"unix:{sock}"],
                      dir / "fcgiwrap.log", fcgi_env, user=user)
        started.append(fcgi)
        fcgi.wait_for_path(sock)
        for attempt in range(3):
            port = free_port()
            conf = dir / "nginx.conf"
            conf.write_text(NGINX_CONF.format(
                dir=dir, port=port, repos=repos, http_backend=http_backend,
                user_line=f"user {user.pw_name} {pwd.getpwuid(user.pw_uid).pw_name};"
                if os.geteuid() == 0 else ""))
            argv = [nginx_bin, "-p", str(dir), "-c", str(conf), "-e", str(dir / "error.log")]
            test = run(argv + ["-t"], env=env, check=False)
            if test.returncode != 0:
                raise RuntimeError(f"nginx -t:\n{test.stdout}{test.stderr}")
            daemon = Daemon("nginx", argv + ["-g", "daemon off;"], dir / "nginx.log", env)
            started.append(daemon)
            try:
                daemon.wait_for_port(port)
                break
            except RuntimeError as exc:
                if attempt == 2 or daemon.proc.poll() is None:
                    raise RuntimeError(f"{exc}\n--- error.log:\n{_tail(dir / 'error.log')}")
                daemon.stop()
        yield port
