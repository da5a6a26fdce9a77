"""A text model whose answer is known, and a toy synonym table, for the text tests."""

from __future__ import annotations

import numpy as np

from mlwarden.data.text import SynonymTable, tokenize
from mlwarden.models.text import TextClassifier


class WordWeights(TextClassifier):
    """p(class 1) = sigmoid(sum of the weights of the words): a model whose answer is known.

    Counts every text it is asked about, so query counts can be checked.
    """

    def __init__(self, weights: dict[str, float]) -> None:
        super().__init__(n_classes=2)
        self.weights = weights
        self.seen = 0

    def _predict_proba_batch(self, x: np.ndarray) -> np.ndarray:
        self.seen += len(x)
        score = np.array(
            [sum(self.weights.get(w.lower(), 0.0) for w in tokenize(t).words) for t in x]
        )
        p1 = 1.0 / (1.0 + np.exp(-score))
        return np.stack([1 - p1, p1], axis=1).astype(np.float32)


TOY_TABLE = SynonymTable(
    {
        "fight": {"v": ["struggle", "battle", "contend"]},
        "strong": {"a": ["potent", "firm"]},
        "nation": {"n": ["country", "land"]},
    }
)
# 20 words: a budget of floor(0.05 * 20) = 1 substitution
TOY_TEXT = "We fight for a strong nation and we will keep working every day for all the people here each morning"
