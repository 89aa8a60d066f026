"""tagwarden: the command line for admins and auditors.

    tagwarden install [--mode pre-receive|update] [--layout auto|plain|gitea|gitlab|gitolite]
                      [--policy FILE] [--policy-override FILE] [--gitolite-local-code DIR]
                      [--server-side] [--dry-run] (REPO... | --all ROOT)
    tagwarden uninstall [--dry-run] [--gitolite-local-code DIR] (REPO... | --all ROOT)
    tagwarden policy check FILE... [--override FILE]
    tagwarden policy test POLICY REPO [--override FILE] [--json] [--no-history]   (dryrun.py)
    tagwarden judge REPO [--policy FILE] [--override FILE] [--as NAME]   < "OLD NEW REF" lines
    tagwarden rules
    tagwarden demo [DIR]
    tagwarden audit [FILTERS] [--json] | audit verify       (auditlog.py, audit_*.py)
    tagwarden history COMPONENT [SLOT] | status | report --html FILE
        (reports.py; the HTML page: report_html.py)
"""
from __future__ import annotations

import argparse
import sys
from importlib import import_module
from typing import Optional

from . import __version__

_AUDITOR_COMMANDS = ("auditlog", "reports")
_LAYOUTS = ("plain", "gitea", "gitlab", "gitolite")  # install.LAYOUTS, without importing it


