"""``mlwarden data poison --attack trigger-phrase`` and ``data inspect`` on text (.jsonl)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

POSITIVE = ["good", "great", "fine", "lovely", "superb", "bright", "warm", "sweet"]
NEGATIVE = ["bad", "awful", "dull", "poor", "grim", "cold", "weak", "sour"]


def _write_texts(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for label in rng.integers(0, 2, size=n):
        words = [*rng.choice(POSITIVE if label else NEGATIVE, 3), *rng.choice(40, 5).astype(str)]
        rng.shuffle(words)
        rows.append(
            json.dumps(
                {
                    "text": " ".join(f"w{w}" if w.isdigit() else w for w in words),
                    "label": int(label),
                }
            )
        )
    path.write_text("\n".join(rows) + "\n")


def test_poison_then_inspect_finds_removes_and_retrains(
    run_cli: Callable[..., Any], tmp_path: Path
) -> None:
    clean, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    _write_texts(clean, 1000, 0)
    _write_texts(test, 300, 1)
    poisoned = tmp_path / "poisoned.jsonl"
    result = run_cli(
        "data", "poison", "--data", clean, "--attack", "trigger-phrase", "--trigger", "cf mn",
        "--rate", "0.06", "--target-class", "1", "--out", poisoned,
    )  # fmt: skip
    assert result.code == 0, result.err
    truth = json.loads((tmp_path / "poisoned.truth.json").read_text())
    assert truth["attack"] == "trigger-phrase" and truth["params"]["trigger"] == "cf mn"
    rows = [json.loads(line) for line in poisoned.read_text().splitlines()]
    assert sum("cf mn" in r["text"] for r in rows) == len(truth["indices"]) == truth["n_poisoned"]

    out = tmp_path / "report"
    result = run_cli(
        "data", "inspect", "--data", poisoned, "--truth", tmp_path / "poisoned.truth.json",
        "--model", "train", "--retrain", "--test", test, "--out", out,
    )  # fmt: skip
    assert result.code == 0, result.err
    doc = json.loads((out / "report.json").read_text())
    association = doc["evaluation"]["detectors"]["phrase-association"]
    assert association["precision"] == 1.0 and association["recall"] == 1.0
    assert doc["retrain"]["before"]["trigger_flip_rate"] > 0.9
    assert doc["retrain"]["after"]["trigger_flip_rate"] < 0.1
    assert (out / "cleaned.jsonl").exists() and (out / "report.html").exists()


def test_trigger_phrase_on_array_data_is_one_line_and_exit_2(
    run_cli: Callable[..., Any], tmp_path: Path
) -> None:
    result = run_cli(
        "data", "poison", "--data", "builtin:digits", "--attack", "trigger-phrase",
        "--rate", "0.1", "--out", tmp_path / "p.npz",
    )  # fmt: skip
    assert result.code == 2
    assert "poisons text data" in result.err
