"""The installer: shims with a fixed interpreter, foreign hooks kept and chained with the
same input, idempotent re-runs, mode switches, uninstall restoring bytes and modes."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from conftest import C, Clone, Server
from tagwarden.cli import main as cli
from tagwarden.install import install, is_ours, shim, uninstall

FOREIGN = b"""#!/bin/sh
# a hook the admin had before tagwarden: logs its input, refuses refs named */forbidden
log="$(dirname "$0")/../foreign-@NAME@.log"
if [ "@NAME@" = update ]; then echo "$1 $2 $3" >> "$log"; case "$1" in */forbidden) exit 1;; esac; exit 0; fi
while read -r old new ref; do
  echo "$old $new $ref" >> "$log"
  case "$ref" in */forbidden) echo "foreign hook says no"; exit 1;; esac
done
"""


def _foreign(server: Server, name: str) -> bytes:
    data = FOREIGN.replace(b"@NAME@", name.encode())
    path = server.path / "hooks" / name
    path.write_bytes(data)
    path.chmod(0o750)
    return data


@pytest.fixture
def bare(tmp_path) -> Server:
    return Server(tmp_path / "srv.git")


def test_install_writes_shims_with_this_interpreter_and_no_clobbering(bare):
    done = install(str(bare.path), "pre-receive", python=sys.executable)
    hook = (bare.path / "hooks" / "pre-receive").read_text()
    assert f"PYTHON='{sys.executable}'" in hook
    assert "exec \"$PYTHON\" -I -m tagwarden.hook" in hook
    assert is_ours(str(bare.path / "hooks" / "post-receive"))
    assert not (bare.path / "hooks" / "update").exists()
    assert any(step.startswith("write") for step in done)
    assert install(str(bare.path), "pre-receive", python=sys.executable) == []  # idempotent


def test_install_dry_run_changes_nothing(bare):
    before = sorted(os.listdir(bare.path / "hooks"))
    done = install(str(bare.path), "pre-receive", python=sys.executable, dry_run=True)
    assert done and sorted(os.listdir(bare.path / "hooks")) == before


def test_dry_run_over_a_foreign_hook_says_it_would_keep_it_and_changes_nothing(bare):
    data = _foreign(bare, "pre-receive")
    hooks = bare.path / "hooks"
    done = install(str(bare.path), "update", python=sys.executable, dry_run=True)
    assert done[:3] == [f"keep {hooks}/pre-receive as {hooks}/pre-receive.tagwarden-chained "
                        "(chained)", f"write {hooks}/update", f"write {hooks}/post-receive"]
    assert (hooks / "pre-receive").read_bytes() == data
    assert not (hooks / "pre-receive.tagwarden-chained").exists()
    install(str(bare.path), "update", python=sys.executable)
    assert uninstall(str(bare.path), dry_run=True) == [
        f"remove {hooks}/pre-receive",
        f"restore {hooks}/pre-receive from {hooks}/pre-receive.tagwarden-chained",
        f"remove {hooks}/update", f"remove {hooks}/post-receive",
        "git config --unset receive.advertisePushOptions (as before the install)"]
    assert is_ours(str(hooks / "update"))


@pytest.mark.parametrize("mode", ["pre-receive", "update"])
def test_foreign_hooks_are_kept_chained_and_restored_byte_for_byte(bare, tmp_path, mode):
    originals = {name: _foreign(bare, name) for name in ("pre-receive", "update", "post-receive")}
    install(str(bare.path), mode, python=sys.executable)
    for name in ("pre-receive", "post-receive", mode):
        assert (bare.path / "hooks" / f"{name}.tagwarden-chained").read_bytes() == originals[name]
    clone = Clone(bare, tmp_path / "clone")
    clone.commit()
    assert clone.push("HEAD:refs/heads/main").ok
    clone.tag(f"{C}/v1.0.0")
    push = clone.push(f"{C}/v1.0.0")
    assert push.ok, push.out
    log = (bare.path / f"foreign-{mode}.log").read_text()
    assert f"refs/tags/{C}/v1.0.0" in log  # the chained hook saw the same input

    # the foreign hook can still refuse what tagwarden accepts
    clone.tag("forbidden")
    push = clone.push("forbidden")
    assert not push.ok and bare.ref("forbidden") is None
    if mode == "pre-receive":
        assert "foreign hook says no" in push.out
        last = bare.audit("decision")[-1]
        assert last["rule"] == "chained-hook" and last["decision"] == "rejected"

    uninstall(str(bare.path))
    for name, data in originals.items():
        path = bare.path / "hooks" / name
        assert path.read_bytes() == data
        assert stat.S_IMODE(path.stat().st_mode) == 0o750
        assert not (bare.path / "hooks" / f"{name}.tagwarden-chained").exists()


def test_switching_modes_moves_the_shims(bare):
    install(str(bare.path), "pre-receive", python=sys.executable)
    install(str(bare.path), "update", python=sys.executable)
    assert is_ours(str(bare.path / "hooks" / "update"))
    install(str(bare.path), "pre-receive", python=sys.executable)
    assert not (bare.path / "hooks" / "update").exists()


def test_uninstall_without_foreign_hooks_leaves_no_hook(bare):
    install(str(bare.path), "pre-receive", python=sys.executable)
    uninstall(str(bare.path))
    for name in ("pre-receive", "update", "post-receive"):
        assert not (bare.path / "hooks" / name).exists()


def test_policy_option_is_recorded_in_git_config(bare):
    policy = os.path.join(os.path.dirname(__file__), "..", "policy", "examples", "canary.yaml")
    install(str(bare.path), "pre-receive", policy, python=sys.executable)
    out = subprocess.run(["git", "config", "tagwarden.policy"], cwd=bare.path,
                         capture_output=True, text=True).stdout.strip()
    assert out == os.path.abspath(policy)


def test_missing_interpreter_refuses_the_push(bare, tmp_path):
    gone = tmp_path / "gone" / "python"
    install(str(bare.path), "pre-receive", python=str(gone))
    clone = Clone(bare, tmp_path / "clone")
    clone.commit()
    clone.tag(f"{C}/v1.0.0")
    push = clone.push("HEAD:refs/heads/main", f"{C}/v1.0.0")
    assert not push.ok
    assert f"hook interpreter {gone} is missing ({gone.parent} does not exist); push " \
        "refused" in push.out, push.out
    assert set(bare.refs()) == {"refs/tagwarden/ledger"}  # started at install; nothing else


def test_an_interpreter_that_exists_but_cannot_be_executed_is_not_called_missing(bare, tmp_path):
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\nexit 0\n")
    python.chmod(0o644)  # no execute bit for anyone, root included
    install(str(bare.path), "pre-receive", python=str(python))
    clone = Clone(bare, tmp_path / "clone")
    clone.commit()
    clone.tag(f"{C}/v1.0.0")
    push = clone.push(f"{C}/v1.0.0")
    assert not push.ok and bare.ref(f"{C}/v1.0.0") is None
    assert f"hook interpreter {python} is not executable by user id {os.getuid()} (" in push.out
    assert "missing" not in push.out and "push refused" in push.out


def _open_dir():
    """A scratch directory other users can enter (pytest's own are 0700 root's)."""
    import tempfile

    path = tempfile.mkdtemp(prefix="tagwarden-install-")
    os.chmod(path, 0o755)
    return path


@pytest.mark.parametrize("shape", ["under a closed directory", "link into a closed directory"])
def test_an_interpreter_the_hook_user_cannot_reach_is_named_with_the_user_id(shape):
    """The shim runs as the hook's user: an interpreter under a 0700 home (a pyenv in
    /root) exists, but that user cannot reach it; the push is refused saying so, with
    the user id, not "missing"."""
    import pwd
    import shutil

    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root and runuser to run the shim as another user")
    user = pwd.getpwnam("nobody")
    top = _open_dir()
    try:
        closed = os.path.join(top, "home")
        os.makedirs(os.path.join(closed, "bin"))
        os.chmod(closed, 0o700)
        python = os.path.join(closed, "bin", "python")
        os.symlink("/bin/true", python)
        if shape == "link into a closed directory":
            os.symlink(python, os.path.join(top, "python"))
            python = os.path.join(top, "python")
        hook = os.path.join(top, "pre-receive")
        with open(hook, "w") as f:
            f.write(shim("pre-receive", python))
        os.chmod(hook, 0o755)
        out = subprocess.run(["runuser", "-u", "nobody", "--", hook], cwd=top,
                             capture_output=True, text=True, input="")
        assert out.returncode == 1
        who = f"user id {user.pw_uid} (nobody)"
        if shape == "under a closed directory":
            expected = f"is not reachable by {who}: directory {closed} is not searchable"
        else:
            expected = f"links to {os.path.join(closed, 'bin', 'python')}, which {who} cannot " \
                "reach or which is missing"
        assert out.stderr == f"tagwarden: hook interpreter {python} {expected}; push refused\n"
    finally:
        shutil.rmtree(top)


def test_cli_install_and_uninstall(bare, capsys):
    assert cli(["install", "--mode", "update", str(bare.path)]) == 0
    assert is_ours(str(bare.path / "hooks" / "update"))
    assert cli(["uninstall", str(bare.path)]) == 0
    assert not (bare.path / "hooks" / "update").exists()
    assert cli(["install", str(bare.path.parent / "not-a-repo")]) == 1


def test_an_update_shim_git_would_not_run_does_not_switch_off_pre_receive(bare, tmp_path):
    """Update mode's pre-receive only records the push; if the update shim lost its
    execute bit, git skips it, so pre-receive must judge instead of trusting it."""
    install(str(bare.path), "update", python=sys.executable)
    (bare.path / "hooks" / "update").chmod(0o644)
    clone = Clone(bare, tmp_path / "clone")
    clone.commit()
    clone.tag(f"{C}/prod")
    push = clone.push(f"{C}/prod")
    assert not push.ok and bare.ref(f"{C}/prod") is None
    assert any("rule slot-unknown:" in line for line in push.remote)
