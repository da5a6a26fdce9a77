"""The issue's proof points on digits with a 2×2 BadNets patch at 5% poison.

* the backdoor succeeds on more than 90% of triggered non-target test inputs while clean
  accuracy stays within 2 points of a model trained on clean data;
* activation clustering (with exclusionary reclassification) finds the poisoned samples with
  recall ≥ 0.9 at precision ≥ 0.8;
* retraining without what it flagged brings the attack success below 10%.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from mlwarden.defenses.detectors import STRIP
from mlwarden.defenses.poisoning import precision_recall

BackdoorScenario = Any  # the session fixture's dataclass (tests/defenses/poisoning/conftest.py)


def test_the_backdoor_succeeds_and_keeps_clean_accuracy(backdoor: BackdoorScenario) -> None:
    assert len(backdoor.poison.indices) == round(0.05 * np.sum(backdoor.splits.train.y != 0))
    assert backdoor.poisoned_metrics.attack_success_rate > 0.9
    assert backdoor.clean_metrics.attack_success_rate < 0.1  # the trigger alone does nothing
    gap = backdoor.clean_metrics.clean_accuracy - backdoor.poisoned_metrics.clean_accuracy
    assert abs(gap) <= 0.02


def test_activation_clustering_finds_the_poison(backdoor: BackdoorScenario) -> None:
    flags = backdoor.inspection.by_name("activation-clustering")
    assert flags is not None
    precision, recall = precision_recall(flags.flagged, backdoor.poison.mask)
    assert recall >= 0.9
    assert precision >= 0.8
    assert flags.details["poisoned_classes"] == [0]


def test_spectral_signatures_rank_the_poison_first_in_the_target_class(
    backdoor: BackdoorScenario,
) -> None:
    flags = backdoor.inspection.by_name("spectral-signatures")
    assert flags is not None
    target = np.flatnonzero(backdoor.poison.dataset.y == 0)
    truth = backdoor.poison.mask[target]
    top = np.argsort(-flags.scores[target])[: truth.sum()]
    assert truth[top].mean() >= 0.9


def test_retraining_without_the_flagged_samples_removes_the_backdoor(
    backdoor: BackdoorScenario,
) -> None:
    assert backdoor.retrained_metrics.attack_success_rate < 0.1
    assert backdoor.retrained_metrics.clean_accuracy >= backdoor.clean_metrics.clean_accuracy - 0.02


def test_strip_separates_triggered_from_clean_inputs(backdoor: BackdoorScenario) -> None:
    test = backdoor.splits.test
    detector = STRIP(backdoor.poisoned_model).fit(test.x[::2])
    detector.calibrate(test.x[1::2], fpr=0.05)
    others = test.x[test.y != 0]
    triggered = backdoor.attack.apply_trigger(others, test.clip_range)
    clean_scores, triggered_scores = detector.score(others), detector.score(triggered)
    labels = np.r_[np.zeros(len(clean_scores)), np.ones(len(triggered_scores))]
    assert roc_auc_score(labels, np.r_[clean_scores, triggered_scores]) > 0.95
    assert np.mean(triggered_scores > detector.threshold_) > 0.8


def test_the_inspection_reports_precision_and_recall_per_detector(
    backdoor: BackdoorScenario,
) -> None:
    evaluation = backdoor.inspection.evaluation()
    assert evaluation is not None
    assert evaluation["n_poisoned"] == len(backdoor.poison.indices)
    for name, row in evaluation["detectors"].items():
        detection = backdoor.inspection.by_name(name)
        mask = (
            detection.flagged
            if detection
            else backdoor.inspection.flagged_by(
                ("activation-clustering", "label-errors", "duplicates")
            )
        )
        assert (row["precision"], row["recall"]) == precision_recall(mask, backdoor.poison.mask)
    suspicious = backdoor.inspection.suspicious()
    assert {row["index"] for row in suspicious} >= set(backdoor.poison.indices.tolist())
    assert all(row["reasons"] and row["scores"] for row in suspicious)


def test_activation_clustering_flags_nothing_on_clean_data(backdoor: BackdoorScenario) -> None:
    # a clean-trained model on clean data: any candidate cluster must be cleared by the
    # exclusionary reclassification
    assert not backdoor.clean_data_flags.flagged.any()
    assert backdoor.clean_data_flags.details["poisoned_classes"] == []
