"""Walk containers (zip, tar, compressed streams) and hand each member back to the dispatcher.

A zip is classified by its members (PyTorch checkpoint, TorchScript, ``torch.export``, NumPy
``.npz``, skops, Keras 3, or a plain zip) so that each member is read the way its loader reads
it: every ``.pkl`` of a PyTorch archive is scanned, raw tensor storages are not parsed as
pickles (they are only checked for a nested archive), and anything else is recognised by its
first bytes. Duplicate member names are all scanned, since readers disagree on which one wins.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import json
import lzma
import re
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO, Protocol

from mlwarden.report.findings import Severity
from mlwarden.supplychain.scan.formats import keras_config_issues, skops_schema_issues
from mlwarden.supplychain.scan.results import ScanIssue

__all__ = ["Source", "classify_zip", "scan_compressed", "scan_tar", "scan_zip"]

_MAX_DEPTH = 8
_MAX_READ_INTO_MEMORY = 512 << 20
_TORCH_RAW = re.compile(
    r"(^|/)(data/\d+|\.data/.*|byteorder|version|\.format_version|"
    r"\.storage_alignment|archive_format|archive_version)$"
)
_TORCHSCRIPT_RAW = re.compile(r"(^|/)traced_inputs/\d+$")
# 0x1 traditional encryption, 0x20 compressed patched data, 0x40 strong encryption
_UNREADABLE_FLAGS = {0x1: "encrypted", 0x20: "compressed patched data", 0x40: "strongly encrypted"}
_MEMBER_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    NotImplementedError,
    RuntimeError,
    ValueError,
)
_EXPORT_RAW = re.compile(r"(^|/)data/(weights|constants)/[^/]+$")


@dataclass
class Source:
    """Something to scan: a file on disk or a member of an archive.

    Attributes
    ----------
    label
        How issues name it (``model.pt!archive/data.pkl``).
    name
        Its own file name (for the suffix).
    size
        Its size in bytes, None when unknown (a decompressed stream).
    opener
        Returns a context manager giving a fresh binary stream positioned at its start.
    path
        The file on disk, for top-level files.
    depth
        How many archive levels it is inside.
    """

    label: str
    name: str
    size: int | None
    opener: Callable[[], contextlib.AbstractContextManager[BinaryIO]]
    path: Path | None = None
    depth: int = 0


class Dispatch(Protocol):
    """The scanner's entry point for one source; returns the format it found."""

    def __call__(self, source: Source, role: str = "sniff") -> str: ...


class Sink(Protocol):
    """Where containers report what they find."""

    def add_issues(self, issues: list[ScanIssue]) -> None: ...

    def note(self, text: str) -> None: ...

    def unscanned(self, text: str) -> None: ...


def classify_zip(names: list[str]) -> str:
    """``pytorch-zip``, ``torchscript``, ``torch-export``, ``npz``, ``skops``, ``keras`` or ``zip``."""
    files = [n for n in names if not n.endswith("/")]
    if any(n.endswith("archive_format") for n in files) or any("/models/" in n for n in files):
        return "torch-export"
    if "schema.json" in files:
        return "skops"
    if "config.json" in files and "metadata.json" in files:
        return "keras"
    if any("/code/" in n for n in files) and any(n.endswith("constants.pkl") for n in files):
        return "torchscript"
    if any(n.endswith("data.pkl") for n in files):
        return "pytorch-zip"
    if files and all(n.endswith(".npy") for n in files):
        return "npz"
    return "zip"


def _member_role(kind: str, name: str) -> str:
    """How a member is read: ``pickle``, ``sniff``, ``zip-only``, ``keras-config`` or ``skip``."""
    lower = name.lower()
    if kind == "torchscript":
        # torch.jit.load reads every pickle with its own C++ unpickler, which resolves the
        # torch.jit._pickle helpers torch.jit.save writes; those are allowed here only
        if lower.endswith((".pkl", ".debug_pkl")):
            return "torchscript-pickle"
        if _TORCH_RAW.search(name) or _TORCHSCRIPT_RAW.search(name):
            return "zip-only"
        if "/code/" in name and lower.endswith(".py"):
            return "skip"  # TorchScript source, compiled by torch.jit, never run as Python
        return "sniff"
    if kind == "pytorch-zip":
        if lower.endswith(".pkl"):
            return "pickle"
        if _TORCH_RAW.search(name):
            return "zip-only"
        return "sniff"
    if kind == "torch-export":
        if lower.endswith(".json"):
            return "skip"
        if _EXPORT_RAW.search(name) or _TORCH_RAW.search(name):
            return "zip-only"
        return "sniff"
    if kind == "keras":
        if name == "config.json":
            return "keras-config"
        if lower.endswith((".h5", ".json")):
            return "skip"
        return "sniff"
    if kind == "skops" and name == "schema.json":
        return "skops-schema"
    if lower.endswith(".pkl"):
        return "pickle"
    return "sniff"


