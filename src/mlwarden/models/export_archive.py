"""Check that a ``torch.export`` archive holds only data before PyTorch parses it.

``torch.export.load`` is not a safe loader (its own documentation says so). A crafted ``.pt2``
archive can run code while it loads through:

* pickles it loads with ``weights_only=False`` (sample inputs that fail the safe load fall back to
  the unsafe one; weights and constants flagged ``use_pickle``; opaque and TorchBind objects);
* symbolic-shape strings (``expr_str``) it hands to ``sympy.sympify``, which calls ``eval``;
* ``guards_code`` strings it passes to ``exec`` when the module is built;
* pytree specs naming modules to import (enums, ``defaultdict`` factories);
* compiled AOTInductor libraries.

:func:`check_export_archive` reads the archive with :mod:`zipfile` and :mod:`json` only, accepts
what a plain exported classifier contains, and refuses everything else with
:class:`~mlwarden.errors.UnsafeModelError` before any of it reaches PyTorch.
"""

from __future__ import annotations

import ast
import io
import json
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mlwarden.errors import ModelError, UnsafeModelError

__all__ = ["check_export_archive"]

_TEXT_MEMBERS = {"archive_format", "archive_version", "byteorder", "version"}
_MODEL_JSON = re.compile(r"models/[^/]+\.json")
_PAYLOAD_CONFIG = re.compile(r"data/(weights|constants)/[^/]+_config\.json")
_PAYLOAD = re.compile(r"data/(weights|constants)/[^/]+")
_SAMPLE_INPUTS = re.compile(r"data/sample_inputs/[^/]+\.pt")
_PICKLED_PAYLOAD_PREFIXES = ("custom_obj_", "opaque_obj_")
_TREESPEC_TYPES = {
    None,
    "builtins.tuple",
    "builtins.list",
    "builtins.dict",
    "collections.namedtuple",
    "collections.OrderedDict",
    "collections.deque",
    "torch.fx.immutable_collections.immutable_list",
    "torch.fx.immutable_collections.immutable_dict",
}
# Functions a symbolic shape may call: the SymPy classes ``srepr`` writes (torch serializes
# shapes with it) and torch.utils._sympy.functions.
_SYMPY_CALLS = {
    "Symbol", "Integer", "Float", "Rational", "Add", "Mul", "Pow", "Max", "Min", "Abs",
    "Equality", "Unequality", "StrictLessThan", "StrictGreaterThan", "LessThan", "GreaterThan",
    "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "Piecewise", "ExprCondPair",
    "ceiling", "floor", "sqrt", "FloorDiv",
    "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv", "CeilToInt", "FloorToInt",
    "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv",
    "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt",
    "RoundDecimal", "ToFloat", "Identity",
}  # fmt: skip
_SYMPY_STRING_ARGS = {"Symbol", "Integer", "Float", "Rational"}
_SYMPY_NODES = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Call, ast.Name,
    ast.Constant, ast.keyword, ast.Load, ast.operator, ast.unaryop, ast.boolop, ast.cmpop,
)  # fmt: skip


