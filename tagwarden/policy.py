"""The policy: schema as data, strict YAML loading, one immutable Policy value.

Loading is strict where PyYAML is lenient: duplicate keys, unknown keys, non-string
names (``1.10`` is a float, ``on`` a boolean), empty files and multiple documents are
errors, each reported as ``FILE:LINE: key.path: what is wrong``.

Layering (``load_layered``): a fleet-wide base policy with a per-repository override on
top. Each file is checked on its own first, so a mistake names its own file; then the two
are merged at node level (mappings key by key, a pipeline replaced whole by name,
``components`` entries of the override tried first, lists and scalars replaced) and the
result is built and checked as one policy whose every key still knows its file and line.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Callable, Optional

import yaml

from . import semver
from .rules import RULES

LEVELS = ("deny", "warn", "off")
ACTIONS = ("create-version", "move-slot", "delete-slot")
UNMANAGED_MODES = ("allow", "immutable", "deny")
_SEGMENT = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?", re.ASCII)
_STR, _INT, _FLOAT, _BOOL = (f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool"))


class PolicyError(ValueError):
    """The policy file is unusable; the message names file, line and key."""


@dataclass(frozen=True)
class Pipeline:
    name: str
    stages: tuple[tuple[str, ...], ...]  # each stage: one slot or a set of alternatives
    same_push: bool
    soak: tuple[tuple[str, float], ...] = ()  # (slot, seconds its upstream must hold a version)

    def soak_for(self, slot: str) -> float:
        for name, seconds in self.soak:
            if name == slot:
                return seconds
        return 0.0

    def upstream(self, slot: str) -> Optional[tuple[str, ...]]:
        """The alternatives one stage before ``slot``; None when ``slot`` is first or absent."""
        for i, stage in enumerate(self.stages):
            if slot in stage:
                return self.stages[i - 1] if i else None
        return None

    def index(self, slot: str) -> int:
        for i, stage in enumerate(self.stages):
            if slot in stage:
                return i
        return -1


@dataclass(frozen=True)
class Permission:
    """Who may do an action on the tags it matches (permissions[index] in the file)."""

    index: int
    actions: frozenset[str]
    components: tuple[str, ...]  # globs
    slots: tuple[str, ...]  # globs; ("*",) when the entry names none
    allow: tuple[str, ...]  # group names

    def matches(self, action: str, component: str, slot: Optional[str]) -> bool:
        return action in self.actions and \
            any(fnmatchcase(component, glob) for glob in self.components) and \
            (slot is None or any(fnmatchcase(slot, glob) for glob in self.slots))


@dataclass(frozen=True)
class Signatures:
    allowed_signers: str  # absolute path
    revoked: Optional[str]
    versions: bool  # version tags must be signed
    slots: tuple[str, ...]  # slot globs whose moves must be signed

    def required_for(self, kind: str, slot: Optional[str]) -> bool:
        if kind == "version":
            return self.versions
        return slot is not None and any(fnmatchcase(slot, glob) for glob in self.slots)


@dataclass(frozen=True)
class Policy:
    source: str
    sha256: str
    prefixes: tuple[str, ...]
    types: frozenset[str]
    env_names: frozenset[str]
    env_patterns: tuple[re.Pattern, ...]
    protected: frozenset[str]
    lightweight_versions: bool
    unmanaged_semver: str
    unmanaged_other: str
    pipelines: dict[str, Pipeline]
    assignments: tuple[tuple[str, str], ...]  # (component glob, pipeline name), first wins
    levels: dict[str, str]
    lock_timeout: float
    from_branches: tuple[str, ...] = ()  # branch globs a version's commit must be on
    groups: dict[str, frozenset[str]] = field(default_factory=dict)  # expanded: name -> members
    permissions: Optional[tuple[Permission, ...]] = None  # None: not declared, all may
    override_groups: tuple[str, ...] = ()
    override_rules: frozenset[str] = frozenset()
    signatures: Optional[Signatures] = None

    def is_environment(self, slot: str) -> bool:
        return slot in self.env_names or any(p.fullmatch(slot) for p in self.env_patterns)

    def level(self, rule: str) -> str:
        return self.levels.get(rule, "deny")

    def groups_of(self, who: str) -> list[str]:
        return sorted(g for g, members in self.groups.items() if who in members or "*" in members)

    def may_override(self, who: str) -> bool:
        return any(g in self.override_groups for g in self.groups_of(who))

    def pipeline_for(self, component: str) -> Optional[Pipeline]:
        for glob, name in self.assignments:
            if fnmatchcase(component, glob):
                return self.pipelines[name]
        return None


# ---- schema as data ----------------------------------------------------------------
# Every key is optional; an absent key takes the default below, which is exactly what
# policy/default.yaml spells out (a test keeps the two equal).

DEFAULTS: dict[str, Any] = {
    "version": 1,
    "prefixes": ("components", "logic"),
    "types": ("agents", "prompts", "schemas", "templates", "queries", "configs", "scripts",
              "ensembles", "tools", "routes"),
    "environments": {
        "names": ("dev", "staging", "production", "canary", "blue", "green", "control",
                  "treatment"),
        "patterns": ("canary-(0|[1-9][0-9]*)", "ring-(0|[1-9][0-9]*)",
                     "rollout-([1-9][0-9]?|100)pct"),
        "protected": ("production",),
    },
    "versions": {"lightweight": "allow", "from_branches": ()},
    "unmanaged_tags": {"semver": "immutable", "other": "allow"},
    "pipelines": {"default": {"stages": (("staging",), ("production",)), "same_push": False}},
    "components": ({"match": "*", "pipeline": "default"},),
    "rules": {},
    "concurrency": {"lock_timeout_seconds": 30},
}


class _Ctx:
    def __init__(self, source: str, layers: Optional[tuple[str, str]] = None):
        self.source = source
        # key path -> (file, line), for errors found after parsing
        self.lines: dict[str, tuple[str, int]] = {}
        self.layers = layers  # (base, override) when the policy is layered
        self.aliases: dict[str, str] = {}  # merged components[i] -> that file's own index

    def seen(self, node, path: str) -> None:
        self.lines[path] = (_file_of(node, self.source), node.start_mark.line + 1)

    def fail(self, node, path: str, message: str) -> PolicyError:
        if node is not None:
            source, line = _file_of(node, self.source), node.start_mark.line + 1
        else:  # the nearest enclosing key that was read from the file
            probe, (source, line) = path, (self.source, 1)
            while probe:
                if probe in self.lines:
                    source, line = self.lines[probe]
                    break
                shorter = re.sub(r"(\[\d+\]|\.[^.\[]*)$", "", probe)
                probe = "" if shorter == probe else shorter
        shown = path
        for merged, own in self.aliases.items():
            if shown == merged or shown.startswith((merged + ".", merged + "[")):
                shown = own + shown[len(merged):]
                break
        note = ""
        if self.layers and node is None:  # found in the combination, not in one file
            base, override = self.layers
            note = f" (layered over {base})" if source == override else \
                f" (with the override {override} on top)"
        return PolicyError(f"{source}:{line}: {shown or '(top)'}: {message}{note}")


def _file_of(node, default: str) -> str:
    return getattr(node, "tagwarden_file", default)


def _describe(node) -> str:
    if isinstance(node, yaml.ScalarNode):
        kind = node.tag.rsplit(":", 1)[-1]
        return f"{kind} {node.value!r}"
    return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"


def _string(ctx, node, path, what="a string") -> str:
    if not isinstance(node, yaml.ScalarNode) or node.tag != _STR:
        hint = " (quote it)" if isinstance(node, yaml.ScalarNode) else ""
        raise ctx.fail(node, path, f"expected {what}, got {_describe(node)}{hint}")
    return node.value


def _choice(options) -> Callable:
    def read(ctx, node, path):
        if isinstance(node, yaml.ScalarNode) and node.tag == _BOOL and node.value in options:
            return node.value  # YAML 1.1 reads a bare `off` as false; mean the word
        value = _string(ctx, node, path, "one of " + "|".join(options))
        if value not in options:
            raise ctx.fail(node, path, f"expected one of {'|'.join(options)}, got {value!r}")
        return value
    return read


def _boolean(ctx, node, path) -> bool:
    if not isinstance(node, yaml.ScalarNode) or node.tag != _BOOL:
        raise ctx.fail(node, path, f"expected true or false, got {_describe(node)}")
    return node.value.lower() in ("true", "yes", "on", "y")


_DECIMAL = re.compile(r"[0-9][0-9_]*(\.[0-9_]*)?", re.ASCII)


def _number(ctx, node, path) -> float:
    if not isinstance(node, yaml.ScalarNode) or node.tag not in (_INT, _FLOAT) \
            or not _DECIMAL.fullmatch(node.value):
        raise ctx.fail(node, path, f"expected a number from 0 to 3600, got {_describe(node)}")
    value = float(node.value.replace("_", ""))
    if not 0 <= value <= 3600:
        raise ctx.fail(node, path, f"expected a number from 0 to 3600, got {node.value}")
    return value


_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", re.ASCII)
_UNIT_SECONDS = (86400, 3600, 60, 1)


def _duration(ctx, node, path) -> float:
    """``24h``, ``2d``, ``1h30m``, ``90s``, or a plain number of seconds."""
    if isinstance(node, yaml.ScalarNode) and node.tag == _INT and node.value.isdigit():
        return float(node.value)
    text = _string(ctx, node, path, "a duration like 24h, 30m, 2d or 1h30m")
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ctx.fail(node, path, f"expected a duration like 24h, 30m, 2d or 1h30m, got {text!r}")
    return float(sum(int(n or 0) * unit for n, unit in zip(match.groups(), _UNIT_SECONDS)))


def _version_number(ctx, node, path) -> int:
    if not isinstance(node, yaml.ScalarNode) or node.tag != _INT or node.value != "1":
        raise ctx.fail(node, path, f"this tagwarden reads policy version 1, got {_describe(node)}")
    return 1


def _list(item: Callable, nonempty=False) -> Callable:
    def read(ctx, node, path):
        if not isinstance(node, yaml.SequenceNode):
            raise ctx.fail(node, path, f"expected a list, got {_describe(node)}")
        if nonempty and not node.value:
            raise ctx.fail(node, path, "expected at least one entry")
        values = []
        for i, child in enumerate(node.value):
            ctx.seen(child, f"{path}[{i}]")
            value = item(ctx, child, f"{path}[{i}]")
            if value in values:
                shown = value[0] if isinstance(value, tuple) and len(value) == 1 else value
                raise ctx.fail(child, f"{path}[{i}]", f"duplicate entry {shown!r}")
            values.append(value)
        return tuple(values)
    return read


def _pairs(ctx, node, path):
    """(key, key node, value node) of a mapping, rejecting duplicate and non-string keys."""
    if not isinstance(node, yaml.MappingNode):
        raise ctx.fail(node, path, f"expected a mapping, got {_describe(node)}")
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = _string(ctx, key_node, path, "a string key")
        if key in seen:
            raise ctx.fail(key_node, _join(path, key),
                           f"duplicate key (first on line {seen[key]})")
        seen[key] = key_node.start_mark.line + 1
        ctx.seen(key_node, _join(path, key))
        yield key, key_node, value_node


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _mapping(fields: dict[str, Callable]) -> Callable:
    def read(ctx, node, path):
        out = {}
        for key, key_node, value_node in _pairs(ctx, node, path):
            if key not in fields:
                raise ctx.fail(key_node, _join(path, key),
                               f"unknown key; expected one of {', '.join(fields)}")
            out[key] = fields[key](ctx, value_node, _join(path, key))
        return out
    return read


def _dict_of(value: Callable) -> Callable:
    def read(ctx, node, path):
        return {key: value(ctx, vnode, _join(path, key)) for key, _, vnode in _pairs(ctx, node, path)}
    return read


def _one_or_list(item: Callable) -> Callable:
    """A single value or a list of them; always a tuple."""
    def read(ctx, node, path):
        if isinstance(node, yaml.SequenceNode):
            return tuple(_list(item, nonempty=True)(ctx, node, path))
        return (item(ctx, node, path),)
    return read


def _stage(ctx, node, path) -> tuple[str, ...]:
    if isinstance(node, yaml.SequenceNode):
        return _list(lambda c, n, p: _string(c, n, p, "a slot name"), nonempty=True)(ctx, node, path)
    return (_string(ctx, node, path, "a slot name or a list of alternative slots"),)


_slot = lambda c, n, p: _string(c, n, p, "a slot name")  # noqa: E731
_segment_list = _list(lambda c, n, p: _string(c, n, p, "a name"), nonempty=True)

SCHEMA = _mapping({
    "version": _version_number,
    "prefixes": _segment_list,
    "types": _segment_list,
    "environments": _mapping({
        "names": _list(_slot),
        "patterns": _list(lambda c, n, p: _string(c, n, p, "a regular expression")),
        "protected": _list(_slot),
    }),
    "versions": _mapping({"lightweight": _choice(("allow", "deny")),
                          "from_branches": _list(lambda c, n, p: _string(c, n, p, "a branch glob"))}),
    "unmanaged_tags": _mapping({"semver": _choice(UNMANAGED_MODES),
                                "other": _choice(UNMANAGED_MODES)}),
    "pipelines": _dict_of(_mapping({"stages": _list(_stage, nonempty=True),
                                    "same_push": _boolean,
                                    "soak": _dict_of(_duration)})),
    "components": _list(_mapping({"match": lambda c, n, p: _string(c, n, p, "a glob"),
                                  "pipeline": lambda c, n, p: _string(c, n, p, "a pipeline name")})),
    "rules": _dict_of(_choice(LEVELS)),
    "concurrency": _mapping({"lock_timeout_seconds": _number}),
    "groups": _dict_of(_list(lambda c, n, p: _string(c, n, p, "an identity or @group"))),
    "permissions": _list(_mapping({
        "action": _one_or_list(_choice(ACTIONS)),
        "components": _one_or_list(lambda c, n, p: _string(c, n, p, "a component glob")),
        "slots": _one_or_list(lambda c, n, p: _string(c, n, p, "a slot glob")),
        "allow": _one_or_list(lambda c, n, p: _string(c, n, p, "a group name")),
    })),
    "overrides": _mapping({
        "allow": _one_or_list(lambda c, n, p: _string(c, n, p, "a group name")),
        "rules": _list(lambda c, n, p: _string(c, n, p, "a rule id")),
    }),
    "signatures": _mapping({
        "allowed_signers": lambda c, n, p: _string(c, n, p, "a file path"),
        "revoked": lambda c, n, p: _string(c, n, p, "a file path"),
        "versions": _choice(("required", "optional")),
        "slots": _list(lambda c, n, p: _string(c, n, p, "a slot glob")),
    }),
})


# ---- loading -------------------------------------------------------------------------

def load(text: str, source: str = "policy.yaml") -> Policy:
    """Parse and validate policy text; raise PolicyError naming file, line and key."""
    ctx = _Ctx(source)
    raw = SCHEMA(ctx, _compose(text, source), "")
    return _build(ctx, raw, hashlib.sha256(text.encode()).hexdigest())


def _compose(text: str, source: str):
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        root = yaml.compose(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PolicyError(f"{source}:{line}: not valid YAML: {problem}") from None
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == "tag:yaml.org,2002:null"):
        raise PolicyError(f"{source}:1: the policy file is empty")
    return root


# ---- layering: a base policy with a per-repository override on top -------------------

def layered_sha256(base_sha256: str, override_sha256: str) -> str:
    """What the audit records for a layered policy: the sha256 of the two files' own
    sha256 digests, each followed by a newline (base first)."""
    return hashlib.sha256(f"{base_sha256}\n{override_sha256}\n".encode()).hexdigest()


def load_layered(base_text: str, base_source: str, override_text: str,
                 override_source: str) -> Policy:
    """The base policy with the override merged over it; errors name the file, line and
    key of the layer that is wrong.

    Merging: mappings merge key by key at every depth; a pipeline the override names
    replaces the base's pipeline of that name whole; the override's ``components``
    entries come first (first match wins), followed by the base's entries whose
    ``match`` the override does not repeat; every other list and every scalar of the
    override replaces the base's. Defaults fill in what neither file sets, as for one
    file."""
    roots = []
    for text, source in ((base_text, base_source), (override_text, override_source)):
        root = _compose(text, source)
        _mark(root, source)
        SCHEMA(_Ctx(source), root, "")  # each file's own mistakes, under its own name
        roots.append(root)
    ctx = _Ctx(base_source, (base_source, override_source))
    merged = _merge(roots[0], roots[1], "", ctx.aliases)
    raw = SCHEMA(ctx, merged, "")
    return _build(ctx, raw, layered_sha256(hashlib.sha256(base_text.encode()).hexdigest(),
                                           hashlib.sha256(override_text.encode()).hexdigest()))


def _mark(node, source: str, seen: Optional[set] = None) -> None:
    """Every node remembers the file it came from (aliases share their anchor's node)."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    node.tagwarden_file = source
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _mark(key, source, seen)
            _mark(value, source, seen)
    elif isinstance(node, yaml.SequenceNode):
        for child in node.value:
            _mark(child, source, seen)


def _key_of(key_node) -> str:
    return key_node.value


def _match_of(entry) -> Optional[str]:
    if isinstance(entry, yaml.MappingNode):
        for key, value in entry.value:
            if key.value == "match" and isinstance(value, yaml.ScalarNode):
                return value.value
    return None


def _merge(base, override, path: str, aliases: dict[str, str]):
    """Both nodes passed SCHEMA on their own: keys are unique strings."""
    if path == "components" and isinstance(base, yaml.SequenceNode) \
            and isinstance(override, yaml.SequenceNode):
        own = [(entry, i) for i, entry in enumerate(override.value)]
        taken = {_match_of(entry) for entry in override.value} - {None}
        own += [(entry, i) for i, entry in enumerate(base.value)
                if _match_of(entry) not in taken]
        for merged_index, (_, own_index) in enumerate(own):
            if merged_index != own_index:
                aliases[f"components[{merged_index}]"] = f"components[{own_index}]"
        out = yaml.SequenceNode(override.tag, [entry for entry, _ in own], override.start_mark,
                                override.end_mark, override.flow_style)
        out.tagwarden_file = _file_of(override, "")
        return out
    if not (isinstance(base, yaml.MappingNode) and isinstance(override, yaml.MappingNode)):
        return override
    replaced = {_key_of(k): (k, v) for k, v in override.value}
    pairs = []
    for key, value in base.value:
        name = _key_of(key)
        if name in replaced:
            okey, ovalue = replaced.pop(name)
            if path == "pipelines":  # a pipeline is replaced whole, by name
                pairs.append((okey, ovalue))
            else:
                pairs.append((okey, _merge(value, ovalue, _join(path, name), aliases)))
        else:
            pairs.append((key, value))
    pairs += [(k, v) for k, v in override.value if _key_of(k) in replaced]
    out = yaml.MappingNode(base.tag, pairs, base.start_mark, base.end_mark, base.flow_style)
    out.tagwarden_file = _file_of(base, "")
    return out


def _merged(raw: dict, key: str) -> Any:
    default = DEFAULTS[key]
    if isinstance(default, dict) and key in raw and key not in ("pipelines", "rules"):
        return {**default, **raw[key]}
    return raw.get(key, default)


def _build(ctx: _Ctx, raw: dict, sha256: str) -> Policy:
    def fail(key: str, message: str, path: Optional[str] = None) -> PolicyError:
        if key not in raw:
            message = (f"{message.split(' (')[0]}; this comes from the default {key}, which "
                       f"your policy leaves out: set {key} to fit the rest of it")
            path = key
        return ctx.fail(None, path or key, message)

    prefixes = _merged(raw, "prefixes")
    types = _merged(raw, "types")
    for key, names in (("prefixes", prefixes), ("types", types)):
        for i, name in enumerate(names):
            if not _SEGMENT.fullmatch(name):
                raise fail(key, f"{name!r} is not a valid tag name segment", f"{key}[{i}]")

    envs = _merged(raw, "environments")
    patterns = []
    for i, text in enumerate(envs["patterns"]):
        try:
            patterns.append(re.compile(text, re.ASCII))
        except re.error as exc:
            raise fail("environments", f"bad regular expression {text!r}: {exc}",
                       f"environments.patterns[{i}]") from None
    names = frozenset(envs["names"])
    for i, name in enumerate(envs["names"]):
        if semver.looks_like_version(name) or not _SEGMENT.fullmatch(name):
            raise fail("environments", f"{name!r} cannot be an environment name "
                       "(versions look like v1.2.3; names use a-z 0-9 . _ -)",
                       f"environments.names[{i}]")

    def is_env(slot: str) -> bool:  # as refname.classify sees it: versions first
        if semver.looks_like_version(slot):
            return False
        return slot in names or any(p.fullmatch(slot) for p in patterns)

    for i, slot in enumerate(envs["protected"]):
        if not is_env(slot):
            note = "" if "protected" in raw.get("environments", {}) else \
                " (environments.protected defaults to [production]; set it to fit your names)"
            raise fail("environments", f"protected slot {slot!r} is not an environment{note}",
                       f"environments.protected[{i}]")

    pipelines = {}
    for pname, spec in _merged(raw, "pipelines").items():
        if "stages" not in spec:
            raise fail("pipelines", "a pipeline needs stages", f"pipelines.{pname}")
        seen: set[str] = set()
        for i, stage in enumerate(spec["stages"]):
            where = f"pipelines.{pname}.stages[{i}]"
            for slot in stage:
                if not is_env(slot):
                    raise fail("pipelines", f"stage slot {slot!r} is not an environment "
                               "(add it to environments.names)", where)
                if slot in seen:
                    raise fail("pipelines", f"slot {slot!r} appears twice", where)
                seen.add(slot)
        soak = spec.get("soak", {})
        for slot in soak:
            if slot not in seen:
                raise fail("pipelines", f"soak names {slot!r}, which is not a stage of this "
                           "pipeline", f"pipelines.{pname}.soak.{slot}")
            if slot in spec["stages"][0]:
                raise fail("pipelines", f"{slot!r} is the first stage: nothing upstream of it "
                           "can soak", f"pipelines.{pname}.soak.{slot}")
        pipelines[pname] = Pipeline(pname, spec["stages"], spec.get("same_push", False),
                                    tuple(soak.items()))

    assignments = []
    for i, entry in enumerate(_merged(raw, "components")):
        if set(entry) != {"match", "pipeline"}:
            raise fail("components", "each entry needs match and pipeline", f"components[{i}]")
        if entry["pipeline"] not in pipelines:
            raise fail("components", f"no pipeline named {entry['pipeline']!r}",
                       f"components[{i}].pipeline")
        assignments.append((entry["match"], entry["pipeline"]))

    levels = dict(_merged(raw, "rules"))
    for rule, level in levels.items():
        if rule not in RULES:
            raise fail("rules", f"unknown rule; rules are: {', '.join(sorted(RULES))}",
                       f"rules.{rule}")
        if RULES[rule].fixed and level != "deny":
            raise fail("rules", "this rule protects tagwarden itself and is always deny",
                       f"rules.{rule}")

    groups = _groups(ctx, raw.get("groups", {}))
    permissions = None
    if "permissions" in raw:
        permissions = []
        for i, entry in enumerate(raw["permissions"]):
            where = f"permissions[{i}]"
            for key in ("action", "allow"):
                if key not in entry:
                    raise ctx.fail(None, where, f"each entry needs {key}")
            _known_groups(ctx, groups, entry["allow"], f"{where}.allow")
            if "slots" in entry and set(entry["action"]) == {"create-version"}:
                raise ctx.fail(None, f"{where}.slots", "create-version has no slot; drop slots "
                               "or add move-slot or delete-slot")
            permissions.append(Permission(i, frozenset(entry["action"]),
                                          entry.get("components", ("*",)),
                                          entry.get("slots", ("*",)), entry["allow"]))
        permissions = tuple(permissions)
    overrides = raw.get("overrides", {})
    _known_groups(ctx, groups, overrides.get("allow", ()), "overrides.allow")
    override_rules = overrides.get("rules")
    for i, rule in enumerate(override_rules or ()):
        if rule not in RULES:
            raise ctx.fail(None, f"overrides.rules[{i}]",
                           f"unknown rule; rules are: {', '.join(sorted(RULES))}")
        if RULES[rule].fixed:
            raise ctx.fail(None, f"overrides.rules[{i}]", "this rule protects tagwarden "
                           "itself and is never overridden")
    if override_rules is None:
        override_rules = [r for r in RULES if not RULES[r].fixed]
    signatures = None
    if "signatures" in raw:
        spec = raw["signatures"]
        if "allowed_signers" not in spec:
            raise ctx.fail(None, "signatures", "signatures needs allowed_signers (a file "
                           "in the format of ssh-keygen's ALLOWED SIGNERS)")
        signatures = Signatures(_beside(ctx, spec["allowed_signers"],
                                        "signatures.allowed_signers"),
                                _beside(ctx, spec["revoked"], "signatures.revoked")
                                if "revoked" in spec else None,
                                spec.get("versions", "optional") == "required",
                                tuple(spec.get("slots", ())))

    unmanaged = _merged(raw, "unmanaged_tags")
    return Policy(
        source=ctx.source,
        sha256=sha256,
        prefixes=tuple(prefixes),
        types=frozenset(types),
        env_names=names,
        env_patterns=tuple(patterns),
        protected=frozenset(envs["protected"]),
        lightweight_versions=_merged(raw, "versions")["lightweight"] == "allow",
        unmanaged_semver=unmanaged["semver"],
        unmanaged_other=unmanaged["other"],
        pipelines=pipelines,
        assignments=tuple(assignments),
        levels=levels,
        lock_timeout=float(_merged(raw, "concurrency")["lock_timeout_seconds"]),
        from_branches=tuple(_merged(raw, "versions")["from_branches"]),
        groups=groups,
        permissions=permissions,
        override_groups=tuple(overrides.get("allow", ())),
        override_rules=frozenset(override_rules),
        signatures=signatures,
    )


def _groups(ctx: _Ctx, raw: dict[str, tuple[str, ...]]) -> dict[str, frozenset[str]]:
    """Each group's members with ``@other`` groups expanded; cycles and unknown
    groups are errors."""
    out: dict[str, frozenset[str]] = {}

    def expand(name: str, trail: tuple[str, ...]) -> frozenset[str]:
        if name in out:
            return out[name]
        members: set[str] = set()
        for i, member in enumerate(raw[name]):
            if member.startswith("@"):
                inner = member[1:]
                if inner not in raw:
                    raise ctx.fail(None, f"groups.{name}[{i}]", f"no group named {inner!r}")
                if inner == name or inner in trail:
                    raise ctx.fail(None, f"groups.{name}[{i}]", "groups include each other: "
                                   f"{' -> '.join(trail + (name, inner))}")
                members |= expand(inner, trail + (name,))
            else:
                members.add(member)
        out[name] = frozenset(members)
        return out[name]

    for name in raw:
        expand(name, ())
    return out


def _known_groups(ctx: _Ctx, groups: dict, names, path: str) -> None:
    for i, name in enumerate(names):
        if name not in groups:
            known = ", ".join(sorted(groups)) or "none: add a groups section"
            raise ctx.fail(None, path if len(names) == 1 else f"{path}[{i}]",
                           f"no group named {name!r} (groups: {known})")


def _beside(ctx: _Ctx, path: str, key: str) -> str:
    """A path in the policy, relative to the file that names it."""
    if path.startswith("/"):
        return path
    source = ctx.lines.get(key, (ctx.source,))[0]
    base = source.rpartition("/")[0] if "/" in source else "."
    return f"{base}/{path}"
