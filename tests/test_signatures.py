"""tagwarden.signatures: real ssh keys, real signed tags, and git verify-tag as the referee."""
from __future__ import annotations

import os
import subprocess
import tempfile
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import git
from tagwarden.signatures import ARMOURS, _tagger_time, split_tag, verify_tag

PROPERTY = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
OLD = "1577835000 +0000"  # 2019-12-31T23:30:00Z, half an hour before 20200101


class Lab:
    """Two ssh keys (alice is allowed, mallory is not) and a repository to tag in."""

    def __init__(self, tmp):
        self.tmp, self.repo = tmp, tmp / "repo"
        for who in ("alice", "mallory"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", who,
                            "-f", str(tmp / who)], check=True)
        git("init", "-q", str(self.repo), cwd=tmp)
        git("commit", "-q", "--allow-empty", "-m", "init", cwd=self.repo)
        self.allowed = self.signers('namespaces="git"')

    def fingerprint(self, who) -> str:
        out = subprocess.run(["ssh-keygen", "-lf", str(self.tmp / f"{who}.pub")],
                             capture_output=True, text=True, check=True).stdout.split()
        return f"{out[-1].strip('()')} {out[1]}"  # "ED25519 SHA256:..."

    def signers(self, options, who="alice", name="allowed", principal="alice@example.com"):
        key = (self.tmp / f"{who}.pub").read_text().strip()
        path = self.tmp / name
        path.write_text(f"{principal} {options} {key}\n")
        return str(path)

    def tag(self, name, key="alice", date=None, message="msg") -> bytes:
        sign = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={self.tmp / key}", "tag",
                "-s"] if key else ["tag", "-a"]
        env = {**os.environ, "GIT_COMMITTER_DATE": date} if date else None
        git(*sign, "-m", message, name, cwd=self.repo, env=env)
        return self.raw(name)

    def raw(self, name) -> bytes:
        return subprocess.run(["git", "cat-file", "tag", name], cwd=self.repo,
                              capture_output=True, check=True).stdout

    def write(self, raw: bytes) -> str:
        return git("hash-object", "--literally", "-t", "tag", "-w", "--stdin", cwd=self.repo,
                   input=raw.decode()).stdout.strip()

    def git_verifies(self, name, allowed=None, revoked=None) -> bool:
        conf = ["-c", f"gpg.ssh.allowedSignersFile={allowed or self.allowed}"]
        if revoked:
            conf += ["-c", f"gpg.ssh.revocationFile={revoked}"]
        return git(*conf, "verify-tag", name, cwd=self.repo, check=False).returncode == 0


@pytest.fixture
def lab(tmp_path) -> Lab:
    return Lab(tmp_path)


def tampered(raw: bytes) -> bytes:
    return raw.replace(b"\nmsg\n", b"\nmsh\n", 1)


def test_good_names_principal_and_key(lab):
    sig = verify_tag(lab.tag("v1"), lab.allowed)
    assert sig.status == "good" and sig.principal == "alice@example.com"
    assert sig.key == lab.fingerprint("alice") and sig.key.startswith("ED25519 SHA256:")
    assert "alice@example.com" in sig.detail


def test_unsigned(lab):
    assert verify_tag(lab.tag("v1", key=None), lab.allowed).status == "unsigned"


def test_untrusted_names_the_key(lab):
    sig = verify_tag(lab.tag("v1", key="mallory"), lab.allowed)
    assert sig.status == "untrusted" and sig.principal is None
    assert sig.key == lab.fingerprint("mallory") and sig.key in sig.detail


@pytest.mark.parametrize("key", ["alice", "mallory"])
def test_tampered_payload_is_invalid(lab, key):
    oid = lab.write(tampered(lab.tag("v1", key=key)))
    assert verify_tag(lab.raw(oid), lab.allowed).status == "invalid"
    assert not lab.git_verifies(oid)


def test_corrupt_armour_is_invalid(lab):
    raw = lab.tag("v1").replace(b"U1NIU0lH", b"U1NIU0lX")
    assert verify_tag(raw, lab.allowed).status == "invalid"


@pytest.mark.parametrize("options", ['namespaces="git",valid-before="20200101"',
                                     'namespaces="git",valid-after="21000101"'])
def test_key_outside_its_validity_is_invalid(lab, options):
    allowed = lab.signers(options)
    sig = verify_tag(lab.tag("v1"), allowed)
    assert sig.status == "invalid" and sig.key == lab.fingerprint("alice")
    assert "valid-" in sig.detail and not lab.git_verifies("v1", allowed)


def test_validity_is_judged_at_the_tagger_date(lab):
    """A tag made in 2019 stays good after its key expired in 2020; it is not good under
    a key valid only from 2020."""
    raw = lab.tag("old", date=OLD)
    before = lab.signers('namespaces="git",valid-before="20200102"', name="before")
    after = lab.signers('namespaces="git",valid-after="20200102"', name="after")
    assert verify_tag(raw, before).status == "good" and lab.git_verifies("old", before)
    assert verify_tag(raw, after).status == "invalid" and not lab.git_verifies("old", after)


