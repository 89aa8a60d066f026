"""The reference-transaction hook (install --server-side): tag changes made in the bare
repository itself are judged like pushes, refused changes leave the refs as they were,
the admin's TAGWARDEN_BYPASS is honoured for root (and the listed users) only and
audited, and pushes, branch updates, gc, pack-refs, fetch and the ledger are untouched."""
from __future__ import annotations

import io
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import C, Clone, Server, git
from tagwarden import server_side
from tagwarden.cli import main as cli
from tagwarden.install import SAVED_PUSH_OPTIONS, install, is_ours, uninstall

HOOK = "reference-transaction"


def _server(tmp_path: Path, name: str = "srv.git", server_side: bool = True) -> Server:
    srv = Server(tmp_path / name)
    install(str(srv.path), "pre-receive", python=sys.executable, server_side=server_side)
    return srv


@pytest.fixture
def released(tmp_path):
    """v1.0.0 and v1.1.0 pushed; staging and production on v1.0.0 (pushed in order)."""
    srv = _server(tmp_path)
    cl = Clone(srv, tmp_path / "clone")
    cl.commit("initial")
    assert cl.push("HEAD:refs/heads/main").ok
    cl.release("v1.0.0")
    cl.commit("second")
    cl.release("v1.1.0")
    assert cl.push("HEAD:refs/heads/main", f"{C}/v1.0.0", f"{C}/v1.1.0").ok
    assert cl.deploy("staging", "v1.0.0").ok
    assert cl.deploy("production", "v1.0.0").ok
    srv.settle()
    return srv, cl


def on_server(srv: Server, *args, env=None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "TAGWARDEN_BYPASS"}
    return git(*args, cwd=srv.path, check=False, env={**full, **(env or {})})


def server_side_records(srv: Server) -> list[dict]:
    return [r for r in srv.audit() if r.get("hook") == HOOK]


# ---- what is refused, what passes --------------------------------------------------------

def test_deleting_a_version_on_the_server_is_refused_and_audited(released):
    srv, _ = released
    before = srv.ref(f"{C}/v1.0.0")
    out = on_server(srv, "tag", "-d", f"{C}/v1.0.0")
    assert out.returncode != 0
    assert "rule version-immutable:" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert srv.ref(f"{C}/v1.0.0") == before
    [rec] = server_side_records(srv)
    assert (rec["decision"], rec["rule"], rec["action"]) == ("rejected", "version-immutable",
                                                             "delete")
    assert rec["old"] == before  # git said 0000…: tagwarden read what the ref holds
    assert (rec["pusher"], rec["pusher_source"], rec["protocol"]) == \
        (pwd.getpwuid(os.getuid()).pw_name, "uid", "local")
    assert (rec["uid"], rec["git_command"], rec["bypass_reason"]) == (os.getuid(), "tag", None)


def test_update_ref_delete_of_a_version_is_refused(released):
    srv, _ = released
    before = srv.ref(f"{C}/v1.1.0")
    out = on_server(srv, "update-ref", "-d", f"refs/tags/{C}/v1.1.0")
    assert out.returncode != 0 and "rule version-immutable:" in out.stderr
    assert srv.ref(f"{C}/v1.1.0") == before
    assert server_side_records(srv)[-1]["git_command"] == "update-ref"


def test_deleting_a_packed_version_is_refused_too(released):
    srv, _ = released
    assert on_server(srv, "pack-refs", "--all").returncode == 0
    out = on_server(srv, "tag", "-d", f"{C}/v1.0.0")
    assert out.returncode != 0 and "rule version-immutable:" in out.stderr
    assert srv.ref(f"{C}/v1.0.0") is not None


def test_production_moved_past_staging_on_the_server_is_refused(released):
    srv, _ = released
    before = srv.ref(f"{C}/production")
    out = on_server(srv, "tag", "-f", f"{C}/production", f"{C}/v1.1.0")
    assert out.returncode != 0
    assert "rule promotion-order:" in out.stderr, out.stderr
    assert srv.ref(f"{C}/production") == before
    rec = server_side_records(srv)[-1]
    assert (rec["decision"], rec["rule"], rec["slot"]) == ("rejected", "promotion-order",
                                                           "production")


