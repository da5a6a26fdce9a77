"""``mlwarden attack memorization``: plant, train and measure; measure a saved model; bad files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def test_plant_train_and_measure_then_measure_the_saved_model(
    run_cli: Callable[..., Any], tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "\n".join(f"the {w} sat on the mat {i}" for i in range(40) for w in ("cat", "dog"))
    )
    model, canaries = tmp_path / "lm.pt", tmp_path / "canaries.json"
    common = ("--model", model, "--canaries", canaries, "--beam-width", "2")
    first = run_cli(
        "attack", "memorization", *common, "--corpus", corpus, "--digits", "3",
        "--repetitions", "0,24", "--epochs", "6", "--hidden-size", "32", "--out", tmp_path / "a",
    )  # fmt: skip
    assert first.code == 0, first.err
    doc = json.loads((tmp_path / "a" / "memorization.json").read_text())
    by_count = doc["exposure_by_repetitions"]
    assert set(by_count) == {"0", "24"}
    assert by_count["24"] > by_count["0"]
    assert doc["space"]["size"] == 1000
    assert (tmp_path / "a" / "memorization.png").read_bytes()[:4] == b"\x89PNG"

    again = run_cli("attack", "memorization", *common, "--out", tmp_path / "b")
    assert again.code == 0, again.err
    redo = json.loads((tmp_path / "b" / "memorization.json").read_text())
    assert redo["canaries"] == doc["canaries"]


def test_a_bad_canary_file_is_one_line_and_exit_2(
    run_cli: Callable[..., Any], tmp_path: Path
) -> None:
    from mlwarden.models.text_lm import fit_language_model

    model = fit_language_model(["my account number is 1 2"], hidden_size=4, epochs=1).save(
        tmp_path / "lm.pt"
    )
    bad = tmp_path / "c.json"
    bad.write_text(
        json.dumps(
            {
                "space": {"prefix": "x", "alphabet": "01", "length": 2},
                "canaries": [{"secret": "0a"}],
            }
        )
    )
    result = run_cli(
        "attack", "memorization", "--model", model, "--canaries", bad, "--out", tmp_path
    )
    assert result.code == 2
    assert "secret '0a'" in result.err
    result = run_cli(
        "attack",
        "memorization",
        "--model",
        tmp_path / "c.json",
        "--canaries",
        bad,
        "--out",
        tmp_path,
    )
    assert result.code == 2 and "not a language model" in result.err


def test_dp_training_states_its_privacy_unit_and_the_duplicates_merged(
    run_cli: Callable[..., Any], tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"the cat sat on mat {i}" for i in range(80)))
    common = (
        "attack", "memorization", "--model", tmp_path / "lm.pt", "--canaries",
        tmp_path / "c.json", "--corpus", corpus, "--digits", "2", "--repetitions", "0,16",
        "--epochs", "1", "--hidden-size", "8", "--beam-width", "1", "--epsilon", "8",
        "--delta", "1e-3",
    )  # fmt: skip
    result = run_cli(*common, "--privacy-unit", "distinct-line", "--out", tmp_path / "a")
    assert result.code == 0, result.err
    said = " ".join(result.out.split())  # the console wraps long lines at its width
    assert "privacy unit: distinct-line" in said
    assert "15 exact duplicate line(s) were merged" in said
    record = json.loads((tmp_path / "a" / "memorization.json").read_text())["privacy"]
    assert record["privacy_unit"] == "distinct-line"
    assert record["duplicates_removed"] == 15  # the 16x canary trained once
    assert record["n_samples"] == 81


def test_a_bad_privacy_unit_is_one_line_and_exit_2(
    run_cli: Callable[..., Any], tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat\n")
    common = (
        "attack", "memorization", "--model", tmp_path / "lm.pt", "--canaries",
        tmp_path / "c.json", "--corpus", corpus, "--out", tmp_path,
    )  # fmt: skip
    result = run_cli(*common, "--epsilon", "8", "--privacy-unit", "word")
    assert result.code == 2
    said = " ".join(result.err.split())  # the console wraps long lines at its width
    assert "--privacy-unit must be one of distinct-line, line, got 'word'" in said
    result = run_cli(*common, "--privacy-unit", "line")  # no --epsilon: no DP to apply it to
    assert result.code == 2
    assert "--privacy-unit applies to DP-SGD training" in " ".join(result.err.split())
    assert not (tmp_path / "lm.pt").exists()  # refused before training
