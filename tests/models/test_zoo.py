"""The model zoo: deterministic training, recorded provenance, sensible accuracy, caching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlwarden.data import load_builtin
from mlwarden.errors import ConfigError
from mlwarden.models import load_model
from mlwarden.models.loading import SIDECAR_SUFFIX
from mlwarden.models.zoo import ZOO, train_zoo_model, zoo_path

TABULAR_MODELS = ["breast-cancer-mlp", "breast-cancer-gbm"]


def sidecar(path: Path) -> dict:
    return json.loads(Path(str(path) + SIDECAR_SUFFIX).read_text())


def accuracy_on_test_split(path: Path, dataset: str) -> float:
    test = load_builtin(dataset).test
    return float((load_model(path).predict(test.x) == test.y).mean())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int, str], Path]:
    """Each tabular zoo model trained twice with seed 0, and the MLP once with seed 1."""
    runs = [(name, 0, run) for name in TABULAR_MODELS for run in ("a", "b")]
    runs.append(("breast-cancer-mlp", 1, "a"))
    return {
        (name, seed, run): train_zoo_model(
            name, tmp_path_factory.mktemp(f"{name}-{seed}-{run}"), seed=seed
        )
        for name, seed, run in runs
    }


@pytest.mark.parametrize("name", TABULAR_MODELS)
def test_same_seed_gives_identical_predictions(
    trained: dict[tuple[str, int, str], Path], name: str
) -> None:
    x = load_builtin("breast-cancer").test.x

    first = load_model(trained[name, 0, "a"]).predict_proba(x)
    second = load_model(trained[name, 0, "b"]).predict_proba(x)

    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("name", TABULAR_MODELS)
def test_same_seed_gives_identical_metadata(
    trained: dict[tuple[str, int, str], Path], name: str
) -> None:
    assert sidecar(trained[name, 0, "a"]) == sidecar(trained[name, 0, "b"])


def test_different_seeds_give_different_models(
    trained: dict[tuple[str, int, str], Path],
) -> None:
    x = load_builtin("breast-cancer").test.x

    seed0 = load_model(trained["breast-cancer-mlp", 0, "a"]).predict_proba(x)
    seed1 = load_model(trained["breast-cancer-mlp", 1, "a"]).predict_proba(x)

    assert not np.array_equal(seed0, seed1)


@pytest.mark.parametrize("name", TABULAR_MODELS)
def test_metadata_records_shape_classes_and_training_data(
    trained: dict[tuple[str, int, str], Path], name: str
) -> None:
    meta = sidecar(trained[name, 0, "a"])

    assert meta["input_shape"] == [30]
    assert meta["n_classes"] == 2
    assert meta["training"]["seed"] == 0
    assert meta["training"]["recipe"] == f"zoo:{name}@v1"
    assert meta["training"]["dataset_sha256"] == load_builtin("breast-cancer").train.digest()


@pytest.mark.parametrize("name", TABULAR_MODELS)
def test_recorded_test_accuracy_is_high_and_matches_the_saved_model(
    trained: dict[tuple[str, int, str], Path], name: str
) -> None:
    path = trained[name, 0, "a"]
    recorded = sidecar(path)["training"]["test_accuracy"]

    assert recorded > 0.9
    assert accuracy_on_test_split(path, "breast-cancer") == pytest.approx(recorded)


@pytest.mark.slow
def test_digits_cnn_reaches_high_test_accuracy(tmp_path: Path) -> None:
    path = train_zoo_model("digits-cnn", tmp_path)

    assert path.name == "digits-cnn.pt2"
    assert sidecar(path)["input_shape"] == [1, 8, 8]
    assert accuracy_on_test_split(path, "digits") > 0.95


def test_unknown_model_name_is_a_config_error_listing_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown zoo model 'resnet'.*" + ", ".join(ZOO)):
        train_zoo_model("resnet", tmp_path)


def test_unknown_model_name_in_a_zoo_spec_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown zoo model 'resnet'"):
        load_model("zoo:resnet")


def test_out_path_with_the_wrong_suffix_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"suffix '\.pt2' but breast-cancer-gbm is saved as \.skops"
    ):
        train_zoo_model("breast-cancer-gbm", tmp_path / "model.pt2")

    assert list(tmp_path.iterdir()) == []


def test_zoo_spec_trains_into_the_cache_once_and_reuses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLWARDEN_CACHE_DIR", str(tmp_path))

    first = load_model("zoo:breast-cancer-gbm")
    cached = zoo_path("breast-cancer-gbm")
    assert cached.is_relative_to(tmp_path) and cached.exists()

    def no_training(*args: object, **kwargs: object) -> Path:
        raise AssertionError("the cached model should have been reused")

    monkeypatch.setattr("mlwarden.models.zoo.train_zoo_model", no_training)
    second = load_model("zoo:breast-cancer-gbm")

    assert first.info["name"] == second.info["name"] == "zoo:breast-cancer-gbm"
    assert first.info["sha256"] == second.info["sha256"]
