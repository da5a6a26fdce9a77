"""Scan files and folders for serialized artifacts that could run code when loaded.

:func:`scan_paths` walks the given files and folders, recognises each file by its first bytes,
and reads it the way its loader would, without ever loading it: pickles opcode by opcode,
containers member by member, and data-only formats by their headers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from mlwarden.errors import ConfigError, ModelError, UnsafeModelError
from mlwarden.report.findings import Severity
from mlwarden.supplychain.scan import archives, formats
from mlwarden.supplychain.scan.archives import Source
from mlwarden.supplychain.scan.pickles import PickleScan, scan_pickle_stream
from mlwarden.supplychain.scan.results import FileScan, ScanIssue, ScanReport

__all__ = ["SAFE_FORMATS", "scan_file", "scan_paths"]

logger = logging.getLogger(__name__)

SAFE_FORMATS = frozenset({"safetensors", "onnx", "skops", "numpy", "npz", "torch-export"})
"""Formats that cannot run code when loaded (their headers are still checked)."""

_ONNX_MAX_BYTES = 2 << 30
_TEXT_MAX_BYTES = 64 << 20
_CONTROL_CHARS = frozenset(chr(c) for c in range(32) if chr(c) not in "\t\n\r\f\v") | {"\x7f"}
_SKIP_DIRS = {".git", "__pycache__", ".hg", ".svn"}


class _Sink:
    """Collects what the scanners of one top-level file find."""

    def __init__(self, record: FileScan) -> None:
        self.record = record

    def add_issues(self, issues: list[ScanIssue]) -> None:
        self.record.issues.extend(issues)

    def note(self, text: str) -> None:
        self.record.notes.append(text)

    def unscanned(self, text: str) -> None:
        self.record.notes.append(f"unscanned: {text}")

    def add_pickle(self, scan: PickleScan) -> None:
        self.record.issues.extend(scan.issues)
        self.record.notes.extend(scan.notes)
        for key, use in scan.globals.items():
            mine = self.record.globals.get(key)
            if mine is None:
                self.record.globals[key] = use
            else:
                mine.count += use.count
                mine.calls |= use.calls


class _Scanner:
    """Dispatches each source to the reader of its format.

    A format is taken as recognised only once it has been parsed: magic bytes pick which parser
    to try, never the verdict. Anything that starts with a pickle opcode is read as CPython's
    unpickler would read it, whatever else it looks like, so a polyglot cannot pass as data.
    What no parser accepts is a high finding, not a pass.
    """

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink

    def __call__(self, source: Source, role: str = "sniff") -> str:
        with source.opener() as stream:
            head = stream.read(formats.HEAD_BYTES)
        is_zip = head.startswith((b"PK\x03\x04", b"PK\x05\x06"))
        if role == "zip-only":
            # raw tensor bytes: their loader never unpickles them; only a nested zip is followed
            if not is_zip:
                return "data"
            role = "sniff"
        if role in {"pickle", "torchscript-pickle"} and not is_zip:
            context = "torchscript" if role == "torchscript-pickle" else "pickle"
            return self.pickle(source, context=context)
        fmt = formats.sniff(head, source.name)
        if fmt == "zip":
            kind = archives.scan_zip(source, self.sink, self)
            self.after_zip(source, kind)
            return kind
        if fmt == "tar":
            return archives.scan_tar(source, self.sink, self)
        if fmt in {"gzip", "bz2", "xz"}:
            return archives.scan_compressed(source, fmt, self.sink, self)
        if fmt.startswith("unsupported:"):
            return self.unsupported(source, fmt.partition(":")[2])
        if fmt == "npy":
            return self.npy(source)
        if fmt == "hdf5":
            return self.hdf5(source)
        return self.other(source, head)

    def other(self, source: Source, head: bytes) -> str:
        """Formats without a reliable magic: safetensors, pickles, ONNX, compressed joblib, text."""
        suffix = PurePosixPath(source.name).suffix.lower()
        safetensors_issues: list[ScanIssue] | None = None
        if source.size is not None and (
            suffix == ".safetensors" or formats.looks_like_safetensors(head, source.size)
        ):
            with source.opener() as stream:
                safetensors_issues = formats.check_safetensors(stream, source.size, source.label)
        probe: PickleScan | None = None
        if head[:1] and formats.is_pickle_opcode(head[0]):
            probe = self.probe_pickle(source)
            if probe.pickles or probe.actions:
                self.sink.add_pickle(probe)
                if safetensors_issues is not None and not safetensors_issues:
                    self.sink.add_issues([self.polyglot(source, "safetensors")])
                return probe.kind
        if safetensors_issues is not None and (not safetensors_issues or suffix == ".safetensors"):
            self.sink.add_issues(safetensors_issues)
            return "safetensors"
        if suffix == ".onnx":
            return self.onnx(source)
        compressed = formats.sniff_compressed(head)
        if compressed is not None:
            kind = archives.scan_compressed(source, compressed, self.sink, self)
            if kind != compressed:
                return kind
        if source.size == 0 or (source.size is None and not head):
            return "empty"
        if self.is_text(source, head):
            return "text"
        why = (
            f"unpickling it fails at offset {probe.error_offset} before anything runs"
            if probe is not None
            else "it does not start with a pickle opcode"
        )
        self.sink.add_issues(
            [
                ScanIssue(
                    "format.unrecognised",
                    Severity.HIGH,
                    source.label,
                    f"not a format mlwarden can parse (not a pickle: {why}), so nothing in it was "
                    "checked; convert it to safetensors or ONNX, or review it by hand",
                )
            ]
        )
        return "unknown"

    def probe_pickle(self, source: Source) -> PickleScan:
        with source.opener() as stream:
            return scan_pickle_stream(
                stream, path=source.label, size=source.size, depth=source.depth
            )

    def polyglot(self, source: Source, other: str) -> ScanIssue:
        return ScanIssue(
            "format.polyglot",
            Severity.HIGH,
            source.label,
            f"parses both as {other} and as a pickle; which one runs depends on the loader",
        )

    def is_text(self, source: Source, head: bytes) -> bool:
        """UTF-8 text without control bytes (configs, model cards, vocabularies)."""
        if b"\x00" in head or (source.size or 0) > _TEXT_MAX_BYTES:
            return False
        with source.opener() as stream:
            data = stream.read(_TEXT_MAX_BYTES + 1)
        if len(data) > _TEXT_MAX_BYTES:
            return False
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return not any(ch in _CONTROL_CHARS for ch in text)

    def unsupported(self, source: Source, name: str) -> str:
        self.sink.add_issues(
            [
                ScanIssue(
                    "archive.unsupported",
                    Severity.HIGH,
                    source.label,
                    f"a {name} archive, which the scanner cannot open: its members (pickles "
                    "included) were not scanned; repack it as zip or tar",
                )
            ]
        )
        return name

    def pickle(self, source: Source, *, context: str = "pickle") -> str:
        with source.opener() as stream:
            scan = scan_pickle_stream(
                stream, path=source.label, size=source.size, depth=source.depth, context=context
            )
        self.sink.add_pickle(scan)
        return scan.kind

    def npy(self, source: Source) -> str:
        with source.opener() as stream:
            try:
                header, data_offset = formats.read_npy_header(stream)
                itemsize, has_object = formats.npy_dtype_info(header["descr"])
            except (ValueError, SyntaxError, TypeError, KeyError, UnicodeDecodeError) as exc:
                self.sink.add_issues(
                    [
                        ScanIssue(
                            "numpy.malformed",
                            Severity.HIGH,
                            source.label,
                            f"not a valid .npy header ({exc})",
                        )
                    ]
                )
                return "numpy"
            if has_object:
                size = None if source.size is None else source.size - data_offset
                scan = scan_pickle_stream(
                    stream, path=source.label, size=size, depth=source.depth + 1
                )
                self.sink.add_pickle(scan)
                self.sink.note(
                    f"{source.label}: an object array; its elements are a pickle (np.load "
                    "refuses it unless allow_pickle=True)"
                )
                return "numpy-object"
        count = 1
        for n in header["shape"]:
            count *= int(n)
        if source.size is not None and source.size - data_offset < count * itemsize:
            self.sink.add_issues(
                [
                    ScanIssue(
                        "numpy.malformed",
                        Severity.HIGH,
                        source.label,
                        f"the header promises {count * itemsize} data bytes but only "
                        f"{source.size - data_offset} follow",
                    )
                ]
            )
        return "numpy"

    def onnx(self, source: Source) -> str:
        if source.size is not None and source.size > _ONNX_MAX_BYTES:
            self.sink.add_issues(
                [
                    ScanIssue(
                        "onnx.malformed",
                        Severity.HIGH,
                        source.label,
                        "an ONNX protobuf larger than 2 GiB, which no ONNX loader accepts; not "
                        "scanned",
                    )
                ]
            )
            return "onnx"
        with source.opener() as stream:
            data = stream.read(_ONNX_MAX_BYTES + 1)
        self.sink.add_issues(formats.check_onnx(data, source.label))
        return "onnx"

    def hdf5(self, source: Source) -> str:
        with source.opener() as stream:
            issues, parsed = formats.search_hdf5_lambda(stream, source.label)
        self.sink.add_issues(issues)
        if not parsed:
            self.sink.unscanned(
                f"{source.label}: the HDF5 structure was not parsed (h5py is not installed, or "
                "cannot open the file); only its raw bytes were searched for Keras Lambda layers"
            )
        return "hdf5"

    def after_zip(self, source: Source, kind: str) -> None:
        """Checks that need the whole archive on disk: a torch.export program's contents."""
        if kind == "torch-export" and source.path is not None:
            self.torch_export(source.path, source.label)
        elif kind == "torch-export":
            self.sink.note(
                f"{source.label}: a nested torch.export archive; its pickles were scanned"
            )

    def torch_export(self, path: Path, label: str) -> None:
        # A lower layer, imported when used: importing mlwarden.models loads PyTorch.
        from mlwarden.models.export_archive import check_export_archive

        try:
            # its tensor pickles were read opcode by opcode with the archive's other members;
            # the default check would load them with torch.load, which a scanner never does
            check_export_archive(path, check_pickle=_pickles_already_scanned)
        except UnsafeModelError as exc:
            self.sink.add_issues(
                [ScanIssue("torch-export.unsafe-content", Severity.HIGH, label, str(exc))]
            )
        except ModelError as exc:
            self.sink.add_issues(
                [ScanIssue("torch-export.malformed", Severity.MEDIUM, label, str(exc))]
            )


