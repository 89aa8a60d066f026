"""decide(policy, view, updates, context) -> [Decision]: the single judge of a push.

Pure: reads the repository only through the RepoView it is given. Pre-receive, update,
the CLI and the tests all call this function.
"""
from __future__ import annotations

from typing import Iterable, Optional

from fnmatch import fnmatchcase

from . import access, ledger, rules, semver
from .model import (
    ACCEPTED, CREATE, DELETE, ENVIRONMENT, INVALID, OTHER, OVERRIDE, REJECTED, RESERVED_KIND,
    TAGS, UNMANAGED, VERSION, WARNED, Decision, Finding, Peeled, PushContext, RefName,
    RefUpdate, RepoView, short,
)
from .policy import Policy
from .refname import classify, is_plain_semver


class _Repo:
    """The repository before and after this push, over a view of its current refs."""

    def __init__(self, view: RepoView, context: PushContext, granted: frozenset[str]):
        self.view = view
        self.now = context.now
        self.pusher = context.pusher
        self.granted = granted  # rules a valid break-glass override lets this push pass
        earlier = context.earlier
        self.was = {u.ref: u.old for u in earlier}  # update mode: refs this push already wrote
        self.pending: dict[str, str] = {}  # accepted updates of this batch
        self._peeled: dict[str, Peeled] = {}

    def before(self, ref: str) -> Optional[str]:
        old = self.was[ref] if ref in self.was else self.view.ref(ref)
        return None if old is None or not old.strip("0") else old

    def after(self, ref: str) -> Optional[str]:
        new = self.pending[ref] if ref in self.pending else self.view.ref(ref)
        return None if new is None or not new.strip("0") else new

    def after_under(self, prefix: str) -> dict[str, str]:
        refs = dict(self.view.refs_under(prefix))
        for ref, new in self.pending.items():
            if ref.startswith(prefix):
                if new.strip("0"):
                    refs[ref] = new
                else:
                    refs.pop(ref, None)
        return refs

    def peel(self, oid: Optional[str]) -> Optional[Peeled]:
        if oid is None:
            return None
        peeled = self._peeled.get(oid)
        if peeled is None:
            peeled = self._peeled[oid] = self.view.peel(oid)
        return peeled

    def versions_at(self, component: str, commit: str) -> list[semver.Version]:
        found = []
        prefix = f"{TAGS}{component}/"
        for ref, oid in self.after_under(prefix).items():
            if "/" in ref[len(prefix):]:
                continue  # deeper refs are not versions of this component
            version = semver.try_parse(ref[len(prefix):])
            if version and self.peel(oid).commit == commit:
                found.append(version)
        return sorted(found, key=lambda v: v.sort_key)

    def version_of(self, component: str, oid: Optional[str]) -> Optional[semver.Version]:
        """The version an env value stands for: the wrapped version tag, or the highest
        version of the component on its commit."""
        peeled = self.peel(oid)
        if peeled is None or peeled.commit is None:
            return None
        for tag in peeled.chain:
            if rules.is_version_tag_of(tag.name, component):
                return semver.parse(tag.name.rsplit("/", 1)[1])
        found = self.versions_at(component, peeled.commit)
        return found[-1] if found else None

    def describe(self, oid: Optional[str], component: Optional[str] = None) -> str:
        peeled = self.peel(oid)
        if peeled is None:
            return "nothing"
        if peeled.commit is None:
            return f"{peeled.target_type} {short(peeled.target or oid)}"
        version = self.version_of(component, oid) if component else None
        return f"{version} ({short(peeled.commit)})" if version else f"commit {short(peeled.commit)}"


