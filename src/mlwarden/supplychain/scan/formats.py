"""Recognise a file's format from its first bytes, and check the formats that cannot run code.

Formats that are data by construction (safetensors, ONNX, NumPy arrays without objects, skops)
are still parsed far enough to check their headers: a header that lies about sizes or offsets,
an ONNX external-data path that leaves the model folder, or skops types outside scikit-learn are
reported. Keras/HDF5 files are searched for ``Lambda`` layers, which carry Python bytecode.
"""

from __future__ import annotations

import ast
import json
import re
import struct
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any, BinaryIO

from mlwarden.report.findings import Severity
from mlwarden.supplychain.scan.results import ScanIssue

__all__ = [
    "HEAD_BYTES",
    "PICKLE_SUFFIXES",
    "check_onnx",
    "check_safetensors",
    "keras_config_issues",
    "read_npy_header",
    "search_hdf5_lambda",
    "skops_schema_issues",
    "sniff",
]

HEAD_BYTES = 512
PICKLE_SUFFIXES = frozenset(
    {".pkl", ".pickle", ".joblib", ".pt", ".pth", ".bin", ".ckpt", ".sav", ".dill", ".p", ".pck"}
)
# the opcodes a protocol 0/1 pickle (which has no PROTO header) usually starts with
_PROTOCOL0_START = frozenset(b"(c]})NILFSVTUXJKMG")
_SAFETENSORS_DTYPES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
    "C64": 8,
}
_SAFETENSORS_MAX_HEADER = 100 << 20
_STANDARD_ONNX_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training", "com.microsoft"}


def _is_zlib(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0


def sniff(head: bytes, name: str, size: int) -> str:
    """The format of a file from its first bytes (``HEAD_BYTES`` of them) and its name.

    Returns one of ``zip``, ``tar``, ``npy``, ``hdf5``, ``gzip``, ``bz2``, ``xz``, ``lzma``,
    ``zlib``, ``lz4``, ``safetensors``, ``pickle``, ``pickle?`` (might be a protocol 0/1
    pickle), ``onnx`` or ``unknown``.
    """
    suffix = PurePosixPath(name).suffix.lower()
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh"):
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x04\x22\x4d\x18"):
        return "lz4"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if _looks_like_safetensors(head, size) or suffix == ".safetensors":
        return "safetensors"
    if len(head) >= 2 and head[0] == 0x80 and head[1] <= 5:
        return "pickle"
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".npy":
        return "npy"
    if suffix in PICKLE_SUFFIXES:
        if _is_zlib(head):
            return "zlib"
        if head.startswith(b"]\x00\x00"):
            return "lzma"
    if head[:1] and head[0] in _PROTOCOL0_START:
        return "pickle?"
    return "unknown"


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 10:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 2 <= header_len <= size - 8 and head[8:9] == b"{"


def _issue(rule: str, severity: Severity, path: str, message: str) -> ScanIssue:
    return ScanIssue(rule, severity, path, message)


def check_safetensors(stream: BinaryIO, size: int, path: str) -> list[ScanIssue]:
    """Check a safetensors header: sizes, dtypes, shapes and data offsets that tile the buffer."""
    bad = "safetensors.malformed"
    head = stream.read(8)
    if len(head) < 8:
        return [_issue(bad, Severity.MEDIUM, path, "shorter than the 8-byte header length")]
    (header_len,) = struct.unpack("<Q", head)
    if header_len > _SAFETENSORS_MAX_HEADER or header_len > size - 8:
        return [
            _issue(
                bad,
                Severity.MEDIUM,
                path,
                f"declares a {header_len}-byte header in a {size}-byte file (limit 100 MiB)",
            )
        ]
    try:
        header = json.loads(stream.read(header_len))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [_issue(bad, Severity.MEDIUM, path, f"the header is not JSON ({exc})")]
    if not isinstance(header, dict):
        return [_issue(bad, Severity.MEDIUM, path, "the header is not a JSON object")]
    issues = []
    buffer_len = size - 8 - header_len
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in entry.items()
            ):
                issues.append(_issue(bad, Severity.LOW, path, "__metadata__ is not a str->str map"))
            continue
        problem = _safetensors_entry_problem(entry)
        if problem is None:
            begin, end = entry["data_offsets"]
            count = 1
            for n in entry["shape"]:
                count *= n
            if end - begin != count * _SAFETENSORS_DTYPES[entry["dtype"]]:
                problem = f"holds {end - begin} bytes but its dtype and shape need a different size"
            elif end > buffer_len:
                problem = f"ends at byte {end}, past the {buffer_len}-byte data buffer"
            else:
                spans.append((begin, end, name))
        if problem is not None:
            issues.append(_issue(bad, Severity.MEDIUM, path, f"tensor {name!r} {problem}"))
    spans.sort()
    cursor = 0
    for begin, end, name in spans:
        if begin != cursor:
            issues.append(
                _issue(
                    bad,
                    Severity.MEDIUM,
                    path,
                    f"tensor {name!r} starts at byte {begin}, leaving a gap or overlap at {cursor}",
                )
            )
            break
        cursor = end
    return issues


