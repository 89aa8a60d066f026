"""Bad, odd and hostile input, pushed with the real git client to a real bare repository
with the hooks installed, in pre-receive and in update mode.

Every push goes through ``push()``, which asserts what must hold for any push at all: no
Python traceback reaches the pusher, and no raw control character (ESC, bidi override,
zero-width, C0/C1) appears in what tagwarden prints.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import C, Clone, Push, Server, git
from tagwarden.pushenv import IDENTITY_VARIABLES

OTHER = "components/prompts/summary"
ESC_TEXT = "red \x1b[31mALERT\x1b[0m \x1b]0;pwned\x07 \u202eevil\u202c end"
# what tagwarden must never print raw: C0/C1 controls (tab/newline/CR are git's own
# framing), DEL, zero-width characters, line/paragraph separators, bidi marks,
# embeddings, overrides and isolates, BOM
RAW = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e"
                 "\u2066-\u2069\ufeff]")


# receive-pack's own words on the sideband (update mode), which repeat the ref name raw
GIT_OWN_REMOTE_LINES = ("error: hook declined to update ",)


# ---- helpers ------------------------------------------------------------------------

def push(clone: Clone, *args, env=None, git_echoes_raw: bool = False) -> Push:
    """Push and check what holds for every push: no traceback, nothing raw printed.

    ``git_echoes_raw``: the pushed ref name itself carries a raw character, which git's
    own status lines (not tagwarden's) repeat; then only tagwarden's lines are checked.
    """
    if any(isinstance(a, bytes) for a in args):  # a ref name that is not UTF-8
        raw = subprocess.run([b"git", b"push", b"--porcelain", b"origin",
                              *(a if isinstance(a, bytes) else a.encode() for a in args)],
                             cwd=clone.path, capture_output=True, env={**os.environ, **(env or {})})
        p = Push(raw.returncode, (raw.stdout + raw.stderr).decode("utf-8", "backslashreplace"))
    else:
        p = clone.push(*args, env=env)
    assert "Traceback" not in p.out, p.out
    remote = "\n".join(line for line in p.remote
                       if not (git_echoes_raw and line.startswith(GIT_OWN_REMOTE_LINES)))
    assert not RAW.search(remote), f"raw control character in tagwarden's output:\n{remote!r}"
    if not git_echoes_raw:
        assert "\x1b" not in p.out and "\u202e" not in p.out, repr(p.out)
    return p


def accepted(p: Push, clone: Clone, *tags: str) -> None:
    assert p.ok, p.out
    for tag in tags:
        assert clone.server.ref(tag) == clone.rev(tag), f"server does not hold {tag}"


def escaped(text: str) -> str:
    """How a name with control characters must look when printed."""
    return RAW.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                   else f"\\u{ord(m.group()):04x}", text)


def rules_by_ref(p: Push) -> dict[str, str]:
    """{ref: rule} from the pusher's view: '  refs/...' then '    rule RULE: ...'."""
    found, ref = {}, None
    for line in p.remote:
        if line.startswith("  refs/"):
            ref = line.strip()
        m = re.match(r"    rule ([a-z0-9-]+):", line)
        if m and ref:
            found[ref] = m.group(1)
    return found


def rejected(p: Push, server: Server, before: dict, expected: dict[str, str]) -> str:
    """The push failed, nothing changed on the server, each ref shows its own rule, in
    the output and in the audit log, with a fix."""
    assert not p.ok, p.out
    assert server.refs() == before, "a rejected push changed server refs"
    text = "\n".join(p.remote)
    shown = rules_by_ref(p)
    for tag, rule in expected.items():
        ref = tag if tag.startswith("refs/") else f"refs/tags/{tag}"
        assert shown.get(escaped(ref)) == rule, \
            f"{ref}: expected rule {rule}, saw {shown.get(escaped(ref))}\n{text}"
        last = [r for r in server.audit("decision") if r["ref"] == ref][-1]
        assert (last["decision"], last["rule"]) == ("rejected", rule), last
    assert "[remote rejected] " in p.out
    assert "fix:" in text, text
    return text


def write_tag(clone: Clone, target: str, name: str | bytes, type_: str = "commit",
              message: bytes = b"crafted\n") -> str:
    """Write a tag object by hand (git tag refuses odd names): returns its id."""
    if isinstance(name, str):
        name = name.encode()
    body = (f"object {target}\ntype {type_}\ntag ".encode() + name +
            b"\ntagger Dev Eloper <dev@example.com> 1700000000 +0000\n\n" + message)
    out = subprocess.run(["git", "hash-object", "-t", "tag", "-w", "--literally", "--stdin"],
                         cwd=clone.path, input=body, capture_output=True, check=True)
    return out.stdout.decode().strip()


def release_pushed(clone: Clone, version: str = "v1.0.0", component: str = C) -> str:
    name = clone.release(version, component=component)
    accepted(push(clone, name), clone, name)
    return name


def make_tags_fast(clone: Clone, names, target: str) -> None:
    """Many annotated tags in one git process."""
    stream = "".join(f"tag {name}\nfrom {target}\ntagger Dev Eloper <dev@example.com> "
                     f"1700000000 +0000\ndata 8\nRelease\n\n" for name in names)
    clone.git("fast-import", "--quiet", input=stream)


def files_under(path: Path):
    for root, _, files in os.walk(path):
        for name in files:
            yield Path(root) / name


# ---- 1. targets that are not commits -------------------------------------------------

def test_version_and_env_tags_on_trees_and_blobs_are_rejected(server, clone):
    tree = clone.git("rev-parse", "HEAD^{tree}").stdout.strip()
    blob = clone.git("hash-object", "-w", "--stdin", input="a blob, not a release\n").stdout.strip()
    clone.tag(f"{C}/v1.0.0", tree, "Release extraction v1.0.0")           # annotated -> tree
    clone.tag(f"{C}/v1.0.1", blob, "Release extraction v1.0.1")           # annotated -> blob
    clone.git("update-ref", f"refs/tags/{C}/v1.0.2", blob)                # lightweight -> blob
    clone.tag(f"{C}/staging", tree, "Set extraction to staging")          # env -> tree
    clone.git("update-ref", f"refs/tags/{C}/dev", tree)                   # lightweight env -> tree
    before = server.refs()
    p = push(clone, f"{C}/v1.0.0", f"{C}/v1.0.1", f"{C}/v1.0.2", f"{C}/staging", f"{C}/dev")
    text = rejected(p, server, before, {
        f"{C}/v1.0.0": "version-target", f"{C}/v1.0.1": "version-target",
        f"{C}/v1.0.2": "version-target", f"{C}/staging": "env-target",
        f"{C}/dev": "env-target"})
    assert f"{C}/v1.0.0 points at a tree ({tree[:7]}), not a commit" in text
    assert f"{C}/v1.0.1 points at a blob ({blob[:7]}), not a commit" in text
    assert f"{C}/staging must point at a commit; it points at tree {tree[:7]}" in text


# ---- 2. nested tags ---------------------------------------------------------------

def test_nested_version_and_doubly_nested_env_are_rejected(server, clone):
    release_pushed(clone, "v1.0.0")
    # a version tag that wraps another tag object (the v1.0.0 tag object)
    clone.tag(f"{C}/v2.0.0", f"refs/tags/{C}/v1.0.0", "Release extraction v2.0.0")
    # env -> tag -> version tag -> commit
    clone.tag("wrapper", f"refs/tags/{C}/v1.0.0", "a tag around the release")
    clone.tag(f"{C}/staging", "refs/tags/wrapper", "Set extraction to staging")
    # a version tag around 19 more tag objects around the commit
    deep_version_tag(clone, f"{C}/v3.0.0")
    before = server.refs()
    p = push(clone, f"{C}/v2.0.0", f"{C}/staging", f"refs/tags/{C}/v3.0.0")
    text = rejected(p, server, before, {f"{C}/v2.0.0": "version-target",
                                        f"{C}/staging": "env-target",
                                        f"{C}/v3.0.0": "version-target"})
    assert f"{C}/v2.0.0 wraps another tag object ({C}/v1.0.0)" in text
    assert f"{C}/staging is nested 3 tags deep" in text
    assert server.ref("wrapper") is None


def deep_version_tag(clone: Clone, name: str, depth: int = 20) -> str:
    oid = clone.git("rev-parse", "HEAD").stdout.strip()
    for i in range(depth):
        oid = write_tag(clone, oid, name if i == depth - 1 else f"layer{i}",
                        "commit" if i == 0 else "tag")
    clone.git("update-ref", f"refs/tags/{name}", oid)
    return oid


def test_deeply_nested_version_is_reported_as_nested_not_missing(server, clone):
    deep_version_tag(clone, f"{C}/v3.0.0")
    before = server.refs()
    p = push(clone, f"refs/tags/{C}/v3.0.0")
    text = rejected(p, server, before, {f"{C}/v3.0.0": "version-target"})
    assert "missing" not in text, text


# ---- 3. the stale edgit clone ---------------------------------------------------------

def test_stale_clone_rewritten_version_and_env_nested_on_it_both_rejected(server, clone, mode):
    """client-facts: a version deleted and re-made locally on another commit, pushed with
    --force together with an env tag nested on the rewritten object. A per-ref update hook
    used to reject the version but accept the env tag."""
    release_pushed(clone, "v1.0.0")
    accepted(push(clone, "--force", clone.set_env("staging", "v1.0.0")), clone, f"{C}/staging")
    server_v1, server_staging = server.ref(f"{C}/v1.0.0"), server.ref(f"{C}/staging")

    clone.git("tag", "-d", f"{C}/v1.0.0")
    clone.commit("work after the release")
    clone.release("v1.0.0")                     # re-made locally, on another commit
    clone.set_env("staging", "v1.0.0")          # nested on the clone's rewritten object
    assert clone.rev(f"{C}/v1.0.0") != server_v1
    before = server.refs()
    p = push(clone, "--force", f"{C}/v1.0.0", f"{C}/staging")
    text = rejected(p, server, before, {f"{C}/v1.0.0": "version-immutable",
                                        f"{C}/staging": "env-version-mismatch"})
    assert server.ref(f"{C}/staging") == server_staging
    assert "git fetch --tags --force origin" in text
    assert "your clone's v1.0.0 was re-made locally" in text
    assert p.out.count("[remote rejected]") == 2, p.out

    # the advice works: refresh, re-deploy the server's v1.0.0
    clone.git("fetch", "-q", "--tags", "--force", "origin")
    assert clone.rev(f"{C}/v1.0.0") == server_v1
    name = clone.set_env("staging", "v1.0.0", message="Set extraction to staging again")
    accepted(push(clone, "--force", name), clone, f"{C}/staging")


# ---- 4. tag objects under another name ------------------------------------------------

def test_tag_object_pushed_under_another_name_is_rejected(server, clone):
    release_pushed(clone, "v1.0.0")
    clone.tag("rc-build", "HEAD", "an unmanaged tag")
    before = server.refs()
    p = push(clone, f"refs/tags/{C}/v1.0.0:refs/tags/{C}/v1.0.1",
             f"refs/tags/rc-build:refs/tags/{C}/v2.0.0")
    text = rejected(p, server, before, {f"{C}/v1.0.1": "tag-name-mismatch",
                                        f"{C}/v2.0.0": "tag-name-mismatch"})
    assert f"is named '{C}/v1.0.0', not '{C}/v1.0.1'" in text
    assert f"is named 'rc-build', not '{C}/v2.0.0'" in text


def test_lightweight_env_on_own_version_tag_object_is_accepted(server, clone):
    release_pushed(clone, "v1.0.0")
    v1 = clone.rev(f"{C}/v1.0.0")
    clone.git("update-ref", f"refs/tags/{C}/staging", v1)   # the version's tag object itself
    p = push(clone, f"{C}/staging")
    accepted(p, clone, f"{C}/staging")
    assert server.ref(f"{C}/staging") == v1
    last = [r for r in server.audit("decision") if r["ref"].endswith("/staging")][-1]
    assert (last["decision"], last["version"]) == ("accepted", "v1.0.0")
    # the same, on another component's version tag object: not a version of C
    release_pushed(clone, "v1.0.0", component=OTHER)
    clone.git("update-ref", f"refs/tags/{C}/dev", clone.rev(f"{OTHER}/v1.0.0"))
    before = server.refs()
    rejected(push(clone, f"{C}/dev"), server, before, {f"{C}/dev": "env-wrong-component"})


# ---- 5. control characters ------------------------------------------------------------

def test_escape_sequences_in_messages_never_reach_the_terminal(server, clone):
    # accepted version and env tags whose messages carry ESC sequences and a bidi override
    clone.tag(f"{C}/v1.0.0", "HEAD", f"Release extraction v1.0.0 {ESC_TEXT}")
    accepted(push(clone, f"{C}/v1.0.0"), clone, f"{C}/v1.0.0")
    name = clone.set_env("staging", "v1.0.0", message=f"Set extraction to staging {ESC_TEXT}")
    p = push(clone, "--force", name)
    accepted(p, clone, f"{C}/staging")
    assert any(f"{C}/staging" in line and "v1.0.0" in line for line in p.remote), p.out
    # a rejected env tag with such a message (unreleased commit)
    clone.commit()
    clone.tag(f"{C}/dev", "HEAD", f"Set extraction to dev {ESC_TEXT}")
    before = server.refs()
    rejected(push(clone, f"{C}/dev"), server, before, {f"{C}/dev": "env-unreleased"})
    server.audit()  # let a background post-receive finish writing
    log = server.audit_path.read_text()
    assert "\x1b" not in log and "\u202e" not in log


def test_control_characters_in_names_are_printed_escaped(server, clone):
    release_pushed(clone, "v1.0.0")
    head = clone.git("rev-parse", f"{C}/v1.0.0^{{commit}}").stdout.strip()
    # a tag object whose own name carries a screen-clearing ESC sequence and a bidi override
    crafted = write_tag(clone, head, f"{C}/v2.0.0\x1b[2J\x1b[H\u202e0.0.2v",
                        message=f"{ESC_TEXT}\n".encode())
    clone.git("update-ref", f"refs/tags/{C}/v2.0.0", crafted)
    # git-legal but not a managed name
    clone.tag("components/prompts/Extraction/v1.0.0", "HEAD", "Release Extraction")
    before = server.refs()
    p = push(clone, f"{C}/v2.0.0", "components/prompts/Extraction/v1.0.0")
    text = rejected(p, server, before, {
        f"{C}/v2.0.0": "tag-name-mismatch",
        "components/prompts/Extraction/v1.0.0": "name-invalid"})
    assert "\\x1b[2J\\x1b[H\\u202e0.0.2v" in text, text
    assert "name 'Extraction' must be" in text
    assert "  refs/tags/components/prompts/Extraction/v1.0.0" in p.remote


def test_bidi_override_in_a_managed_ref_name_is_name_invalid_printed_escaped(server, clone):
    name = "components/prompts/extr\u202enoitca/v1.0.0"
    clone.tag(name, "HEAD", "Release")
    before = server.refs()
    p = push(clone, f"refs/tags/{name}", git_echoes_raw=True)
    text = rejected(p, server, before, {name: "name-invalid"})
    assert "  refs/tags/components/prompts/extr\\u202enoitca/v1.0.0" in p.remote, text
    assert "name 'extr\\u202enoitca' must be" in text


def test_bidi_override_in_a_branch_name_is_not_tagwardens_business(server, clone):
    clone.git("branch", "feat\u202ex")
    p = push(clone, "refs/heads/feat\u202ex", git_echoes_raw=True)
    assert p.ok, p.out
    assert server.ref("refs/heads/feat\u202ex") == clone.git("rev-parse", "HEAD").stdout.strip()


def test_non_utf8_branch_name_is_not_tagwardens_business(server, clone):
    subprocess.run([b"git", b"branch", b"feat\xffx"], cwd=clone.path, check=True)
    p = push(clone, b"refs/heads/feat\xffx", git_echoes_raw=True)
    assert p.ok, p.out
    assert subprocess.run([b"git", b"rev-parse", b"--verify", b"-q", b"refs/heads/feat\xffx"],
                          cwd=server.path, capture_output=True).returncode == 0


def test_non_utf8_managed_tag_name_is_audited_as_name_invalid(server, clone):
    name = b"components/prompts/extr\xffaction/v1.0.0"
    subprocess.run([b"git", b"tag", b"-a", b"-m", b"Release", name], cwd=clone.path, check=True)
    before = server.refs()
    p = push(clone, b"refs/tags/" + name, git_echoes_raw=True)
    assert not p.ok and server.refs() == before
    assert [(r["decision"], r["rule"]) for r in server.audit("decision")] == \
        [("rejected", "name-invalid")], p.out


def test_tag_object_with_non_utf8_name_is_a_name_mismatch_not_an_internal_error(server, clone):
    head = clone.git("rev-parse", "HEAD").stdout.strip()
    crafted = write_tag(clone, head, f"{C}/v1.0.0".encode() + b"\xff\xfe")
    clone.git("update-ref", f"refs/tags/{C}/v1.0.0", crafted)
    before = server.refs()
    p = push(clone, f"{C}/v1.0.0")
    assert "internal error" not in p.out, p.out
    rejected(p, server, before, {f"{C}/v1.0.0": "tag-name-mismatch"})


# ---- 6. huge pushes ---------------------------------------------------------------

@pytest.mark.parametrize("mode", ["pre-receive"])
def test_thousand_versions_in_one_push_then_one_bad_ref_rejects_all(server, clone, mode):
    head = clone.git("rev-parse", "HEAD").stdout.strip()
    names = [f"components/prompts/c{i:04d}/v1.0.0" for i in range(1000)]
    make_tags_fast(clone, names, head)
    p = push(clone, "refs/tags/components/*:refs/tags/components/*")
    assert p.ok, p.out[-2000:]
    refs = server.refs()
    assert all(refs.get(f"refs/tags/{n}") == clone.rev(n) for n in names)
    decisions = server.audit("decision")
    assert len(decisions) == 1000 and {d["decision"] for d in decisions} == {"accepted"}
    assert len(server.audit("applied")) == 1000

    # 1,000 more, one of them bad: pre-receive takes the push whole or not at all
    more = [f"components/prompts/c{i:04d}/v1.1.0" for i in range(1000)]
    make_tags_fast(clone, more + ["components/prompts/c0500/prod"], head)
    before = server.refs()
    p = push(clone, "refs/tags/components/*:refs/tags/components/*")
    rejected(p, server, before, {"components/prompts/c0500/prod": "slot-unknown"})
    assert p.remote[0] == "tagwarden: push rejected: 1 of 1001 ref updates break the policy"
    assert p.out.count("[remote rejected]") == 1001
    last = server.audit("decision")[-1001:]
    assert sorted(r["rule"] for r in last) == ["atomic-push"] * 1000 + ["slot-unknown"]


@pytest.mark.parametrize("mode", ["update"])
def test_thirty_versions_in_update_mode_and_one_bad_ref(server, clone, mode):
    head = clone.git("rev-parse", "HEAD").stdout.strip()
    names = [f"components/prompts/c{i:02d}/v1.0.0" for i in range(30)]
    make_tags_fast(clone, names + ["components/prompts/c15/prod"], head)
    p = push(clone, "refs/tags/components/*:refs/tags/components/*")
    assert not p.ok  # update mode judges per ref: the 30 good ones land, the bad one not
    refs = server.refs()
    assert all(refs.get(f"refs/tags/{n}") == clone.rev(n) for n in names)
    assert "refs/tags/components/prompts/c15/prod" not in refs
    assert rules_by_ref(p) == {"refs/tags/components/prompts/c15/prod": "slot-unknown"}
    assert p.out.count("[remote rejected]") == 1
    assert len(server.audit("applied")) == 30


# ---- 7. secrets ----------------------------------------------------------------------

SECRETS = {"HTTP_AUTHORIZATION": "Basic c2VjcmV0OnBhc3N3b3Jk", "SECRET_TOKEN": "hunter2-zzz"}
SECRET_VALUES = ("c2VjcmV0OnBhc3N3b3Jk", "secret:password", "hunter2-zzz")


def _no_secrets(p: Push, server: Server) -> None:
    getattr(server, "settle", lambda: None)()  # a background post-receive finishes writing
    for value in SECRET_VALUES:
        assert value not in p.out
        for path in files_under(server.path / "tagwarden"):
            assert value not in path.read_text(errors="replace"), path


def test_secrets_in_the_environment_are_never_logged_or_echoed(server, clone, monkeypatch):
    for var in IDENTITY_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    # GL_USER proves that this client environment reaches the hook (file:// transport)
    env = {**SECRETS, "GL_USER": "envcheck"}

    clone.release("v1.0.0")
    p = push(clone, f"{C}/v1.0.0", env=env)                                  # accepted
    accepted(p, clone, f"{C}/v1.0.0")
    assert server.audit("decision")[-1]["pusher"] == "envcheck"
    _no_secrets(p, server)

    clone.tag(f"{C}/prod", f"{C}/v1.0.0", "Set extraction to prod")
    before = server.refs()
    p = push(clone, f"{C}/prod", env=env)                                     # rejected
    rejected(p, server, before, {f"{C}/prod": "slot-unknown"})
    _no_secrets(p, server)

    # the audit log cannot be written: refused, and nothing leaks anywhere else
    server.audit()
    log = server.audit_path.read_text()
    server.audit_path.unlink()
    server.audit_path.mkdir()
    clone.commit()
    clone.release("v1.1.0")
    p = push(clone, f"{C}/v1.1.0", env=env)
    assert not p.ok and server.refs() == before
    assert "audit log cannot be written" in p.out, p.out
    _no_secrets(p, server)
    server.audit_path.rmdir()
    server.audit_path.write_text(log)

    # a real internal error (its state directory is a file): the traceback goes to the
    # audit log, still without the environment
    shutil.rmtree(server.path / "tagwarden" / "run", ignore_errors=True)
    (server.path / "tagwarden" / "run").write_text("not a directory\n")
    p = push(clone, f"{C}/v1.1.0", env=env)
    assert not p.ok and server.refs() == before
    assert "internal error (incident " in p.out, p.out
    incidents = server.audit("incident")
    assert incidents and incidents[-1]["exception"], "the incident is not in the audit log"
    _no_secrets(p, server)


# ---- 8. identity -------------------------------------------------------------------

IDENTITIES = [  # (what the server set, who that makes the pusher)
    ({"GL_USER": "alice", "GITEA_PUSHER_NAME": "bob", "REMOTE_USER": "carol"}, "GL_USER"),
    ({"GL_USER": "", "GITEA_PUSHER_NAME": "bob", "REMOTE_USER": "carol"}, "GITEA_PUSHER_NAME"),
    ({"REMOTE_USER": "carol"}, "REMOTE_USER"),
]


def test_pusher_comes_from_the_servers_variables_never_from_the_tagger(
        server, clone, monkeypatch):
    for var in (*IDENTITY_VARIABLES, "SSH_CONNECTION", "REMOTE_ADDR", "GATEWAY_INTERFACE"):
        monkeypatch.delenv(var, raising=False)
    order = [IDENTITY_VARIABLES.index(v) for v in ("GL_USER", "GITEA_PUSHER_NAME", "REMOTE_USER")]
    assert order == sorted(order), "the precedence this test assumes changed"
    forged = {**os.environ, "GIT_COMMITTER_NAME": "alice-the-admin",
              "GIT_COMMITTER_EMAIL": "admin@example.com"}
    for i, (given, source) in enumerate(IDENTITIES):
        assert source == next(v for v in IDENTITY_VARIABLES if given.get(v))
        tag = f"{C}/v1.0.{i}"
        git("tag", "-a", "-m", f"Release extraction v1.0.{i}", tag, "HEAD",
            cwd=clone.path, env=forged)
        assert "tagger alice-the-admin" in clone.git("cat-file", "tag", tag).stdout
        p = push(clone, tag, env=given)
        accepted(p, clone, tag)
        records = [r for r in server.audit() if r["ref"] == f"refs/tags/{tag}"]
        assert {r["event"] for r in records} == {"decision", "applied"}, records
        for r in records:
            assert (r["pusher"], r["pusher_source"]) == (given[source], source), r
            assert "alice-the-admin" not in r["pusher"]


# ---- 9. push options -------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["pre-receive"])
def test_push_options_reach_the_audit_record(server, clone, mode):
    clone.release("v1.0.0")
    p = push(clone, "-o", "note=hello", "-o", "ticket=42", "-o", "evil=\x1b[2J",
             f"{C}/v1.0.0")
    accepted(p, clone, f"{C}/v1.0.0")
    expected = ["note=hello", "ticket=42", "evil=\\x1b[2J"]
    assert server.audit("decision")[-1]["push_options"] == expected
    assert server.audit("applied")[-1]["push_options"] == expected


@pytest.mark.parametrize("mode", ["update"])
def test_push_options_are_audited_in_update_mode_too(server, clone, mode):
    clone.release("v1.0.0")
    accepted(push(clone, "-o", "note=hello", "-o", "ticket=42", f"{C}/v1.0.0"), clone)
    assert server.audit("applied")[-1]["push_options"] == ["note=hello", "ticket=42"]


# ---- 10. SHA-256 repositories ----------------------------------------------------------

def test_sha256_repository_refuses_tags_clearly_and_passes_branches(tmp_path, mode):
    path = tmp_path / "sha256.git"
    git("init", "-q", "--bare", "--object-format=sha256", str(path), cwd=tmp_path)
    server = Server(path)  # re-initialising keeps the object format
    seed = tmp_path / "seed"
    git("init", "-q", "--object-format=sha256", str(seed), cwd=tmp_path)
    (seed / "README").write_text("seed\n")
    git("add", "README", cwd=seed)
    git("commit", "-q", "-m", "seed", cwd=seed)
    git("push", "-q", str(path), "HEAD:refs/heads/main", cwd=seed)
    server.install(mode)
    clone = Clone(server, tmp_path / "clone")
    assert clone.git("rev-parse", "--show-object-format").stdout.strip() == "sha256"

    clone.commit()
    p = push(clone, "HEAD:refs/heads/main")                        # branch only: accepted
    assert p.ok, p.out
    assert server.ref("refs/heads/main") == clone.git("rev-parse", "HEAD").stdout.strip()

    clone.release("v1.0.0")
    before = server.refs()
    p = push(clone, f"{C}/v1.0.0")
    assert not p.ok and server.refs() == before
    assert p.remote[0] == "tagwarden: push rejected: this repository uses SHA-256 object ids", \
        p.out
    assert "internal error" not in p.out
    assert server.audit("decision")[-1]["rule"] == "object-format"
