"""Payloads written to slip past pickle scanners (issue 14); each is built here, never loaded."""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from mlwarden.report.findings import Severity
from mlwarden.supplychain.scan import scan_file, scan_paths, scan_pickle_bytes

SYSTEM = b"cos\nsystem\n(S'echo pwned'\ntR"  # protocol 0: import os.system and call it


def _u(text: str) -> bytes:
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def _worst(data: bytes) -> Severity | None:
    issues = scan_pickle_bytes(data, path="p").issues
    return max((i.severity for i in issues), key=lambda s: s.rank, default=None)


def _rules(data: bytes) -> set[str]:
    return {i.rule for i in scan_pickle_bytes(data, path="p").issues}


# -- 1. allow-list by prefix, and helpers that call their argument ---------------------------


def test_dunder_walk_from_an_allow_listed_module_into_an_argument_caller_is_critical() -> None:
    # __randomstate_ctor(code, numpy.dtypes.__builtins__.get('eval')) runs eval(code)
    evil_eval = _u("numpy.dtypes") + _u("__builtins__.get") + b"\x93" + _u("eval") + b"\x85R"
    data = (
        b"\x80\x04"
        + _u("numpy.random._pickle")
        + _u("__randomstate_ctor")
        + b"\x93"
        + _u("__import__('os').system('echo pwned')")
        + evil_eval
        + b"\x86R."
    )
    scan = scan_pickle_bytes(data, path="p")
    assert scan.globals["numpy.dtypes.__builtins__.get"].severity is Severity.CRITICAL
    rules = {(i.rule, i.severity) for i in scan.issues}
    assert ("pickle.unsafe-callable-argument", Severity.CRITICAL) in rules


def test_rebuild_from_type_v2_with_a_computed_function_is_critical() -> None:
    # _rebuild_from_type_v2(numpy.__loader__.set_data, ...) writes any file
    data = (
        b"\x80\x04"
        + _u("torch._tensor")
        + _u("_rebuild_from_type_v2")
        + b"\x93"
        + _u("numpy")
        + _u("__loader__")
        + b"\x93"
        + b"("
        + _u("/tmp/x")
        + b"C\x01x"
        + b"t"
        + b"R"  # an object computed at load time, passed as func
        + _u("torch")
        + _u("Tensor")
        + b"\x93)}\x94"
        + b"(tR."
    )
    scan = scan_pickle_bytes(data, path="p")
    assert scan.globals["numpy.__loader__"].severity is Severity.CRITICAL


def test_the_numpy_random_state_a_real_pickle_holds_is_clean() -> None:
    np = pytest.importorskip("numpy")
    data = pickle.dumps(np.random.RandomState(0), protocol=4)
    assert scan_pickle_bytes(data, path="p").issues == []


# -- 2. fail closed: pickles that do not look like pickles, and broken ones ------------------