def _safetensors_entry_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return "is not described by an object"
    if entry.get("dtype") not in _SAFETENSORS_DTYPES:
        return f"has unknown dtype {entry.get('dtype')!r}"
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        return f"has an invalid shape {shape!r}"
    offsets = entry.get("data_offsets")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(n) is int and n >= 0 for n in offsets)
        or offsets[0] > offsets[1]
    ):
        return f"has invalid data_offsets {offsets!r}"
    return None


def read_npy_header(stream: BinaryIO) -> tuple[dict[str, Any], int]:
    """Parse a ``.npy`` header without NumPy's loader: (header dict, offset of the data).

    Raises
    ------
    ValueError
        The magic, version or header literal is invalid.
    """
    magic = stream.read(8)
    if len(magic) < 8 or not magic.startswith(b"\x93NUMPY"):
        raise ValueError("missing the \\x93NUMPY magic")
    major = magic[6]
    if major == 1:
        (header_len,) = struct.unpack("<H", stream.read(2))
        start = 10
    elif major in (2, 3):
        (header_len,) = struct.unpack("<I", stream.read(4))
        start = 12
    else:
        raise ValueError(f"unknown format version {major}.{magic[7]}")
    if header_len > 1 << 20:
        raise ValueError(f"a {header_len}-byte header is implausibly large")
    raw = stream.read(header_len)
    text = raw.decode("utf-8" if major == 3 else "latin-1")
    header = ast.literal_eval(text)  # literals only: never evaluates code
    if not isinstance(header, dict) or not {"descr", "fortran_order", "shape"} <= set(header):
        raise ValueError("the header lacks descr, fortran_order or shape")
    return header, start + header_len


def npy_dtype_info(descr: Any) -> tuple[int, bool]:
    """(itemsize, has_object) for a ``.npy`` ``descr``."""
    from numpy.lib import format as npformat

    dtype = npformat.descr_to_dtype(descr)
    return int(dtype.itemsize), bool(dtype.hasobject)


def check_onnx(data: bytes, path: str) -> list[ScanIssue]:
    """Parse an ONNX protobuf and check external-data paths and custom operator domains."""
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is installed with the onnx extra
        return []
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError and friends
        return [
            _issue("onnx.malformed", Severity.MEDIUM, path, f"not a valid ONNX protobuf ({exc})")
        ]
    issues = []
    for tensor in _onnx_tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        pure = PurePosixPath(location.replace("\\", "/"))
        if pure.is_absolute() or ".." in pure.parts or re.match(r"^[A-Za-z]:", location):
            issues.append(
                _issue(
                    "onnx.external-data-path",
                    Severity.HIGH,
                    path,
                    f"tensor {tensor.name!r} reads external data from {location!r}, outside the "
                    "model's folder (path traversal)",
                )
            )
    custom = sorted({o.domain for o in model.opset_import} - _STANDARD_ONNX_DOMAINS)
    if custom:
        issues.append(
            _issue(
                "onnx.custom-domain",
                Severity.LOW,
                path,
                f"uses custom operator domain(s) {custom}, which need a native library loaded "
                "into the runtime",
            )
        )
    return issues


