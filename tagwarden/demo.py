"""``tagwarden demo``: a bare repository with the hooks, a clone, and a short replayed
session of accepted and rejected pushes, then the audit lines it left."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

from .install import install

C = "components/prompts/extraction"
MARKER = ".tagwarden-demo"


def run(directory: str) -> int:
    directory = os.path.abspath(directory)
    if os.path.exists(directory):
        if not os.path.exists(os.path.join(directory, MARKER)):
            print(f"tagwarden demo: {directory} exists and is not a demo folder; "
                  "name another one", file=sys.stderr)
            return 2
        shutil.rmtree(directory)
    os.makedirs(directory)
    open(os.path.join(directory, MARKER), "w").close()
    server, clone = os.path.join(directory, "server.git"), os.path.join(directory, "clone")
    env = {**os.environ, "GIT_AUTHOR_NAME": "Demo Dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
           "GIT_COMMITTER_NAME": "Demo Dev", "GIT_COMMITTER_EMAIL": "dev@example.com",
           "GIT_CONFIG_NOSYSTEM": "1"}

    def git(*args, cwd=clone, show=True, check=True):
        if show:
            print(f"\n$ git {' '.join(args)}", flush=True)
        out = subprocess.run(["git", "-c", "advice.nestedTag=false", "-c",
                              "init.defaultBranch=main", *args],
                             cwd=cwd, env=env, capture_output=True, text=True)
        if show:
            text = (out.stdout + out.stderr).rstrip()
            print(text if text else "(no output)")
            print(f"# -> {'accepted' if out.returncode == 0 else 'REJECTED'}", flush=True)
        elif check and out.returncode != 0:
            raise SystemExit(f"demo setup failed: git {' '.join(args)}\n{out.stderr}")
        return out

    git("init", "-q", "--bare", server, cwd=directory, show=False)
    done = install(server, "pre-receive")
    print(f"Installed tagwarden into {server}: {'; '.join(done)}")
    git("clone", "-q", server, clone, cwd=directory, show=False)

    def commit(n):
        with open(os.path.join(clone, "prompt.txt"), "w") as f:
            f.write(f"extraction prompt, revision {n}\n")
        git("add", "prompt.txt", show=False)
        git("commit", "-q", "-m", f"prompt revision {n}", show=False)

    def env_tag(slot, version):
        git("tag", "-f", "-a", "-m", f"Set extraction to {slot}", f"{C}/{slot}",
            f"{C}/{version}", show=False)

    commit(1)
    git("push", "-q", "origin", "HEAD:main", show=False)
    print("\n## Release v1.0.0 and deploy it: staging, then production")
    git("tag", "-a", "-m", "Release extraction v1.0.0", f"{C}/v1.0.0", show=False)
    git("push", "origin", f"{C}/v1.0.0")
    env_tag("staging", "v1.0.0")
    git("push", "--force", "origin", f"{C}/staging")
    env_tag("production", "v1.0.0")
    git("push", "--force", "origin", f"{C}/production")

    print("\n## Release v1.1.0 and try to skip staging")
    commit(2)
    git("tag", "-a", "-m", "Release extraction v1.1.0", f"{C}/v1.1.0", show=False)
    git("push", "origin", f"{C}/v1.1.0")
    env_tag("production", "v1.1.0")
    git("push", "--force", "origin", f"{C}/production")

    print("\n## Follow the fix: staging first, then production")
    env_tag("staging", "v1.1.0")
    git("push", "--force", "origin", f"{C}/staging")
    git("push", "--force", "origin", f"{C}/production")

    print("\n## Rewrite a released version, and push a mistyped slot")
    commit(3)
    git("tag", "-f", "-a", "-m", "Release extraction v1.0.0", f"{C}/v1.0.0", show=False)
    git("push", "--force", "origin", f"{C}/v1.0.0")
    git("tag", "-a", "-m", "Set extraction to prod", f"{C}/prod", f"{C}/v1.1.0", show=False)
    git("push", "origin", f"{C}/prod")

    print("\n## Roll production back to v1.0.0")
    git("fetch", "-q", "--tags", "--force", "origin", show=False)
    env_tag("production", "v1.0.0")
    git("push", "--force", "origin", f"{C}/production")

    audit = os.path.join(server, "tagwarden", "audit.jsonl")
    records = _settled(audit)
    print(f"\n## The audit log ({audit}), one JSON object per line; key fields:")
    for r in records:
        print(f"{r['ts']}  {r['event']:<11} {r['hook']:<12} {r['pusher']:<8} "
              f"{r['ref'][len('refs/tags/'):]:<40} {r.get('decision') or '-':<9} "
              f"{r.get('change') or '-':<12} {r.get('rule') or ''}")
    from .cli import main as cli

    print(f"\n## The deployment ledger (refs/tagwarden/ledger): tagwarden history {C} "
          f"--repo {server}")
    sys.stdout.flush()
    cli(["history", C, "--repo", server])
    print(f"\n## tagwarden status {server}")
    sys.stdout.flush()
    cli(["status", server])
    report = os.path.join(os.path.dirname(server), "report.html")
    sys.stdout.flush()
    cli(["report", "--html", report, server])
    print(f"\nTry it yourself: cd {clone} and push tags; the policy in use is the shipped "
          f"default (policy/default.yaml). Open {report} in a browser for the timelines.")
    return 0


def _settled(audit: str, timeout: float = 10.0) -> list[dict]:
    """The audit records once post-receive (which records in the background) caught up:
    one applied line for every accepted decision."""
    deadline = time.monotonic() + timeout
    while True:
        with open(audit, encoding="utf-8") as f:
            records = [json.loads(line) for line in f]
        accepted = sum(r["event"] == "decision" and r["decision"] != "rejected" for r in records)
        applied = sum(r["event"] == "applied" for r in records)
        # post-receive writes the ledger after the audit, then drops the push's state
        run = os.path.join(os.path.dirname(audit), "run")
        pending = os.path.isdir(run) and any(n.endswith(".json") for n in os.listdir(run))
        if (applied >= accepted and not pending) or time.monotonic() > deadline:
            return records
        time.sleep(0.05)
