"""Automatic lineage: ``data poison``, ``harden`` and ``zoo train`` given ``--registry`` record what
they made, linked to what they read, without a call to the registry by hand; without it they
leave no trace."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlwarden.cli.app import main
from mlwarden.data import load_dataset
from mlwarden.governance import Registry, build_graph, file_sha256, models_trained_on
from mlwarden.governance.provenance import record_derived_dataset, record_trained_model
from mlwarden.models.loading import read_sidecar

from .conftest import make_card

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def digits_npz(tmp_path: Path) -> Path:
    train = load_dataset("builtin:digits", split="train")
    path = tmp_path / "raw.npz"
    np.savez(path, x=train.x[:240], y=train.y[:240])
    return path


def test_poison_then_harden_link_the_model_to_the_registered_raw_data(
    tmp_path: Path, digits_npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path}/reg.db"
    registry = Registry(db)
    try:
        registry.register_dataset(
            "raw", digits_npz, make_card(), data_sha256=load_dataset(str(digits_npz)).digest()
        )
    finally:
        registry.close()
    poisoned = tmp_path / "poisoned.npz"
    code, out = _cli(
        capsys, "data", "poison", "--data", digits_npz, "--attack", "label-flip",
        "--rate", "0.1", "--out", poisoned, "--registry", db,
    )  # fmt: skip
    assert code == 0 and "registered dataset poisoned" in out, out
    model = tmp_path / "noisy.pt2"
    code, out = _cli(
        capsys, "harden", "smoothing", "--model", "zoo:digits-cnn", "--data", poisoned,
        "--sigma", "0.25", "--epochs", "1", "--eval-samples", "20", "--out", model,
        "--registry", db,
    )  # fmt: skip
    assert code == 0 and "registered model noisy" in out, out

    registry = Registry(db)
    try:
        derived = registry.get("poisoned")
        assert derived.card is not None
        assert derived.card.owner == make_card().owner
        assert derived.card.description.startswith("derived from raw by mlwarden data poison")
        assert derived.data_sha256 == load_dataset(str(poisoned)).digest()
        # the sidecar records the digest of a 90% training split: the file digest finds the data
        split_digest = read_sidecar(model)["training"]["dataset_sha256"]
        assert split_digest not in derived.digests
        graph = build_graph(registry)
        noisy = registry.get("noisy")
        assert [a.name for a in graph.ancestors(noisy)] == ["poisoned", "raw"]
        assert [m.name for m in models_trained_on(registry, "raw")] == ["noisy"]
        base = read_sidecar(model)["training"]["base_model"]["sha256"]
        train_run = next(r for r in registry.all_runs() if r.kind == "train")
        assert base in train_run.inputs and derived.file_sha256 in train_run.inputs
        transform = next(r for r in registry.all_runs() if r.kind == "transform")
        assert transform.command.startswith("mlwarden data poison --attack label-flip")
        assert registry.get("raw").data_sha256 in transform.inputs
    finally:
        registry.close()


def test_without_a_registry_the_commands_leave_no_trace(
    tmp_path: Path,
    digits_npz: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MLWARDEN_REGISTRY", raising=False)
    monkeypatch.chdir(tmp_path)
    code, out = _cli(
        capsys, "data", "poison", "--data", digits_npz, "--attack", "label-flip",
        "--rate", "0.1", "--out", tmp_path / "p.npz",
    )  # fmt: skip
    assert code == 0, out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npz", "p.truth.json", "raw.npz"]


def test_a_bad_registry_fails_before_any_work(
    tmp_path: Path,
    digits_npz: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLWARDEN_REGISTRY", "mysql://nowhere/db")
    code, out = _cli(
        capsys, "data", "poison", "--data", digits_npz, "--attack", "label-flip",
        "--rate", "0.1", "--out", tmp_path / "p.npz",
    )  # fmt: skip
    assert code == 2 and "mysql" in out, out
    assert not (tmp_path / "p.npz").exists()


def test_zoo_train_registers_the_model_against_its_builtin_training_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path}/reg.db"
    code, out = _cli(
        capsys, "zoo", "train", "breast-cancer-gbm", "--out", tmp_path, "--registry", db
    )
    assert code == 0 and "registered model breast-cancer-gbm" in out, out
    registry = Registry(db)
    try:
        (run,) = registry.all_runs()
        digest = load_dataset("builtin:breast-cancer", split="train").digest()
        assert (run.kind, run.inputs) == ("train", (digest,))
        assert run.outputs == (registry.get("breast-cancer-gbm").file_sha256,)
    finally:
        registry.close()


def test_a_derived_copy_of_unregistered_data_is_linked_but_not_named(
    registry: Registry, tmp_path: Path
) -> None:
    out = tmp_path / "copy.csv"
    out.write_text("a,label\n1,0\n2,1\n", encoding="utf-8")
    artifact, run = record_derived_dataset(
        registry, out, inputs=["a" * 64], command="mlwarden data poison", version="x"
    )
    assert artifact is None and registry.list() == []
    assert run.inputs == ("a" * 64,) and len(run.outputs) == 2


def test_rerunning_onto_the_same_path_re_registers_and_another_path_gets_a_suffix(
    registry: Registry, tmp_path: Path
) -> None:
    first, second = tmp_path / "a" / "m.pt2", tmp_path / "b" / "m.pt2"
    for path, content in ((first, b"one"), (second, b"two")):
        path.parent.mkdir()
        path.write_bytes(content)
        Path(f"{path}.mlwarden.json").write_text(
            json.dumps({"training": {"dataset_sha256": "c" * 64}}), encoding="utf-8"
        )
    assert record_trained_model(registry, first)[0].name == "m"
    first.write_bytes(b"retrained")
    assert record_trained_model(registry, first)[0].name == "m"
    assert registry.get("m").file_sha256 == file_sha256(first)
    other = record_trained_model(registry, second)[0]
    assert other.name.startswith("m-") and len(other.name) == 10
    assert {a.name for a in registry.list()} == {"m", other.name}