@pytest.mark.parametrize("tz, good", [("UTC0", True), ("XXX-1", False)])
def test_verify_time_is_local_time_like_git(lab, tz, good):
    """git passes the tagger date in the verifier's local time: 23:30Z is 2020 at UTC+1."""
    raw = lab.tag("old", date=OLD)
    allowed = lab.signers('namespaces="git",valid-before="20200101"')
    saved = os.environ.get("TZ")
    os.environ["TZ"] = tz
    time.tzset()
    try:
        assert (verify_tag(raw, allowed).status == "good") is good
        assert lab.git_verifies("old", allowed) is good
    finally:
        os.environ.pop("TZ") if saved is None else os.environ.update(TZ=saved)
        time.tzset()


def test_revoked_key(lab):
    revoked = str(lab.tmp / "alice.pub")
    sig = verify_tag(lab.tag("v1"), lab.allowed, revoked=revoked)
    assert sig.status == "invalid" and "revoked" in sig.detail
    assert not lab.git_verifies("v1", revoked=revoked)
    other = str(lab.tmp / "mallory.pub")
    assert verify_tag(lab.raw("v1"), lab.allowed, revoked=other).status == "good"


def test_namespace_restriction(lab):
    allowed = lab.signers('namespaces="file"')
    sig = verify_tag(lab.tag("v1"), allowed)
    assert sig.status == "invalid" and "namespace" in sig.detail
    assert not lab.git_verifies("v1", allowed)


@pytest.mark.parametrize("armour, kind", [(b"PGP SIGNATURE", "OpenPGP"),
                                          (b"PGP MESSAGE", "OpenPGP"),
                                          (b"SIGNED MESSAGE", "X.509")])
def test_other_formats_are_unsupported(lab, armour, kind):
    raw = lab.tag("v1", key=None) + b"-----BEGIN " + armour + b"-----\nAAAA\n-----END-----\n"
    sig = verify_tag(raw, lab.allowed)
    assert sig.status == "unsupported" and kind in sig.detail and "SSH" in sig.detail


def test_missing_files_are_errors(lab):
    raw = lab.tag("v1")
    assert verify_tag(raw, str(lab.tmp / "nope")).status == "error"
    assert verify_tag(raw, str(lab.tmp)).status == "error"  # a directory
    sig = verify_tag(raw, lab.allowed, revoked=str(lab.tmp / "nope"))
    assert sig.status == "error" and str(lab.tmp) not in sig.detail


def test_missing_ssh_keygen_is_an_error(lab, monkeypatch):
    raw = lab.tag("v1")
    monkeypatch.setenv("PATH", str(lab.tmp / "empty"))
    sig = verify_tag(raw, lab.allowed)
    assert sig.status == "error" and "ssh-keygen" in sig.detail


def test_hermetic_environment_and_timeout(lab, monkeypatch):
    """A stand-in ssh-keygen first on PATH records what it is given, then hangs."""
    raw = lab.tag("v1")
    bin_ = lab.tmp / "bin"
    bin_.mkdir()
    (bin_ / "ssh-keygen").write_text(f"#!/bin/sh\nenv > {lab.tmp / 'env'}\nls -A \"$HOME\" "
                                     f"> {lab.tmp / 'home'}\nexec sleep 30\n")
    (bin_ / "ssh-keygen").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}:{os.environ['PATH']}")
    monkeypatch.setenv("SSH_AUTH_SOCK", "/nonexistent/agent")
    temp = lab.tmp / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    started = time.monotonic()
    sig = verify_tag(raw, lab.allowed, timeout=1.0)
    assert sig.status == "error" and "longer than" in sig.detail
    assert time.monotonic() - started < 10
    names = {line.split("=", 1)[0] for line in (lab.tmp / "env").read_text().splitlines()}
    assert names <= {"PATH", "HOME", "TZ", "PWD", "SHLVL", "_", "OLDPWD"}
    assert (lab.tmp / "home").read_text() == ""  # an empty HOME: no ~/.ssh
    assert os.listdir(temp) == []  # the private temp dir is gone


def test_control_characters_are_escaped(lab):
    allowed = lab.signers('namespaces="git"', principal="ev\x1b[31mil@example.com")
    sig = verify_tag(lab.tag("v1"), allowed)
    assert sig.status == "good" and sig.principal == "ev\\x1b[31mil@example.com"
    assert "\x1b" not in sig.detail


@pytest.mark.parametrize("raw", [b"", b"\xff\xfe\x00garbage", b"object \n\n\n",
                                 "tag \u202e\n\nmsg".encode(), b"\x00" * 64])