@pytest.mark.parametrize(
    "data",
    [
        # FRAME without PROTO
        b"\x95" + struct.pack("<Q", 42) + _u("os") + _u("system") + b"\x93" + _u("x") + b"\x85R.",
        # NEWTRUE first, then a protocol-4 payload without PROTO
        b"\x880" + _u("os") + _u("system") + b"\x93" + _u("x") + b"\x85R.",
        # SHORT_BINBYTES first
        b"C\x02ab0" + _u("os") + _u("system") + b"\x93" + _u("x") + b"\x85R.",
        # protocol-4 opcodes from the first byte
        _u("os") + _u("system") + b"\x93" + _u("x") + b"\x85R.",
        # protocol 0 that runs its REDUCE, then breaks (no STOP)
        SYSTEM + b"\xff\xff",
        SYSTEM,
    ],
    ids=["frame", "newtrue", "short-binbytes", "proto4-no-proto", "reduce-then-junk", "no-stop"],
)
def test_pickles_that_start_or_end_unusually_are_still_caught(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "weights.data"  # no pickle suffix: recognised by parsing
    path.write_bytes(data)
    record = scan_file(path)
    assert record.max_severity is Severity.CRITICAL
    assert "os.system" in record.globals


def test_a_broken_pickle_that_ran_something_is_high_even_without_a_deny_listed_global() -> None:
    data = b"\x80\x02" + b"cmypkg\nhelper\n(tR" + b"\xff"
    assert _worst(data) is Severity.HIGH
    assert "pickle.malformed" in _rules(data)


# -- 3. format sniffing cannot be spoofed -----------------------------------------------------


@pytest.mark.parametrize("name", ["model.safetensors", "model.bin"])
def test_a_pickle_posing_as_safetensors_is_read_as_a_pickle(tmp_path: Path, name: str) -> None:
    # BINFLOAT's 8-byte argument makes bytes 0-7 a small header length and byte 8 a '{'
    data = b"G" + bytes(7) + b"{" + b"0" + SYSTEM + b"." + b"\xff" * 64
    (header_len,) = struct.unpack("<Q", data[:8])
    assert 2 <= header_len <= len(data) - 8  # what a sniffer takes for safetensors
    path = tmp_path / name
    path.write_bytes(data)
    record = scan_file(path)
    assert record.format == "pickle"
    assert record.max_severity is Severity.CRITICAL


# -- 4. stream layouts: what the real loader executes ----------------------------------------


def _fake_joblib_array(payload: bytes) -> bytes:
    """A NumpyArrayWrapper whose 'array bytes' are opcodes that pickle.load does run."""
    dtype = b"cnumpy\ndtype\n(S'u1'\nI00\nI01\ntR(I3\nS'|'\nNNNI-1\nI-1\nI0\ntb"
    state = b"(S'shape'\n(I%d\ntS'dtype'\n" % len(payload) + dtype + b"S'order'\nS'C'\nd"
    wrapper = b"cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81" + state + b"b"
    return b"\x80\x02" + wrapper + payload + b"."


def test_opcodes_hidden_in_joblib_array_bytes_are_found() -> None:
    data = _fake_joblib_array(SYSTEM + b"0")
    scan = scan_pickle_bytes(data, path="p")
    assert scan.globals["os.system"].severity is Severity.CRITICAL
    assert scan.kind == "joblib"


def test_a_truncated_second_pickle_of_a_legacy_torch_file_is_scanned_in_full() -> None:
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    computed = (
        b"\x80\x04"
        + _u("builtins")
        + _u("str")
        + b"\x93"
        + _u("os")
        + b"\x85R"  # module name computed by a call
        + _u("system")
        + b"\x93"
        + _u("echo pwned")
        + b"\x85R"  # ... no STOP: truncated
    )
    scan = scan_pickle_bytes(magic + computed, path="p")
    severities = {i.rule: i.severity for i in scan.issues}
    assert severities["pickle.computed-global"] is Severity.HIGH
    assert severities["pickle.malformed"] is Severity.HIGH


def test_bytes_crossing_a_frame_boundary_are_scanned_as_the_file_unpickler_reads_them() -> None:
    # linear readers (pickletools, pickle.loads) see BINBYTES then STOP; CPython's unpickler
    # reading a file drops the frame's rest, takes the next 10 bytes as the data and runs on
    frame = b"B" + struct.pack("<I", 10) + b"AAAA"
    hidden = b"x" * 6 + b"." + b"\xff" * 3
    payload = _u("os") + _u("system") + b"\x93" + _u("echo pwned") + b"\x85R0."
    data = b"\x80\x04\x95" + struct.pack("<Q", len(frame)) + frame + hidden + payload
    scan = scan_pickle_bytes(data, path="p")
    rules = {i.rule: i.severity for i in scan.issues}
    assert rules["pickle.frame-crossing"] is Severity.HIGH
    assert scan.globals["os.system"].severity is Severity.CRITICAL


# -- 6. no input crashes the scanner -----------------------------------------------------------


def _zip_with_flags(path: Path, flags: int) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02" + SYSTEM + b".")
    raw = bytearray(buffer.getvalue())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = raw.find(signature)
        struct.pack_into("<H", raw, at + offset, flags)
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("flags", [0x1, 0x20, 0x40])
def test_zip_members_with_unreadable_flag_bits_fail_closed(tmp_path: Path, flags: int) -> None:
    record = scan_file(_zip_with_flags(tmp_path / "m.pt", flags))
    assert record.max_severity is Severity.HIGH
    assert {i.rule for i in record.issues} == {"archive.unreadable-member"}


def test_a_folder_scan_reports_every_file_after_a_bad_one(tmp_path: Path) -> None:
    _zip_with_flags(tmp_path / "a.pt", 0x20)
    (tmp_path / "b.pkl").write_bytes(b"\x80\x02" + SYSTEM + b".")
    report = scan_paths([tmp_path])
    assert [(Path(f.path).name, f.max_severity) for f in report.files] == [
        ("a.pt", Severity.HIGH),
        ("b.pkl", Severity.CRITICAL),
    ]


def test_a_scanner_failure_becomes_a_high_issue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlwarden.supplychain.scan import formats

    def broken(*args: object) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(formats, "sniff", broken)
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(1))
    record = scan_file(path)
    assert (record.scanned, [i.rule for i in record.issues]) == (False, ["scan.error"])


# -- false positives: TorchScript written by torch.jit.save --------------------------------------


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3)
        self.fc = torch.nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean((2, 3)))


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_archives_scan_clean(tmp_path: Path, how: str) -> None:
    net = _Net().eval()
    example = torch.zeros(1, 1, 6, 6)
    module = torch.jit.script(net) if how == "script" else torch.jit.trace(net, example)
    path = tmp_path / "m.pt"
    torch.jit.save(module, str(path))
    record = scan_file(path)
    assert (record.format, record.issues) == ("torchscript", [])


def test_a_torchscript_archive_still_cannot_import_python(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.script(_Net().eval()), str(path))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("m/extra.pkl", b"\x80\x02" + SYSTEM + b".")
    assert scan_file(path).max_severity is Severity.CRITICAL
