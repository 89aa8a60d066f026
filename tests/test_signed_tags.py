"""Signed tags required by the policy: real ssh keys, real `git tag -s`, real pushes in
both hook modes."""
from __future__ import annotations

import subprocess

import pytest

from conftest import C, make_server


@pytest.fixture
def signed(tmp_path, mode):
    keys = tmp_path / "keys"
    keys.mkdir()
    for who in ("alice", "mallory"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", who,
                        "-f", str(keys / who)], check=True)
    policy_dir = tmp_path / "policy"
    policy_dir.mkdir()
    alice = (keys / "alice.pub").read_text().strip()
    (policy_dir / "allowed_signers").write_text(f'alice@example.com namespaces="git" {alice}\n')
    (policy_dir / "policy.yaml").write_text(
        "signatures:\n  allowed_signers: allowed_signers   # beside this file\n"
        "  versions: required\n  slots: [production]\n")
    server, clone = make_server(tmp_path, mode, policy_dir / "policy.yaml")
    return server, clone, keys


def sign(clone, keys, who, name, target, force=False):
    clone.git("-c", "gpg.format=ssh", "-c", f"user.signingkey={keys / who}", "tag", "-s",
              *(["-f"] if force else []), "-m", f"signed by {who}", name, target)


def fingerprint(keys, who) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(keys / f"{who}.pub")], capture_output=True,
                         text=True, check=True).stdout.split()
    return out[1]


def test_a_version_signed_by_an_allowed_key_is_accepted(signed):
    server, clone, keys = signed
    clone.commit()
    sign(clone, keys, "alice", f"{C}/v1.0.0", "HEAD")
    push = clone.push(f"{C}/v1.0.0")
    assert push.ok, push.out
    assert server.ref(f"{C}/v1.0.0") == clone.rev(f"{C}/v1.0.0")


def test_unsigned_and_lightweight_versions_are_refused_naming_the_allowed_signers(signed):
    server, clone, keys = signed
    clone.commit()
    push = clone.push(clone.release("v1.0.0"))
    assert not push.ok
    text = "\n".join(push.remote)
    assert f"rule tag-signature: {C}/v1.0.0 is unsigned: allowed signers: alice@example.com; " \
           "this policy requires version tags to be annotated tags signed by an allowed key" \
        in text
    assert f"fix: git tag -d {C}/v1.0.0 && git -c gpg.format=ssh" in text
    assert server.ref(f"{C}/v1.0.0") is None

    clone.tag(f"{C}/v1.0.1", annotated=False)
    light = clone.push(f"{C}/v1.0.1")
    assert not light.ok and "is a lightweight tag (no tag object of its own, so no signature)" \
        in "\n".join(light.remote)


def test_a_version_signed_by_another_key_is_refused_naming_that_key(signed):
    server, clone, keys = signed
    clone.commit()
    sign(clone, keys, "mallory", f"{C}/v1.0.0", "HEAD")
    push = clone.push(f"{C}/v1.0.0")
    assert not push.ok
    text = "\n".join(push.remote)
    assert "is signed by a key that is not allowed" in text
    assert fingerprint(keys, "mallory") in text and "allowed signers: alice@example.com" in text
    record = [r for r in server.audit("decision") if r["ref"].endswith("v1.0.0")][-1]
    assert (record["decision"], record["rule"]) == ("rejected", "tag-signature")


def test_moves_of_named_slots_are_signed_env_tags(signed):
    server, clone, keys = signed
    clone.commit()
    sign(clone, keys, "alice", f"{C}/v1.0.0", "HEAD")
    assert clone.push(f"{C}/v1.0.0").ok
    assert clone.deploy("staging", "v1.0.0").ok  # staging is not named: unsigned is fine

    unsigned = clone.deploy("production", "v1.0.0")
    assert not unsigned.ok
    assert f"rule tag-signature: {C}/production is unsigned" in "\n".join(unsigned.remote)
    assert "requires moves of production to be annotated tags signed" in \
        "\n".join(unsigned.remote)

    sign(clone, keys, "mallory", f"{C}/production", f"refs/tags/{C}/v1.0.0", force=True)
    assert not clone.push("--force", f"{C}/production").ok

    sign(clone, keys, "alice", f"{C}/production", f"refs/tags/{C}/v1.0.0", force=True)
    push = clone.push("--force", f"{C}/production")
    assert push.ok, push.out
    assert server.commit_of(f"{C}/production") == clone.rev(f"{C}/v1.0.0^{{commit}}")


def test_a_missing_allowed_signers_file_refuses_without_blaming_the_pusher(signed, tmp_path):
    server, clone, keys = signed
    (tmp_path / "policy" / "allowed_signers").unlink()
    clone.commit()
    sign(clone, keys, "alice", f"{C}/v1.0.0", "HEAD")
    push = clone.push(f"{C}/v1.0.0")
    assert not push.ok
    text = "\n".join(push.remote)
    assert "is not checkable right now" in text and "not your fault" in text
    assert server.ref(f"{C}/v1.0.0") is None
