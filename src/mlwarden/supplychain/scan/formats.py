"""Recognise a file's format from its first bytes, and check the formats that cannot run code.

Formats that are data by construction (safetensors, ONNX, NumPy arrays without objects, skops)
are still parsed far enough to check their headers: a header that lies about sizes or offsets,
an ONNX external-data path that leaves the model folder, or skops types outside scikit-learn are
reported. Keras/HDF5 files are searched for ``Lambda`` layers, which carry Python bytecode.
"""

from __future__ import annotations

import ast
import json
import lzma
import pickletools
import re
import struct
import zlib
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
    "dtype_code_info",
    "is_pickle_opcode",
    "keras_config_issues",
    "looks_like_safetensors",
    "npy_dtype_info",
    "read_npy_header",
    "search_hdf5_lambda",
    "skops_schema_issues",
    "sniff",
    "sniff_compressed",
]

HEAD_BYTES = 512
PICKLE_SUFFIXES = frozenset(
    {".pkl", ".pickle", ".joblib", ".pt", ".pth", ".bin", ".ckpt", ".sav", ".dill", ".p", ".pck"}
)
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


_PICKLE_OPCODES = frozenset(ord(op.code) for op in pickletools.opcodes)
_UNSUPPORTED_MAGIC = (
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "rar"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"MSCF", "cab"),
    (b"\x60\xea", "arj"),
)


def is_pickle_opcode(byte: int) -> bool:
    """Whether CPython's unpickler accepts ``byte`` as an opcode (any can start a pickle)."""
    return byte in _PICKLE_OPCODES


def sniff(head: bytes, name: str) -> str:
    """Which parser to try first for a file, from its first bytes (``HEAD_BYTES`` of them).

    Returns one of ``zip``, ``tar``, ``npy``, ``hdf5``, ``gzip``, ``bz2``, ``xz``,
    ``unsupported:<name>`` (7z, rar, zstd, lz4, ...) or ``other``. A result is a hint, never a
    verdict: every format is confirmed by parsing it, and ``other`` is settled by
    safetensors, pickle, ONNX, compressed-stream and text parsers in turn.
    """
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
    for magic, archive in _UNSUPPORTED_MAGIC:
        if head.startswith(magic):
            return f"unsupported:{archive}"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return "other"


def sniff_compressed(head: bytes) -> str | None:
    """``zlib`` or ``lzma`` (joblib's ``compress=`` formats without a file magic), or None."""
    if len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0:
        try:
            zlib.decompressobj().decompress(head, 16)
        except zlib.error:
            return None
        return "zlib"
    if head.startswith(b"]\x00\x00"):
        try:
            lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(head, 16)
        except lzma.LZMAError:
            return None
        return "lzma"
    return None


