"""ONION: remove the outlier words of an input before classifying it (Qi, Chen, Zhang, Liu,
Wang and Sun, EMNLP 2021, "ONION: A Simple and Effective Defense Against Textual Backdoor
Attacks").

A trigger phrase is made of words that do not fit their sentence. ONION scores each word by
how much the language model's perplexity of the text drops when the word is deleted,
``f_i = log p0 − log p_i`` with ``p0`` the perplexity of the text and ``p_i`` that of the text
without word ``i``, and deletes the words scoring above a threshold before the text reaches
the classifier. The paper uses GPT-2; here the language model is the small character GRU of
:mod:`mlwarden.models.text_lm`, trained on clean text of the task (no download), and the
threshold is the ``1 − word_fpr`` quantile of the scores of the words of clean held-out texts
(:meth:`ONION.calibrate`), so that a known share of clean words is deleted. A multi-word
trigger hides each of its words behind the others (deleting one leaves the text as odd), so
deletion runs in ``rounds``: each round rescores what the last one left.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlwarden.errors import ConfigError, DataError
from mlwarden.models.text_lm import CharLanguageModel

__all__ = ["ONION"]


class ONION:
    """Delete the words whose removal lowers the language model's perplexity the most.

    Parameters
    ----------
    language_model
        A character language model trained on clean text of the task.
    threshold
        Words with suspicion (log-perplexity drop, nats per character) above it are deleted;
        set by :meth:`calibrate` when not given.
    rounds
        Deletion rounds (each rescores the text the previous round left; stops early when a
        round deletes nothing).
    """

    def __init__(
        self,
        language_model: CharLanguageModel,
        *,
        threshold: float | None = None,
        rounds: int = 4,
    ) -> None:
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ConfigError(f"rounds must be a positive integer, got {rounds!r}")
        self.language_model = language_model
        self.threshold = threshold
        self.rounds = rounds

    def suspicion(self, texts: Sequence[str] | np.ndarray) -> list[np.ndarray]:
        """Per text, each whitespace word's ``log p0 − log p_i`` (nats per character)."""
        variants: list[str] = []
        spans: list[tuple[int, int]] = []
        for text in texts:
            words = str(text).split()
            start = len(variants)
            variants.append(" ".join(words))
            variants.extend(" ".join(words[:i] + words[i + 1 :]) for i in range(len(words)))
            spans.append((start, len(variants)))
        losses = self.language_model.line_losses(variants)
        return [losses[a] - losses[a + 1 : b] for a, b in spans]

    def calibrate(self, clean_texts: Sequence[str] | np.ndarray, word_fpr: float = 0.02) -> ONION:
        """Set :attr:`threshold` so that a share ``word_fpr`` of clean words would be deleted."""
        if not 0 < word_fpr < 1:
            raise ConfigError(f"word_fpr must be in (0, 1), got {word_fpr!r}")
        scores = np.concatenate([s for s in self.suspicion(clean_texts) if len(s)] or [np.zeros(0)])
        if not len(scores):
            raise DataError("ONION.calibrate needs clean texts with words")
        self.threshold = float(np.quantile(scores, 1.0 - word_fpr))
        return self

    def clean(self, texts: Sequence[str] | np.ndarray) -> np.ndarray:
        """The texts with their outlier words deleted (a 1-D object array)."""
        if self.threshold is None:
            raise DataError("ONION needs a threshold: pass one or call calibrate on clean texts")
        out = np.array([" ".join(str(t).split()) for t in texts], dtype=object)
        active = np.arange(len(out))
        for _ in range(self.rounds):
            if not len(active):
                break
            changed = []
            for i, scores in zip(active, self.suspicion(out[active]), strict=True):
                words = str(out[i]).split()
                kept = [w for w, s in zip(words, scores, strict=True) if s <= self.threshold]
                if len(kept) < len(words):
                    out[i] = " ".join(kept)
                    changed.append(i)
            active = np.array(changed, dtype=np.int64)
        return out
