"""Every third-party package the code imports is declared in pyproject.toml (issue 22: scipy was
imported directly and only arrived through librosa). A package that arrives through another one
can leave with its next release, and then an install breaks with nothing in this repo changed."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("dgx_music", "common", "cli", "tui", "daemon")
#: Imported, and installed by the Makefile into .venv-audiocraft (AC_DEPS), never an extra of this
#: package: audiocraft pins torch 2.1 (docs/engine.md).
AUDIOCRAFT_ENV = {"audiocraft", "omegaconf", "yaml"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    return {_norm(re.match(r"[A-Za-z0-9._-]+", r).group(0)) for r in reqs}


def _optional(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Inside `try: ... except ImportError` (or ModuleNotFoundError, Exception): the code copes without it."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try):
            for h in node.handlers:
                names = [h.type] if not isinstance(h.type, ast.Tuple) else list(h.type.elts)
                if any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError", "Exception")
                       for n in names):
                    return True
    return False


def imported() -> dict[str, str]:
    """Top-level third-party module -> one file that imports it unconditionally."""
    found: dict[str, str] = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text())
            parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top in ("dgx_music", "__future__"):
                        continue
                    if not _optional(node, parents):
                        found.setdefault(top, path.relative_to(ROOT).as_posix())
    return found


def test_every_imported_package_is_declared() -> None:
    dists = md.packages_distributions()
    have = declared()
    missing = []
    for module, where in sorted(imported().items()):
        if module in AUDIOCRAFT_ENV:
            continue
        names = {_norm(d) for d in dists.get(module, [module])}  # not installed here: assume the same name
        if not names & have:
            missing.append(f"{module} ({where})")
    assert not missing, "imported but not declared in pyproject.toml: " + ", ".join(missing)
