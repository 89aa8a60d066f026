"""Hosts that run hooks through a dispatcher (Gitea's hooks/NAME.d/, GitLab's
custom_hooks/NAME.d/): the shims sit one process below git-receive-pack, and post-receive
must still find the push it belongs to."""
from __future__ import annotations

import sys

import pytest

from conftest import C, Clone, Server
from tagwarden.install import shim

# Gitea's own dispatcher script, as it writes hooks/pre-receive and hooks/post-receive
GITEA_DISPATCHER = """#!/usr/bin/env bash
data=$(cat)
exitcodes=""
hookname=$(basename $0)
GIT_DIR=${GIT_DIR:-$(dirname $0)/..}

for hook in ${GIT_DIR}/hooks/${hookname}.d/*; do
  test -x "${hook}" && test -f "${hook}" || continue
  echo "${data}" | "${hook}"
  exitcodes="${exitcodes} $?"
done

for i in ${exitcodes}; do
  [ ${i} -eq 0 ] || exit ${i}
done
"""


@pytest.fixture
def gitea(tmp_path):
    server = Server(tmp_path / "srv.git")
    hooks = server.path / "hooks"
    for name in ("pre-receive", "post-receive"):
        (hooks / name).write_text(GITEA_DISPATCHER)
        (hooks / name).chmod(0o755)
        (hooks / f"{name}.d").mkdir()
        target = hooks / f"{name}.d" / "tagwarden"
        target.write_text(shim(name, sys.executable))
        target.chmod(0o755)
    clone = Clone(server, tmp_path / "clone")
    clone.commit()
    assert clone.push("HEAD:refs/heads/main").ok
    return server, clone


def test_rejections_and_promotions_work_behind_a_dispatcher(gitea):
    server, clone = gitea
    clone.release("v1.0.0")
    assert clone.push(f"{C}/v1.0.0").ok
    before = server.refs()
    push = clone.deploy("production", "v1.0.0")
    assert not push.ok and server.refs() == before
    assert any("rule promotion-order:" in line for line in push.remote)
    assert clone.deploy("staging", "v1.0.0").ok
    assert clone.deploy("production", "v1.0.0").ok


def test_post_receive_behind_a_dispatcher_joins_its_push(gitea):
    server, clone = gitea
    clone.release("v1.0.0")
    clone.set_env("staging", "v1.0.0")
    assert clone.push(f"{C}/v1.0.0", f"{C}/staging").ok
    decided = server.audit("decision")
    applied = server.audit("applied")
    assert len(decided) == 2 and len(applied) == 2
    assert {r["push_id"] for r in applied} == {decided[0]["push_id"]}
    assert all(r["decision"] == "accepted" for r in applied)
    assert {r["change"] for r in applied} == {"create", "deploy"}
    assert not list((server.path / "tagwarden" / "run").glob("*.state"))
    assert not list((server.path / "tagwarden" / "locks").glob("*.lock"))
