"""Synonym adversarial training of text models: augmentation invariants, records, the CLI."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from mlwarden.cli.app import main
from mlwarden.data.text import STOP_WORDS, TextDataset, load_synonyms, tokenize
from mlwarden.defenses.training.text_adversarial import TextAdversarialTrainer, synonym_augment
from mlwarden.errors import ConfigError
from mlwarden.models import load_model
from mlwarden.models.text import SklearnTextClassifier, save_text_model


def test_augmented_copies_swap_only_eligible_words_for_table_synonyms(
    speech_sample: TextDataset,
) -> None:
    texts, labels = speech_sample.texts[:3], speech_sample.y[:3]
    out, out_labels = synonym_augment(texts, labels, copies=2, rate=0.5, seed=0)
    table = load_synonyms()

    assert out[:3] == texts and len(out) == 9
    np.testing.assert_array_equal(out_labels, np.concatenate([labels, np.repeat(labels, 2)]))
    swapped = 0
    for k, copy in enumerate(out[3:]):
        before, after = tokenize(texts[k // 2]), tokenize(copy)
        assert after.gaps == before.gaps
        for old, new in zip(before.words, after.words, strict=True):
            if old != new:
                swapped += 1
                assert table.is_synonym(old, new) and old.lower() not in STOP_WORDS
    assert swapped > 0


def test_augmentation_is_seeded(speech_sample: TextDataset) -> None:
    texts, labels = speech_sample.texts[:2], speech_sample.y[:2]
    first = synonym_augment(texts, labels, copies=2, rate=0.5, seed=4)[0]
    assert first == synonym_augment(texts, labels, copies=2, rate=0.5, seed=4)[0]
    assert first != synonym_augment(texts, labels, copies=2, rate=0.5, seed=5)[0]


def test_trainer_returns_a_new_model_and_records_its_rounds(
    tfidf_model: SklearnTextClassifier, speeches: tuple[TextDataset, TextDataset]
) -> None:
    train, test = speeches
    small = train.subset(np.arange(0, len(train), 4))
    assert isinstance(small, TextDataset)
    trainer = TextAdversarialTrainer(copies=1, rounds=1, attack_samples=10, seed=0)
    hardened = trainer.fit(tfidf_model, small)

    assert hardened is not tfidf_model
    assert trainer.record_["augmented_texts"] == len(small)
    assert trainer.record_["rounds"][0]["attacked"] == 10
    assert hardened.accuracy(test.texts, test.y) > 0.6


def test_bad_trainer_settings_are_named(
    tfidf_model: SklearnTextClassifier, speech_sample: TextDataset
) -> None:
    with pytest.raises(ConfigError, match="rate must lie"):
        TextAdversarialTrainer(rate=1.5).fit(tfidf_model, speech_sample)


def test_cli_hardens_a_text_model(
    tfidf_model: SklearnTextClassifier,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the wiring is under test, not the training: a light trainer keeps the test short
    from mlwarden.defenses.training import text_adversarial

    light = functools.partial(TextAdversarialTrainer, copies=1, attack_samples=10)
    monkeypatch.setattr(text_adversarial, "TextAdversarialTrainer", light)
    model = save_text_model(tfidf_model, tmp_path / "speeches.skops")
    out = tmp_path / "hardened.skops"
    code = main(
        [
            "harden",
            "adversarial",
            "--model",
            str(model),
            "--data",
            "builtin:convention-speeches",
            "--eps",
            "0.05",
            "--out",
            str(out),
            "--eval-samples",
            "6",
        ]
    )
    printed = capsys.readouterr().out

    assert code == 0
    assert "attack success rate@0.05" in printed
    meta = json.loads(Path(str(out) + ".mlwarden.json").read_text())
    assert meta["modality"] == "text"
    assert set(meta["training"]["after"]) == {"clean_accuracy", "attack_success_rate@0.05"}
    assert load_model(out).predict_proba(["We will win."]).shape == (1, 2)
