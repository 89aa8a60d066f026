"""placeholder: the auditor's commands land here."""
from __future__ import annotations


def register(sub) -> dict:
    return {}
