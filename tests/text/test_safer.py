"""SAFER certification over synonym sets: closed-form overlaps, certificates and sampling."""

from __future__ import annotations

import numpy as np
import pytest

from mlwarden.data.text import SynonymTable, TextDataset, tokenize
from mlwarden.defenses.smoothing import SaferSmoothing, safer_certified_accuracy
from mlwarden.errors import ConfigError
from mlwarden.models.text import SklearnTextClassifier

from .toy import WordWeights

# "good", "fine" and "nice" share one set: every overlap is 1
CLOSED = SynonymTable(
    {
        "good": {"a": ["fine", "nice"]},
        "fine": {"a": ["good", "nice"]},
        "nice": {"a": ["fine", "good"]},
    }
)
# "good" may become "fine" (set {fine, good}) or "nice" / "great" (singletons)
OPEN = SynonymTable({"good": {"a": ["fine", "great", "nice"]}, "fine": {"a": ["good"]}})
TEXT = "The food was good and the service was quick"


def test_overlap_is_the_smallest_shared_share_of_the_set() -> None:
    safer = SaferSmoothing(synonyms=OPEN)

    assert safer.perturbation_set("Good") == ["good", "fine", "great", "nice"]
    assert safer.overlap("good") == pytest.approx(1 / 4)  # S_nice ∩ S_good = {nice}
    assert safer.overlap("fine") == pytest.approx(1.0)  # S_fine = {fine, good} ⊂ S_good
    assert SaferSmoothing(synonyms=CLOSED).overlap("nice") == 1.0


def test_constant_model_is_certified_on_every_word_when_sets_coincide() -> None:
    model = WordWeights({"food": 5.0})
    certificate = SaferSmoothing(synonyms=CLOSED, n0=10, n=100).certify(model, [TEXT])

    # all 100 samples vote 1: p_A >= 0.05 ** (1 / 100) = 0.9705 and Δ_R = 0 for every R
    assert certificate.predictions.tolist() == [1]
    assert certificate.p_lower[0] == pytest.approx(0.05 ** (1 / 100), rel=1e-6)
    assert certificate.certified_words.tolist() == [len(tokenize(TEXT))]


def test_a_low_overlap_word_limits_the_certificate() -> None:
    model = WordWeights({"food": 5.0})
    certificate = SaferSmoothing(synonyms=OPEN, n0=10, n=100).certify(model, [TEXT])

    # one word changed: Δ_1 = 1 - 1/4 = 0.75 and p_A - 0.75 < 1/2, so no word is certified
    assert certificate.predictions.tolist() == [1]
    assert certificate.certified_words.tolist() == [0]


def test_smoothed_prediction_follows_the_vote_under_substitution() -> None:
    # class 1 only while "good" survives: it does in 1 of 3 draws from {good, fine, nice}
    model = WordWeights({"good": 5.0})
    safer = SaferSmoothing(synonyms=CLOSED, n0=30, n=600, seed=1)
    certificate = safer.certify(model, [TEXT])

    assert certificate.predictions.tolist() == [0]
    assert 0.55 < certificate.p_lower[0] < 2 / 3


def test_samples_change_only_words_inside_their_sets() -> None:
    safer = SaferSmoothing(synonyms=CLOSED)
    before = tokenize("Good food, and the fine wine!")
    for sample in safer.sample(before.join(), 30, np.random.default_rng(0)):
        after = tokenize(sample)
        assert after.gaps == before.gaps
        for old, new in zip(before.words, after.words, strict=True):
            assert new.lower() in safer.perturbation_set(old)
            assert new[0].isupper() == old[0].isupper()


def test_certified_accuracy_counts_floor_of_the_share_of_words(
    tfidf_model: SklearnTextClassifier, speech_sample: TextDataset
) -> None:
    texts, labels = speech_sample.x[:4], speech_sample.y[:4]
    certificate = SaferSmoothing(n0=10, n=60).certify(tfidf_model, texts)
    table = safer_certified_accuracy(certificate, labels, (0.0, 0.01, 0.05))

    assert table[0.0] == pytest.approx(float((certificate.predictions == labels).mean()))
    assert table[0.0] >= table[0.01] >= table[0.05]
    needed = np.floor(0.05 * certificate.n_words + 1e-9)
    expected = (certificate.predictions == labels) & (certificate.certified_words >= needed)
    assert table[0.05] == pytest.approx(float(expected.mean()))


@pytest.mark.parametrize(
    ("params", "message"), [({"n": 0}, "n must be"), ({"alpha": 0.7}, "alpha must lie")]
)
def test_bad_settings_are_named(params: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SaferSmoothing(**params).certify(WordWeights({}), [TEXT])  # type: ignore[arg-type]
