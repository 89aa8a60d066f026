"""A stale clone that pushes --tags --force (the common client does, for every deploy)
re-sends the env tag objects it fetched long ago. tagwarden refuses an env tag object
the repository already had; a deliberate move back, made as a new tag object, passes."""
from __future__ import annotations

from conftest import C, Clone, Server


def _two_versions_staging_on_the_first(clone):
    clone.release("v1.0.0")
    clone.commit()
    clone.release("v1.1.0")
    assert clone.push(f"{C}/v1.0.0", f"{C}/v1.1.0").ok
    assert clone.deploy("staging", "v1.0.0").ok


def test_stale_clone_cannot_revert_a_later_deploy(server, clone, tmp_path):
    _two_versions_staging_on_the_first(clone)
    stale = Clone(server, tmp_path / "stale")  # has staging -> v1.0.0 and stops fetching
    assert clone.deploy("staging", "v1.1.0").ok
    moved = server.ref(f"{C}/staging")

    stale.commit()
    stale.release("v1.2.0")  # its own work, pushed the way the client pushes everything
    push = stale.push("--tags", "--force")
    assert not push.ok
    assert server.ref(f"{C}/staging") == moved  # the later deploy stands
    text = "\n".join(push.remote)
    assert f"refs/tags/{C}/staging" in text and "rule env-stale:" in text
    assert "git fetch --tags --force origin" in text
    record = [r for r in server.audit("decision") if r["ref"].endswith("/staging")][-1]
    assert record["rule"] == "env-stale" and record["decision"] == "rejected"

    # after the fix the message gives, the same push goes through and staging stays
    stale.git("fetch", "-q", "--tags", "--force", "origin")
    assert stale.push("--tags", "--force").ok
    assert server.ref(f"{C}/staging") == moved
    assert server.ref(f"{C}/v1.2.0") == stale.rev(f"{C}/v1.2.0")


def test_a_deliberate_move_back_with_a_new_tag_object_passes(server, clone):
    _two_versions_staging_on_the_first(clone)
    assert clone.deploy("staging", "v1.1.0").ok
    push = clone.deploy("staging", "v1.0.0", message="Set extraction to staging (back)")
    assert push.ok, push.out
    assert any("[rollback]" in line for line in push.remote)


def test_re_sending_an_old_tag_object_by_hand_is_stale_too(server, clone):
    _two_versions_staging_on_the_first(clone)
    old = server.ref(f"{C}/staging")
    assert clone.deploy("staging", "v1.1.0").ok
    before = server.refs()
    push = clone.push("--force", f"{old}:refs/tags/{C}/staging")
    assert not push.ok and server.refs() == before
    assert any("rule env-stale:" in line for line in push.remote)


def test_a_refused_tag_object_can_be_pushed_again_once_the_upstream_holds_it(server, clone):
    """Update mode keeps a refused ref's objects (they leave quarantine before the update
    hooks run): only what the slot actually held counts as stale."""
    clone.release("v1.0.0")
    assert clone.push(f"{C}/v1.0.0").ok
    clone.set_env("production", "v1.0.0")
    assert not clone.push("--force", f"{C}/production").ok  # staging holds nothing yet
    assert clone.deploy("staging", "v1.0.0").ok
    push = clone.push("--force", f"{C}/production")  # the very same tag object
    assert push.ok, push.out


def test_stale_lightweight_env_tags_are_caught_too(server, clone, tmp_path):
    clone.release("v1.0.0")
    clone.commit()
    clone.release("v1.1.0")
    assert clone.push(f"{C}/v1.0.0", f"{C}/v1.1.0").ok
    clone.tag(f"{C}/dev", f"{C}/v1.0.0^{{}}", annotated=False)
    assert clone.push(f"{C}/dev").ok
    stale = Clone(server, tmp_path / "stale")
    clone.tag(f"{C}/dev", f"{C}/v1.1.0^{{}}", annotated=False, force=True)
    assert clone.push("--force", f"{C}/dev").ok
    moved = server.ref(f"{C}/dev")
    push = stale.push("--tags", "--force")
    assert not push.ok and server.ref(f"{C}/dev") == moved
    assert any("rule env-stale:" in line for line in push.remote)


def test_history_from_before_the_install_counts(tmp_path, mode):
    """A repository that had tags before tagwarden: the ledger is seeded at install with
    the value each slot had then."""
    server = Server(tmp_path / "srv.git")
    clone = Clone(server, tmp_path / "clone")
    clone.commit()
    _two_versions_staging_on_the_first(clone)  # pushed with no hooks, no ledger
    stale = Clone(server, tmp_path / "stale")
    server.install(mode)
    assert clone.deploy("staging", "v1.1.0").ok
    moved = server.ref(f"{C}/staging")
    push = stale.push("--tags", "--force")
    assert not push.ok and server.ref(f"{C}/staging") == moved
    assert any("rule env-stale:" in line for line in push.remote)


def test_rollback_is_exact_once_the_slot_has_history(server, clone):
    """Back to a version production held: a rollback. To an earlier version it never
    held: a promotion like any other."""
    clone.release("v0.9.0")
    clone.commit()
    clone.release("v1.0.0")
    clone.commit()
    clone.release("v1.1.0")
    assert clone.push(f"{C}/v0.9.0", f"{C}/v1.0.0", f"{C}/v1.1.0").ok
    for version in ("v1.0.0", "v1.1.0"):
        assert clone.deploy("staging", version).ok
        assert clone.deploy("production", version).ok
    back = clone.deploy("production", "v1.0.0", message="Set extraction to production (back)")
    assert back.ok and any("[rollback]" in line for line in back.remote)
    before = server.refs()
    never = clone.deploy("production", "v0.9.0")
    assert not never.ok and server.refs() == before
    assert any("rule promotion-order:" in line for line in never.remote)