def decide(policy: Policy, view: RepoView, updates: Iterable[RefUpdate],
           context: PushContext, names: Optional[list[RefName]] = None) -> list[Decision]:
    """Judge the updates; ``names`` may carry their classify() results already."""
    updates = list(updates)
    request = access.override(policy, context.pusher, context.push_options)
    repo = _Repo(view, context, request.granted if request else frozenset())
    if names is None or len(names) != len(updates):
        names = [classify(u.ref, policy) for u in updates]
    decisions: list[Optional[Decision]] = [None] * len(updates)
    # versions first (env slots may point at versions created in the same push), then env
    # slots in pipeline order (so same_push promotions see their upstream's accepted value)
    envs = [i for i, n in enumerate(names) if n.kind == ENVIRONMENT]
    firsts = [i for i, n in enumerate(names) if n.kind != ENVIRONMENT] if envs else \
        range(len(updates))
    for i in [*firsts, *sorted(envs, key=lambda i: _order(policy, names[i]))]:
        decision = _decide_one(policy, repo, updates[i], names[i])
        decisions[i] = decision
        if decision.accepted:
            repo.pending[updates[i].ref] = updates[i].new
    if request is not None and request.problem is not None:  # refused whole, and audited
        f = request.problem
        decisions = [d if d.name.kind == OTHER else
                     d.but(verdict=REJECTED, rule=f.rule, reason=f.reason, fix=f.fix)
                     for d in decisions]
    if context.atomic and any(not d.accepted for d in decisions):
        decisions = [d if not d.accepted or d.name.kind == OTHER else _sibling_rejected(d)
                     for d in decisions]
    return decisions


def _order(policy: Policy, name: RefName) -> tuple:
    if name.kind != ENVIRONMENT:
        return (0, 0)
    pipeline = policy.pipeline_for(name.component)
    return (1, pipeline.index(name.slot) if pipeline else -1)


def _sibling_rejected(d: Decision) -> Decision:
    return d.but(verdict=REJECTED, rule="atomic-push", fix=(),
                 reason="another ref in this push breaks the policy, and pre-receive takes a "
                        "push whole or not at all; nothing was changed")


def _decide_one(policy: Policy, repo: _Repo, update: RefUpdate, name: RefName) -> Decision:
    if name.kind == OTHER:
        return Decision(update, name, ACCEPTED)
    action = update.action
    old = None if action == CREATE else repo.peel(update.old)
    new = None if action == DELETE else repo.peel(update.new)
    facts = rules.Facts(update, name, new, old,
                        lambda oid: repo.describe(oid, name.component))
    verdict = _Verdict(policy, repo.granted)
    change = action
    version = name.version.text if name.version else None

    if name.kind == RESERVED_KIND:
        verdict.check(rules.reserved(facts))
    elif name.kind == INVALID:
        rule, reason = name.problem
        if action != DELETE:  # deleting a misnamed tag is a cleanup, never a risk
            verdict.check(Finding(rule, f"{name.tag}: {reason}", _rename_fix(policy, name)))
    elif name.kind == UNMANAGED:
        semver_tag = is_plain_semver(update.ref)
        mode = policy.unmanaged_semver if semver_tag else policy.unmanaged_other
        verdict.check(rules.unmanaged(facts, mode, "plain SemVer" if semver_tag else "unmanaged"))
        if new is not None:
            verdict.check(rules.tag_name_mismatch(facts))
    elif name.kind == VERSION:
        verdict.check(access.permission(policy, repo.pusher, name, update),
                      rules.version_immutable(facts))
        if action == CREATE and new is not None and new.commit:
            # a version name that existed is never re-made on another commit
            if repo.view.held_commit(update.ref, new.commit) is False:
                verdict.check(rules.version_tombstone(facts, repo.view.recorded(update.ref)))
        if new is not None:
            verdict.check(rules.version_target(facts), rules.tag_name_mismatch(facts),
                          rules.version_lightweight(facts, policy.lightweight_versions))
            if action == CREATE and new.commit:
                verdict.check(_on_branch(policy, repo, facts), _signed(policy, repo, facts))
    elif name.kind == ENVIRONMENT:
        verdict.check(access.permission(policy, repo.pusher, name, update),
                      rules.env_protected(facts, policy.protected))
        if new is not None:
            verdict.check(rules.tag_name_mismatch(facts), _signed(policy, repo, facts))
            landing = _landing(repo, facts)
            verdict.check(landing.finding, _stale(repo, facts))
            version = str(landing.version) if landing.version else None
            if verdict.open:
                change = _env_change(policy, repo, facts, landing, verdict)

    decision = verdict.decision(update, name, change, old.commit if old else None,
                                new.commit if new else None, version)
    if decision.verdict != ACCEPTED:  # worth the words only when someone will read them
        decision = decision.but(held=facts.describe(old.oid if old else None),
                                attempted=facts.describe(new.oid if new else None))
        if decision.verdict == REJECTED:
            decision = decision.but(fix=decision.fix + _break_glass(policy, repo, decision))
    return decision


