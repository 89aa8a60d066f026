#!/usr/bin/env python3
"""Push-time cost of tagwarden over ssh and HTTP, on real servers on loopback.

Starts OpenSSH's sshd and nginx + fcgiwrap + git http-backend on 127.0.0.1 with the
host tests' own setup code (tests/hosts.py: service user, throwaway configs, a venv the
service user can run as the hook interpreter), then times a 1-ref push of a new
annotated version tag, hook-less and with tagwarden in pre-receive mode, over ssh, HTTP
and (for reference) file://. Run as root, like the host tests. See bench/README.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

# tests/ goes first: its hosts.py, not this file, is the module `hosts`
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))
import pytest  # noqa: E402  (tests/hosts.py reports a missing server with pytest.skip)

import hosts  # noqa: E402
from run import Bench, BenchError, load, settle, tag_name  # noqa: E402  (bench/run.py)
from tagwarden.install import install  # noqa: E402

TRANSPORTS = {"file": "file://", "ssh": "ssh", "http": "HTTP"}
HOOKS = {"none": "hook-less", "pre-receive": "tagwarden, pre-receive mode"}
PUSHER, PASSWORD = "alice", "correct horse battery staple"


class Hosts:
    """The servers and the repositories they serve, set up as the host tests do."""

    def __init__(self, stack: ExitStack, root: Path, python: str):
        self.python = python
        self.user = hosts.service_user(hosts.SSH_USER)
        env = hosts.base_env(root / "root-home")
        self.dirs: dict[str, Path] = {}
        self.env: dict[str, dict] = {"file": {}, "ssh": {}, "http": {}}
        for transport in ("ssh", "http"):
            d = Path(tempfile.mkdtemp(prefix=f"{transport}-", dir=root))
            d.chmod(0o755)
            home = d / "unreadable-home"  # the hooks' $HOME: root's, mode 0700
            home.mkdir(mode=0o700)
            repos = self.dirs[transport] = d / "repos"
            repos.mkdir()
            hosts.chown_tree(repos, self.user)
            if transport == "ssh":
                hosts.need("ssh", package="openssh-client")
                key = hosts.keygen(d / "pusher_ed25519", "pusher@tagwarden-bench", env)
                authorized = d / "authorized_keys"
                authorized.write_text(Path(f"{key}.pub").read_text())
                authorized.chmod(0o644)
                self.ssh_port = stack.enter_context(hosts.sshd(
                    d / "sshd", hosts.SSH_USER, authorized, env,
                    extra=f"SetEnv HOME={home}\n"))
                self.env["ssh"] = {"GIT_SSH_COMMAND": hosts.ssh_command(key, self.ssh_port)}
            else:
                self.http_port = stack.enter_context(hosts.nginx_git(
                    d / "nginx", repos, self.user, {PUSHER: PASSWORD}, env, home))
        self.dirs["file"] = root / "file-repos"
        self.dirs["file"].mkdir()
        self.copies = 0

    def server(self, template: str, transport: str, hook: str) -> tuple[str, str]:
        """A fresh copy of the template for one push (hooks installed, owned by the
        service user for ssh and HTTP): (its path, the URL to push to)."""
        self.copies += 1
        path = self.dirs[transport] / f"srv{self.copies}.git"
        shutil.copytree(template, path, symlinks=True)
        if hook != "none":
            install(str(path), hook, python=self.python)
        if transport == "file":
            return str(path), f"file://{path}"
        hosts.chown_tree(path, self.user)
        if transport == "ssh":
            return str(path), f"{hosts.SSH_USER}@{hosts.LOOPBACK}:{path}"
        return str(path), (f"http://{PUSHER}:{PASSWORD.replace(' ', '%20')}@{hosts.LOOPBACK}"
                           f":{self.http_port}/git/{path.name}")


def push(bench: Bench, servers: Hosts, transport: str, hook: str, i: int
         ) -> tuple[float, float]:
    """One `git push` of the new tag c{i}/v1.0.0 into a fresh server: seconds (for the
    whole push, that hook processes went on working in the server afterwards)."""
    srv, url = servers.server(bench.template, transport, hook)
    ref = f"refs/tags/{tag_name(i)}"
    cmd = ["git", "push", "--porcelain", url, f"{ref}:{ref}"]
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=bench.client, env={**bench.env, **servers.env[transport]},
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - start
    after = settle(srv)
    if out.returncode != 0 or f"*\t{ref}:{ref}\t[new tag]" not in out.stdout:
        raise BenchError(f"push of {ref} over {TRANSPORTS[transport]} with hook {hook!r} "
                         f"failed (exit {out.returncode}):\n{out.stdout}{out.stderr}")
    shutil.rmtree(srv)
    return seconds, after


def measure(bench: Bench, servers: Hosts, cases: list[tuple[str, str]], runs: int) -> dict:
    """Every case's pushes, interleaved: one untimed warm-up push each, then round after
    round of one push per case, the order reversed every other round."""
    tags = iter(range(len(bench.commits)))
    for transport, hook in cases:
        push(bench, servers, transport, hook, next(tags))
    times: dict[tuple[str, str], list[tuple[float, float]]] = {case: [] for case in cases}
    for r in range(runs):
        print(f"  round {r + 1}/{runs}", file=sys.stderr, flush=True)
        for case in cases if r % 2 == 0 else cases[::-1]:
            times[case].append(push(bench, servers, *case, next(tags)))
    return times


def report(times: dict, runs: int) -> None:
    print("\nmedians of one `git push` of 1 new annotated version tag into a fresh server;"
          "\nratio = push / hook-less push over the same transport; added = push - hook-less"
          "\npush; range = fastest..slowest push; after push = hook processes still working"
          "\nin the server after the push returned (untimed, waited for)\n")
    print(f"{'transport':<9}  {'hook':<28} {'push':>10} {'ratio':>8} {'added':>10}  "
          f"{'range':>15}  {'after push':>11}  runs")
    for transport, name in TRANSPORTS.items():
        base = statistics.median(t for t, _ in times[(transport, "none")])
        for hook, label in HOOKS.items():
            pushes = [t for t, _ in times[(transport, hook)]]
            med = statistics.median(pushes)
            after = statistics.median(a for _, a in times[(transport, hook)])
            print(f"{name:<9}  {label:<28} {med:>8.4f} s {med / base:>7.2f}x "
                  f"{med - base:>8.4f} s  {min(pushes):>6.4f}..{max(pushes):>6.4f}  "
                  f"{after:>9.4f} s  {runs}")
        print()


def interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=11, help="timed pushes per case (default 11)")
    a = p.parse_args(argv)
    if a.runs < 1:
        p.error("--runs must be at least 1")
    # a kill or a closed terminal stops the servers too, as Ctrl-C does
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    cases = [(t, h) for t in TRANSPORTS for h in HOOKS]
    started = time.perf_counter()
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout
    try:
        with ExitStack() as stack:
            root = stack.enter_context(hosts.scratch_root(prefix="tagwarden-bench-hosts-"))
            print("preparing the hook interpreter (a venv the service user can run)...",
                  file=sys.stderr, flush=True)
            python = hosts.make_hook_python(root)
            version = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                                     capture_output=True, text=True).stdout.strip()
            print(f"tagwarden host push benchmark: {git_version.strip()}, hooks run by "
                  f"Python {version} (a venv as user {hosts.SSH_USER}; as root over "
                  f"file://), {os.cpu_count()} CPUs, load {load()}", flush=True)
            print("starting sshd and nginx + fcgiwrap...", file=sys.stderr, flush=True)
            servers = Hosts(stack, root, python)
            print("preparing repositories...", file=sys.stderr, flush=True)
            (root / "bench").mkdir()
            bench = Bench(str(root / "bench"), len(cases) * (a.runs + 1))
            times = measure(bench, servers, cases, a.runs)
    except pytest.skip.Exception as exc:  # tests/hosts.py's "cannot run here"
        print(f"cannot run: {exc.msg}", file=sys.stderr)
        return 2
    except (BenchError, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"\nBENCHMARK STOPPED: {exc}", file=sys.stderr)  # servers stopped by now
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped", file=sys.stderr)
        return 130
    report(times, a.runs)
    print(f"wall time {time.perf_counter() - started:.0f} s, load {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