def scan_zip(source: Source, sink: Sink, dispatch: Dispatch) -> str:
    """Scan every member of a zip archive; returns the archive's kind."""
    if source.depth >= _MAX_DEPTH:
        sink.unscanned(f"{source.label}: archives nested more than {_MAX_DEPTH} levels deep")
        return "zip"
    with source.opener() as stream:
        try:
            archive = zipfile.ZipFile(stream)
        except _MEMBER_ERRORS as exc:
            sink.add_issues(
                [
                    ScanIssue(
                        "archive.malformed",
                        Severity.HIGH,
                        source.label,
                        f"starts like a zip archive but cannot be read as one ({exc}); a more "
                        "lenient loader may still find pickles in it",
                    )
                ]
            )
            return "zip"
        with archive:
            infos = archive.infolist()
            kind = classify_zip([i.filename for i in infos])
            for info in infos:
                if info.is_dir():
                    continue
                label = f"{source.label}!{info.filename}"
                role = _member_role(kind, info.filename)
                if role == "skip":
                    continue
                unreadable = [w for bit, w in _UNREADABLE_FLAGS.items() if info.flag_bits & bit]
                if unreadable:
                    sink.add_issues(
                        [
                            ScanIssue(
                                "archive.unreadable-member",
                                Severity.HIGH,
                                label,
                                f"the member is {' and '.join(unreadable)} (zip flag bits "
                                f"{info.flag_bits:#x}), so it was not scanned; a loader that "
                                "ignores the flags may still read it",
                            )
                        ]
                    )
                    continue
                if role in {"keras-config", "skops-schema"}:
                    _scan_json_config(archive, info, label, sink, role)
                    continue
                member = Source(
                    label=label,
                    name=PurePosixPath(info.filename).name,
                    size=info.file_size,
                    opener=_zip_opener(archive, info),
                    depth=source.depth + 1,
                )
                try:
                    dispatch(member, role)
                except _MEMBER_ERRORS as exc:
                    sink.add_issues(
                        [
                            ScanIssue(
                                "archive.malformed",
                                Severity.HIGH,
                                label,
                                f"the archive member cannot be read ({exc}); it was not scanned",
                            )
                        ]
                    )
    return kind


def _zip_opener(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo
) -> Callable[[], contextlib.AbstractContextManager[BinaryIO]]:
    def opener() -> contextlib.AbstractContextManager[BinaryIO]:
        return archive.open(info)  # type: ignore[return-value]

    return opener


def _scan_json_config(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, sink: Sink, role: str
) -> None:
    prefix = "keras" if role == "keras-config" else "skops"
    try:
        config = json.loads(archive.read(info))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        sink.add_issues(
            [ScanIssue(f"{prefix}.malformed", Severity.MEDIUM, label, f"not valid JSON ({exc})")]
        )
        return
    if role == "keras-config":
        sink.add_issues(keras_config_issues(config, label))
    else:
        sink.add_issues(skops_schema_issues(config, label))


