"""tagwarden.policy: strict loading with FILE:LINE: key.path errors, the shipped policies,
rule levels and pipelines."""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import os

import pytest

import tagwarden.paths
from tagwarden.policy import Pipeline, PolicyError, load
from tagwarden.rules import RULES

with open(tagwarden.paths.default_policy()) as _f:
    DEFAULT_TEXT = _f.read()
EXAMPLES = sorted(glob.glob(os.path.join(tagwarden.paths.policy_dir(), "examples", "*.yaml")))
C = "components/prompts/extraction"


# ---- the shipped policies -------------------------------------------------------------

def test_shipped_default_policy_equals_the_built_in_defaults():
    shipped = load(DEFAULT_TEXT, "default.yaml")
    minimal = load("version: 1\n", "minimal.yaml")
    assert dataclasses.replace(shipped, source=minimal.source, sha256=minimal.sha256) == minimal


def test_policy_records_its_source_and_the_sha256_of_its_text():
    text = "version: 1\n"
    policy = load(text, "somewhere/policy.yaml")
    assert policy.source == "somewhere/policy.yaml"
    assert policy.sha256 == hashlib.sha256(text.encode()).hexdigest()


def test_default_policy_has_the_model_of_the_brief():
    p = load(DEFAULT_TEXT, "default.yaml")
    assert p.prefixes == ("components", "logic")
    assert p.types == {"agents", "prompts", "schemas", "templates", "queries", "configs",
                       "scripts", "ensembles", "tools", "routes"}
    assert p.env_names == {"dev", "staging", "production", "canary", "blue", "green",
                           "control", "treatment"}
    assert p.protected == {"production"}
    assert p.lightweight_versions is True
    assert (p.unmanaged_semver, p.unmanaged_other) == ("immutable", "allow")
    assert p.pipeline_for(C).stages == (("staging",), ("production",))
    assert p.pipeline_for(C).same_push is False
    assert p.levels == {}
    assert p.lock_timeout == 30.0


def test_every_example_policy_loads():
    assert len(EXAMPLES) >= 7
    for path in EXAMPLES:
        with open(path) as f:
            load(f.read(), path)


STRATEGIES = [
    ("traditional", [["dev"], ["staging"], ["production"]]),
    ("canary", [["canary"], ["production"]]),
    ("blue-green", [["green"], ["blue"]]),
    ("ab", [["control", "treatment"], ["production"]]),
    ("progressive", [["rollout-1pct"], ["rollout-10pct"], ["rollout-50pct"], ["production"]]),
    ("rings", [["ring-0"], ["ring-1"], ["ring-2"], ["ring-3"]]),
    ("staged-canary", [["dev"], ["staging"], ["canary-5"], ["canary-25"], ["production"]]),
]


@pytest.mark.parametrize("strategy, stages", STRATEGIES, ids=[s for s, _ in STRATEGIES])
def test_example_policy_expresses_its_strategy_of_the_brief(strategy, stages):
    path = os.path.join(tagwarden.paths.policy_dir(), "examples", f"{strategy}.yaml")
    with open(path) as f:
        policy = load(f.read(), path)
    pipeline = policy.pipeline_for(C)
    assert pipeline is not None
    assert [list(stage) for stage in pipeline.stages] == stages
    assert pipeline.same_push is False
    assert policy.pipeline_for("logic/agents/anything") is pipeline


# ---- broken policies: each error starts with FILE:LINE: key.path: ----------------------