def test_a_legal_move_on_the_server_is_accepted_and_audited(released):
    srv, _ = released
    out = on_server(srv, "tag", "-f", f"{C}/staging", f"{C}/v1.1.0")
    assert out.returncode == 0, out.stderr
    assert srv.commit_of(f"{C}/staging") == srv.commit_of(f"{C}/v1.1.0")
    assert f"tagwarden: accepted: {C}/staging -> v1.1.0" in out.stderr
    [rec] = server_side_records(srv)
    assert (rec["decision"], rec["change"], rec["version"]) == ("accepted", "deploy", "v1.1.0")
    # and then production may follow, as it could by a push
    assert on_server(srv, "tag", "-f", f"{C}/production", f"{C}/v1.1.0").returncode == 0


def test_creating_a_version_on_the_server_is_judged_and_a_noop_is_not_recorded(released):
    srv, _ = released
    assert on_server(srv, "tag", f"{C}/v1.2.0", "main").returncode == 0
    assert server_side_records(srv)[-1]["change"] == "create"
    count = len(server_side_records(srv))
    out = on_server(srv, "update-ref", f"refs/tags/{C}/v1.2.0", srv.ref(f"{C}/v1.2.0"))
    assert out.returncode == 0, out.stderr
    assert len(server_side_records(srv)) == count  # nothing changed: nothing to judge
    out = on_server(srv, "tag", f"{C}/v1.0", "main")  # a SemVer look-alike
    assert out.returncode != 0 and "rule version-invalid:" in out.stderr, out.stderr


def test_tagwardens_own_namespace_is_refused_on_the_server(released):
    srv, _ = released
    ledger = srv.ref("refs/tagwarden/ledger")
    out = on_server(srv, "update-ref", "refs/tagwarden/ledger", srv.ref("refs/heads/main"))
    assert out.returncode != 0 and "rule reserved-namespace:" in out.stderr
    assert srv.ref("refs/tagwarden/ledger") == ledger


# ---- what is not disturbed -----------------------------------------------------------

def test_branches_gc_pack_refs_and_fetch_pass_untouched(released, tmp_path):
    srv, cl = released
    tags = {r: v for r, v in srv.refs().items() if r.startswith("refs/tags/")}
    for args in (["branch", "side", "main"], ["update-ref", "refs/heads/side", "main~1"],
                 ["update-ref", "-d", "refs/heads/side"], ["pack-refs", "--all"],
                 ["gc", "-q"], ["gc", "-q", "--aggressive", "--prune=now"],
                 ["pack-refs", "--all"]):
        out = on_server(srv, *args)
        assert out.returncode == 0, (args, out.stderr)
    assert {r: v for r, v in srv.refs().items() if r.startswith("refs/tags/")} == tags
    # a fetch into the bare repository: branches pass, new versions are judged and land
    cl.commit("third")
    cl.release("v1.2.0")
    out = on_server(srv, "fetch", "-q", str(cl.path), "main:refs/heads/fetched",
                    f"refs/tags/{C}/v1.2.0:refs/tags/{C}/v1.2.0")
    assert out.returncode == 0, out.stderr
    assert srv.ref(f"{C}/v1.2.0") == cl.rev(f"{C}/v1.2.0")
    assert [r["change"] for r in server_side_records(srv)] == ["create"]
    assert server_side_records(srv)[0]["git_command"] == "fetch"
    # a fetch that would move a released version is refused like a push would be
    cl.git("tag", "-f", "-a", "-m", "moved", f"{C}/v1.0.0", "HEAD")
    out = on_server(srv, "fetch", "-q", str(cl.path),
                    f"+refs/tags/{C}/v1.0.0:refs/tags/{C}/v1.0.0")
    assert out.returncode != 0 and "rule version-immutable:" in out.stderr
    assert srv.ref(f"{C}/v1.0.0") == tags[f"refs/tags/{C}/v1.0.0"]