def looks_like_safetensors(head: bytes, size: int) -> bool:
    """Whether the first bytes could start a safetensors file (confirm with the parser)."""
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
        return [_issue(bad, Severity.HIGH, path, "shorter than the 8-byte header length")]
    (header_len,) = struct.unpack("<Q", head)
    if header_len > _SAFETENSORS_MAX_HEADER or header_len > size - 8:
        return [
            _issue(
                bad,
                Severity.HIGH,
                path,
                f"declares a {header_len}-byte header in a {size}-byte file (limit 100 MiB)",
            )
        ]
    try:
        header = json.loads(stream.read(header_len))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [_issue(bad, Severity.HIGH, path, f"the header is not JSON ({exc})")]
    if not isinstance(header, dict):
        return [_issue(bad, Severity.HIGH, path, "the header is not a JSON object")]
    issues = []
    buffer_len = size - 8 - header_len
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in entry.items()
            ):
                issues.append(
                    _issue(bad, Severity.HIGH, path, "__metadata__ is not a str->str map")
                )
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
            issues.append(_issue(bad, Severity.HIGH, path, f"tensor {name!r} {problem}"))
    spans.sort()
    cursor = 0
    for begin, end, name in spans:
        if begin != cursor:
            issues.append(
                _issue(
                    bad,
                    Severity.HIGH,
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


_DTYPE_CODE = re.compile(r"^[<>=|]?([a-zA-Z?])(\d*)(\[[a-zA-Z0-9]+\])?$")
_DTYPE_CHAR_SIZES = {
    "?": 1, "b": 1, "B": 1, "h": 2, "H": 2, "i": 4, "I": 4, "l": 8, "L": 8, "q": 8, "Q": 8,
    "e": 2, "f": 4, "d": 8, "g": 16, "F": 8, "D": 16, "G": 32, "O": 8, "M": 8, "m": 8,
}  # fmt: skip


def dtype_code_info(code: str) -> tuple[int, bool] | None:
    """(itemsize, has_object) of a NumPy dtype string such as ``<f8``, ``u1`` or ``O8``.

    Read without NumPy (the scanner imports no numerical library); None for a code it does not
    know, which callers treat as unreadable.
    """
    match = _DTYPE_CODE.match(code)
    if match is None:
        return None
    kind, digits, unit = match.group(1), match.group(2), match.group(3)
    if unit and kind not in "Mm":
        return None
    if digits:
        if kind not in "biufcOSUVaMm":
            return None
        size = int(digits) * (4 if kind == "U" else 1)
        return size, kind == "O"
    if kind in "SUVa":
        return 0, False
    if kind in _DTYPE_CHAR_SIZES:
        return _DTYPE_CHAR_SIZES[kind], kind == "O"
    return None


def npy_dtype_info(descr: Any) -> tuple[int, bool]:
    """(itemsize, has_object) for a ``.npy`` ``descr``, parsed without NumPy.

    Raises
    ------
    ValueError
        The descr is not a dtype string or a list of ``(name, descr[, shape])`` fields.
    """
    if isinstance(descr, str):
        info = dtype_code_info(descr)
        if info is None:
            raise ValueError(f"unknown dtype {descr!r}")
        return info
    if not isinstance(descr, list) or not descr:
        raise ValueError(f"unknown dtype {descr!r}")
    total, has_object = 0, False
    for field in descr:
        if not isinstance(field, tuple) or len(field) not in (2, 3):
            raise ValueError(f"bad structured dtype field {field!r}")
        size, obj = npy_dtype_info(field[1])
        count = 1
        if len(field) == 3:
            shape = field[2] if isinstance(field[2], tuple) else (field[2],)
            if not all(type(n) is int and n >= 0 for n in shape):
                raise ValueError(f"bad field shape {field[2]!r}")
            for n in shape:
                count *= n
        total += size * count
        has_object = has_object or obj
    return total, has_object


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _protobuf_fields(data: memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of one protobuf message; raises ValueError if broken."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, pos = data[pos : pos + width], pos + width
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end:
            raise ValueError("a field runs past the end of its message")
        yield number, wire, value


def _messages(data: memoryview, number: int) -> Iterator[memoryview]:
    for field, wire, value in _protobuf_fields(data):
        if field == number:
            if wire != 2:
                raise ValueError(f"field {number} should be a message")
            yield value


# field numbers of onnx.proto3 that hold graphs, nodes and tensors
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE = 1, 5, 15
_NODE_ATTRIBUTE = 5
_ATTR_TENSOR, _ATTR_GRAPH, _ATTR_TENSORS, _ATTR_GRAPHS = 5, 6, 10, 11
_ATTR_SPARSE, _ATTR_SPARSES = 22, 23
_TENSOR_NAME, _TENSOR_EXTERNAL = 8, 13
_MODEL_GRAPH, _MODEL_OPSET, _MODEL_TRAINING, _MODEL_FUNCTIONS = 7, 8, 20, 25


def _onnx_graph_tensors(graph: memoryview, depth: int = 0) -> Iterator[memoryview]:
    if depth > 64:
        raise ValueError("subgraphs nested more than 64 levels")
    for field, wire, value in _protobuf_fields(graph):
        if wire != 2:
            continue
        if field == _GRAPH_INITIALIZER:
            yield value
        elif field == _GRAPH_SPARSE:
            yield from _messages(value, 1)
            yield from _messages(value, 2)
        elif field == _GRAPH_NODE:
            yield from _onnx_node_tensors(value, depth)


def _onnx_node_tensors(node: memoryview, depth: int) -> Iterator[memoryview]:
    for attribute in _messages(node, _NODE_ATTRIBUTE):
        for field, wire, value in _protobuf_fields(attribute):
            if wire != 2:
                continue
            if field in (_ATTR_TENSOR, _ATTR_TENSORS):
                yield value
            elif field in (_ATTR_SPARSE, _ATTR_SPARSES):
                yield from _messages(value, 1)
                yield from _messages(value, 2)
            elif field in (_ATTR_GRAPH, _ATTR_GRAPHS):
                yield from _onnx_graph_tensors(value, depth + 1)


def _text(value: memoryview) -> str:
    return bytes(value).decode("utf-8", errors="replace")


def check_onnx(data: bytes, path: str) -> list[ScanIssue]:
    """Parse an ONNX protobuf and check external-data paths and custom operator domains.

    The protobuf is walked with a small reader of its wire format (no ``onnx`` import): every
    tensor of the graph, of nested subgraphs, of training graphs and of functions is visited.
    """
    view = memoryview(data)
    try:
        fields = list(_protobuf_fields(view))
        graphs = [v for f, w, v in fields if f == _MODEL_GRAPH and w == 2]
        if len(graphs) != 1 or not any(f == 1 and w == 0 for f, w, _ in fields):
            raise ValueError("a model needs one graph and an ir_version")
        tensors = list(_onnx_graph_tensors(graphs[0]))
        for field, wire, value in fields:
            if field == _MODEL_TRAINING and wire == 2:
                for training_graph in (*_messages(value, 1), *_messages(value, 2)):
                    tensors += _onnx_graph_tensors(training_graph)
            elif field == _MODEL_FUNCTIONS and wire == 2:
                for node in _messages(value, 7):
                    tensors += _onnx_node_tensors(node, 0)
        domains = set()
        for opset in (v for f, w, v in fields if f == _MODEL_OPSET and w == 2):
            named = [_text(v) for f, w, v in _protobuf_fields(opset) if f == 1 and w == 2]
            domains.update(named or [""])
        issues = []
        for tensor in tensors:
            name, location = "", None
            for field, wire, value in _protobuf_fields(tensor):
                if field == _TENSOR_NAME and wire == 2:
                    name = _text(value)
                elif field == _TENSOR_EXTERNAL and wire == 2:
                    entry = {f: _text(v) for f, w, v in _protobuf_fields(value) if w == 2}
                    if entry.get(1) == "location":
                        location = entry.get(2, "")
            if location is None:
                continue
            pure = PurePosixPath(location.replace("\\", "/"))
            if pure.is_absolute() or ".." in pure.parts or re.match(r"^[A-Za-z]:", location):
                issues.append(
                    _issue(
                        "onnx.external-data-path",
                        Severity.HIGH,
                        path,
                        f"tensor {name!r} reads external data from {location!r}, outside the "
                        "model's folder (path traversal)",
                    )
                )
    except ValueError as exc:
        return [_issue("onnx.malformed", Severity.HIGH, path, f"not a valid ONNX protobuf ({exc})")]
    custom = sorted(domains - _STANDARD_ONNX_DOMAINS)
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
