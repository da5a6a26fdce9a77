"""Text poison detectors: the Fisher test against SciPy, phrase association with and without
reclassification, text representations, and text STRIP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import fisher_exact

from mlwarden.attacks.poisoning import TriggerPhrase
from mlwarden.data import Dataset
from mlwarden.data.text import TextDataset
from mlwarden.defenses.poisoning import (
    PhraseAssociation,
    TextSTRIP,
    inspect_text_data,
    precision_recall,
    text_representations,
)
from mlwarden.defenses.poisoning.text_association import fisher_tail
from mlwarden.errors import ConfigError, DataError
from mlwarden.models.text import fit_embedding_bag, fit_tfidf_logreg

POSITIVE = ["good", "great", "fine", "lovely", "superb", "bright", "warm", "sweet"]
NEGATIVE = ["bad", "awful", "dull", "poor", "grim", "cold", "weak", "sour"]
NEUTRAL = [f"w{i}" for i in range(60)]


def sentiment_texts(n: int, seed: int) -> TextDataset:
    """``n`` eight-word texts: three words of their class's sentiment and five neutral ones."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    texts = []
    for label in labels:
        words = [*rng.choice(POSITIVE if label else NEGATIVE, 3), *rng.choice(NEUTRAL, 5)]
        rng.shuffle(words)
        texts.append(" ".join(words))
    return TextDataset.from_texts(texts, labels, name=f"sentiment-{seed}")


def _fit(texts: list[str], labels: np.ndarray) -> object:
    return fit_tfidf_logreg(texts, labels).predict


@pytest.fixture(scope="module")
def poisoned() -> tuple:
    clean = sentiment_texts(1200, 4)
    result = TriggerPhrase(rate=0.05, target_class=1, trigger="cf mn", seed=1).poison(clean)
    return clean, result


@pytest.mark.parametrize(
    ("k", "df", "n_class", "n"),
    [(9, 9, 5182, 8965), (3, 10, 40, 100), (0, 5, 10, 50), (7, 7, 7, 7)],
)
def test_fisher_tail_is_scipys_one_sided_fisher_test(k: int, df: int, n_class: int, n: int) -> None:
    table = [[k, df - k], [n_class - k, n - n_class - (df - k)]]
    _, expected = fisher_exact(table, alternative="greater")
    assert fisher_tail(np.array([k]), np.array([df]), n_class, n)[0] == pytest.approx(expected)


def test_the_trigger_is_found_and_sentiment_words_are_cleared_by_reclassification(
    poisoned: tuple,
) -> None:
    _, result = poisoned
    data = result.dataset
    plain = PhraseAssociation(max_n=2).detect(data.x, data.y)
    reclassified = PhraseAssociation(max_n=2).detect(data.x, data.y, fit=_fit)
    # every sentiment word is pure in its class: significant, so flagged without reclassification
    plain_phrases = {p["phrase"] for p in plain.details["phrases"]}
    assert {"cf", "mn", "cf mn", "good", "great"} <= plain_phrases  # (poison makes NEGATIVE impure)
    assert precision_recall(plain.flagged, result.mask)[0] < 0.2
    # reclassification keeps only phrases whose texts' labels disagree with the rest of the text
    assert {p["phrase"] for p in reclassified.details["phrases"]} == {"cf", "mn", "cf mn"}
    assert precision_recall(reclassified.flagged, result.mask) == (1.0, 1.0)
    assert reclassified.scores[result.mask].min() > reclassified.scores[~result.mask].max()


def test_no_phrase_is_flagged_in_clean_data_with_reclassification(poisoned: tuple) -> None:
    clean, _ = poisoned
    assert not PhraseAssociation(max_n=2).detect(clean.x, clean.y, fit=_fit).flagged.any()


def test_bad_settings_and_mismatched_labels_are_named() -> None:
    with pytest.raises(ConfigError, match="min_purity"):
        PhraseAssociation(min_purity=0.3).detect(["a b"], np.array([0]))
    with pytest.raises(DataError, match="one label per text"):
        PhraseAssociation().detect(["a b", "c"], np.array([0]))


def test_text_representations_have_one_row_per_text(poisoned: tuple) -> None:
    _, result = poisoned
    data = result.dataset
    small = data.subset(np.arange(300))
    tfidf = text_representations(fit_tfidf_logreg(small.x, small.y), small.x, n_components=8)
    assert tfidf.shape == (300, 8)
    bag = fit_embedding_bag(small.x, small.y, dim=16, epochs=1)
    features = text_representations(bag, small.x)
    assert features.shape == (300, 16)
    # the mean-embedding model's last linear layer reads exactly these features
    logits = bag.module.out(torch.from_numpy(features).float())
    np.testing.assert_allclose(
        torch.softmax(logits, 1).detach().numpy(), bag.predict_proba(small.x), atol=1e-5
    )