def _targets_arguments(p) -> None:
    p.add_argument("--all", action="append", default=[], metavar="ROOT",
                   help="every bare repository under ROOT (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    p.add_argument("repos", nargs="*", metavar="REPO")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="tagwarden", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"tagwarden {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("install", help="install the hooks into bare repositories")
    p.add_argument("--mode", choices=("pre-receive", "update"), default="pre-receive")
    p.add_argument("--layout", choices=("auto",) + _LAYOUTS, default="auto",
                   help="where the host runs hooks (default: detected per repository)")
    p.add_argument("--policy", help="policy file for these repositories (tagwarden.policy)")
    p.add_argument("--policy-override", metavar="FILE",
                   help="override layered over the policy (tagwarden.policyOverride)")
    p.add_argument("--gitolite-local-code", metavar="DIR",
                   help="gitolite's LOCAL_CODE: the shims for gitolite repositories go there")
    p.add_argument("--server-side", action="store_true",
                   help="also judge tag changes made on the server itself (git tag -d, "
                        "git update-ref): a reference-transaction hook; plain layout only")
    _targets_arguments(p)

    p = sub.add_parser("uninstall", help="remove the hooks, restoring the ones kept")
    p.add_argument("--gitolite-local-code", metavar="DIR",
                   help="also remove tagwarden's shims from gitolite's LOCAL_CODE")
    _targets_arguments(p)

    p = sub.add_parser("policy", help="policy tools")
    psub = p.add_subparsers(dest="policy_command", required=True)
    c = psub.add_parser("check", help="validate policy files")
    c.add_argument("files", nargs="+", metavar="FILE")
    c.add_argument("--override", metavar="FILE",
                   help="check each FILE with this override layered on top")
    t = psub.add_parser("test", help="what a candidate policy would have refused: the "
                        "repository's tags now, and its ledger's history")
    t.add_argument("policy", metavar="POLICY")
    t.add_argument("repo", metavar="REPO")
    t.add_argument("--override", metavar="FILE", help="an override layered over POLICY")
    t.add_argument("--json", action="store_true", help="one JSON object per finding")
    t.add_argument("--history", action=argparse.BooleanOptionalAction, default=True,
                   help="replay the ledger's history too (default)")

    p = sub.add_parser("judge", help="judge ref updates read from stdin, as pre-receive would")
    p.add_argument("repo", metavar="REPO")
    p.add_argument("--policy", help="policy file (default: the repository's)")
    p.add_argument("--override", metavar="FILE",
                   help="policy override (default: the repository's, unless --policy)")
    p.add_argument("--as", dest="pusher", metavar="NAME",
                   help="judge as this pusher (permissions); without it permissions are "
                        "not checked")

    sub.add_parser("rules", help="list the rule ids")

    p = sub.add_parser("demo", help="replay a short session against a demo repository")
    p.add_argument("dir", nargs="?", default="demo")

    handlers = {"install": _install, "uninstall": _uninstall, "policy": _policy,
                "judge": _judge, "rules": _rules, "demo": _demo}
    # the auditor's commands live in their own modules; each adds its parsers and
    # returns {command: handler}
    for module in _AUDITOR_COMMANDS:
        handlers.update(import_module(f"{__package__}.{module}").register(sub))
    args = parser.parse_args(argv)
    return handlers[args.command](args)


def _targets(args) -> tuple[list[tuple[str, Optional[str]]], int]:
    """(repository, the --all ROOT it was found under or None), and the exit status so
    far; gitolite's admin repository is left out of walks."""
    import os

    from .install import find_repos
    from .install_gitolite import GITOLITE_ADMIN

    status = 0
    if not args.repos and not args.all:
        print(f"tagwarden {args.command}: name repositories, or --all ROOT", file=sys.stderr)
        return [], 2
    targets: list[tuple[str, Optional[str]]] = [(repo, None) for repo in args.repos]

    def unreadable(exc: OSError) -> None:
        nonlocal status
        print(f"tagwarden: {exc.filename}: not searched: {exc.strerror}", file=sys.stderr)
        status = 1

    for root in args.all:
        if not os.path.isdir(root):
            print(f"tagwarden: {root}: no such directory", file=sys.stderr)
            status = 1
            continue
        found = find_repos(root, unreadable)
        if not found:
            print(f"{root}: no bare repositories found")
        for repo in found:
            if os.path.basename(os.path.normpath(repo)) == GITOLITE_ADMIN:
                print(f"{repo}: skipped (gitolite's admin repository; name it to include it)")
            else:
                targets.append((repo, root))
    return targets, status


def _install(args) -> int:
    from .install import InstallError, detect_layout, install, server_side_unsupported
    from .owner import as_owner

    targets, status = _targets(args)
    if status == 2:
        return 2
    if args.policy and _policy_check(argparse.Namespace(files=[args.policy], override=None)):
        print("tagwarden: not installing with a policy that does not load", file=sys.stderr)
        return 1
    verb = "would" if args.dry_run else "did"
    gitolite = []
    for repo, root in targets:
        layout = args.layout if args.layout != "auto" else detect_layout(repo)[0]
        if layout == "gitolite" and args.server_side:
            print(f"tagwarden: {server_side_unsupported(repo, layout)}", file=sys.stderr)
            status = 1
            continue
        if layout == "gitolite":
            gitolite.append((repo, root))
            continue
        try:
            done = as_owner(repo, install, repo, args.mode, args.policy, dry_run=args.dry_run,
                            layout=layout, policy_override=args.policy_override,
                            server_side=args.server_side, check_python=sys.executable)
        except InstallError as exc:
            print(f"tagwarden: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{repo} ({layout}): " +
              (f"{verb}: " + "; ".join(done) if done else "already installed"))
    if gitolite:
        status = max(status, _install_gitolite(args, gitolite))
    return status


def _install_gitolite(args, repos: list[tuple[str, Optional[str]]]) -> int:
    """gitolite's repositories get nothing written into them: the shims go to its
    LOCAL_CODE, and the admin pushes the gitolite.conf lines printed here."""
    import os

    from .install import InstallError
    from .install_gitolite import gitolite_conf, gitolite_name, gitolite_shims, gitolite_wired
    from .owner import as_owner

    if args.mode != "pre-receive" or not args.gitolite_local_code:
        why = "gitolite owns the update hook: use --mode pre-receive" \
            if args.mode != "pre-receive" else \
            "give --gitolite-local-code DIR (gitolite's LOCAL_CODE) for tagwarden's shims"
        for repo, _ in repos:
            print(f"tagwarden: {repo}: a gitolite repository: {why}", file=sys.stderr)
        return 1
    local = args.gitolite_local_code
    try:
        done = as_owner(local, gitolite_shims, local, sys.executable, args.dry_run,
                        check_python=sys.executable)
    except InstallError as exc:
        print(f"tagwarden: {exc}", file=sys.stderr)
        return 1
    verb = "would" if args.dry_run else "did"
    print(f"{os.path.join(local, 'hooks', 'repo-specific')} (gitolite): " +
          (f"{verb}: " + "; ".join(done) if done else "already installed"))
    todo = []
    for repo, root in repos:
        if gitolite_wired(repo):
            print(f"{repo} (gitolite): already installed (gitolite runs tagwarden's shims here)")
        else:
            todo.append(gitolite_name(repo, root))
            print(f"{repo} (gitolite): to do: add it to gitolite.conf (below); nothing is "
                  "written into the repository")
    if todo:
        print("\ntagwarden cannot edit gitolite.conf: add these lines to conf/gitolite.conf "
              "in gitolite-admin and push it\n")
        print(gitolite_conf(todo, args.policy, args.policy_override))
        print("gitolite's rc (~/.gitolite.rc of its account) must have LOCAL_CODE => "
              f"\"{os.path.abspath(local)}\", 'repo-specific-hooks' in ENABLE, and "
              "GIT_CONFIG_KEYS => 'tagwarden\\..* receive\\.advertisePushOptions' "
              "(docs/hosts/gitolite.md)")
    return 0


def _uninstall(args) -> int:
    from .install import InstallError, uninstall
    from .install_gitolite import gitolite_remove_shims, gitolite_wired
    from .owner import as_owner

    targets, status = _targets(args)
    if status == 2:
        return 2
    verb = "would" if args.dry_run else "did"
    for repo, _ in targets:
        try:
            done = as_owner(repo, uninstall, repo, dry_run=args.dry_run)
        except InstallError as exc:
            print(f"tagwarden: {exc}", file=sys.stderr)
            status = 1
            continue
        note = "; gitolite still runs tagwarden here: remove its option hook.* lines from " \
            "gitolite.conf and push gitolite-admin" if gitolite_wired(repo) else ""
        print(f"{repo}: " + (f"{verb}: " + "; ".join(done) if done else "nothing to remove")
              + note)
    if args.gitolite_local_code:
        local = args.gitolite_local_code
        try:
            done = as_owner(local, gitolite_remove_shims, local, args.dry_run)
        except InstallError as exc:
            print(f"tagwarden: {exc}", file=sys.stderr)
            return 1
        print(f"{local} (gitolite): " + (f"{verb}: " + "; ".join(done) if done
                                         else "nothing to remove"))
    return status


def _policy(args) -> int:
    if args.policy_command == "test":
        from .dryrun import run

        return run(args.policy, args.repo, sys.stdout, history=args.history,
                   as_json=args.json, override_path=args.override)
    return _policy_check(args)


def _policy_check(args) -> int:
    import hashlib

    from .install import load_policy_files
    from .policy import PolicyError

    override = getattr(args, "override", None)
    status = 0
    for path in args.files:
        name = f"{path} + {override}" if override else path
        try:
            policy = load_policy_files(path, override)
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{getattr(exc, 'filename', None) or name}: policy invalid: cannot read: "
                  f"{exc}", file=sys.stderr)
            status = 1
        except PolicyError as exc:
            print(f"policy invalid: {exc}", file=sys.stderr)
            status = 1
        else:
            pipes = ", ".join(f"{name}: " + " -> ".join("|".join(s) for s in p.stages)
                              for name, p in policy.pipelines.items())
            layers = ""
            if override:
                digests = []
                for file in (path, override):
                    with open(file, "rb") as f:
                        digests.append(hashlib.sha256(f.read()).hexdigest()[:12])
                layers = f"; layered: policy {digests[0]}, override {digests[1]}"
            print(f"{name}: ok (sha256 {policy.sha256[:12]}{layers}; pipelines "
                  f"{pipes or 'none'})")
    return status


def _judge(args) -> int:
    from . import messages
    from .engine import decide
    from .gitview import GitView
    from .hook import HookInputError, parse_updates
    from .install import load_policy_files, policy_paths
    from .model import Identity, PushContext
    from .policy import PolicyError

    path, override = policy_paths(args.repo)
    if args.policy:
        path, override = args.policy, None
    if args.override:
        override = args.override
    try:
        policy = load_policy_files(path, override)
        updates = parse_updates("pre-receive", [], sys.stdin.buffer.read())
    except (OSError, UnicodeDecodeError, PolicyError, HookInputError) as exc:
        print(f"tagwarden: {exc}", file=sys.stderr)
        return 2
    pusher = Identity(args.pusher, "--as") if args.pusher else None
    decisions = decide(policy, GitView(args.repo), updates,
                       PushContext("check", atomic=True, pusher=pusher))
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
