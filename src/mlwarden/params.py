"""The scikit-learn ``get_params`` convention, written once.

Constructors take keyword-only hyperparameters and store them under the same names;
:class:`KeywordParams` reads them back, so saving, ``repr`` and records all see the same values.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

__all__ = ["KeywordParams"]


class KeywordParams:
    """Mixin: ``get_params()`` returns the constructor's keyword-only parameters as stored."""

    def get_params(self) -> dict[str, Any]:
        """The constructor's keyword-only parameters, as stored (arrays as lists: JSON values)."""
        names = [
            p.name
            for p in inspect.signature(type(self).__init__).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        values = {n: getattr(self, n) for n in names}
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in values.items()}
