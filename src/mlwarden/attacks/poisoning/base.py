"""The poisoning contract: take a clean dataset, return a poisoned copy and the ground truth.

A :class:`PoisoningAttack` is constructed with its keyword-only parameters (stored only) and
``poison(dataset)`` validates them, draws ``round(rate × eligible)`` samples with a seeded
generator, changes exactly those samples, and returns a :class:`PoisonResult`: the poisoned copy
(the input dataset is never modified) plus the sorted indices that were changed, so that
detectors can be scored against what really happened.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, final

import numpy as np

from mlwarden.data.dataset import Dataset
from mlwarden.errors import AttackError
from mlwarden.params import KeywordParams
from mlwarden.registry import Registry

__all__ = ["POISONING_ATTACKS", "PoisonResult", "PoisoningAttack", "TriggerAttack"]


@dataclass(frozen=True)
class PoisonResult:
    """A poisoned copy of a dataset and the ground truth of what was changed.

    Attributes
    ----------
    dataset
        The poisoned copy (same length and order as the input).
    indices
        Sorted ``int64`` indices of the poisoned samples.
    attack
        The attack's registry name.
    params
        The attack's parameters (JSON values), enough to rebuild it.
    original_labels
        The labels of the poisoned samples before the attack.
    """

    dataset: Dataset
    indices: np.ndarray
    attack: str
    params: dict[str, Any]
    original_labels: np.ndarray = field(repr=False)

    @property
    def mask(self) -> np.ndarray:
        """Boolean mask over the dataset, ``True`` at poisoned samples."""
        mask = np.zeros(len(self.dataset), dtype=bool)
        mask[self.indices] = True
        return mask

    def truth(self) -> dict[str, Any]:
        """The ground-truth record written next to a poisoned dataset (JSON values)."""
        return {
            "format": "mlwarden.poison-truth/2",
            "attack": self.attack,
            "params": self.params,
            "n_samples": len(self.dataset),
            "n_poisoned": len(self.indices),
            "indices": [int(i) for i in self.indices],
            "original_labels": [int(v) for v in self.original_labels],
        }


def _check_number(name: str, value: Any, low: float, high: float, *, closed_low: bool) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if ok:
        ok = (low <= value if closed_low else low < value) and value <= high
    if not ok:
        bracket = "[" if closed_low else "("
        raise AttackError(f"{name} must be a number in {bracket}{low}, {high}], got {value!r}")
    return float(value)


class PoisoningAttack(KeywordParams, ABC):
    """Base class of every training-data poisoning attack.

    Parameters
    ----------
    rate
        Fraction of the *eligible* samples to poison, in ``(0, 1]``; exactly
        ``round(rate × n_eligible)`` samples are changed.
    target_class
        The label poisoned samples are given (backdoors, targeted flips); ``None`` where the
        attack has none.
    seed
        Seed of the sample draw (and of any random pattern).
    """

    name: ClassVar[str]
    modality: ClassVar[str] = "array"
    """The kind of data it poisons: ``"array"`` (images, tables) or ``"text"``."""

    def __init__(self, *, rate: float, target_class: int | None = 0, seed: int = 0) -> None:
        self.rate = rate
        self.target_class = target_class
        self.seed = seed

    def _validate(self, dataset: Dataset) -> None:
        _check_number("rate", self.rate, 0.0, 1.0, closed_low=False)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise AttackError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.target_class is not None and (
            isinstance(self.target_class, bool)
            or not isinstance(self.target_class, (int, np.integer))
            or not 0 <= self.target_class < dataset.n_classes
        ):
            raise AttackError(
                f"target_class must be a class index in [0, {dataset.n_classes - 1}], "
                f"got {self.target_class!r}"
            )

    def eligible(self, dataset: Dataset) -> np.ndarray:
        """Indices the attack may poison (default: samples not already of the target class)."""
        if self.target_class is None:
            return np.arange(len(dataset))
        return np.flatnonzero(dataset.y != self.target_class)

    @final
    def poison(self, dataset: Dataset) -> PoisonResult:
        """A poisoned copy of ``dataset`` and the indices that were poisoned.

        Raises
        ------
        AttackError
            A parameter is invalid, or no sample is eligible.
        """
        self._validate(dataset)
        eligible = self.eligible(dataset)
        count = round(self.rate * len(eligible))
        if count == 0:
            raise AttackError(
                f"{self.name}: rate {self.rate} of {len(eligible)} eligible samples poisons none; "
                "raise --rate or give more data"
            )
        rng = np.random.default_rng(self.seed)
        chosen = np.sort(rng.choice(eligible, size=count, replace=False)).astype(np.int64)
        x, y = dataset.x.copy(), dataset.y.copy()
        x[chosen], y[chosen] = self._poison_samples(x[chosen], y[chosen], dataset, rng)
        poisoned = dataset.with_samples(x, y, name=f"{dataset.name}+{self.name}")
        return PoisonResult(
            dataset=poisoned,
            indices=chosen,
            attack=self.name,
            params=self.get_params(),
            original_labels=dataset.y[chosen].copy(),
        )

    @abstractmethod
    def _poison_samples(
        self, x: np.ndarray, y: np.ndarray, dataset: Dataset, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """New inputs and labels for the chosen samples."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


POISONING_ATTACKS: Registry[type[PoisoningAttack]] = Registry("poisoning attack")
"""Poisoning attacks by registry name (the CLI's ``--attack`` choices)."""


class TriggerAttack(PoisoningAttack):
    """A backdoor: a trigger stamped on inputs, which are relabelled as ``target_class``.

    Subclasses implement :meth:`apply_trigger`, which :func:`evaluate_backdoor` also uses on
    test inputs to measure the attack success rate.
    """

    @abstractmethod
    def apply_trigger(self, x: np.ndarray, clip_range: tuple[float, float]) -> np.ndarray:
        """``x`` with the trigger applied (a new array, clipped to ``clip_range``)."""

    def _validate(self, dataset: Dataset) -> None:
        super()._validate(dataset)
        if self.target_class is None:
            raise AttackError(f"{self.name} needs a target_class (the backdoor's label)")

    def _poison_samples(
        self, x: np.ndarray, y: np.ndarray, dataset: Dataset, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        assert self.target_class is not None
        return self.apply_trigger(x, dataset.clip_range), np.full_like(y, self.target_class)
