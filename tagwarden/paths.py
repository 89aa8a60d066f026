"""Where the shipped files are: policy/ and hooks/ of the source tree, which an installed
wheel carries as the package ``tagwarden.shipped`` (see setup.cfg)."""
from __future__ import annotations

import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def _shipped_dir(source_dir: str, package_subdir: str) -> str:
    installed = os.path.join(_HERE, "shipped", package_subdir)
    if os.path.isdir(installed):
        return installed
    return os.path.join(os.path.dirname(_HERE), source_dir)  # source checkout / editable


def policy_dir() -> str:
    return _shipped_dir("policy", "")


def default_policy() -> str:
    return os.path.join(policy_dir(), "default.yaml")


def hook_template(name: str) -> str:
    return os.path.join(_shipped_dir("hooks", "hooks"), name)