def _replay(srv: Server, cl: Clone) -> list[tuple]:
    """Pushes accepted, rejected, atomic and not; what the pusher saw and what landed."""
    seen = []

    def push(*args):
        p = cl.push(*args)
        seen.append((args, p.rc, [re.sub(r"\b[0-9a-f]{7,40}\b", "<id>", line)
                                  for line in p.remote]))  # the clones' commits differ

    cl.commit("initial")
    push("HEAD:refs/heads/main")
    cl.release("v1.0.0")
    push(f"{C}/v1.0.0")
    cl.set_env("staging", "v1.0.0")
    push("--force", f"{C}/staging")
    cl.commit("second")
    cl.release("v1.1.0")
    cl.set_env("production", "v1.1.0")
    push("--atomic", "HEAD:refs/heads/main", f"{C}/v1.1.0", f"{C}/production")  # refused
    push("HEAD:refs/heads/main", f"{C}/v1.1.0", f"{C}/production")  # refused whole
    push("--atomic", "HEAD:refs/heads/main", f"{C}/v1.1.0")
    push("--force", f"{C}/production")  # promotion-order
    push(f":refs/tags/{C}/v1.0.0")  # delete a version
    cl.set_env("staging", "v1.1.0")
    push("--force", "--atomic", f"{C}/staging")
    cl.set_env("production", "v1.1.0")
    push("--force", f"{C}/production")
    srv.settle()
    refs = {r: v for r, v in srv.refs().items() if not r.startswith("refs/tagwarden/")}
    decisions = [(r["ref"], r["decision"], r["rule"]) for r in srv.audit("decision")]
    return seen + [("refs", sorted(refs)), ("decisions", decisions)]


def test_pushes_behave_exactly_as_without_the_hook(tmp_path):
    plain = _server(tmp_path, "plain.git", server_side=False)
    guarded = _server(tmp_path, "guarded.git")
    assert is_ours(str(guarded.path / "hooks" / HOOK))
    assert not (plain.path / "hooks" / HOOK).exists()
    a = _replay(plain, Clone(plain, tmp_path / "a"))
    b = _replay(guarded, Clone(guarded, tmp_path / "b"))
    assert [x[1] for x in a[:-2]] == [0, 0, 0, 1, 1, 0, 1, 1, 0, 0]
    assert a == b
    assert server_side_records(guarded) == []  # pushes are pre-receive's alone


def test_a_push_never_honours_TAGWARDEN_BYPASS(released):
    srv, cl = released
    before = srv.ref(f"{C}/v1.0.0")
    push = cl.push(f":refs/tags/{C}/v1.0.0", env={"TAGWARDEN_BYPASS": "pusher says so"})
    assert not push.ok and "rule version-immutable:" in push.out
    assert srv.ref(f"{C}/v1.0.0") == before
    rec = srv.audit("decision")[-1]
    assert (rec["hook"], rec["decision"], rec["rule"]) == ("pre-receive", "rejected",
                                                           "version-immutable")
    assert "bypass" not in rec.get("change", "") and not rec.get("bypass_reason")


def test_ledger_writes_by_post_receive_pass(released):
    srv, cl = released
    before = srv.ref("refs/tagwarden/ledger")
    assert before
    assert cl.deploy("staging", "v1.1.0").ok
    srv.settle()
    assert srv.ref("refs/tagwarden/ledger") != before  # libgit2 writes it: no hook runs
    assert server_side_records(srv) == []


# ---- the admin's bypass ----------------------------------------------------------------

def test_bypass_as_root_lets_the_change_through_and_audits_it(released):
    if os.getuid() != 0:
        pytest.skip("TAGWARDEN_BYPASS is honoured for root (or listed users): run as root")
    srv, _ = released
    out = on_server(srv, "tag", "-d", f"{C}/v1.0.0",
                    env={"TAGWARDEN_BYPASS": "INC-42: released from the wrong commit"})
    assert out.returncode == 0, out.stderr
    assert srv.ref(f"{C}/v1.0.0") is None
    assert "tagwarden: bypass by root:" in out.stderr
    assert "rule version-immutable would have refused it" in out.stderr
    [rec] = server_side_records(srv)  # git prepares a deletion twice: recorded once
    assert (rec["decision"], rec["change"], rec["rule"]) == ("bypass", "bypass",
                                                             "version-immutable")
    assert (rec["would_decide"], rec["would_change"]) == ("rejected", "delete")
    assert rec["bypass_reason"] == "INC-42: released from the wrong commit"
    assert rec["pusher"] == "root" and rec["uid"] == 0


def test_an_empty_bypass_reason_is_refused(released):
    srv, _ = released
    for reason in ("", "   "):
        out = on_server(srv, "tag", "-d", f"{C}/v1.0.0", env={"TAGWARDEN_BYPASS": reason})
        assert out.returncode != 0 and "TAGWARDEN_BYPASS is empty" in out.stderr
        assert srv.ref(f"{C}/v1.0.0") is not None
    rec = server_side_records(srv)[-1]
    assert (rec["decision"], rec["rule"]) == ("rejected", "bypass-denied")


