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
from pathlib import Path
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
    """Dispatches each source to the reader of its format."""

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink

    def __call__(self, source: Source, role: str = "sniff") -> str:
        with source.opener() as stream:
            head = stream.read(formats.HEAD_BYTES)
        if role == "zip-only":
            if not head.startswith(b"PK\x03\x04"):
                return "data"
            fmt = "zip"
        elif role == "pickle" and not head.startswith(b"PK\x03\x04"):
            fmt = "pickle"
        else:
            fmt = formats.sniff(head, source.name, source.size or len(head))
        if fmt == "pickle":
            return self.pickle(source)
        if fmt == "pickle?":
            return self.maybe_pickle(source)
        if fmt == "zip":
            kind = archives.scan_zip(source, self.sink, self)
            self.after_zip(source, kind)
            return kind
        if fmt == "tar":
            return archives.scan_tar(source, self.sink, self)
        if fmt in {"gzip", "bz2", "xz", "lzma", "zlib"}:
            return archives.scan_compressed(source, fmt, self.sink, self)
        if fmt == "lz4":
            self.sink.unscanned(f"{source.label}: lz4 compression is not supported by the scanner")
            return "lz4"
        if fmt == "npy":
            return self.npy(source)
        if fmt == "safetensors":
            return self.safetensors(source)
        if fmt == "onnx":
            return self.onnx(source)
        if fmt == "hdf5":
            return self.hdf5(source)
        return "unknown"

    def pickle(self, source: Source) -> str:
        with source.opener() as stream:
            scan = scan_pickle_stream(
                stream, path=source.label, size=source.size, depth=source.depth
            )
        self.sink.add_pickle(scan)
        return scan.kind

    def maybe_pickle(self, source: Source) -> str:
        """A file that may be a protocol 0/1 pickle: reported only if it parses as one."""
        with source.opener() as stream:
            scan = scan_pickle_stream(
                stream, path=source.label, size=source.size, depth=source.depth
            )
        if scan.pickles == 0 or not scan.complete:
            return "unknown"
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
                            Severity.MEDIUM,
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
                        Severity.LOW,
                        source.label,
                        f"the header promises {count * itemsize} data bytes but only "
                        f"{source.size - data_offset} follow",
                    )
                ]
            )
        return "numpy"

    def safetensors(self, source: Source) -> str:
        if source.size is None:
            self.sink.unscanned(f"{source.label}: safetensors inside a compressed stream")
            return "safetensors"
        with source.opener() as stream:
            self.sink.add_issues(formats.check_safetensors(stream, source.size, source.label))
        return "safetensors"

    def onnx(self, source: Source) -> str:
        if source.size is not None and source.size > _ONNX_MAX_BYTES:
            self.sink.unscanned(f"{source.label}: ONNX protobuf larger than 2 GiB")
            return "onnx"
        try:
            import onnx  # noqa: F401
        except ImportError:  # pragma: no cover - onnx comes with the onnx extra
            self.sink.unscanned(f"{source.label}: the onnx package is not installed")
            return "onnx"
        with source.opener() as stream:
            data = stream.read()
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
            check_export_archive(path)
        except UnsafeModelError as exc:
            self.sink.add_issues(
                [ScanIssue("torch-export.unsafe-content", Severity.HIGH, label, str(exc))]
            )
        except ModelError as exc:
            self.sink.add_issues(
                [ScanIssue("torch-export.malformed", Severity.MEDIUM, label, str(exc))]
            )


def _file_source(path: Path, label: str) -> Source:
    def opener() -> contextlib.AbstractContextManager[BinaryIO]:
        return open(path, "rb")

    return Source(label=label, name=path.name, size=path.stat().st_size, opener=opener, path=path)


def scan_file(path: str | os.PathLike[str], *, label: str | None = None) -> FileScan:
    """Scan one file.

    Returns
    -------
    FileScan
        ``format`` is ``unknown`` (and ``scanned`` False) for a file that is not a recognised
        model or serialization format.
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
        record.notes.append(f"unscanned: cannot read the file ({exc})")
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

    Files named explicitly are always reported; files found in folders are reported when they
    are a recognised format, and listed under ``skipped`` otherwise.

    Raises
    ------
    ConfigError
        A path does not exist.
    """
    started = time.perf_counter()
    records: list[FileScan] = []
    skipped: list[str] = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise ConfigError(f"scan path {str(path)!r} does not exist")
        if path.is_dir():
            for file in _walk(path):
                record = scan_file(file)
                if record.format == "unknown" and not record.issues:
                    skipped.append(record.path)
                else:
                    records.append(record)
        else:
            records.append(scan_file(path))
    duration = time.perf_counter() - started
    logger.info("scanned %d files in %.3f s", len(records), duration)
    return ScanReport(files=records, skipped=skipped, duration_s=duration)