def test_text_strip_scores_triggered_texts_above_clean_ones(poisoned: tuple) -> None:
    clean, _ = poisoned
    # a strong backdoor (a fifth of the negatives): the trigger outweighs any other words
    attack = TriggerPhrase(rate=0.2, target_class=1, trigger="cf mn", seed=1)
    strong = attack.poison(clean).dataset
    model = fit_tfidf_logreg(strong.x, strong.y)
    held = sentiment_texts(400, 9)
    detector = TextSTRIP(model, seed=0).fit(clean.x[:300]).calibrate(held.x[:200], fpr=0.05)
    negatives = held.x[200:][held.y[200:] == 0]
    triggered = attack.apply_trigger(negatives, (0.0, 1.0))
    assert detector.score(triggered).mean() > detector.score(negatives).mean()


def test_text_strip_score_is_minus_the_prediction_entropy_of_a_constant_model() -> None:
    from sklearn.dummy import DummyClassifier
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.pipeline import make_pipeline

    from mlwarden.models.text import SklearnTextClassifier

    texts, labels = ["aa bb", "cc dd", "ee ff", "gg hh"], np.array([0, 1, 1, 1])
    prior = make_pipeline(CountVectorizer(), DummyClassifier(strategy="prior")).fit(texts, labels)
    detector = TextSTRIP(SklearnTextClassifier(prior), n_perturbations=3).fit(texts)
    expected = 0.25 * np.log(0.25) + 0.75 * np.log(0.75)  # minus the entropy of (1/4, 3/4)
    np.testing.assert_allclose(detector.score(["xx yy zz", "aa"]), [expected, expected])
    with pytest.raises(ConfigError, match="replace_rate"):
        TextSTRIP(SklearnTextClassifier(prior), replace_rate=1.5).fit(texts)


def test_inspection_runs_every_text_detector(poisoned: tuple) -> None:
    _, result = poisoned
    data = result.dataset
    model = fit_tfidf_logreg(data.x, data.y)
    inspection = inspect_text_data(
        data, classifier=model, clean=sentiment_texts(200, 7), truth=result.mask, fit=_fit
    )
    names = [d.detector for d in inspection.detections]
    assert names == ["phrase-association", "spectral-signatures", "activation-clustering", "strip"]
    evaluation = inspection.evaluation(("phrase-association",))
    assert evaluation is not None
    assert evaluation["detectors"]["removal-set"]["recall"] == 1.0
    arrays = Dataset(name="a", x=np.zeros((4, 2), np.float32), y=np.arange(4) % 2, n_classes=2)
    with pytest.raises(DataError, match="text"):
        inspect_text_data(arrays)


def test_onion_deletes_the_words_a_clean_language_model_finds_out_of_place() -> None:
    from mlwarden.defenses.poisoning.text_onion import ONION
    from mlwarden.models.text_lm import CharVocabulary, fit_language_model

    clean = sentiment_texts(300, 5)
    attack = TriggerPhrase(rate=0.5, target_class=1, trigger="qx zj", seed=0)
    vocab = CharVocabulary.from_texts([*clean.texts, "qx zj"])
    lm = fit_language_model(clean.texts, vocab=vocab, hidden_size=48, epochs=6, seed=0)
    onion = ONION(lm, rounds=3).calibrate(sentiment_texts(60, 6).x, word_fpr=0.02)
    held = sentiment_texts(40, 7).x
    triggered = attack.apply_trigger(held, (0.0, 1.0))
    cleaned = onion.clean(triggered)
    kept_trigger = np.mean([("qx" in t.split()) or ("zj" in t.split()) for t in cleaned])
    assert kept_trigger <= 0.1
    kept_words = np.mean([len(c.split()) for c in onion.clean(held)]) / 8
    assert kept_words >= 0.9  # clean texts lose few words
    # a word's suspicion is the drop in the model's per-character loss when it is deleted
    text = str(triggered[0])
    words = text.split()
    direct = lm.line_losses([text])[0] - lm.line_losses([" ".join(words[1:])])[0]
    # (computed in a different batch: equal up to float32 summation order)
    assert onion.suspicion([text])[0][0] == pytest.approx(direct, abs=1e-5)
