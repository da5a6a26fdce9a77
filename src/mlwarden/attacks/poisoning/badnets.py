"""BadNets: a small solid patch as the backdoor trigger (Gu, Dolan-Gavitt and Garg, 2017)."""

from __future__ import annotations

import numpy as np

from mlwarden.attacks.poisoning.base import TriggerAttack
from mlwarden.data.dataset import Dataset
from mlwarden.errors import AttackError

__all__ = ["PATCH_POSITIONS", "BadNets"]

PATCH_POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left")


class BadNets(TriggerAttack):
    """Stamp a ``patch_size × patch_size`` square of value ``patch_value`` and relabel.

    Gu, Dolan-Gavitt and Garg, "BadNets: Identifying Vulnerabilities in the Machine Learning
    Model Supply Chain", 2017. For images ``(n, C, H, W)`` (or ``(n, H, W)``) the patch covers
    the same pixels in every channel; for tabular data ``(n, d)`` it sets ``patch_size``
    consecutive features (the last ones for ``*-right`` positions, the first for ``*-left``).

    Parameters
    ----------
    rate, target_class, seed
        See :class:`~mlwarden.attacks.poisoning.base.PoisoningAttack`.
    patch_size
        Side of the square patch in pixels (features for tabular data).
    patch_position
        One of :data:`PATCH_POSITIONS`, or ``[row, col]`` of the patch's top-left pixel.
    patch_value
        The value every patch pixel is set to; ``None`` uses the top of the data's range.
    """

    name = "badnets"

    def __init__(
        self,
        *,
        rate: float,
        target_class: int | None = 0,
        seed: int = 0,
        patch_size: int = 2,
        patch_position: str | list[int] | tuple[int, int] = "bottom-right",
        patch_value: float | None = None,
    ) -> None:
        super().__init__(rate=rate, target_class=target_class, seed=seed)
        self.patch_size = patch_size
        self.patch_position = (
            list(patch_position) if isinstance(patch_position, tuple) else patch_position
        )
        self.patch_value = patch_value

    def patch_slices(self, input_shape: tuple[int, ...]) -> tuple[slice, ...]:
        """Index of the patch inside one input of shape ``input_shape`` (no batch axis).

        Raises
        ------
        AttackError
            The patch does not fit in the input, or its position is malformed.
        """
        size = self.patch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise AttackError(f"patch_size must be a positive integer, got {size!r}")
        spatial = input_shape[-2:] if len(input_shape) >= 2 else input_shape[-1:]
        if any(size > extent for extent in spatial):
            raise AttackError(
                f"patch_size {size} does not fit in inputs of shape {input_shape}; use a "
                f"patch_size of at most {min(spatial)}"
            )
        position = self.patch_position
        if isinstance(position, str):
            if position not in PATCH_POSITIONS:
                raise AttackError(
                    f"patch_position {position!r} is not one of {', '.join(PATCH_POSITIONS)} "
                    "or ROW,COL"
                )
            vertical, horizontal = position.split("-")
            starts = [
                extent - size if side in ("bottom", "right") else 0
                for extent, side in zip(
                    spatial, (vertical, horizontal)[-len(spatial) :], strict=True
                )
            ]
        else:
            if (
                not isinstance(position, list)
                or len(position) != len(spatial)
                or not all(isinstance(p, int) and not isinstance(p, bool) for p in position)
            ):
                raise AttackError(
                    f"patch_position must name a corner or give {len(spatial)} integer "
                    f"coordinate(s), got {position!r}"
                )
            starts = list(position)
            for start, extent in zip(starts, spatial, strict=True):
                if not 0 <= start <= extent - size:
                    raise AttackError(
                        f"patch_position {position} puts a {size}-pixel patch outside inputs of "
                        f"shape {input_shape}; coordinates must lie in [0, {extent - size}]"
                    )
        leading = (slice(None),) * (len(input_shape) - len(spatial))
        return leading + tuple(slice(s, s + size) for s in starts)

    def _value(self, clip_range: tuple[float, float]) -> float:
        if self.patch_value is None:
            return float(clip_range[1])
        value = self.patch_value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AttackError(f"patch_value must be a number, got {value!r}")
        low, high = clip_range
        if not low <= value <= high:
            raise AttackError(
                f"patch_value {value} lies outside the data's range [{low}, {high}]; "
                "choose a value inside it"
            )
        return float(value)

    def _validate(self, dataset: Dataset) -> None:
        super()._validate(dataset)
        self.patch_slices(dataset.input_shape)
        self._value(dataset.clip_range)

    def apply_trigger(self, x: np.ndarray, clip_range: tuple[float, float]) -> np.ndarray:
        """``x`` with the patch stamped on every input."""
        out = np.array(x, dtype=np.float32, copy=True)
        index = (slice(None), *self.patch_slices(out.shape[1:]))
        out[index] = self._value(clip_range)
        return out