def check_export_archive(
    path: Path, *, check_pickle: Callable[[Path, str, bytes], None] | None = None
) -> None:
    """Raise :class:`UnsafeModelError` unless the ``.pt2`` at ``path`` is plain data.

    Parameters
    ----------
    path
        The archive.
    check_pickle
        Checks each tensor pickle (sample inputs): ``(path, member, bytes)``, raising
        :class:`UnsafeModelError` to refuse. The default loads it with
        ``torch.load(weights_only=True)``; the scanner, which never loads anything, passes a
        check of its own since it reads those pickles opcode by opcode.

    Raises
    ------
    UnsafeModelError
        The archive holds something that could run code when ``torch.export.load`` reads it.
    ModelError
        The archive is damaged (unreadable members or JSON).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            _check_members(path, archive, check_pickle or _check_tensor_pickle)
    except (zipfile.BadZipFile, zlib.error) as exc:
        raise ModelError(f"{path.name}: damaged archive ({exc})") from exc


def _refuse(path: Path, why: str) -> UnsafeModelError:
    return UnsafeModelError(
        f"refusing to load {path.name}: {why}, which torch.export.load would run as code. "
        "Re-export the model with torch.export.save from a plain nn.Module, or convert it to "
        "ONNX (.onnx)."
    )


def _check_members(
    path: Path, archive: zipfile.ZipFile, check_pickle: Callable[[Path, str, bytes], None]
) -> None:
    names = archive.namelist()
    if not names:
        raise ModelError(f"{path.name}: the archive is empty")
    if len(set(names)) != len(names):
        raise _refuse(path, "it has duplicate member names (readers may disagree on which is used)")
    root = names[0].split("/", 1)[0] + "/"
    for name in names:
        if not name.startswith(root):
            raise _refuse(path, f"member {name!r} lies outside the archive folder {root!r}")
        rel = name[len(root) :]
        if rel in _TEXT_MEMBERS or rel.startswith((".data/", "extra/")):
            continue
        if _MODEL_JSON.fullmatch(rel):
            _check_program(path, _read_json(path, archive, name))
        elif _PAYLOAD_CONFIG.fullmatch(rel):
            _check_payload_config(path, _read_json(path, archive, name))
        elif _SAMPLE_INPUTS.fullmatch(rel) or (_PAYLOAD.fullmatch(rel) and rel.endswith(".pt")):
            check_pickle(path, rel, archive.read(name))
        elif not _PAYLOAD.fullmatch(rel):
            raise _refuse(
                path, f"it contains {rel!r}, which a plain exported program does not have"
            )


def _read_json(path: Path, archive: zipfile.ZipFile, name: str) -> Any:
    try:
        return json.loads(archive.read(name))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path.name}: damaged archive member {name!r} ({exc})") from exc


def _check_tensor_pickle(path: Path, rel: str, data: bytes) -> None:
    import torch

    try:
        torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # the restricted unpickler raises many types; all mean "refuse"
        found = re.search(r"GLOBAL (\S+)", str(exc))
        detail = f"it references {found.group(1)}" if found else type(exc).__name__
        raise _refuse(path, f"{rel!r} is a pickle holding more than tensors ({detail})") from exc


def _check_payload_config(path: Path, config: Any) -> None:
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise ModelError(f"{path.name}: damaged weights/constants configuration")
    for fqn, meta in entries.items():
        if not isinstance(meta, dict):
            raise ModelError(f"{path.name}: damaged configuration entry {fqn!r}")
        if meta.get("use_pickle") or str(meta.get("path_name", "")).startswith(
            _PICKLED_PAYLOAD_PREFIXES
        ):
            raise _refuse(path, f"weight or constant {fqn!r} is stored as a pickled object")


def _check_program(path: Path, program: Any) -> None:
    if not isinstance(program, dict):
        raise ModelError(f"{path.name}: damaged exported program")
    if program.get("guards_code"):
        raise _refuse(path, "the exported program carries guard code")
    for key, value in _walk(program):
        if key == "expr_str" and not _is_sympy_expression(value):
            raise _refuse(path, f"the symbolic shape {str(value)[:80]!r} is not a plain expression")
        if key in ("in_spec", "out_spec") and value is not None:
            _check_treespec(path, value)


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every ``(key, value)`` pair in nested JSON dicts and lists."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _is_sympy_expression(text: Any) -> bool:
    """Whether ``text`` is arithmetic over symbols and allow-listed SymPy/torch functions.

    Strings are allowed only as direct arguments of ``Symbol``/``Integer``/``Float``/``Rational``,
    which parse them as names or numbers; any other function would hand them to ``sympify``.
    """
    if not isinstance(text, str):
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return False
    literal_strings: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, _SYMPY_NODES):
            return False
        if isinstance(node, ast.Name) and node.id.startswith("_"):
            return False
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _SYMPY_CALLS:
                return False
            if any(k.arg is None or not isinstance(k.value, ast.Constant) for k in node.keywords):
                return False
            if node.func.id in _SYMPY_STRING_ARGS:
                literal_strings.update(id(arg) for arg in node.args)
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in literal_strings
        ):
            return False
    return True


def _check_treespec(path: Path, text: Any) -> None:
    try:
        spec = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        spec = None
    if not (isinstance(spec, list) and len(spec) == 2):
        raise ModelError(f"{path.name}: damaged input/output structure in the exported program")
    for key, value in _walk(spec[1]):
        if key == "type" and value not in _TREESPEC_TYPES:
            raise _refuse(path, f"its input/output structure uses the type {value!r}")
        if key == "context" and isinstance(value, str) and "__enum__" in value:
            raise _refuse(path, "its input/output structure names an enum class to import")
