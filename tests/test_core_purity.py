"""The pure core stays pure: checked by reading the source with ast, never by importing it.

style.md habit 1: only gitview.py imports pygit2, only audit.py imports structlog, and the
core (semver, refname, model, policy, rules, engine, messages) does no I/O.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tagwarden"
CORE = ("semver", "refname", "model", "policy", "rules", "engine", "messages", "ledger",
        "access")
FORBIDDEN_IN_CORE = {"pygit2", "structlog", "os", "subprocess", "socket", "pathlib"}
OWNERS = {"pygit2": "gitview.py", "structlog": "audit.py"}  # the only importer of each


def imports(path: Path) -> list[tuple[int, str, int]]:
    """(line, absolute top-level module or relative module, relative level) of every import,
    at any depth (functions, conditionals, try blocks), plus __import__/import_module calls
    with a literal name."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0], 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                modules = [node.module.split(".")[0]] if node.module else \
                    [alias.name for alias in node.names]
                found += [(node.lineno, m, node.level) for m in modules]
            else:
                found.append((node.lineno, node.module.split(".")[0], 0))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else \
                func.attr if isinstance(func, ast.Attribute) else None
            if name in ("__import__", "import_module") and node.args and \
                    isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value.split(".")[0], 0))
    return found


def test_the_core_modules_exist():
    for module in CORE:
        assert (PACKAGE / f"{module}.py").is_file(), module


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_no_git_logging_or_io_module(module):
    path = PACKAGE / f"{module}.py"
    bad = [f"{path.name}:{line}: {name}" for line, name, level in imports(path)
           if level == 0 and name in FORBIDDEN_IN_CORE]
    assert not bad


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_only_core_modules_of_the_package(module):
    path = PACKAGE / f"{module}.py"
    shell = [f"{path.name}:{line}: .{name}" for line, name, level in imports(path)
             if level == 1 and name not in CORE]
    assert not shell, "the core reaches into the shell (and through it into I/O)"


@pytest.mark.parametrize("library, owner", sorted(OWNERS.items()))
def test_only_one_module_of_the_package_imports_each_io_library(library, owner):
    importers = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                       if any(level == 0 and name == library for _, name, level in imports(path)))
    assert importers == [owner]


def test_import_scan_sees_imports_inside_functions_and_dynamic_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os.path\n"
                      "def f():\n"
                      "    from subprocess import run\n"
                      "    import importlib\n"
                      "    importlib.import_module('socket')\n"
                      "    __import__('pathlib')\n"
                      "from . import engine\n"
                      "from .gitview import GitView\n")
    assert sorted(imports(sample)) == [(1, "os", 0), (3, "subprocess", 0), (4, "importlib", 0),
                                       (5, "socket", 0), (6, "pathlib", 0), (7, "engine", 1),
                                       (8, "gitview", 1)]
