"""Shared, session-scoped poisoning scenario: digits with a 2×2 BadNets patch at 5% poison.

Training happens once per session (six small CNNs: clean, poisoned, two exclusionary
reclassifications, the retrained one; ~25 s on one thread) and every proof test reads from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from mlwarden.attacks.poisoning import BackdoorMetrics, BadNets, PoisonResult, evaluate_backdoor
from mlwarden.data import DatasetSplits, load_builtin
from mlwarden.defenses.poisoning import (
    ActivationClustering,
    Inspection,
    SampleFlags,
    hidden_activations,
    inspect_training_data,
    train_classifier,
)
from mlwarden.models.torch import TorchClassifier


@contextmanager
def one_thread() -> Iterator[None]:
    """Train on one thread: two threads on two shared, busy cores make small models crawl."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class BackdoorScenario:
    """Everything the proof tests check, computed once."""

    splits: DatasetSplits
    attack: BadNets
    poison: PoisonResult
    clean_model: TorchClassifier
    poisoned_model: TorchClassifier
    inspection: Inspection
    retrained_model: TorchClassifier
    clean_metrics: BackdoorMetrics
    poisoned_metrics: BackdoorMetrics
    retrained_metrics: BackdoorMetrics
    clean_data_flags: SampleFlags


@pytest.fixture(scope="session")
def backdoor() -> BackdoorScenario:
    splits = load_builtin("digits")
    attack = BadNets(rate=0.05, target_class=0, patch_size=2, seed=0)
    poison = attack.poison(splits.train)
    with one_thread():
        clean_model = train_classifier(splits.train, seed=0)
        poisoned_model = train_classifier(poison.dataset, seed=0)
        inspection = inspect_training_data(
            poison.dataset,
            classifier=poisoned_model,
            clean=splits.test.subset(np.arange(0, 540, 2)),
            truth=poison.mask,
            retrain=lambda data: train_classifier(data, seed=0),
        )
        flagged = inspection.by_name("activation-clustering")
        assert flagged is not None
        retrained = train_classifier(
            poison.dataset.subset(np.flatnonzero(~flagged.flagged)), seed=0
        )
        clean_data_flags = ActivationClustering(seed=0).detect(
            hidden_activations(clean_model, splits.train.x),
            splits.train.y,
            reclassify=lambda keep: train_classifier(
                splits.train.subset(np.flatnonzero(keep)), seed=0
            ).predict(splits.train.x),
        )
        return BackdoorScenario(
            splits=splits,
            attack=attack,
            poison=poison,
            clean_model=clean_model,
            poisoned_model=poisoned_model,
            inspection=inspection,
            retrained_model=retrained,
            clean_metrics=evaluate_backdoor(clean_model, splits.test, attack),
            poisoned_metrics=evaluate_backdoor(poisoned_model, splits.test, attack),
            retrained_metrics=evaluate_backdoor(retrained, splits.test, attack),
            clean_data_flags=clean_data_flags,
        )
