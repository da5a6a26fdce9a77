"""The opcode reader: symbolic stack, memo, calls, nested pickles, stream layouts."""

from __future__ import annotations

import collections
import io
import pickle

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlwarden.report.findings import Severity
from mlwarden.supplychain.scan import scan_pickle_bytes


def _u(text: str) -> bytes:
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def _rules(data: bytes) -> set[str]:
    return {i.rule for i in scan_pickle_bytes(data, path="p").issues}


def test_a_plain_state_dict_pickle_imports_only_allow_listed_globals() -> None:
    buffer = io.BytesIO()
    torch.save(collections.OrderedDict(w=torch.ones(2, 2)), buffer)
    buffer.seek(0)
    import zipfile

    with zipfile.ZipFile(buffer) as archive:
        data = next(archive.read(n) for n in archive.namelist() if n.endswith("data.pkl"))
    scan = scan_pickle_bytes(data, path="data.pkl")
    assert scan.issues == []
    assert {"torch._utils._rebuild_tensor_v2", "collections.OrderedDict"} <= set(scan.globals)


def test_calls_are_attributed_to_the_global_they_call() -> None:
    scan = scan_pickle_bytes(pickle.dumps(collections.OrderedDict(a=1), protocol=2), path="p")
    assert "REDUCE" in scan.globals["collections.OrderedDict"].calls


def test_stack_global_with_a_computed_name_is_reported() -> None:
    # the module name is the result of a call, so it cannot be known without running it
    data = (
        b"\x80\x04"
        + _u("builtins")
        + _u("str")
        + b"\x93"
        + _u("os")
        + b"\x85R"
        + _u("system")
        + b"\x93."
    )
    assert "pickle.computed-global" in _rules(data)


def test_a_memo_get_of_a_missing_key_falls_back_to_opcode_by_opcode_reading() -> None:
    data = b"\x80\x02h\x07cos\nsystem\n(Vx\ntR."
    scan = scan_pickle_bytes(data, path="p")
    rules = {i.rule for i in scan.issues}
    assert "pickle.dangerous-global" in rules
    assert "pickle.malformed" in rules


def test_stack_confusion_still_reports_every_global() -> None:
    data = b"1cos\nsystem\n(Vx\ntR."  # POP_MARK with no MARK, then a payload
    scan = scan_pickle_bytes(data, path="p")
    assert "os.system" in scan.globals
    assert scan.globals["os.system"].severity is Severity.CRITICAL


def test_consecutive_pickles_are_all_scanned() -> None:
    data = pickle.dumps(1, protocol=2) + pickle.dumps(collections.OrderedDict(), protocol=2)
    scan = scan_pickle_bytes(data, path="p")
    assert scan.pickles == 2
    assert "collections.OrderedDict" in scan.globals


def test_trailing_bytes_after_a_pickle_are_a_note_not_an_issue() -> None:
    scan = scan_pickle_bytes(pickle.dumps([1, 2], protocol=2) + b"\x01\x02garbage", path="p")
    assert scan.issues == []
    assert any("not a pickle" in note for note in scan.notes)


def test_a_payload_hidden_after_trailing_garbage_parse_is_still_reported() -> None:
    payload = b"\x80\x02cos\nsystem\n(Vx\ntR\xff\xff"  # a second, damaged pickle
    scan = scan_pickle_bytes(pickle.dumps(1, protocol=2) + payload, path="p")
    assert scan.globals["os.system"].severity is Severity.CRITICAL


def test_legacy_torch_save_is_recognised() -> None:
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(4)}, buffer, _use_new_zipfile_serialization=False)
    scan = scan_pickle_bytes(buffer.getvalue(), path="p")
    assert scan.kind == "pytorch-legacy"
    assert scan.issues == []
    assert scan.pickles == 5


def test_joblib_array_payloads_are_stepped_over() -> None:
    import joblib

    buffer = io.BytesIO()
    arrays = {
        "f": np.arange(12.0).reshape(3, 4),
        "fortran": np.asfortranarray(np.ones((3, 2), dtype=np.int16)),
        "text": np.array(["a", "bcd"]),
        "record": np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")]),
        "objects": np.array([1, "x", None], dtype=object),
        "empty": np.zeros((0, 3)),
    }
    joblib.dump(arrays, buffer)
    scan = scan_pickle_bytes(buffer.getvalue(), path="p")
    assert scan.kind == "joblib"
    assert scan.issues == []
    assert scan.complete


def test_nested_pickles_are_scanned_under_their_own_path() -> None:
    inner = b"\x80\x02cos\nsystem\n(Vx\ntR."
    outer = b"\x80\x04" + _u("pickle") + _u("loads") + b"\x93C" + bytes([len(inner)])
    outer += inner + b"\x85R."
    scan = scan_pickle_bytes(outer, path="outer.pkl")
    nested = [i for i in scan.issues if i.path.startswith("outer.pkl#nested@")]
    assert any(i.details.get("global") == "os.system" for i in nested)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=20)
        | st.binary(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.tuples(children, children)
            | st.dictionaries(st.text(max_size=5), children, max_size=4)
            | st.frozensets(st.integers(), max_size=4)
        ),
        max_leaves=20,
    ),
    protocol=st.integers(min_value=0, max_value=5),
)
def test_plain_data_in_any_protocol_scans_clean(value: object, protocol: int) -> None:
    scan = scan_pickle_bytes(pickle.dumps(value, protocol=protocol), path="p")
    assert scan.issues == []
    assert scan.pickles == 1
    assert scan.complete


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_reader(data: bytes) -> None:
    scan_pickle_bytes(data, path="p")


def test_every_opcode_of_protocols_0_to_5_has_a_handler() -> None:
    import pickletools

    from mlwarden.supplychain.scan.pickles import _HANDLERS

    assert set(_HANDLERS) == {op.name for op in pickletools.opcodes}
