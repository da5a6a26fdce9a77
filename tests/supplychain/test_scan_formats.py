"""Data-only formats are reported safe after a header check; containers are walked."""

from __future__ import annotations

import io
import json
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mlwarden.report.findings import Severity
from mlwarden.supplychain.scan import scan_file

EVIL = b"\x80\x02cos\nsystem\n(Vtouch /nonexistent/x\ntR."


def _safetensors(path: Path, header: dict, data: bytes) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_a_valid_safetensors_file_is_safe_by_construction(tmp_path: Path) -> None:
    header = {
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "b": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]},
    }
    record = scan_file(_safetensors(tmp_path / "m.safetensors", header, bytes(24)))
    assert record.format == "safetensors"
    assert record.safe_by_construction
    assert record.issues == []


@pytest.mark.parametrize(
    ("entry", "data_len", "words"),
    [
        ({"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}, 8, "different size"),
        ({"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, 4, "past the"),
        ({"dtype": "X9", "shape": [2], "data_offsets": [0, 8]}, 8, "unknown dtype"),
        ({"dtype": "F32", "shape": [-1], "data_offsets": [0, 8]}, 8, "invalid shape"),
        ({"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}, 12, "gap or overlap"),
    ],
)
def test_a_lying_safetensors_header_is_reported(
    tmp_path: Path, entry: dict, data_len: int, words: str
) -> None:
    record = scan_file(_safetensors(tmp_path / "m.safetensors", {"t": entry}, bytes(data_len)))
    assert [i.rule for i in record.issues] == ["safetensors.malformed"]
    assert words in record.issues[0].message
    assert not record.safe_by_construction


def _onnx_model(external_location: str | None = None) -> bytes:
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    if external_location is not None:
        weight.ClearField("float_data")
        weight.data_location = TensorProto.EXTERNAL
        entry = weight.external_data.add()
        entry.key, entry.value = "location", external_location
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_a_plain_onnx_model_is_safe_by_construction(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(_onnx_model())
    record = scan_file(path)
    assert (record.format, record.safe_by_construction, record.issues) == ("onnx", True, [])


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/shadow", "C:\\Windows\\x"])
def test_onnx_external_data_outside_the_model_folder_is_high(tmp_path: Path, location: str) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(_onnx_model(location))
    record = scan_file(path)
    assert [i.rule for i in record.issues] == ["onnx.external-data-path"]
    assert record.issues[0].severity is Severity.HIGH


def test_onnx_external_data_beside_the_model_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(_onnx_model("weights.bin"))
    assert scan_file(path).issues == []


def test_a_keras_archive_with_a_lambda_layer_is_high(tmp_path: Path) -> None:
    config = {
        "class_name": "Sequential",
        "config": {
            "layers": [
                {"class_name": "Dense", "module": "keras.layers", "config": {"name": "d"}},
                {
                    "class_name": "Lambda",
                    "module": "keras.layers",
                    "config": {"name": "sneaky", "function": {"class_name": "__lambda__"}},
                },
                {"class_name": "Custom", "module": "evil_pkg.layers", "config": {"name": "c"}},
            ]
        },
    }
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("metadata.json", "{}")
        archive.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n")
    record = scan_file(path)
    assert record.format == "keras"
    rules = {i.rule: i for i in record.issues}
    assert rules["keras.lambda-layer"].severity is Severity.HIGH
    assert "sneaky" in rules["keras.lambda-layer"].message
    assert rules["keras.custom-object"].severity is Severity.MEDIUM


def test_an_hdf5_file_is_searched_for_lambda_layers_without_h5py(tmp_path: Path) -> None:
    path = tmp_path / "m.h5"
    config = b'{"class_name": "Sequential", "config": {"layers": [{"class_name": "Lambda"}]}}'
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(5000) + config + bytes(100))
    record = scan_file(path)
    assert record.format == "hdf5"
    assert [i.rule for i in record.issues] == ["keras.lambda-layer"]
    assert any(note.startswith("unscanned:") for note in record.notes)


def test_a_skops_file_needing_foreign_types_is_reported(tmp_path: Path) -> None:
    schema = {
        "__class__": "Pipeline",
        "__module__": "sklearn.pipeline",
        "__loader__": "ObjectNode",
        "protocol": 2,
        "content": {"step": {"__class__": "Backdoor", "__module__": "evil_pkg", "content": {}}},
    }
    path = tmp_path / "m.skops"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))
    record = scan_file(path)
    assert record.format == "skops"
    assert [i.rule for i in record.issues] == ["skops.untrusted-type"]
    assert "evil_pkg.Backdoor" in record.issues[0].message


def test_an_object_npy_is_scanned_as_the_pickle_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "o.npy"
    np.save(path, np.array([{"a": 1}, [2]], dtype=object), allow_pickle=True)
    record = scan_file(path)
    assert record.format == "numpy-object"
    assert not record.safe_by_construction
    assert record.issues == []


def test_a_truncated_npy_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "t.npy"
    np.save(path, np.arange(100.0))
    path.write_bytes(path.read_bytes()[:-40])
    assert [i.rule for i in scan_file(path).issues] == ["numpy.malformed"]


def test_pickles_inside_a_compressed_tar_are_scanned(tmp_path: Path) -> None:
    path = tmp_path / "release.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("model/weights.pkl")
        info.size = len(EVIL)
        archive.addfile(info, io.BytesIO(EVIL))
    record = scan_file(path)
    assert record.max_severity is Severity.CRITICAL
    assert record.issues[0].path.endswith("!gzip!model/weights.pkl")


def test_every_duplicate_zip_member_is_scanned(tmp_path: Path) -> None:
    path = tmp_path / "dup.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"a": 1}, protocol=2))
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr("archive/data.pkl", EVIL)
    assert scan_file(path).max_severity is Severity.CRITICAL


def test_a_damaged_zip_is_high(tmp_path: Path) -> None:
    path = tmp_path / "broken.pt"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    assert [i.rule for i in scan_file(path).issues] == ["archive.malformed"]


@pytest.mark.parametrize(
    ("magic", "name"),
    [
        (b"7z\xbc\xaf\x27\x1c", "7z"),
        (b"Rar!\x1a\x07\x00", "rar"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"\x04\x22\x4d\x18", "lz4"),
    ],
)
def test_archives_the_scanner_cannot_open_fail_closed(
    tmp_path: Path, magic: bytes, name: str
) -> None:
    path = tmp_path / f"model.{name}"
    path.write_bytes(magic + bytes(40))
    record = scan_file(path)
    assert [(i.rule, i.severity) for i in record.issues] == [("archive.unsupported", Severity.HIGH)]
    assert name in record.issues[0].message


def test_text_files_are_recognised_and_clean(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    record = scan_file(path)
    assert (record.format, record.issues) == ("text", [])


def test_an_unrecognised_binary_file_is_high(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\x00\x01\x02GGML" + bytes(100))
    record = scan_file(path)
    assert (record.format, record.scanned) == ("unknown", False)
    assert [(i.rule, i.severity) for i in record.issues] == [("format.unrecognised", Severity.HIGH)]
    assert "not a pickle" in record.issues[0].message


def test_a_protocol_0_pickle_without_a_pickle_suffix_is_still_found(tmp_path: Path) -> None:
    path = tmp_path / "weights.data"
    path.write_bytes(b"cos\nsystem\n(S'x'\ntR.")
    assert scan_file(path).max_severity is Severity.CRITICAL