def _break_glass(policy: Policy, repo: _Repo, d: Decision) -> tuple[str, ...]:
    """Shown only to a pusher on the override list, for a rule they may pass."""
    if repo.pusher is None or d.rule not in policy.override_rules or \
            rules.RULES[d.rule].fixed or not policy.may_override(repo.pusher.name):
        return ()
    force = "--force " if d.name.kind == ENVIRONMENT else ""
    return (f"break glass only if you must (you may; it is audited): git push {force}"
            f"-o tagwarden.override={d.rule} -o tagwarden.reason=\"<why>\" origin "
            f"{d.name.tag}",)


class _Verdict:
    """Collects findings by the policy's level: the first deny decides."""

    __slots__ = ("policy", "granted", "denied", "warnings", "overridden")

    def __init__(self, policy: Policy, granted: frozenset[str] = frozenset()):
        self.policy = policy
        self.granted = granted
        self.denied: Optional[Finding] = None
        self.warnings: list[Finding] = []
        self.overridden: list[Finding] = []

    @property
    def open(self) -> bool:
        return self.denied is None

    def check(self, *findings: Optional[Finding]) -> None:
        """Each rule's finding in turn (None: the rule holds)."""
        for finding in findings:
            if finding is None or self.denied is not None:
                continue
            level = self.policy.level(finding.rule)
            fixed = rules.RULES[finding.rule].fixed
            if level == "deny" and not fixed and finding.rule in self.granted:
                self.overridden.append(finding)  # break glass: passed, audited as override
            elif level == "deny" or fixed:
                self.denied = finding
            elif level == "warn":
                self.warnings.append(finding)

    def decision(self, update, name, change, old_commit, new_commit, version) -> Decision:
        warnings = tuple(self.warnings)
        if self.denied:
            f = self.denied
            return Decision(update, name, REJECTED, f.rule, f.reason, f.fix, warnings, change,
                            old_commit, new_commit, version)
        if not (warnings or self.overridden):  # the usual case, a thousand times a push
            return Decision(update, name, ACCEPTED, None, "", (), (), change, old_commit,
                            new_commit, version)
        passed = tuple(self.overridden)
        verdict = OVERRIDE if passed else WARNED
        reason = "; ".join(w.reason for w in passed + warnings)
        return Decision(update, name, verdict, (passed or warnings)[0].rule, reason, (),
                        warnings, change, old_commit, new_commit, version, overridden=passed)


class _Landing:
    def __init__(self, version: Optional[semver.Version] = None,
                 finding: Optional[Finding] = None):
        self.version, self.finding = version, finding


def _landing(repo: _Repo, f: rules.Facts) -> _Landing:
    """Which released version of the component an env update lands on."""
    component, tag, new = f.name.component, f.name.tag, f.new
    release_fix = (f"git tag -a -m 'Release {component.rsplit('/', 1)[1]} vX.Y.Z' "
                   f"{component}/vX.Y.Z {short(new.commit)}",
                   f"git push origin {component}/vX.Y.Z   # then point {f.name.slot} at it")
    if new.commit is None:
        what = ("a chain of tags nested too deep" if new.target_type == "tag" else
                f"{new.target_type} {short(new.target or new.oid)}")
        return _Landing(finding=Finding(
            "env-target", f"{tag} must point at a commit; it points at {what}",
            (f"git tag -f -a -m 'Set {component.rsplit('/', 1)[1]} to {f.name.slot}' {tag} "
             f"{component}/vX.Y.Z", f"git push --force origin {tag}")))
    chain = new.chain[1:] if new.chain and new.chain[0].name == tag else new.chain
    if len(chain) > 1:
        return _Landing(finding=Finding(
            "env-target", f"{tag} is nested {len(new.chain)} tags deep; an env tag wraps at "
            "most one version tag", (f"git tag -f -a -m '<message>' {tag} {chain[-1].name}",)))
    if not chain:  # points at a commit directly (or through its own env tag)
        found = repo.versions_at(component, new.commit)
        if found:
            return _Landing(found[-1])
        return _Landing(finding=Finding(
            "env-unreleased", f"commit {short(new.commit)} is not a released version of "
            f"{component}; an environment takes only released versions", release_fix))
    inner = chain[0]
    head, _, slot = inner.name.rpartition("/")
    version = semver.try_parse(slot)
    if version is None:
        return _Landing(finding=Finding(
            "env-target", f"{tag} wraps the tag {inner.name!r}, which is not a version tag",
            (f"git tag -f -a -m '<message>' {tag} {component}/vX.Y.Z",)))
    if head != component:
        return _Landing(finding=Finding(
            "env-wrong-component", f"{tag} points at {inner.name}, a version of another "
            f"component; {f.name.slot} of {component} takes only versions of {component}",
            (f"git tag -f -a -m '<message>' {tag} {component}/vX.Y.Z",
             f"git push --force origin {tag}")))
    server = repo.after(f"{TAGS}{inner.name}")
    if server == inner.oid:
        return _Landing(version)
    if server is None:
        return _Landing(version, Finding(
            "env-unreleased", f"{inner.name} does not exist on the server; release it "
            "before pointing an environment at it", (f"git push origin {inner.name}",
                                                      f"git push --force origin {tag}")))
    return _Landing(version, Finding(
        "env-version-mismatch", f"{tag} wraps a copy of {inner.name} ({short(inner.oid)}) that "
        f"is not the server's ({repo.describe(server, component)}): your clone's {version} was "
        "re-made locally", (f"{rules.fetch_back(inner.name)}   # take the server's {version}",
                            f"git tag -f -a -m '<message>' {tag} {inner.name}",
                            f"git push --force origin {tag}",
                            "# until then every push --tags --force from this clone fails; "
                            "git fetch --tags --force origin repairs it")))


