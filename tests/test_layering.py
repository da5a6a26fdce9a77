"""The package is layered top-down and has no import cycles, hidden or not.

cli → program → governance → serve | assess → federated → defenses | supplychain → report → attacks → models → data, with the
shared base (``errors``, ``registry``, ``params``, ``_io``) below them all. The contracts live
in ``pyproject.toml`` (``[tool.importlinter]``); import-linter checks every import, including
those inside functions. The AST scan below says the same thing in this project's own words: an
import placed inside a function to dodge a cycle is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mlwarden

importlinter_cli = pytest.importorskip("importlinter.cli")

PACKAGE = Path(mlwarden.__file__).parent
PYPROJECT = PACKAGE.parents[1] / "pyproject.toml"

# Rank of each top-level subpackage: a module may import only its own rank or higher numbers.
LAYERS: dict[str, float] = {
    "cli": 0,
    "program": 1,
    "governance": 2,
    "serve": 3,
    "assess": 3,
    "federated": 3.5,  # below assess (its federated-privacy section), above defenses (DP-SGD)
    "defenses": 4,
    "supplychain": 4,
    "report": 5,
    "attacks": 6,
    "models": 7,
    "data": 8,
}
BASE = 9  # errors, registry, params, _io, the package's own __init__


def _rank(module: str) -> tuple[float, str]:
    """``(rank, top-level part)`` of a dotted module name under ``mlwarden``."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    return LAYERS.get(top, BASE), top


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _function_level_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, module)`` of every ``mlwarden`` import inside a function body."""
    found: list[tuple[int, str]] = []
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            found += [(node.lineno, n) for n in names if n.split(".")[0] == "mlwarden"]
    return found


def back_edges() -> list[str]:
    """Function-level imports that point up the layers, or across independent siblings."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = _module_name(path)
        importer_rank, importer_top = _rank(importer)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for line, imported in _function_level_imports(tree):
            if imported == "mlwarden":  # the version and the package's few top-level names
                continue
            rank, top = _rank(imported)
            upward = rank < importer_rank
            sideways = rank == importer_rank and top != importer_top and rank != BASE
            if upward or sideways:
                problems.append(f"{importer}:{line} imports {imported} inside a function")
    return problems


def test_the_import_contracts_hold() -> None:
    exit_code = importlinter_cli.lint_imports(
        config_filename=str(PYPROJECT), no_cache=True, no_logo=True
    )
    assert exit_code == 0, "lint-imports found a broken contract (its report is printed above)"


def test_no_function_level_import_points_up_the_layers() -> None:
    assert back_edges() == []


def test_the_scan_sees_a_hidden_back_edge(tmp_path: Path) -> None:
    source = "def load():\n    from mlwarden.supplychain.signing import verify_model\n"
    imports = _function_level_imports(ast.parse(source))
    assert imports == [(2, "mlwarden.supplychain.signing")]
    assert _rank("mlwarden.supplychain.signing")[0] < _rank("mlwarden.models.loading")[0]