BAD = [
    ("duplicate-top-key", "version: 1\nversion: 1\n",
     "p.yaml:2: version: duplicate key"),
    ("duplicate-nested-key", "environments:\n  names: [dev]\n  names: [staging]\n",
     "p.yaml:3: environments.names: duplicate key (first on line 2)"),
    ("duplicate-list-entry", "environments:\n  names: [dev, staging, dev]\n",
     "p.yaml:2: environments.names[2]: duplicate entry"),
    ("float-slot-1.10", "environments:\n  names: [dev, 1.10]\n",
     "p.yaml:2: environments.names[1]: expected a slot name, got float '1.10' (quote it)"),
    ("bool-slot-on", "environments:\n  names:\n    - dev\n    - on\n",
     "p.yaml:4: environments.names[1]: expected a slot name, got bool 'on' (quote it)"),
    ("bool-stage-yes", "pipelines:\n  default:\n    stages: [staging, yes]\n",
     "p.yaml:3: pipelines.default.stages[1]: expected a slot name"),
    ("float-protected", "environments:\n  protected: [1.0]\n",
     "p.yaml:2: environments.protected[0]: expected a slot name, got float"),
    ("int-key", "rules:\n  1: deny\n", "p.yaml:2: rules: expected a string key, got int"),
    ("unknown-top-key", "version: 1\nprefix: [components]\n", "p.yaml:2: prefix: unknown key"),
    ("unknown-environments-key", "environments:\n  nmes: [dev]\n",
     "p.yaml:2: environments.nmes: unknown key"),
    ("unknown-versions-key", "versions:\n  lightweigt: deny\n",
     "p.yaml:2: versions.lightweigt: unknown key"),
    ("unknown-pipeline-key",
     "pipelines:\n  default:\n    stages: [staging, production]\n    samepush: true\n",
     "p.yaml:4: pipelines.default.samepush: unknown key"),
    ("unknown-component-key",
     "components:\n  - match: '*'\n    pipeline: default\n    pipline: x\n",
     "p.yaml:4: components[0].pipline: unknown key"),
    ("empty-file", "", "p.yaml:1: the policy file is empty"),
    ("comment-only-file", "# nothing here\n\n# still nothing\n",
     "p.yaml:1: the policy file is empty"),
    ("blank-file", "\n  \n\n", "p.yaml:1: the policy file is empty"),
    ("null-document", "~\n", "p.yaml:1: the policy file is empty"),
    ("two-documents", "version: 1\n---\nversion: 1\n", "p.yaml:2: not valid YAML:"),
    ("two-documents-with-markers", "---\nversion: 1\n---\n", "p.yaml:3: not valid YAML:"),
    ("top-level-list", "- version: 1\n", "p.yaml:1: (top): expected a mapping, got a list"),
    ("top-level-scalar", "hello\n", "p.yaml:1: (top): expected a mapping, got str 'hello'"),
    ("bad-regex", "environments:\n  patterns:\n    - 'canary-[0-9'\n",
     "p.yaml:3: environments.patterns[0]: bad regular expression"),
    ("stage-slot-not-an-environment", "pipelines:\n  default:\n    stages: [staging, prod]\n",
     "p.yaml:3: pipelines.default.stages[1]: stage slot 'prod' is not an environment"),
    ("alternative-not-an-environment",
     "pipelines:\n  default:\n    stages: [[control, bogus], production]\n",
     "p.yaml:3: pipelines.default.stages[0]: stage slot 'bogus' is not an environment"),
    ("slot-in-two-stages",
     "pipelines:\n  default:\n    stages: [[control, treatment], production, control]\n",
     "p.yaml:3: pipelines.default.stages[2]: slot 'control' appears twice"),
    ("pipeline-without-stages", "pipelines:\n  default:\n    same_push: true\n",
     "p.yaml:2: pipelines.default: a pipeline needs stages"),
    ("pipeline-with-no-stages", "pipelines:\n  default:\n    stages: []\n",
     "p.yaml:3: pipelines.default.stages: expected at least one entry"),
    ("same-push-quoted", "pipelines:\n  default:\n    stages: [staging]\n    same_push: 'yes'\n",
     "p.yaml:4: pipelines.default.same_push: expected true or false"),
    ("version-looking-env-name", "environments:\n  names: [dev, v1]\n",
     "p.yaml:2: environments.names[1]: 'v1' cannot be an environment name"),
    ("numeric-looking-env-name", "environments:\n  names: [dev, '1.0.0']\n",
     "p.yaml:2: environments.names[1]: '1.0.0' cannot be an environment name"),
    ("uppercase-env-name", "environments:\n  names: [Dev]\n",
     "p.yaml:2: environments.names[0]: 'Dev' cannot be an environment name"),
    ("protected-not-an-environment", "environments:\n  protected: [prod]\n",
     "p.yaml:2: environments.protected[0]: protected slot 'prod' is not an environment"),
    ("unknown-rule-id", "rules:\n  promotion-orders: warn\n",
     "p.yaml:2: rules.promotion-orders: unknown rule"),
    ("relaxing-reserved-namespace", "rules:\n  reserved-namespace: off\n",
     "p.yaml:2: rules.reserved-namespace: this rule protects tagwarden itself"),
    ("relaxing-chained-hook", "rules:\n  chained-hook: warn\n",
     "p.yaml:2: rules.chained-hook: this rule protects tagwarden itself"),
    ("unknown-level", "rules:\n  promotion-order: maybe\n",
     "p.yaml:2: rules.promotion-order: expected one of deny|warn|off, got 'maybe'"),
    ("level-other-boolean", "rules:\n  promotion-order: no\n",
     "p.yaml:2: rules.promotion-order: expected one of deny|warn|off, got bool 'no'"),
    ("pipeline-reference-missing", "components:\n  - match: '*'\n    pipeline: nope\n",
     "p.yaml:3: components[0].pipeline: no pipeline named 'nope'"),
    ("component-without-pipeline", "components:\n  - match: '*'\n",
     "p.yaml:2: components[0]: each entry needs match and pipeline"),
    ("invalid-yaml-unclosed-list", "version: 1\nprefixes: [a, b\ntypes: [x]\n",
     "p.yaml:3: not valid YAML:"),
    ("invalid-yaml-tab", "version: 1\n\tprefixes: []\n", "p.yaml:2: not valid YAML:"),
    ("invalid-yaml-bad-indent", "version: 1\n  prefixes: [a]\n", "p.yaml:2: not valid YAML:"),
    ("invalid-yaml-undefined-alias", "version: *nope\n", "p.yaml:1: not valid YAML:"),
    ("policy-version-2", "version: 2\n",
     "p.yaml:1: version: this tagwarden reads policy version 1"),
    ("policy-version-string", "version: '1'\n", "p.yaml:1: version: this tagwarden reads"),
    ("bad-prefix-segment", "prefixes: [Components]\n",
     "p.yaml:1: prefixes[0]: 'Components' is not a valid tag name segment"),
    ("empty-prefixes", "prefixes: []\n", "p.yaml:1: prefixes: expected at least one entry"),
    ("types-not-a-list", "types: prompts\n", "p.yaml:1: types: expected a list"),
    ("environments-not-a-mapping", "environments: [dev]\n",
     "p.yaml:1: environments: expected a mapping"),
    ("bad-lightweight-choice", "versions:\n  lightweight: maybe\n",
     "p.yaml:2: versions.lightweight: expected one of allow|deny"),
    ("bad-unmanaged-mode", "unmanaged_tags:\n  semver: frozen\n",
     "p.yaml:2: unmanaged_tags.semver: expected one of allow|immutable|deny"),
    ("negative-lock-timeout", "concurrency:\n  lock_timeout_seconds: -1\n",
     "p.yaml:2: concurrency.lock_timeout_seconds: expected a number from 0 to 3600"),
    ("lock-timeout-over-an-hour", "concurrency:\n  lock_timeout_seconds: 3601\n",
     "p.yaml:2: concurrency.lock_timeout_seconds: expected a number from 0 to 3600"),
    ("lock-timeout-word", "concurrency:\n  lock_timeout_seconds: ten\n",
     "p.yaml:2: concurrency.lock_timeout_seconds: expected a number"),
    ("yaml-merge-key", "environments:\n  <<: {names: [dev]}\n",
     "p.yaml:2: environments: expected a string key"),
]


