"""``mlwarden data poison`` and ``mlwarden data inspect`` end to end, in-process."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mlwarden.data import load_builtin, load_dataset

RunCli = Callable[..., Any]  # conftest.run_cli: returns a CliResult


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Train on one thread: two threads on two shared, busy cores make small models crawl."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_poison_writes_the_copy_and_its_truth(run_cli: RunCli, tmp_path: Path) -> None:
    out = tmp_path / "p.npz"
    result = run_cli(
        "data", "poison", "--data", "builtin:digits", "--attack", "badnets", "--rate", "0.05",
        "--target-class", "3", "--patch-size", "3", "--patch-position", "0,0", "--out", out,
    )  # fmt: skip
    assert result.code == 0, result.err
    truth = json.loads((tmp_path / "p.truth.json").read_text())
    train = load_builtin("digits").train
    poisoned = load_dataset(str(out))
    assert truth["attack"] == "badnets"
    assert truth["params"]["patch_position"] == [0, 0]
    assert truth["n_poisoned"] == round(0.05 * np.sum(train.y != 3)) == len(truth["indices"])
    idx = np.array(truth["indices"])
    assert np.all(poisoned.x[idx][:, :, :3, :3] == 1.0)
    assert np.all(poisoned.y[idx] == 3)
    assert truth["source"]["sha256"] == train.digest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npz", "p.truth.json"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--attack", "nope"), "badnets"),
        (("--attack", "badnets", "--patch-position", "middle"), "patch-position"),
        (("--attack", "badnets", "--rate", "2"), "rate"),
        (("--attack", "label-flip", "--mode", "targeted"), "target_class"),
        (("--attack", "blend", "--pattern", "missing.npy"), "pattern"),
    ],
)
def test_poison_refuses_bad_options_with_exit_2(
    run_cli: RunCli, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    base = {"--rate": "0.1"}
    argv = ["data", "poison", "--data", "builtin:digits", "--out", str(tmp_path / "p.npz")]
    if "--rate" not in args:
        argv += ["--rate", base["--rate"]]
    result = run_cli(*argv, *args)
    assert result.code == 2
    assert message in result.err
    assert not (tmp_path / "p.npz").exists()


def test_poison_needs_an_npz_output(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli(
        "data", "poison", "--data", "builtin:digits", "--attack", "label-flip", "--rate", "0.1",
        "--out", tmp_path / "p.csv",
    )  # fmt: skip
    assert result.code == 2 and ".npz" in result.err


def test_model_free_inspection_finds_label_flips(run_cli: RunCli, tmp_path: Path) -> None:
    data = tmp_path / "flipped.npz"
    assert run_cli(
        "data", "poison", "--data", "builtin:digits", "--attack", "label-flip", "--rate", "0.1",
        "--out", data,
    ).code == 0  # fmt: skip
    out = tmp_path / "report"
    result = run_cli(
        "data", "inspect", "--data", data, "--truth", tmp_path / "flipped.truth.json",
        "--remove", "--remove-by", "label-errors", "--out", out,
    )  # fmt: skip
    assert result.code == 0, result.err
    doc = json.loads((out / "report.json").read_text())
    errors = doc["evaluation"]["detectors"]["label-errors"]
    assert errors["recall"] >= 0.8 and errors["precision"] >= 0.7
    assert any("model" in reason for reason in doc["skipped"])
    removed = json.loads((out / "cleaned.removed.json").read_text())["removed_indices"]
    assert len(load_dataset(str(out / "cleaned.npz"))) == 1257 - len(removed)
    html = (out / "report.html").read_text()
    assert "label-errors" in html and "<script" not in html


def test_inspect_refuses_an_unknown_removal_detector(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli(
        "data", "inspect", "--data", "builtin:digits", "--remove-by", "magic", "--out", tmp_path
    )
    assert result.code == 2 and "magic" in result.err


@pytest.mark.slow
def test_inspect_train_remove_retrain_removes_the_backdoor(run_cli: RunCli, tmp_path: Path) -> None:
    data = tmp_path / "poisoned.npz"
    assert run_cli(
        "data", "poison", "--data", "builtin:digits", "--attack", "badnets", "--rate", "0.05",
        "--target-class", "0", "--out", data,
    ).code == 0  # fmt: skip
    out = tmp_path / "report"
    result = run_cli(
        "data", "inspect", "--model", "train", "--data", data, "--clean", "builtin:digits:test",
        "--truth", tmp_path / "poisoned.truth.json", "--remove", "--retrain",
        "--test", "builtin:digits:test", "--epochs", "20", "--out", out,
    )  # fmt: skip
    assert result.code == 0, result.err
    doc = json.loads((out / "report.json").read_text())
    clustering = doc["evaluation"]["detectors"]["activation-clustering"]
    assert clustering["recall"] >= 0.9 and clustering["precision"] >= 0.8
    assert doc["retrain"]["before"]["attack_success_rate"] > 0.9
    assert doc["retrain"]["after"]["attack_success_rate"] < 0.1
    assert doc["holdout"] is not None
    assert "attack success" in result.out