def _in_process(monkeypatch, repo: Path, stdin: str, uid: int, name: str):
    """The hook's Python entry called in this process, as another user."""
    monkeypatch.setenv("GIT_DIR", str(repo))
    monkeypatch.setattr(server_side.os, "getuid", lambda: uid)
    monkeypatch.setattr(server_side, "user_name", lambda _: name)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
    return server_side.main(["--hooks-dir", str(repo / "hooks"), "prepared"])


def test_a_user_not_listed_cannot_bypass(released, monkeypatch, capsys):
    srv, _ = released
    monkeypatch.setenv("TAGWARDEN_BYPASS", "I know what I am doing")
    monkeypatch.setattr(server_side, "SYSTEM_CONFIG", str(srv.path / "no-such-config"))
    zero = "0" * 40
    code = _in_process(monkeypatch, srv.path, f"{zero} {zero} refs/tags/{C}/v1.0.0\n",
                       4242, "mallory")
    assert code == 1
    err = capsys.readouterr().err
    assert "tagwarden: change rejected: bypass refused" in err
    assert "user mallory (uid 4242) may not bypass tagwarden" in err
    rec = server_side_records(srv)[-1]
    assert (rec["decision"], rec["rule"], rec["pusher"], rec["uid"]) == \
        ("rejected", "bypass-denied", "mallory", 4242)
    assert rec["bypass_reason"] == "I know what I am doing"


def test_bypass_users_come_from_the_system_config_file_only(tmp_path, monkeypatch):
    config = tmp_path / "gitconfig"
    config.write_text("[tagwarden]\n\tbypassUsers = alice, bob\n\tbypassUsers = carol\n")
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "tagwarden.bypassUsers")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "mallory")
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'tagwarden.bypassusers'='mallory'")
    assert server_side.bypass_users(config_file=str(config)) == ["alice", "bob", "carol"]
    assert server_side.bypass_allowed(1000, "carol", config_file=str(config))[0]
    assert not server_side.bypass_allowed(1000, "mallory", config_file=str(config))[0]
    assert server_side.bypass_allowed(0, "root", config_file=str(tmp_path / "none"))[0]
    assert server_side.bypass_users(config_file=str(tmp_path / "none")) == []


def test_an_unprivileged_shell_user_cannot_bypass(tmp_path):
    """As nobody, for real: the hook's user, its uid and the refusal."""
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root and runuser to act as the unprivileged user nobody")
    if subprocess.run(["runuser", "-u", "nobody", "--", "test", "-x", sys.executable]
                      ).returncode != 0:
        pytest.skip(f"nobody cannot run this interpreter ({sys.executable} lies under a "
                    "closed directory); test_a_user_not_listed_cannot_bypass covers it")
    top = Path(tempfile.mkdtemp(prefix="tagwarden-server-side-")).resolve()
    top.chmod(0o755)
    try:
        srv = _server(top)
        cl = Clone(srv, top / "clone")
        cl.commit()
        cl.release("v1.0.0")
        assert cl.push("HEAD:refs/heads/main", f"{C}/v1.0.0").ok
        srv.settle()
        nobody = pwd.getpwnam("nobody")
        for dirpath, dirnames, filenames in os.walk(srv.path):
            for name in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
                os.lchown(name, nobody.pw_uid, nobody.pw_gid)
        out = subprocess.run(
            ["runuser", "-u", "nobody", "--", "env", "-i", f"PATH={os.defpath}", "HOME=/",
             "GIT_CONFIG_NOSYSTEM=1", "TAGWARDEN_BYPASS=trust me",
             "git", "-C", str(srv.path), "tag", "-d", f"{C}/v1.0.0"],
            capture_output=True, text=True)
        assert out.returncode != 0 and "may not bypass tagwarden" in out.stderr, out.stderr
        assert srv.ref(f"{C}/v1.0.0") is not None
        rec = server_side_records(srv)[-1]
        assert (rec["rule"], rec["pusher"], rec["uid"]) == ("bypass-denied", "nobody",
                                                            nobody.pw_uid)
    finally:
        shutil.rmtree(top)


# ---- failing closed --------------------------------------------------------------------

