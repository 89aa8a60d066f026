"""Fixtures that build real repositories: a bare server with the hooks installed and a
clone that pushes to it with the real git client over file://."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tagwarden.install import install

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_800_000_000  # 2027-01-15T08:00:00Z: the injected clock of history-building tests
HOUR = 3600


def ts(hours: float) -> str:
    """T0 + hours as the ledger and reports write it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + hours * HOUR))

POLICIES = ROOT / "policy"
C = "components/prompts/extraction"  # the component of the scenarios


GITCONFIG = ("[user]\n\tname = Dev Eloper\n\temail = dev@example.com\n"
             "[init]\n\tdefaultBranch = main\n[advice]\n\tnestedTag = false\n"
             "\tdetachedHead = false\n[protocol \"file\"]\n\tallow = always\n")


def isolate_git(home: Path, monkeypatch) -> None:
    """A predictable git: no user or system config, fixed identity, quiet hints."""
    (home / ".gitconfig").write_text(GITCONFIG)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                "GIT_ALTERNATE_OBJECT_DIRECTORIES"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(autouse=True)
def git_env(tmp_path_factory, monkeypatch):
    isolate_git(tmp_path_factory.mktemp("home"), monkeypatch)


@contextmanager
def module_git_env(base: Path):
    """git_env for a module-scoped fixture (git_env itself is per test)."""
    home = base / "home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        isolate_git(home, mp)
        yield


def git(*args, cwd, check=True, input=None, env=None) -> subprocess.CompletedProcess:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, input=input,
                         env=env)
    if check and out.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
    return out


@dataclass
class Push:
    rc: int
    out: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def remote(self) -> list[str]:
        return [line[len("remote: "):].rstrip() for line in self.out.splitlines()
                if line.startswith("remote: ")]


class Server:
    def __init__(self, path: Path):
        self.path = path
        git("init", "-q", "--bare", str(path), cwd=path.parent)

    def install(self, mode="pre-receive", policy=None) -> list[str]:
        if policy and not os.path.isabs(str(policy)):
            policy = POLICIES / policy
        return install(str(self.path), mode, str(policy) if policy else None,
                       python=sys.executable)

    def refs(self) -> dict[str, str]:
        self.settle()  # post-receive writes the ledger ref in the background
        out = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=self.path).stdout
        return dict(line.split(" ") for line in out.splitlines())

    def ref(self, name: str):
        return self.refs().get(name if name.startswith("refs/") else f"refs/tags/{name}")

    def commit_of(self, name: str):
        out = git("rev-parse", "--verify", "-q", f"refs/tags/{name}^{{commit}}",
                  cwd=self.path, check=False)
        return out.stdout.strip() or None

    @property
    def audit_path(self) -> Path:
        return self.path / "tagwarden" / "audit.jsonl"

    def settle(self, timeout=20.0) -> None:
        """Wait for post-receive, which records in the background, to finish here."""
        deadline = time.monotonic() + timeout
        while self._recording() and time.monotonic() < deadline:
            time.sleep(0.02)

    def _recording(self) -> bool:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                # the shim's background subshell, then the interpreter it starts
                if b"post-receive" in cmd and os.readlink(f"/proc/{pid}/cwd") == str(self.path):
                    return True
            except OSError:
                continue
        return False

    def audit(self, event=None) -> list[dict]:
        self.settle()
        if not self.audit_path.exists():
            return []
        lines = self.audit_path.read_text().splitlines()
        records = [json.loads(line) for line in lines]
        return [r for r in records if event is None or r["event"] == event]

    def config(self, key, value):
        self.settle()  # a background post-receive reads the config too (tagwarden.clock)
        git("config", key, value, cwd=self.path)


class Clone:
    def __init__(self, server: Server, path: Path):
        self.server, self.path = server, path
        git("clone", "-q", str(server.path), str(path), cwd=path.parent)
        self.counter = 0

    def git(self, *args, check=True, input=None):
        return git(*args, cwd=self.path, check=check, input=input)

    def commit(self, message=None) -> str:
        self.counter += 1
        name = f"{self.path.name}-{self.counter}.txt"  # unique across clones of one server
        (self.path / name).write_text(f"content {self.counter}\n")
        self.git("add", name)
        self.git("commit", "-q", "-m", message or f"change {self.counter}")
        return self.git("rev-parse", "HEAD").stdout.strip()

    def tag(self, name, target="HEAD", message=None, annotated=True, force=False):
        args = ["tag"]
        if force:
            args.append("-f")
        if annotated:
            args += ["-a", "-m", message or f"Tag {name}"]
        self.git(*args, name, target)
        return self.rev(name)

    def rev(self, name) -> str:
        return self.git("rev-parse", f"refs/tags/{name}" if "/" in name or name.startswith("v")
                        else name).stdout.strip()

    def push(self, *args, env=None) -> Push:
        full_env = None
        if env:
            full_env = {**os.environ, **env}
        out = subprocess.run(["git", "push", "--porcelain", "origin", *args], cwd=self.path,
                             capture_output=True, text=True, env=full_env)
        return Push(out.returncode, out.stdout + out.stderr)

    # the way the common client (edgit) makes tags
    def release(self, version, component=C, target="HEAD") -> str:
        name = f"{component}/{version}"
        self.tag(name, target, f"Release {component.rsplit('/', 1)[1]} {version}")
        return name

    def set_env(self, slot, version, component=C, message=None) -> str:
        """An annotated env tag wrapping the version *tag object* (nested), force-made."""
        name = f"{component}/{slot}"
        self.tag(name, f"refs/tags/{component}/{version}",
                 message or f"Set {component.rsplit('/', 1)[1]} to {slot}", force=True)
        return name

    def deploy(self, slot, version, component=C, message=None) -> Push:
        return self.push("--force", self.set_env(slot, version, component, message))


@pytest.fixture(params=["pre-receive", "update"])
def mode(request) -> str:
    return request.param


@pytest.fixture
def server(tmp_path, mode) -> Server:
    srv = Server(tmp_path / "srv.git")
    srv.install(mode)
    return srv


@pytest.fixture
def clone(server, tmp_path) -> Clone:
    cl = Clone(server, tmp_path / "clone")
    cl.commit("initial")
    cl.push("HEAD:refs/heads/main")
    return cl


def make_server(tmp_path, mode, policy=None, name="srv.git") -> tuple[Server, Clone]:
    srv = Server(tmp_path / name)
    srv.install(mode, policy)
    cl = Clone(srv, tmp_path / (name + "-clone"))
    cl.commit("initial")
    cl.push("HEAD:refs/heads/main")
    return srv, cl


def pytest_sessionstart(session):
    """Hooks run `python -I -m tagwarden.hook`: the package must be installed from this
    checkout (pip install -e .), or the tests would judge some other copy."""
    out = subprocess.run([sys.executable, "-I", "-c",
                          "import tagwarden, os; print(os.path.dirname(tagwarden.__file__))"],
                         capture_output=True, text=True)
    found = out.stdout.strip()
    if os.path.realpath(found or "-") != os.path.realpath(ROOT / "tagwarden"):
        pytest.exit(f"tagwarden for {sys.executable} comes from {found or 'nowhere'}, not this "
                    f"checkout: run ./install.sh --test (or pip install -e .)", returncode=3)