def _on_branch(policy: Policy, repo: _Repo, f: rules.Facts) -> Optional[Finding]:
    """versions.from_branches: the version's commit is on a release branch (as the
    branches stand after this push, which may bring the branch along)."""
    if not policy.from_branches:
        return None
    heads = "refs/heads/"
    branches = {ref[len(heads):]: oid for ref, oid in repo.after_under(heads).items()
                if any(fnmatchcase(ref[len(heads):], g) for g in policy.from_branches)}
    on = bool(branches) and repo.view.reachable(f.new.commit, tuple(branches.values()))
    return rules.version_branch(f, branches, policy.from_branches, on)


def _signed(policy: Policy, repo: _Repo, f: rules.Facts) -> Optional[Finding]:
    """signatures: the ref's own tag object carries a good signature by an allowed key."""
    spec = policy.signatures
    if spec is None or not spec.required_for(f.name.kind, f.name.slot):
        return None
    what = "version tags" if f.name.kind == VERSION else f"moves of {f.name.slot}"
    own = f.new.chain[0] if f.new.chain and f.new.chain[0].name == f.name.tag else None
    sig = repo.view.signature(own.oid, spec.allowed_signers, spec.revoked) if own else None
    return rules.tag_signature(f, sig, what)


def _stale(repo: _Repo, f: rules.Facts) -> Optional[Finding]:
    """A clone whose tags are stale re-sends the env tag objects it fetched long ago
    (push --tags --force sends every tag that differs): a tag object this slot held
    before is an old deploy coming back, not a new one."""
    new, tag = f.new, f.name.tag
    if f.old and f.old.oid == new.oid:
        return None
    own = bool(new.chain) and new.chain[0].name == tag
    if not repo.view.held_before(f.update.ref, new.oid, own):
        return None
    return Finding(
        "env-stale", f"{tag} {short(new.oid)} is a tag object this slot held before and "
        f"has moved on from; your clone's tags are stale, and pushing it would undo a "
        f"later deploy", (
            "git fetch --tags --force origin   # take the server's current tags",
            f"git tag -f -a -m 'Set {f.name.component.rsplit('/', 1)[1]} to {f.name.slot}' "
            f"{tag} {f.name.component}/vX.Y.Z   # only if you mean to move it: a new tag object",
            f"git push --force origin {tag}"))


