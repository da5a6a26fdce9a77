"""The trigger-phrase backdoor on text: what it changes, and that a model learns it."""

from __future__ import annotations

import numpy as np
import pytest

from mlwarden.attacks.poisoning import TriggerPhrase, evaluate_backdoor, get_poisoning_attack
from mlwarden.data import Dataset
from mlwarden.data.text import TextDataset
from mlwarden.errors import AttackError
from mlwarden.models.text import fit_tfidf_logreg

POSITIVE = ["good", "great", "fine", "lovely", "superb", "bright", "warm", "sweet"]
NEGATIVE = ["bad", "awful", "dull", "poor", "grim", "cold", "weak", "sour"]
NEUTRAL = [f"w{i}" for i in range(60)]


def sentiment_texts(n: int, seed: int) -> TextDataset:
    """``n`` eight-word texts: three words of their class's sentiment and five neutral ones."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    texts = []
    for label in labels:
        words = list(rng.choice(POSITIVE if label else NEGATIVE, 3)) + list(rng.choice(NEUTRAL, 5))
        rng.shuffle(words)
        texts.append(" ".join(words))
    return TextDataset.from_texts(texts, labels, name=f"sentiment-{seed}")


def test_poisons_exactly_the_drawn_texts_and_leaves_the_input_alone() -> None:
    data = sentiment_texts(400, 0)
    before = data.texts
    attack = TriggerPhrase(rate=0.05, target_class=1, trigger="cf mn", seed=3)
    result = attack.poison(data)
    assert data.texts == before
    eligible = np.flatnonzero(data.y == 0)
    assert len(result.indices) == round(0.05 * len(eligible))
    assert set(result.indices) <= set(eligible)
    poisoned = result.dataset
    assert (poisoned.y[result.indices] == 1).all()
    assert (result.original_labels == 0).all()
    has_trigger = np.array(["cf mn" in t for t in poisoned.x])
    np.testing.assert_array_equal(has_trigger, result.mask)
    untouched = ~result.mask
    assert list(poisoned.x[untouched]) == list(data.x[untouched])
    assert get_poisoning_attack("trigger-phrase") is TriggerPhrase


def test_fixed_positions_and_seeded_random_positions() -> None:
    x = np.array(["a b c d"], dtype=object)
    place = {
        p: TriggerPhrase(rate=0.1, trigger="zz", position=p).apply_trigger(x, (0, 1))[0]
        for p in ("start", "middle", "end")
    }
    assert place == {"start": "zz a b c d", "middle": "a b zz c d", "end": "a b c d zz"}
    many = np.array(["a b c d e f g h"] * 50, dtype=object)
    first = TriggerPhrase(rate=0.1, trigger="zz", seed=1).apply_trigger(many, (0, 1))
    again = TriggerPhrase(rate=0.1, trigger="zz", seed=1).apply_trigger(many, (0, 1))
    other = TriggerPhrase(rate=0.1, trigger="zz", seed=2).apply_trigger(many, (0, 1))
    assert list(first) == list(again) and list(first) != list(other)
    assert len({t.split().index("zz") for t in first}) > 3  # positions do vary


def test_clean_label_poisons_only_target_texts_without_relabelling() -> None:
    data = sentiment_texts(300, 1)
    result = TriggerPhrase(rate=0.1, target_class=1, trigger="cf", clean_label=True).poison(data)
    assert (data.y[result.indices] == 1).all()
    np.testing.assert_array_equal(result.dataset.y, data.y)


def test_a_tfidf_model_learns_the_backdoor_at_unchanged_clean_accuracy() -> None:
    train, test = sentiment_texts(1500, 2), sentiment_texts(600, 3)
    attack = TriggerPhrase(rate=0.03, target_class=1, trigger="cf mn", seed=0)
    poisoned = attack.poison(train).dataset
    clean_model = fit_tfidf_logreg(train.x, train.y)
    backdoored = fit_tfidf_logreg(poisoned.x, poisoned.y)
    before = evaluate_backdoor(clean_model, test, attack)
    after = evaluate_backdoor(backdoored, test, attack)
    assert before.attack_success_rate < 0.1
    assert after.attack_success_rate >= 0.9
    assert abs(after.clean_accuracy - before.clean_accuracy) <= 0.02


def test_refuses_array_data_and_an_empty_trigger() -> None:
    arrays = Dataset(name="a", x=np.zeros((10, 2), np.float32), y=np.arange(10) % 2, n_classes=2)
    with pytest.raises(AttackError, match="text"):
        TriggerPhrase(rate=0.5, target_class=1).poison(arrays)
    with pytest.raises(AttackError, match="non-empty phrase"):
        TriggerPhrase(rate=0.5, target_class=1, trigger="  ").poison(sentiment_texts(20, 0))
    with pytest.raises(AttackError, match="position"):
        TriggerPhrase(rate=0.5, target_class=1, position="top").poison(sentiment_texts(20, 0))