def _onnx_tensors(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _onnx_tensors(attribute.g)
            for sub in attribute.graphs:
                yield from _onnx_tensors(sub)


def _walk_layers(config: Any) -> Iterator[dict[str, Any]]:
    if isinstance(config, dict):
        if "class_name" in config:
            yield config
        for value in config.values():
            yield from _walk_layers(value)
    elif isinstance(config, list):
        for value in config:
            yield from _walk_layers(value)


def keras_config_issues(config: Any, path: str) -> list[ScanIssue]:
    """Lambda layers (serialised bytecode) and custom classes in a Keras model config."""
    issues = []
    for layer in _walk_layers(config):
        if layer.get("class_name") == "Lambda":
            name = (layer.get("config") or {}).get("name", "?")
            issues.append(
                _issue(
                    "keras.lambda-layer",
                    Severity.HIGH,
                    path,
                    f"Lambda layer {name!r} stores Python bytecode that runs when the model is "
                    "loaded or called; rebuild it from code instead",
                )
            )
        module = layer.get("module")
        if isinstance(module, str) and module and not module.startswith(("keras", "tensorflow")):
            issues.append(
                _issue(
                    "keras.custom-object",
                    Severity.MEDIUM,
                    path,
                    f"custom class {layer.get('class_name')!r} from module {module!r} is imported "
                    "when the model is loaded",
                )
            )
    return issues


_LAMBDA = re.compile(rb'"class_name":\s*"Lambda"')


def search_hdf5_lambda(stream: BinaryIO, path: str) -> tuple[list[ScanIssue], bool]:
    """Look for a Keras ``model_config`` with Lambda layers in an HDF5 file.

    Uses h5py when it is installed; otherwise (or when h5py cannot open the file) searches the
    raw bytes, which finds Lambda layer configurations (HDF5 stores attributes uncompressed) but
    cannot tell a model config from other text.

    Returns
    -------
    tuple
        The issues, and whether the HDF5 structure was parsed (False: byte search only).
    """
    try:
        return _hdf5_config_issues(stream, path), True
    except (ImportError, OSError):
        stream.seek(0)
    found = False
    tail = b""
    while chunk := stream.read(8 << 20):
        if _LAMBDA.search(tail + chunk):
            found = True
            break
        tail = chunk[-64:]
    issues = []
    if found:
        issues.append(
            _issue(
                "keras.lambda-layer",
                Severity.HIGH,
                path,
                "holds a Keras Lambda layer configuration (Python bytecode that runs when the "
                "model is loaded or called)",
            )
        )
    return issues, False


def _hdf5_config_issues(stream: BinaryIO, path: str) -> list[ScanIssue]:
    import h5py

    issues = []
    with h5py.File(stream, "r") as handle:
        for key in ("model_config", "training_config"):
            raw = handle.attrs.get(key)
            if raw is None:
                continue
            text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
            try:
                issues += keras_config_issues(json.loads(text), path)
            except json.JSONDecodeError:
                issues.append(
                    _issue("keras.malformed", Severity.MEDIUM, path, f"{key} is not valid JSON")
                )
    return issues


_SKOPS_TRUSTED = ("builtins.", "numpy.", "scipy.", "sklearn.")


def skops_schema_issues(schema: Any, path: str) -> list[ScanIssue]:
    """Types a skops file needs outside scikit-learn, NumPy and SciPy (read from schema.json).

    Every node of a skops schema names the type (``__module__``, ``__class__``) it is rebuilt
    from; method nodes add the method. mlwarden's loader trusts only the four libraries above.
    """
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            module, cls = node.get("__module__"), node.get("__class__")
            if isinstance(module, str) and isinstance(cls, str):
                name = f"{module}.{cls}"
                content = node.get("content")
                if node.get("__loader__") == "MethodNode" and isinstance(content, dict):
                    name += f".{content.get('func')}"
                names.add(name)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    if not isinstance(schema, dict) or "protocol" not in schema:
        return [_issue("skops.malformed", Severity.MEDIUM, path, "schema.json has no protocol")]
    untrusted = sorted(n for n in names if not n.startswith(_SKOPS_TRUSTED))
    if not untrusted:
        return []
    return [
        ScanIssue(
            "skops.untrusted-type",
            Severity.MEDIUM,
            path,
            f"needs types outside scikit-learn, NumPy and SciPy to be trusted before it loads: "
            f"{untrusted}",
            details={"types": untrusted},
        )
    ]