def test_garbage_is_unsigned(lab, raw):
    assert verify_tag(raw, lab.allowed).status == "unsigned"


@pytest.mark.parametrize("raw", [b"\xff\n-----BEGIN SSH SIGNATURE-----\n\xfe\n",
                                 b"-----BEGIN SSH SIGNATURE-----",
                                 (b"tagger a <b> 99999999999999999999 +0000\n\nm\n"
                                  b"-----BEGIN SSH SIGNATURE-----\nAAAA\n")])
def test_garbage_with_an_ssh_armour_never_raises(lab, raw):
    assert verify_tag(raw, lab.allowed).status in ("invalid", "error")


def test_signed_tag_without_tagger_is_refused_like_git(lab):
    """git verify-tag fails a signed tag object that has no tagger line."""
    head = git("rev-parse", "HEAD", cwd=lab.repo).stdout.strip()
    payload = lab.tmp / "payload"
    payload.write_bytes(f"object {head}\ntype commit\ntag bare\n\nmsg\n".encode())
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-n", "git", "-f",
                    str(lab.tmp / "alice"), str(payload)], check=True)
    oid = lab.write(payload.read_bytes() + (lab.tmp / "payload.sig").read_bytes())
    assert verify_tag(lab.raw(oid), lab.allowed).status == "invalid"
    assert not lab.git_verifies(oid)


def test_gpgsig_header_is_not_signed_like_git(lab):
    """git drops one gpgsig header (the other hash's signature) from the payload."""
    raw = lab.tag("v1").replace(b"\ntag v1\n", b"\ntag v1\ngpgsig-sha256 x\n y\n", 1)
    oid = lab.write(raw)
    assert verify_tag(raw, lab.allowed).status == "good" and lab.git_verifies(oid)
    raw = raw.replace(b"\ntag v1\n", b"\ntag v1\ngpgsig z\n", 1)  # git removes only one
    oid = lab.write(raw)
    assert verify_tag(raw, lab.allowed).status == "invalid" and not lab.git_verifies(oid)


@pytest.mark.parametrize("case", ["good", "unsigned", "untrusted", "tampered", "expired",
                                  "namespace", "extra-header"])
def test_agrees_with_git_verify_tag(lab, case):
    allowed = lab.signers('namespaces="git",valid-before="20200101"') if case == "expired" \
        else lab.signers('namespaces="file"') if case == "namespace" else lab.allowed
    raw = lab.tag("v1", key={"unsigned": None, "untrusted": "mallory"}.get(case, "alice"))
    if case == "tampered":
        raw = tampered(raw)
    elif case == "extra-header":
        raw = raw.replace(b"\ntag v1\n", b"\ntag v1\nextra 1\n", 1)
    oid = lab.write(raw)
    assert (verify_tag(lab.raw(oid), allowed).status == "good") is \
        lab.git_verifies(oid, allowed) is (case == "good")


@pytest.mark.parametrize("header, expected", [
    (b"tagger A <a@b> 1577835000 +0100", 1577835000),
    (b"tagger A <a@b>", 0),  # no date: git omits -Overify-time
    (b"tagger A <a@b> soon", 0),
    (b"tagger A a@b 1577835000 +0000", None),  # no <email>: git refuses
    (b"taggerx A <a@b> 1 +0000", None),
    (b"tagger ", None),  # an empty tagger: git refuses, and looks no further
    (b"tagger A <a@b>1577835000 -0130 extra", 1577835000),
    (b"", None),
])
def test_tagger_time(header, expected):
    assert _tagger_time(b"object 1\ntype commit\n" + header + b"\n\ntagger A <a@b> 5 +0000\n") \
        == expected


LINES = st.one_of(st.sampled_from([a for a, _ in ARMOURS] + [
    b"-----BEGIN SSH SIGNATURE----- trailing", b" -----BEGIN SSH SIGNATURE-----",
    b"-----END SSH SIGNATURE-----", b"gpgsig x", b"gpgsig-sha256 y", b" continued", b"",
    b"tagger A <a@b> 1 +0000"]), st.binary(max_size=24))


@PROPERTY
@given(st.one_of(st.binary(max_size=200), st.lists(LINES, max_size=12).map(b"\n".join)))
def test_split_tag_property(raw):
    payload, sig, kind = split_tag(raw)
    starts = [i for i in range(len(raw)) if (i == 0 or raw[i - 1:i] == b"\n") and
              raw.startswith(tuple(a for a, _ in ARMOURS), i)]
    if not starts:
        assert (payload, sig, kind) == (raw, None, None)
        return
    assert sig == raw[starts[-1]:] and raw.endswith(sig)
    assert kind == next(k for a, k in ARMOURS if sig.startswith(a))
    if b"gpgsig" not in raw:
        assert payload + sig == raw
    else:
        assert len(payload) <= len(raw) - len(sig)