def scan_tar(source: Source, sink: Sink, dispatch: Dispatch) -> str:
    """Scan every regular file of a tar archive."""
    if source.depth >= _MAX_DEPTH:
        sink.unscanned(f"{source.label}: archives nested more than {_MAX_DEPTH} levels deep")
        return "tar"
    with source.opener() as stream:
        try:
            archive = tarfile.open(fileobj=stream, mode="r:")  # noqa: SIM115 - closed below
        except tarfile.TarError as exc:
            sink.add_issues(
                [ScanIssue("archive.malformed", Severity.HIGH, source.label, f"bad tar ({exc})")]
            )
            return "tar"
        with archive:
            for member in archive:
                if not member.isfile():
                    continue
                label = f"{source.label}!{member.name}"
                try:
                    dispatch(
                        Source(
                            label=label,
                            name=PurePosixPath(member.name).name,
                            size=member.size,
                            opener=_tar_opener(archive, member),
                            depth=source.depth + 1,
                        )
                    )
                except (*_MEMBER_ERRORS, tarfile.TarError) as exc:
                    sink.add_issues(
                        [
                            ScanIssue(
                                "archive.malformed",
                                Severity.HIGH,
                                label,
                                f"the archive member cannot be read ({exc}); it was not scanned",
                            )
                        ]
                    )
    return "tar"


def _tar_opener(
    archive: tarfile.TarFile, member: tarfile.TarInfo
) -> Callable[[], contextlib.AbstractContextManager[BinaryIO]]:
    @contextlib.contextmanager
    def opener() -> Iterator[BinaryIO]:
        handle = archive.extractfile(member)
        if handle is None:  # pragma: no cover - only regular files are opened
            raise OSError(f"cannot read {member.name}")
        with handle:
            yield handle  # type: ignore[misc]

    return opener


class _ZlibReader:
    """A minimal readable stream over zlib-compressed data (joblib's ``compress=True``)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._inflate = zlib.decompressobj()
        self._buffer = b""
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        want = n if n is not None and n >= 0 else 1 << 62
        while len(self._buffer) < want:
            chunk = self._raw.read(1 << 20)
            if not chunk:
                self._buffer += self._inflate.flush()
                break
            self._buffer += self._inflate.decompress(chunk, max(want - len(self._buffer), 1 << 20))
            while self._inflate.unconsumed_tail and len(self._buffer) < want:
                self._buffer += self._inflate.decompress(self._inflate.unconsumed_tail, 1 << 20)
        data, self._buffer = self._buffer[:want], self._buffer[want:]
        self._pos += len(data)
        return data

    def readline(self, limit: int = -1) -> bytes:
        out = bytearray()
        while limit < 0 or len(out) < limit:
            byte = self.read(1)
            if not byte:
                break
            out += byte
            if byte == b"\n":
                break
        return bytes(out)

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self._raw.close()


_DECOMPRESSORS: dict[str, Callable[[IO[bytes]], Any]] = {
    "gzip": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),
    "bz2": lambda raw: bz2.BZ2File(raw, mode="rb"),
    "xz": lambda raw: lzma.LZMAFile(raw, mode="rb"),  # noqa: SIM115 - closed by the opener
    "lzma": lambda raw: lzma.LZMAFile(raw, mode="rb", format=lzma.FORMAT_ALONE),  # noqa: SIM115
    "zlib": _ZlibReader,
}
_COMPRESSED_SUFFIXES = (".gz", ".gzip", ".bz2", ".xz", ".lzma", ".z", ".zlib", ".tgz")


def scan_compressed(source: Source, kind: str, sink: Sink, dispatch: Dispatch) -> str:
    """Decompress as a stream (never to disk) and dispatch what is inside."""
    if source.depth >= _MAX_DEPTH:
        sink.unscanned(f"{source.label}: compressed data nested more than {_MAX_DEPTH} levels")
        return kind
    name = source.name
    lower = name.lower()
    for suffix in _COMPRESSED_SUFFIXES:
        if lower.endswith(suffix):
            name = name[: -len(suffix)] + (".tar" if suffix == ".tgz" else "")
            break
    decompress = _DECOMPRESSORS[kind]

    @contextlib.contextmanager
    def opener() -> Iterator[BinaryIO]:
        with source.opener() as raw:
            stream = decompress(raw)
            try:
                yield stream
            finally:
                stream.close()

    inner = Source(
        label=f"{source.label}!{kind}", name=name, size=None, opener=opener, depth=source.depth + 1
    )
    try:
        inner_kind = dispatch(inner)
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
        sink.add_issues(
            [
                ScanIssue(
                    "archive.malformed",
                    Severity.HIGH,
                    source.label,
                    f"{kind} data cannot be decompressed ({exc}); what it holds was not scanned",
                )
            ]
        )
        return kind
    return f"{kind}+{inner_kind}" if inner_kind != "unknown" else kind
