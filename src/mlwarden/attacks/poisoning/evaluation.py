"""Backdoor evaluation: clean accuracy, and how often the trigger forces the target class.

The attack success rate follows Gu et al. (2017) and Chen et al. (2017): the fraction of test
inputs whose true class is *not* the target that the model classifies as the target once the
trigger is applied. Inputs already of the target class are left out, since classifying them as
the target is no success of the attack.

A model that often mistakes other classes for the target (a 77%-accurate text classifier calls
a third of the negative reviews positive) has a high success rate without any backdoor, so
:attr:`BackdoorMetrics.trigger_flip_rate` also reports the share of the non-target inputs the
model classifies *correctly* without the trigger that the trigger turns into the target: the
part of the success the trigger itself causes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from mlwarden.attacks.poisoning.base import TriggerAttack
from mlwarden.data.dataset import Dataset
from mlwarden.errors import DataError
from mlwarden.models.base import Classifier

__all__ = ["BackdoorMetrics", "evaluate_backdoor"]


@dataclass(frozen=True)
class BackdoorMetrics:
    """Clean accuracy and attack success rate of one model on one test set."""

    clean_accuracy: float
    attack_success_rate: float
    n_clean: int
    n_triggered: int
    trigger_flip_rate: float | None = None

    def to_dict(self) -> dict[str, float | int]:
        """A JSON-serialisable view."""
        return asdict(self)


def evaluate_backdoor(
    classifier: Classifier, test: Dataset, attack: TriggerAttack
) -> BackdoorMetrics:
    """Measure ``classifier`` on clean ``test`` data and on its triggered non-target inputs.

    Parameters
    ----------
    classifier
        The (possibly backdoored) model.
    test
        Clean held-out data.
    attack
        The backdoor whose trigger is applied (its ``target_class`` is the target).

    Raises
    ------
    DataError
        No test input is of a class other than the target.
    """
    target = attack.target_class
    clean_predictions = classifier.predict(test.x)
    clean_accuracy = float(np.mean(clean_predictions == test.y))
    others = test.y != target
    if not others.any():
        raise DataError(f"the test data has no input outside the target class {target}")
    triggered = attack.apply_trigger(test.x[others], test.clip_range)
    hit = classifier.predict(triggered) == target
    correct = clean_predictions[others] == test.y[others]
    return BackdoorMetrics(
        clean_accuracy=clean_accuracy,
        attack_success_rate=float(np.mean(hit)),
        n_clean=len(test),
        n_triggered=int(others.sum()),
        trigger_flip_rate=float(np.mean(hit[correct])) if correct.any() else None,
    )
