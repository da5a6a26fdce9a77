"""Output policies: how much of a model's output a caller sees.

Rounding, top-k and label-only outputs are the classic countermeasures to model extraction through
prediction APIs (Tramèr et al., 2016, "Stealing Machine Learning Models via Prediction APIs"): they
remove the fine-grained confidence information equation-solving and distillation attacks use.

This is the one implementation: the gateway (:mod:`mlwarden.serve`) answers requests with
:meth:`OutputPolicy.apply`, and the extraction attack's local victim
(:class:`mlwarden.attacks.extraction.LocalVictim`) simulates a gateway with the very same call, so
an assessment measures the policy a deployment actually serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mlwarden.errors import ConfigError

__all__ = ["OUTPUT_MODES", "OutputPolicy"]

#: Output modes from least to most restrictive.
OUTPUT_MODES: tuple[str, ...] = ("probabilities", "top_k", "label")


@dataclass(frozen=True)
class OutputPolicy:
    """What a caller sees of the model's output.

    Parameters
    ----------
    mode
        ``probabilities`` (every class), ``top_k`` (the ``top_k`` most likely classes with their
        probabilities) or ``label`` (the predicted class only).
    decimals
        Decimal places the probabilities are rounded to (default 2); ``None`` keeps them at full
        precision. Coarse outputs make extraction slower (Tramèr et al., 2016).
    top_k
        How many classes ``top_k`` returns.

    Raises
    ------
    ConfigError
        ``mode`` is not one of :data:`OUTPUT_MODES`, ``decimals`` is not ``None`` or a
        non-negative integer, or ``top_k`` is not a positive integer.
    """

    mode: str = "probabilities"
    decimals: int | None = 2
    top_k: int = 1

    def __post_init__(self) -> None:
        if self.mode not in OUTPUT_MODES:
            raise ConfigError(f"output.mode {self.mode!r} is not one of {', '.join(OUTPUT_MODES)}")
        if self.decimals is not None and (
            isinstance(self.decimals, bool)
            or not isinstance(self.decimals, int)
            or self.decimals < 0
        ):
            raise ConfigError(
                f"output.decimals must be a non-negative integer (or None for full precision), "
                f"got {self.decimals!r}"
            )
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise ConfigError(f"output.top_k must be a positive integer, got {self.top_k!r}")

    def stricter(self, other: OutputPolicy | None) -> OutputPolicy:
        """The most restrictive combination of two policies (mode, decimals, top_k)."""
        if other is None:
            return self
        mode = max(self.mode, other.mode, key=OUTPUT_MODES.index)
        given = [d for d in (self.decimals, other.decimals) if d is not None]
        return OutputPolicy(
            mode=mode,
            decimals=min(given) if given else None,
            top_k=min(self.top_k, other.top_k),
        )

    def describe(self) -> str:
        """A short label such as ``probabilities(decimals=2)``."""
        if self.mode == "label":
            return "label"
        precision = "" if self.decimals is None else f"decimals={self.decimals}"
        if self.mode == "top_k":
            return f"top_k(k={self.top_k}{',' + precision if precision else ''})"
        return f"probabilities({precision})" if precision else "probabilities"

    def apply(self, probabilities: np.ndarray) -> dict[str, Any]:
        """The answer's ``outputs`` object for a batch of probabilities under this policy.

        Parameters
        ----------
        probabilities
            Shape ``(n, n_classes)``: the model's full probabilities.

        Returns
        -------
        dict
            ``{"probabilities": [[...]]}`` rounded to ``decimals``, ``{"top_k": [[{"label": i,
            "probability": p}, ...]]}`` (most likely first, ties broken by the lower label), or
            ``{"labels": [...]}``: plain JSON types.
        """
        probs = np.asarray(probabilities, dtype=np.float64)
        if self.mode == "label":
            return {"labels": [int(i) for i in probs.argmax(axis=1)]}
        shown = probs if self.decimals is None else np.round(probs, self.decimals)
        if self.mode == "top_k":
            k = min(self.top_k, probs.shape[1])
            order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
            return {
                "top_k": [
                    [{"label": int(j), "probability": float(shown[i, j])} for j in row]
                    for i, row in enumerate(order)
                ]
            }
        return {"probabilities": shown.tolist()}