@pytest.mark.parametrize("text, prefix", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_broken_policy_error_names_file_line_and_key(text, prefix):
    with pytest.raises(PolicyError) as caught:
        load(text, "p.yaml")
    message = str(caught.value)
    assert message.startswith(prefix), message
    assert "\n" not in message


# YAML 1.1 resolves these to int or float, but Python's float() cannot read their text
NUMBER_SPELLINGS = [".inf", "-.inf", ".nan", "0x10", "0b11", "1:30"]


@pytest.mark.parametrize("value", NUMBER_SPELLINGS)
def test_unusual_yaml_number_for_lock_timeout_is_a_policy_error(value):
    with pytest.raises(PolicyError) as caught:
        load(f"concurrency:\n  lock_timeout_seconds: {value}\n", "p.yaml")
    assert str(caught.value).startswith("p.yaml:2: concurrency.lock_timeout_seconds:")


@pytest.mark.parametrize("text, prefix", [
    (("environments:\n  patterns: ['v[0-9]+']\npipelines:\n  default:\n"
      "    stages: [v1, production]\n"), "p.yaml:5: pipelines.default.stages[0]:"),
    ("environments:\n  patterns: ['.*']\n  protected: ['V2']\n",
     "p.yaml:3: environments.protected[0]:"),
], ids=["stage", "protected"])
def test_slot_that_looks_like_a_version_is_a_policy_error_even_when_a_pattern_matches(text,
                                                                                   prefix):
    with pytest.raises(PolicyError) as caught:
        load(text, "p.yaml")
    assert str(caught.value).startswith(prefix)


@pytest.mark.parametrize("value, seconds", [("0", 0.0), ("30", 30.0), ("2.5", 2.5),
                                            ("3600", 3600.0), ("1_0", 10.0)])
def test_lock_timeout_takes_a_number_from_0_to_3600(value, seconds):
    assert load(f"concurrency:\n  lock_timeout_seconds: {value}\n").lock_timeout == seconds


def test_policy_error_is_a_value_error():
    assert issubclass(PolicyError, ValueError)


# ---- rule levels ------------------------------------------------------------------------

@pytest.mark.parametrize("spelling, level", [
    ("off", "off"), ("'off'", "off"), ('"off"', "off"),
    ("warn", "warn"), ("'warn'", "warn"),
    ("deny", "deny"), ("'deny'", "deny"),
])
def test_rule_level_reads_off_warn_and_deny_bare_or_quoted(spelling, level):
    policy = load(f"rules:\n  promotion-order: {spelling}\n")
    assert policy.level("promotion-order") == level


def test_unlisted_rules_are_denied():
    policy = load("rules:\n  promotion-order: warn\n  env-unreleased: off\n")
    assert policy.level("promotion-order") == "warn"
    assert policy.level("env-unreleased") == "off"
    for rule in set(RULES) - {"promotion-order", "env-unreleased"}:
        assert policy.level(rule) == "deny"


@pytest.mark.parametrize("rule", sorted(r.id for r in RULES.values() if r.fixed))
def test_fixed_rule_may_be_written_as_deny(rule):
    assert load(f"rules:\n  {rule}: deny\n").level(rule) == "deny"


@pytest.mark.parametrize("rule", sorted(r.id for r in RULES.values() if not r.fixed))
def test_every_rule_that_is_not_fixed_may_be_relaxed(rule):
    assert load(f"rules:\n  {rule}: warn\n").level(rule) == "warn"


# ---- merging with the defaults ----------------------------------------------------------

def test_absent_environment_keys_keep_their_defaults():
    policy = load("environments:\n  protected: [blue]\n")
    default = load("version: 1\n")
    assert policy.protected == {"blue"}
    assert policy.env_names == default.env_names
    assert policy.env_patterns == default.env_patterns


def test_quoted_number_like_env_name_is_rejected_as_a_version_lookalike():
    with pytest.raises(PolicyError, match=r"^p\.yaml:2: environments\.names\[0\]: '1\.10' "
                                          "cannot be an environment name"):
        load("environments:\n  names: ['1.10']\n", "p.yaml")


def test_patterns_are_matched_against_the_whole_slot():
    policy = load("environments:\n  patterns: ['canary-[0-9]+']\n")
    assert policy.is_environment("canary-7")
    assert not policy.is_environment("canary-7x")
    assert not policy.is_environment("my-canary-7")


# ---- pipelines ------------------------------------------------------------------------

AB = Pipeline("ab", (("control", "treatment"), ("production",)), False)
TRADITIONAL = Pipeline("t", (("dev",), ("staging",), ("production",)), False)


@pytest.mark.parametrize("pipeline, slot, upstream, index", [
    (TRADITIONAL, "dev", None, 0),
    (TRADITIONAL, "staging", ("dev",), 1),
    (TRADITIONAL, "production", ("staging",), 2),
    (TRADITIONAL, "canary", None, -1),
    (AB, "control", None, 0),
    (AB, "treatment", None, 0),
    (AB, "production", ("control", "treatment"), 1),
    (AB, "staging", None, -1),
])
def test_pipeline_upstream_is_the_previous_stage_of_alternatives(pipeline, slot, upstream, index):
    assert pipeline.upstream(slot) == upstream
    assert pipeline.index(slot) == index


def test_stage_of_alternatives_loads_as_one_stage():
    policy = load("pipelines:\n  ab:\n    stages: [[control, treatment], production]\n"
                  "    same_push: true\ncomponents:\n  - match: '*'\n    pipeline: ab\n")
    pipeline = policy.pipelines["ab"]
    assert pipeline == Pipeline("ab", (("control", "treatment"), ("production",)), True)
    assert pipeline.upstream("production") == ("control", "treatment")


def test_first_matching_component_glob_picks_the_pipeline_and_unmatched_have_none():
    policy = load(
        "pipelines:\n"
        "  fast:\n    stages: [canary, production]\n"
        "  slow:\n    stages: [dev, staging, production]\n"
        "components:\n"
        "  - match: 'logic/*'\n    pipeline: fast\n"
        "  - match: 'logic/agents/special'\n    pipeline: slow\n"
        "  - match: 'components/prompts/*'\n    pipeline: slow\n")
    assert policy.pipeline_for("logic/agents/special").name == "fast"  # first match wins
    assert policy.pipeline_for("components/prompts/extraction").name == "slow"
    assert policy.pipeline_for("components/agents/x") is None


def test_component_globs_are_case_sensitive():
    policy = load("components:\n  - match: 'components/*'\n    pipeline: default\n")
    assert policy.pipeline_for("components/prompts/x") is not None
    assert policy.pipeline_for("Components/prompts/x") is None


@pytest.mark.parametrize("text, expected", [
    ("version: 1\npipelines: {content: {stages: [staging, production]}}\n",
     "p.yaml:1: components: no pipeline named 'default'; this comes from the default "
     "components, which your policy leaves out: set components to fit the rest of it"),
    ("version: 1\nenvironments:\n  names: [dev, production]\n",
     "p.yaml:1: pipelines: stage slot 'staging' is not an environment; this comes from the "
     "default pipelines, which your policy leaves out: set pipelines to fit the rest of it"),
])
def test_an_error_in_a_default_value_names_the_missing_key(text, expected):
    with pytest.raises(PolicyError) as caught:
        load(text, "p.yaml")
    assert str(caught.value) == expected
