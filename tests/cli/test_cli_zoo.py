"""``mlwarden zoo`` and the root options."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlwarden import __version__
from mlwarden.cli.app import main


def test_version_prints_the_version(run_cli: Callable[..., Any]) -> None:
    result = run_cli("--version")
    assert result.code == 0
    assert result.out.strip() == f"mlwarden {__version__}"


def test_no_arguments_shows_help_and_exits_2(run_cli: Callable[..., Any]) -> None:
    result = run_cli()
    assert result.code == 2
    assert "assess" in result.out


def test_zoo_list_names_every_zoo_model(run_cli: Callable[..., Any]) -> None:
    from mlwarden.models.zoo import ZOO

    result = run_cli("zoo", "list")
    assert result.code == 0
    for name in ZOO:
        assert name in result.out


@pytest.fixture(scope="module")
def trained_gbm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder ``mlwarden zoo train breast-cancer-gbm --out DIR`` wrote into."""
    folder = tmp_path_factory.mktemp("zoo-train")
    assert main(["zoo", "train", "breast-cancer-gbm", "--out", str(folder)]) == 0
    return folder


def test_zoo_train_writes_the_model_and_its_sidecar(trained_gbm: Path) -> None:
    assert sorted(p.name for p in trained_gbm.iterdir()) == [
        "breast-cancer-gbm.skops",
        "breast-cancer-gbm.skops.mlwarden.json",
    ]
    assert (trained_gbm / "breast-cancer-gbm.skops").stat().st_size > 0
    sidecar = json.loads(
        (trained_gbm / "breast-cancer-gbm.skops.mlwarden.json").read_text(encoding="utf-8")
    )
    assert sidecar["name"] == "breast-cancer-gbm"
    assert sidecar["input_shape"] == [30]
    assert sidecar["n_classes"] == 2
    assert sidecar["clip_range"] == [0.0, 1.0]
    assert sidecar["training"]["seed"] == 0
    assert 0.5 < sidecar["training"]["test_accuracy"] <= 1.0


def test_a_trained_zoo_model_can_be_assessed_from_its_file(
    trained_gbm: Path,
    run_cli: Callable[..., Any],
    write_config: Callable[..., Path],
    tmp_path: Path,
) -> None:
    config = write_config(attacks=["square"], epsilons=[0.1], max_samples=20)
    model = trained_gbm / "breast-cancer-gbm.skops"
    result = run_cli(
        "assess", "-m", model, "-d", "builtin:breast-cancer", "-c", config, "-o", tmp_path
    )
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["model"]["format"] == "skops"
    assert report["model"]["path"] == str(model)
    assert report["model"]["white_box"] is False


def test_zoo_train_of_an_unknown_model_exits_2(run_cli: Callable[..., Any], tmp_path: Path) -> None:
    result = run_cli("zoo", "train", "resnet-9000", "--out", tmp_path)
    assert result.code == 2
    assert result.err.strip().startswith("error: unknown zoo model 'resnet-9000'")
    assert list(tmp_path.iterdir()) == []


def test_zoo_train_with_the_wrong_suffix_exits_2(
    run_cli: Callable[..., Any], tmp_path: Path
) -> None:
    result = run_cli("zoo", "train", "breast-cancer-gbm", "--out", tmp_path / "model.pt2")
    assert result.code == 2
    assert "'.pt2'" in result.err and ".skops" in result.err
