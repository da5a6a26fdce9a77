"""Benign artifacts scan clean: every zoo model, state-dict checkpoints, joblib and NumPy data."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pytest
import torch

from mlwarden.models.zoo import ZOO, digits_cnn, train_zoo_model, zoo_path
from mlwarden.report.findings import Severity
from mlwarden.supplychain.scan import scan_file, scan_paths


def _clean(path: Path) -> None:
    record = scan_file(path)
    assert record.scanned, record.notes
    assert [i.message for i in record.issues] == []


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_zoo_model_scans_clean_and_safe_by_construction(name: str) -> None:
    path = zoo_path(name)  # the session cache other tests share; trained once if missing
    if not path.exists():
        train_zoo_model(name, path)
    record = scan_file(path)
    assert record.issues == []
    assert record.safe_by_construction
    assert record.format == {".pt2": "torch-export", ".skops": "skops"}[ZOO[name].suffix]


def test_state_dict_checkpoint_of_the_digits_cnn_scans_clean(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "digits-cnn.pt"
    torch.save(digits_cnn().state_dict(), path)
    _clean(path)
    assert scan_file(path).format == "pytorch-zip"


def test_legacy_state_dict_checkpoint_scans_clean(tmp_path: Path) -> None:
    path = tmp_path / "digits-cnn.pth"
    torch.save(digits_cnn().state_dict(), path, _use_new_zipfile_serialization=False)
    _clean(path)
    assert scan_file(path).format == "pytorch-legacy"


def test_a_whole_module_checkpoint_is_allowed_but_not_safe_by_construction(
    tmp_path: Path,
) -> None:
    path = tmp_path / "module.pt"
    torch.save(digits_cnn(), path)
    record = scan_file(path)
    assert record.max_severity is None or record.max_severity.rank < Severity.HIGH.rank
    assert not record.safe_by_construction


def test_joblib_of_arrays_scans_clean_plain_and_compressed(tmp_path: Path) -> None:
    data = {"w": np.random.default_rng(0).normal(size=(64, 8)), "labels": np.array(["a", "b"])}
    joblib.dump(data, tmp_path / "plain.joblib")
    joblib.dump(data, tmp_path / "zlib.joblib", compress=3)
    joblib.dump(data, tmp_path / "model.joblib.gz", compress=("gzip", 3))
    joblib.dump(data, tmp_path / "model.joblib.xz", compress=("xz", 3))
    for name in ("plain.joblib", "zlib.joblib", "model.joblib.gz", "model.joblib.xz"):
        _clean(tmp_path / name)


def test_a_joblib_scikit_learn_model_fails_the_gate_and_points_to_skops(tmp_path: Path) -> None:
    # a pickle can call any class it imports; scikit-learn models belong in skops files
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).normal(size=(40, 3))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    joblib.dump(model, tmp_path / "model.joblib")
    record = scan_file(tmp_path / "model.joblib")
    assert record.max_severity is Severity.HIGH
    assert any("skops" in i.message for i in record.issues)


def test_numeric_numpy_files_are_safe_by_construction(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.arange(10.0))
    np.savez_compressed(tmp_path / "b.npz", x=np.ones((3, 3)), y=np.arange(3))
    report = scan_paths([tmp_path])
    assert {f.format for f in report.files} == {"numpy", "npz"}
    assert all(f.safe_by_construction and not f.issues for f in report.files)


def test_a_folder_scan_reports_every_file(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# model card\n")
    (tmp_path / "config.json").write_text('{"hidden": 8}')
    (tmp_path / "empty.txt").write_bytes(b"")
    np.save(tmp_path / "w.npy", np.zeros(2))
    report = scan_paths([tmp_path])
    formats = {Path(f.path).name: f.format for f in report.files}
    assert formats == {
        "README.md": "text",
        "config.json": "text",
        "empty.txt": "empty",
        "w.npy": "numpy",
    }
    assert report.issues == [] and report.skipped == []