def _pickles_already_scanned(path: Path, member: str, data: bytes) -> None:
    """The scanner's stand-in for ``torch.load``: the member was scanned as a pickle."""


def _file_source(path: Path, label: str) -> Source:
    def opener() -> contextlib.AbstractContextManager[BinaryIO]:
        return open(path, "rb")

    return Source(label=label, name=path.name, size=path.stat().st_size, opener=opener, path=path)


def scan_file(path: str | os.PathLike[str], *, label: str | None = None) -> FileScan:
    """Scan one file; never raises for what the file contains.

    Returns
    -------
    FileScan
        ``format`` is ``unknown`` (with a high ``format.unrecognised`` issue) for a file no
        parser accepts, ``text`` for UTF-8 text and ``empty`` for an empty file. A file that
        cannot be read, or that makes the scanner itself fail, has ``scanned`` False and a high
        issue saying why.
    """
    file_path = Path(path)
    shown = label or str(file_path)
    record = FileScan(path=shown, format="unknown", size_bytes=0)
    try:
        source = _file_source(file_path, shown)
        record.size_bytes = source.size or 0
        fmt = _Scanner(_Sink(record))(source)
    except OSError as exc:
        record.scanned = False
        record.issues.append(
            ScanIssue("scan.unreadable", Severity.HIGH, shown, f"cannot read the file ({exc})")
        )
        return record
    except Exception as exc:  # no input may abort a scan; the file fails instead
        logger.warning("scanner error on %s: %s", shown, type(exc).__name__)
        record.scanned = False
        record.issues.append(
            ScanIssue(
                "scan.error",
                Severity.HIGH,
                shown,
                f"the scanner could not finish this file ({type(exc).__name__}: {exc}); treat "
                "it as unscanned and report the file to the mlwarden maintainers",
            )
        )
        return record
    record.format = fmt
    if fmt == "unknown":
        record.scanned = False
        record.notes.append("unscanned: not a recognised model or serialization format")
    worst = record.max_severity
    record.safe_by_construction = fmt in SAFE_FORMATS and (
        worst is None or worst.rank < Severity.MEDIUM.rank
    )
    return record


def _walk(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            yield Path(folder) / name


def scan_paths(paths: Iterable[str | os.PathLike[str]]) -> ScanReport:
    """Scan files and folders (recursively); never loads, imports or runs anything in them.

    Every file is reported, those found in folders included: a file no parser accepts is a
    high issue, UTF-8 text and empty files are listed clean.

    Raises
    ------
    ConfigError
        A path does not exist.
    """
    started = time.perf_counter()
    records: list[FileScan] = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise ConfigError(f"scan path {str(path)!r} does not exist")
        files = _walk(path) if path.is_dir() else [path]
        records.extend(scan_file(file) for file in files)
    duration = time.perf_counter() - started
    logger.info("scanned %d files in %.3f s", len(records), duration)
    return ScanReport(files=records, skipped=[], duration_s=duration)