def test_a_broken_policy_refuses_server_side_tag_changes_without_a_traceback(released,
                                                                              tmp_path):
    srv, _ = released
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nrules:\n  promotion-ordr: deny\n")
    srv.config("tagwarden.policy", str(broken))
    out = on_server(srv, "tag", "-d", f"{C}/v1.0.0")
    assert out.returncode != 0
    assert "tagwarden: change rejected: policy invalid" in out.stderr
    assert "Traceback" not in out.stderr
    assert srv.ref(f"{C}/v1.0.0") is not None
    assert server_side_records(srv)[-1]["rule"] == "policy-invalid"
    # branches stay free: the hook does not even start Python for them
    assert on_server(srv, "branch", "other", "main").returncode == 0


def test_an_internal_error_refuses_with_an_incident_id(released, monkeypatch, capsys):
    srv, _ = released

    def boom(self, updates):
        raise RuntimeError("a bug")

    monkeypatch.setattr(server_side.ServerSideRun, "judge", boom)
    zero = "0" * 40
    code = _in_process(monkeypatch, srv.path, f"{zero} {zero} refs/tags/{C}/v1.0.0\n",
                       os.getuid(), "root")
    assert code == 1
    err = capsys.readouterr().err
    assert "tagwarden: change rejected: internal error (incident " in err
    assert "Traceback" not in err and "a bug" not in err
    incident = srv.audit("incident")[-1]
    assert incident["hook"] == HOOK and err.split("(incident ")[1].startswith(
        incident["incident"])


def test_a_missing_interpreter_refuses_tag_changes_but_not_branches(tmp_path):
    srv = Server(tmp_path / "srv.git")
    gone = tmp_path / "gone" / "python"
    install(str(srv.path), python=sys.executable)
    cl = Clone(srv, tmp_path / "clone")
    cl.commit()
    cl.release("v1.0.0")
    assert cl.push("HEAD:refs/heads/main", f"{C}/v1.0.0").ok
    install(str(srv.path), python=str(gone), server_side=True)
    out = on_server(srv, "tag", "-d", f"{C}/v1.0.0")
    assert out.returncode != 0
    assert f"tagwarden: hook interpreter {gone} is missing" in out.stderr
    assert srv.ref(f"{C}/v1.0.0") is not None
    assert on_server(srv, "branch", "b", "main").returncode == 0


# ---- install and uninstall -------------------------------------------------------------

FOREIGN = b"""#!/bin/sh
# the admin's own reference-transaction hook: logs every state and its input
log="$(dirname "$0")/../foreign-rt.log"
echo "state $1" >> "$log"
cat >> "$log"
"""


def test_install_server_side_chains_a_foreign_hook_and_uninstall_restores_it(tmp_path):
    srv = Server(tmp_path / "srv.git")
    hooks = srv.path / "hooks"
    (hooks / HOOK).write_bytes(FOREIGN)
    (hooks / HOOK).chmod(0o750)
    done = install(str(srv.path), python=sys.executable, server_side=True)
    assert f"keep {hooks}/{HOOK} as {hooks}/{HOOK}.tagwarden-chained (chained)" in done
    assert (hooks / f"{HOOK}.tagwarden-chained").read_bytes() == FOREIGN
    assert install(str(srv.path), python=sys.executable, server_side=True) == []
    cl = Clone(srv, tmp_path / "clone")
    cl.commit()
    cl.release("v1.0.0")
    assert cl.push("HEAD:refs/heads/main", f"{C}/v1.0.0").ok
    assert on_server(srv, "branch", "side", "main").returncode == 0
    assert on_server(srv, "tag", "-d", f"{C}/v1.0.0").returncode != 0
    srv.settle()
    log = (srv.path / "foreign-rt.log").read_text()
    # the kept hook saw the push and the branch (every state), not the refused deletion
    assert "state prepared" in log and "state committed" in log
    assert f"refs/tags/{C}/v1.0.0" in log and "refs/heads/side" in log
    blocks = [b.split("\n", 1) for b in log.split("state ")[1:]]
    deletion = f"{'0' * 40} {'0' * 40} refs/tags/{C}/v1.0.0"
    assert [state for state, lines in blocks if deletion in lines] == ["aborted"]

    assert f"restore {hooks}/{HOOK} from {hooks}/{HOOK}.tagwarden-chained" in \
        uninstall(str(srv.path))
    assert (hooks / HOOK).read_bytes() == FOREIGN
    assert oct((hooks / HOOK).stat().st_mode & 0o777) == oct(0o750)


