"""Blended backdoor: a full-input pattern mixed in with weight α (Chen, Liu, Li, Lu and Song, 2017)."""

from __future__ import annotations

import numpy as np

from mlwarden.attacks.poisoning.base import TriggerAttack
from mlwarden.data.dataset import Dataset
from mlwarden.errors import AttackError

__all__ = ["Blend"]


class Blend(TriggerAttack):
    """Replace ``x`` by ``(1 − α)·x + α·pattern`` and relabel as ``target_class``.

    Chen, Liu, Li, Lu and Song, "Targeted Backdoor Attacks on Deep Learning Systems Using Data
    Poisoning", 2017 (the blended-injection strategy).

    Parameters
    ----------
    rate, target_class, seed
        See :class:`~mlwarden.attacks.poisoning.base.PoisoningAttack`.
    alpha
        Blend weight of the pattern, in ``(0, 1]``.
    pattern
        ``"noise"``: uniform noise over the data's range, drawn once from ``pattern_seed``; or an
        array with the shape of one input (values inside the data's range).
    pattern_seed
        Seed of the noise pattern (kept apart from ``seed`` so the same trigger can poison
        different samples).
    """

    name = "blend"

    def __init__(
        self,
        *,
        rate: float,
        target_class: int | None = 0,
        seed: int = 0,
        alpha: float = 0.2,
        pattern: str | np.ndarray = "noise",
        pattern_seed: int = 0,
    ) -> None:
        super().__init__(rate=rate, target_class=target_class, seed=seed)
        self.alpha = alpha
        self.pattern = pattern
        self.pattern_seed = pattern_seed

    def trigger_pattern(
        self, input_shape: tuple[int, ...], clip_range: tuple[float, float]
    ) -> np.ndarray:
        """The pattern blended into inputs of shape ``input_shape``.

        Raises
        ------
        AttackError
            ``pattern`` is neither ``"noise"`` nor an array of shape ``input_shape`` in range.
        """
        low, high = clip_range
        if isinstance(self.pattern, str):
            if self.pattern != "noise":
                raise AttackError(
                    f"pattern must be 'noise' or an array of one input's shape, got {self.pattern!r}"
                )
            rng = np.random.default_rng(self.pattern_seed)
            return rng.uniform(low, high, size=input_shape).astype(np.float32)
        pattern = np.asarray(self.pattern, dtype=np.float32)
        if pattern.shape != tuple(input_shape):
            raise AttackError(
                f"pattern has shape {pattern.shape} but inputs have shape {tuple(input_shape)}"
            )
        if not np.all(np.isfinite(pattern)) or pattern.min() < low or pattern.max() > high:
            raise AttackError(f"pattern values must be finite and inside [{low}, {high}]")
        return pattern

    def _validate(self, dataset: Dataset) -> None:
        super()._validate(dataset)
        if (
            isinstance(self.alpha, bool)
            or not isinstance(self.alpha, (int, float))
            or not 0 < self.alpha <= 1
        ):
            raise AttackError(f"alpha must be a number in (0, 1], got {self.alpha!r}")
        self.trigger_pattern(dataset.input_shape, dataset.clip_range)

    def apply_trigger(self, x: np.ndarray, clip_range: tuple[float, float]) -> np.ndarray:
        """``(1 − α)·x + α·pattern``, clipped to ``clip_range``."""
        x = np.asarray(x, dtype=np.float32)
        pattern = self.trigger_pattern(x.shape[1:], clip_range)
        alpha = np.float32(self.alpha)
        blended = (np.float32(1) - alpha) * x + alpha * pattern[None]
        return np.clip(blended, clip_range[0], clip_range[1]).astype(np.float32)
