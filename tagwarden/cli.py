"""tagwarden: the command line for admins and auditors.

    tagwarden install [--mode pre-receive|update] [--policy FILE] [--dry-run] REPO...
    tagwarden uninstall [--dry-run] REPO...
    tagwarden policy check FILE...
    tagwarden judge REPO [--policy FILE]   < "OLD NEW REF" lines   (dry run, no audit)
    tagwarden rules
    tagwarden demo [DIR]
    tagwarden audit [FILTERS] [--json] | audit verify       (auditlog.py)
    tagwarden history COMPONENT [SLOT] | status | report --html FILE   (reports.py)
"""
from __future__ import annotations

import argparse
import sys
from importlib import import_module
from typing import Optional

from . import __version__

_AUDITOR_COMMANDS = ("auditlog", "reports")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="tagwarden", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"tagwarden {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("install", help="install the hooks into bare repositories")
    p.add_argument("--mode", choices=("pre-receive", "update"), default="pre-receive")
    p.add_argument("--policy", help="policy file for these repositories (tagwarden.policy)")
    p.add_argument("--dry-run", action="store_true", help="say what would change")
    p.add_argument("repos", nargs="+", metavar="REPO")

    p = sub.add_parser("uninstall", help="remove the hooks, restoring the ones kept")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("repos", nargs="+", metavar="REPO")

    p = sub.add_parser("policy", help="policy tools")
    psub = p.add_subparsers(dest="policy_command", required=True)
    c = psub.add_parser("check", help="validate policy files")
    c.add_argument("files", nargs="+", metavar="FILE")

    p = sub.add_parser("judge", help="judge ref updates read from stdin, as pre-receive would")
    p.add_argument("repo", metavar="REPO")
    p.add_argument("--policy", help="policy file (default: the repository's)")

    sub.add_parser("rules", help="list the rule ids")

    p = sub.add_parser("demo", help="replay a short session against a demo repository")
    p.add_argument("dir", nargs="?", default="demo")

    handlers = {"install": _install, "uninstall": _uninstall, "policy": _policy_check,
                "judge": _judge, "rules": _rules, "demo": _demo}
    # the auditor's commands live in their own modules; each adds its parsers and
    # returns {command: handler}
    for module in _AUDITOR_COMMANDS:
        handlers.update(import_module(f"{__package__}.{module}").register(sub))
    args = parser.parse_args(argv)
    return handlers[args.command](args)


def _install(args) -> int:
    from .install import InstallError, install

    if args.policy and _policy_check(argparse.Namespace(files=[args.policy])):
        print("tagwarden: not installing with a policy that does not load", file=sys.stderr)
        return 1
    status = 0
    for repo in args.repos:
        try:
            done = install(repo, args.mode, args.policy, dry_run=args.dry_run)
        except InstallError as exc:
            print(f"tagwarden: {exc}", file=sys.stderr)
            status = 1
            continue
        verb = "would" if args.dry_run else "did"
        print(f"{repo}: " + (f"{verb}: " + "; ".join(done) if done else "already installed"))
    return status


def _uninstall(args) -> int:
    from .install import InstallError, uninstall

    status = 0
    for repo in args.repos:
        try:
            done = uninstall(repo, dry_run=args.dry_run)
        except InstallError as exc:
            print(f"tagwarden: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{repo}: " + ("; ".join(done) if done else "nothing to remove"))
    return status


def _policy_check(args) -> int:
    from .policy import PolicyError, load

    status = 0
    for path in args.files:
        try:
            with open(path, "rb") as f:
                policy = load(f.read().decode("utf-8"), path)
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{path}: policy invalid: cannot read: {exc}", file=sys.stderr)
            status = 1
        except PolicyError as exc:
            print(f"policy invalid: {exc}", file=sys.stderr)
            status = 1
        else:
            pipes = ", ".join(f"{name}: " + " -> ".join("|".join(s) for s in p.stages)
                              for name, p in policy.pipelines.items())
            print(f"{path}: ok (sha256 {policy.sha256[:12]}; pipelines {pipes or 'none'})")
    return status


def _judge(args) -> int:
    import os
    import subprocess

    from . import messages
    from .engine import decide
    from .gitview import GitView
    from .hook import HookInputError, parse_updates
    from .model import PushContext
    from .paths import default_policy
    from .policy import PolicyError, load

    path = args.policy
    if not path:
        out = subprocess.run(["git", "config", "--get", "tagwarden.policy"], cwd=args.repo,
                             capture_output=True, text=True)
        path = out.stdout.strip() or default_policy()
        if not os.path.isabs(path):
            path = os.path.join(args.repo, path)
    try:
        with open(path, encoding="utf-8") as f:
            policy = load(f.read(), path)
        updates = parse_updates("pre-receive", [], sys.stdin.buffer.read())
    except (OSError, PolicyError, HookInputError) as exc:
        print(f"tagwarden: {exc}", file=sys.stderr)
        return 2
    decisions = decide(policy, GitView(args.repo), updates,
                       PushContext("check", atomic=True))
    for line in messages.report(decisions):
        print(line)
    return 0 if all(d.accepted for d in decisions) else 1


def _rules(args) -> int:
    from .rules import RULES

    for rule in RULES.values():
        print(f"{rule.id:22} {rule.summary}{'  (always deny)' if rule.fixed else ''}")
    return 0


def _demo(args) -> int:
    from .demo import run

    return run(args.dir)


if __name__ == "__main__":
    raise SystemExit(main())
