"""Output policies: how much of the model's output a caller sees.

Rounding, top-k and label-only outputs are the classic countermeasures to model extraction through
prediction APIs (Tramèr et al., 2016, "Stealing Machine Learning Models via Prediction APIs"): they
remove the fine-grained confidence information equation-solving and distillation attacks use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlwarden.serve.config import OutputPolicy

__all__ = ["apply_policy"]


def apply_policy(probabilities: np.ndarray, policy: OutputPolicy) -> dict[str, Any]:
    """The response ``outputs`` object for a batch of probabilities under ``policy``.

    Returns ``{"probabilities": [[...]]}`` rounded to ``policy.decimals``, ``{"top_k": [[{"label":
    i, "probability": p}, ...]]}`` (most likely first, ties broken by the lower label), or
    ``{"labels": [...]}``.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    if policy.mode == "label":
        return {"labels": [int(i) for i in probs.argmax(axis=1)]}
    rounded = np.round(probs, policy.decimals)
    if policy.mode == "top_k":
        k = min(policy.top_k, probs.shape[1])
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return {
            "top_k": [
                [{"label": int(j), "probability": float(rounded[i, j])} for j in row]
                for i, row in enumerate(order)
            ]
        }
    return {"probabilities": rounded.tolist()}