def _env_change(policy: Policy, repo: _Repo, f: rules.Facts, landing: _Landing,
                verdict: _Verdict) -> str:
    """deploy, promote, rollback or redeploy; a promotion-order finding otherwise."""
    old, new = f.old, f.new
    component = f.name.component
    if old is not None and old.commit == new.commit:
        return "redeploy"
    held = repo.view.held_commit(f.update.ref, new.commit) if old else None
    if held:  # the ledger: back to a commit this slot held, no upstream to pass again
        return "rollback"
    if held is None:  # no history: an earlier version of the component stands in
        current = repo.version_of(component, old.oid) if old else None
        if landing.version and current and landing.version < current:
            return "rollback"
    pipeline = policy.pipeline_for(component)
    upstream = pipeline.upstream(f.name.slot) if pipeline else None
    if upstream is None:
        return "deploy"

    def holds(slot: str) -> bool:
        ref = f"{TAGS}{component}/{slot}"
        looks = (repo.before, repo.after) if pipeline.same_push else (repo.before,)
        return any((p := repo.peel(look(ref))) is not None and p.commit == new.commit
                   for look in looks)

    if any(holds(slot) for slot in upstream):
        soak = pipeline.soak_for(f.name.slot)
        if soak:
            verdict.check(_soak(repo, f, upstream, soak))
        return "promote"
    when = "holds" if pipeline.same_push else "held before this push"
    lookup = repo.after if pipeline.same_push else repo.before
    held = {slot: lookup(f"{TAGS}{component}/{slot}") for slot in upstream}
    wanted = " or ".join(upstream)
    holding = "; ".join(f"{slot} holds {repo.describe(oid, component)}" for slot, oid in held.items())
    target = f"{component}/{landing.version}" if landing.version else short(new.commit)
    first = f"{component}/{upstream[0]}"
    verdict.check(Finding(
        "promotion-order",
        f"{f.name.slot} takes only what {wanted} {when}. {holding}; you pushed "
        f"{repo.describe(new.oid, component)}.",
        (f"git tag -f {first} {target}^{{}}",
         f"git push --force origin {first}   # then verify, then promote")))
    return "out-of-order"  # what it is when the policy only warns, or is off


def _soak(repo: _Repo, f: rules.Facts, upstream: tuple[str, ...],
          soak: float) -> Optional[Finding]:
    """The upstream stage must have held the commit for ``soak`` seconds (by the
    ledger's clock); the finding says when it becomes eligible."""
    component, commit = f.name.component, f.new.commit
    starts = []
    for slot in upstream:
        ref = f"{TAGS}{component}/{slot}"
        p = repo.peel(repo.before(ref))
        if p is None or p.commit != commit:
            continue  # not holding it before this push: its clock has not started
        record = repo.view.recorded(ref)
        since = record.get("since") if record and record.get("commit") == commit else None
        starts.append((slot, since))
    known = [(since, slot) for slot, since in starts if since is not None]
    if known and repo.now - min(known)[0] >= soak:
        return None
    what = repo.describe(f.new.oid, component)
    if known:
        since, slot = min(known)
        held = f"{slot} has held {what} since {_iso(since)} ({_span(repo.now - since)})"
        eligible = since + soak
    else:
        slot = starts[0][0] if starts else upstream[0]
        held = (f"{slot} holds {what}, but the ledger has no record of since when (moved "
                "outside tagwarden, or in this push); its clock starts now")
        eligible = repo.now + soak
    return Finding(
        "soak-time",
        f"{f.name.slot} takes a version only after {' or '.join(upstream)} held it for "
        f"{_span(soak)}; {held}. Eligible at {_iso(eligible)} "
        f"(in {_span(max(eligible - repo.now, 0))}).",
        (f"git push --force origin {f.name.tag}   # again after {_iso(eligible)}",))


def _iso(epoch: float) -> str:
    return ledger.iso(epoch)


def _span(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m"))
             if n]
    return " ".join(parts[:2]) if parts else f"{secs}s"


def _rename_fix(policy: Policy, name: RefName) -> tuple[str, ...]:
    import difflib

    tag = name.tag
    head, _, slot = tag.rpartition("/")
    if name.problem[0] == "slot-unknown":
        close = [n for n in sorted(policy.env_names) if n.startswith(slot)] or \
            difflib.get_close_matches(slot, sorted(policy.env_names), n=1, cutoff=0.5)
        good = f"{head}/{close[0]}" if close else f"{head}/<slot>"
        return (f"git tag -f {good} {tag}^{{}} && git tag -d {tag}   # slots: "
                f"{', '.join(sorted(policy.env_names))} or a pattern of the policy",
                f"git push --force origin {good}")
    if name.problem[0] == "version-invalid":
        return (f"git tag -d {tag}   # versions are vMAJOR.MINOR.PATCH, e.g. {head}/v1.0.0",)
    return (f"git tag -d {tag}   # managed tags are prefix/type/name/slot, e.g. "
            f"{policy.prefixes[0]}/{sorted(policy.types)[0]}/<name>/v1.0.0",)
