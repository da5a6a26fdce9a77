"""The ROC metrics agree with scikit-learn and with hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from mlwarden.attacks.privacy import MembershipMetrics, roc_auc, roc_curve, tpr_at_fpr
from mlwarden.attacks.privacy.membership import balanced_accuracy
from mlwarden.errors import AttackError


def _random_scores(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.4
    scores = np.round(rng.normal(size=n) + 0.7 * labels, 1)  # rounding makes ties
    return scores, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_curve_matches_sklearn(seed: int) -> None:
    scores, labels = _random_scores(seed)
    fpr, tpr, thresholds = roc_curve(scores, labels)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thresholds[1:], sk_thr[1:])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_matches_sklearn_with_ties(seed: int) -> None:
    scores, labels = _random_scores(seed)
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_tpr_at_fpr_reads_and_interpolates_the_curve() -> None:
    # 4 non-members at scores 0..3, 4 members at 1.5, 2.5, 3.5, 4.5
    scores = np.array([0, 1, 2, 3, 1.5, 2.5, 3.5, 4.5])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=bool)
    fpr, tpr, _ = roc_curve(scores, labels)
    assert tpr_at_fpr(fpr, tpr, 0.0) == 0.5  # 4.5 and 3.5 flagged before any false positive
    assert tpr_at_fpr(fpr, tpr, 0.25) == 0.75  # after the vertical step at fpr=0.25
    assert tpr_at_fpr(fpr, tpr, 0.125) == 0.5  # horizontal segment (0, .5) -> (.25, .5)
    assert tpr_at_fpr(fpr, tpr, 1.0) == 1.0
    # a tie between a member and a non-member at 3.5 makes a diagonal segment (0,.25)->(.25,.5)
    tied = np.array([0, 1, 2, 3.5, 1.5, 2.5, 3.5, 4.5])
    fpr, tpr, _ = roc_curve(tied, labels)
    assert tpr_at_fpr(fpr, tpr, 0.125) == pytest.approx(0.375)


def test_tpr_at_fpr_agrees_with_walking_sklearns_curve() -> None:
    scores, labels = _random_scores(3, n=2000)
    metrics = MembershipMetrics.from_scores(scores, labels)
    sk_fpr, sk_tpr, _ = sk_roc_curve(labels, scores, drop_intermediate=False)
    for target in (0.001, 0.01, 0.05, 0.3):
        # the one segment of the ROC polyline that crosses x = target
        (i,) = [i for i in range(len(sk_fpr) - 1) if sk_fpr[i] <= target < sk_fpr[i + 1]]
        w = (target - sk_fpr[i]) / (sk_fpr[i + 1] - sk_fpr[i])
        expected = sk_tpr[i] + w * (sk_tpr[i + 1] - sk_tpr[i])
        assert tpr_at_fpr(metrics.fpr, metrics.tpr, target) == pytest.approx(expected)


def test_balanced_accuracy_is_the_best_threshold() -> None:
    scores, labels = _random_scores(4)
    fpr, tpr, _ = roc_curve(scores, labels)
    brute = max(
        0.5 * ((scores[labels] >= t).mean() + (scores[~labels] < t).mean())
        for t in np.r_[np.unique(scores), np.inf]
    )
    assert balanced_accuracy(fpr, tpr) == pytest.approx(brute)


def test_low_fpr_below_resolution_is_flagged_as_not_measured() -> None:
    scores, labels = _random_scores(5, n=300)  # ~180 non-members: 1% measurable, 0.1% not
    metrics = MembershipMetrics.from_scores(scores, labels)
    assert metrics.fpr_resolution == pytest.approx(1 / (~labels).sum())
    assert metrics.measured(0.01) and not metrics.measured(0.001)
    doc = metrics.to_dict()
    assert doc["tpr_at_fpr"]["0.001"]["measured"] is False
    assert set(metrics.as_metrics("membership")) >= {"membership_auc", "membership_tpr@0.01"}


def test_perfect_and_useless_scores() -> None:
    labels = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    perfect = MembershipMetrics.from_scores(labels.astype(float), labels)
    assert perfect.auc == 1.0 and perfect.tpr_at_fpr[0.001] == 1.0
    constant = MembershipMetrics.from_scores(np.zeros(100), labels)
    assert constant.auc == 0.5 and constant.balanced_accuracy == 0.5


def test_metrics_refuse_a_single_class() -> None:
    with pytest.raises(AttackError, match="both members and non-members"):
        MembershipMetrics.from_scores(np.zeros(5), np.ones(5, bool))