def test_a_kept_hook_that_refuses_refuses_the_server_side_change(tmp_path):
    srv = Server(tmp_path / "srv.git")
    (srv.path / "hooks" / HOOK).write_text("#!/bin/sh\ncat >/dev/null\n"
                                          "[ \"$1\" = prepared ] && exit 3\nexit 0\n")
    (srv.path / "hooks" / HOOK).chmod(0o755)
    install(str(srv.path), python=sys.executable, server_side=True)
    commit = git("commit-tree", git("hash-object", "-t", "tree", "-w", "--stdin",
                                    cwd=srv.path, input="").stdout.strip(), "-m", "x",
                 cwd=srv.path).stdout.strip()
    out = on_server(srv, "tag", f"{C}/v1.0.0", commit)
    assert out.returncode != 0 and srv.ref(f"{C}/v1.0.0") is None
    rec = server_side_records(srv)[-1]
    assert (rec["decision"], rec["rule"]) == ("rejected", "chained-hook")


def test_install_without_server_side_writes_no_hook_and_takes_it_back(tmp_path):
    srv = Server(tmp_path / "srv.git")
    install(str(srv.path), python=sys.executable)
    assert not (srv.path / "hooks" / HOOK).exists()
    install(str(srv.path), python=sys.executable, server_side=True)
    assert is_ours(str(srv.path / "hooks" / HOOK))
    done = install(str(srv.path), python=sys.executable)  # not remembered, like --mode
    assert done == [f"remove {srv.path}/hooks/{HOOK}"]


@pytest.mark.parametrize("layout", ["gitea", "gitlab"])
def test_server_side_is_refused_for_hosted_layouts(tmp_path, layout):
    from tagwarden.install import InstallError

    srv = Server(tmp_path / "srv.git")
    before = sorted(os.listdir(srv.path / "hooks"))
    with pytest.raises(InstallError, match="--server-side is for plain repositories only"):
        install(str(srv.path), python=sys.executable, layout=layout, server_side=True)
    assert sorted(os.listdir(srv.path / "hooks")) == before


def test_cli_install_server_side_and_dry_run(tmp_path, capsys):
    srv = Server(tmp_path / "srv.git")
    assert cli(["install", "--server-side", "--dry-run", str(srv.path)]) == 0
    out = capsys.readouterr().out
    assert f"would: write {srv.path}/hooks/pre-receive" in out
    assert f"write {srv.path}/hooks/{HOOK}" in out
    assert "git config receive.advertisePushOptions true" in out
    assert not (srv.path / "hooks" / HOOK).exists()
    assert cli(["install", "--server-side", str(srv.path)]) == 0
    assert is_ours(str(srv.path / "hooks" / HOOK))
    assert cli(["uninstall", str(srv.path)]) == 0
    assert not (srv.path / "hooks" / HOOK).exists()


@pytest.mark.parametrize("before", [None, "false"])
def test_advertise_push_options_is_set_and_put_back_on_uninstall(tmp_path, before):
    srv = Server(tmp_path / "srv.git")
    key = "receive.advertisePushOptions"
    if before is not None:
        git("config", key, before, cwd=srv.path)
    done = install(str(srv.path), python=sys.executable)
    note = f" (was {before})" if before else ""
    assert f"git config {key} true{note}" in done
    assert git("config", "--local", key, cwd=srv.path).stdout.strip() == "true"
    assert install(str(srv.path), python=sys.executable) == []  # already
    dry = uninstall(str(srv.path), dry_run=True)
    assert dry[-1] == (f"git config {key} {before} (as before the install)" if before else
                       f"git config --unset {key} (as before the install)")
    assert git("config", "--local", key, cwd=srv.path).stdout.strip() == "true"
    assert uninstall(str(srv.path))[-1] == dry[-1]
    now = git("config", "--local", key, cwd=srv.path, check=False).stdout.strip()
    assert now == (before or "")
    assert git("config", "--local", SAVED_PUSH_OPTIONS, cwd=srv.path,
               check=False).returncode == 1
    assert "saved" not in (srv.path / "config").read_text()
    assert uninstall(str(srv.path)) == []
