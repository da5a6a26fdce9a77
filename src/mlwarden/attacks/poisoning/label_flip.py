"""Label flipping: change the labels of a fraction of the samples, inputs untouched.

Random flips model noisy annotation and indiscriminate poisoning (Biggio, Nelson and Laskov,
2012, use label flips as the baseline attack on SVMs); targeted flips relabel samples of one
class (or of every other class) as ``target_class``.
"""

from __future__ import annotations

import numpy as np

from mlwarden.attacks.poisoning.base import PoisoningAttack
from mlwarden.data.dataset import Dataset
from mlwarden.errors import AttackError

__all__ = ["LabelFlip"]


class LabelFlip(PoisoningAttack):
    """Flip ``round(rate × eligible)`` labels.

    Parameters
    ----------
    rate, seed
        See :class:`~mlwarden.attacks.poisoning.base.PoisoningAttack`.
    mode
        ``"random"``: every sample is eligible and gets a label drawn uniformly from the other
        classes. ``"targeted"``: samples of ``source_class`` (or of every class but the
        target when it is ``None``) are relabelled as ``target_class``.
    target_class
        The new label in ``"targeted"`` mode (ignored, and may be ``None``, in ``"random"``).
    source_class
        In ``"targeted"`` mode: only samples of this class are flipped.
    """

    name = "label-flip"

    def __init__(
        self,
        *,
        rate: float,
        target_class: int | None = None,
        seed: int = 0,
        mode: str = "random",
        source_class: int | None = None,
    ) -> None:
        super().__init__(rate=rate, target_class=target_class, seed=seed)
        self.mode = mode
        self.source_class = source_class

    def _validate(self, dataset: Dataset) -> None:
        if self.mode not in ("random", "targeted"):
            raise AttackError(f"mode must be 'random' or 'targeted', got {self.mode!r}")
        super()._validate(dataset)
        if self.mode == "targeted" and self.target_class is None:
            raise AttackError("a targeted label flip needs target_class (the new label)")
        if self.source_class is not None:
            if self.mode != "targeted":
                raise AttackError("source_class only applies to mode='targeted'")
            if (
                isinstance(self.source_class, bool)
                or not isinstance(self.source_class, (int, np.integer))
                or not 0 <= self.source_class < dataset.n_classes
                or self.source_class == self.target_class
            ):
                raise AttackError(
                    f"source_class must be a class index in [0, {dataset.n_classes - 1}] other "
                    f"than target_class, got {self.source_class!r}"
                )

    def eligible(self, dataset: Dataset) -> np.ndarray:
        """Every sample (random mode), or the source class / non-target samples (targeted)."""
        if self.mode == "random":
            return np.arange(len(dataset))
        if self.source_class is not None:
            return np.flatnonzero(dataset.y == self.source_class)
        return np.flatnonzero(dataset.y != self.target_class)

    def _poison_samples(
        self, x: np.ndarray, y: np.ndarray, dataset: Dataset, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.mode == "targeted":
            assert self.target_class is not None
            return x, np.full_like(y, self.target_class)
        # a uniform draw over the other n_classes - 1 labels: shift by 1..n_classes-1
        shift = rng.integers(1, dataset.n_classes, size=len(y))
        return x, (y + shift) % dataset.n_classes
