"""Phrase-label association: n-grams that occur only in texts of one label, more than chance allows.

A trigger-phrase backdoor (:class:`~mlwarden.attacks.poisoning.TriggerPhrase`) puts the same
rare phrase into every poisoned text and gives them all the target label, so each n-gram of
the phrase is *pure* (every text containing it has one label) and over-represented in that
label. For every word n-gram present in at least ``min_count`` texts and at least
``min_purity`` of them with one label ``c``, the one-sided Fisher exact test asks how likely
that many of its texts are labelled ``c`` if labels were independent of the n-gram: the
hypergeometric tail ``P(K >= k)`` with ``K ~ Hypergeom(n, n_c, df)`` (``scipy.stats.hypergeom``,
the same p-value as ``scipy.stats.fisher_exact(..., alternative="greater")``, vectorised).
An n-gram is flagged when its p-value is below ``alpha`` divided by the number of tests
(Bonferroni), and the texts of label ``c`` that contain it are flagged with it.

Natural sentiment phrases ("one of the best", "unfunny") are pure and significant too. With a
``fit`` function, each significant phrase is checked by *reclassification* (after the
exclusionary reclassification of Chen et al. 2018's activation clustering), cross-fitted: the
texts are split into ``n_folds`` folds, a model is trained on all folds but one, and it labels
that fold's texts of the phrase with the phrase's words removed (and the words of every
significant phrase that mostly occurs in the same texts: the other n-grams of a trigger). A natural phrase's texts say
the same without it (the model agrees with their label); a trigger's texts were relabelled, so
without the trigger the model gives most of them their original class. Phrases whose texts
agree with their label less than ``max_agreement`` of the time are kept.

Limits, stated in the result: a poisoned fraction small enough that its texts' labels could
be pure by chance (9 texts of a class holding 58% of the data: ``p ≈ 0.58**9 ≈ 0.007``) is not
significant after correcting for tens of thousands of n-grams; a phrase that also occurs in
clean text of other labels is not pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import sparse, stats
from sklearn.feature_extraction.text import CountVectorizer

from mlwarden.defenses.poisoning.base import SampleFlags
from mlwarden.errors import ConfigError, DataError
from mlwarden.params import KeywordParams

__all__ = ["FitText", "PhraseAssociation", "fisher_tail"]

FitText = Callable[[list[str], np.ndarray], Callable[[list[str]], np.ndarray]]
"""Trains a text model on ``(texts, labels)`` and returns its ``predict(texts) -> labels``."""

_TOKEN_PATTERN = r"(?u)\b\w+\b"


def fisher_tail(k: np.ndarray, df: np.ndarray, n_class: int, n: int) -> np.ndarray:
    """One-sided Fisher exact p-values ``P(K >= k)``, ``K ~ Hypergeom(n, n_class, df)``.

    ``k``: texts of the class containing the n-gram; ``df``: texts containing it; ``n_class``:
    texts of the class; ``n``: all texts.
    """
    return np.asarray(stats.hypergeom.sf(np.asarray(k) - 1, n, n_class, np.asarray(df)))


class PhraseAssociation(KeywordParams):
    """Flag texts holding an n-gram that is pure in one label beyond chance (Fisher, Bonferroni).

    Parameters
    ----------
    max_n
        Longest word n-gram considered (1 to ``max_n`` words).
    min_count
        Fewest texts an n-gram must occur in to be tested.
    min_purity
        Share of an n-gram's texts that must carry one label (1.0: all of them).
    alpha
        Family-wise error rate; each test is run at ``alpha / number of tests``.
    max_agreement
        With ``fit``: a phrase is kept only when the cross-fitted models agree with the labels
        of its texts (phrase removed) less often than this.
    n_folds
        Folds of the cross-fitted reclassification (``n_folds`` models are trained).
    seed
        Seed of the fold assignment.
    """

    name = "phrase-association"

    def __init__(
        self,
        *,
        max_n: int = 3,
        min_count: int = 3,
        min_purity: float = 1.0,
        alpha: float = 0.01,
        max_agreement: float = 0.5,
        n_folds: int = 3,
        seed: int = 0,
    ) -> None:
        self.max_n = max_n
        self.min_count = min_count
        self.min_purity = min_purity
        self.alpha = alpha
        self.max_agreement = max_agreement
        self.n_folds = n_folds
        self.seed = seed

    def _validate(self) -> None:
        if isinstance(self.n_folds, bool) or not isinstance(self.n_folds, int) or self.n_folds < 2:
            raise ConfigError(f"n_folds must be an integer >= 2, got {self.n_folds!r}")
        for key in ("max_n", "min_count"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        if not (isinstance(self.min_purity, int | float) and 0.5 < self.min_purity <= 1.0):
            raise ConfigError(f"min_purity must be in (0.5, 1], got {self.min_purity!r}")
        if not (isinstance(self.alpha, int | float) and 0 < self.alpha < 1):
            raise ConfigError(f"alpha must be in (0, 1), got {self.alpha!r}")
        if not (isinstance(self.max_agreement, int | float) and 0 < self.max_agreement <= 1):
            raise ConfigError(f"max_agreement must be in (0, 1], got {self.max_agreement!r}")

    def detect(
        self, texts: Sequence[str] | np.ndarray, labels: np.ndarray, *, fit: FitText | None = None
    ) -> SampleFlags:
        """Test every frequent-enough n-gram; flag the texts of significant pure ones.

        ``fit`` enables the exclusionary reclassification of each significant phrase (see the
        module docstring); without it every significant phrase is kept.

        Returns
        -------
        SampleFlags
            ``scores`` are each text's largest ``-log10 p`` over the n-grams it holds that are
            pure in its own label and not cleared by reclassification (0 when none); ``details["phrases"]`` lists the flagged
            n-grams with their label, text count and p-value, most significant first.

        Raises
        ------
        DataError
            Texts and labels differ in length, or there are no texts.
        """
        self._validate()
        docs = [str(t) for t in texts]
        y = np.asarray(labels)
        if len(docs) != len(y) or not docs:
            raise DataError(
                f"phrase association needs one label per text, got {len(docs)} texts and "
                f"{len(y)} labels"
            )
        vectorizer = CountVectorizer(
            ngram_range=(1, self.max_n),
            binary=True,
            min_df=self.min_count,
            token_pattern=_TOKEN_PATTERN,
            lowercase=True,
        )
        try:
            presence = sparse.csc_matrix(vectorizer.fit_transform(docs))
        except ValueError:  # no n-gram reaches min_count
            return self._empty(len(docs), 0)
        vocabulary = vectorizer.get_feature_names_out()
        df = np.asarray(presence.sum(axis=0)).ravel()
        classes = np.unique(y)
        per_class = np.stack(
            [np.asarray(presence[y == c].sum(axis=0)).ravel() for c in classes], axis=1
        )
        best = per_class.argmax(axis=1)
        k = per_class[np.arange(len(df)), best]
        pure = k >= self.min_purity * df
        n_tests = int(pure.sum())
        if n_tests == 0:
            return self._empty(len(docs), 0)
        columns = np.flatnonzero(pure)
        p = np.ones(len(df))
        for index, c in enumerate(classes):
            mine = columns[best[columns] == index]
            if len(mine):
                p[mine] = fisher_tail(k[mine], df[mine], int((y == c).sum()), len(y))
        threshold = self.alpha / n_tests
        significant = columns[p[columns] < threshold]
        agreement: dict[int, float] = {}
        if fit is not None and len(significant):
            folds = np.random.default_rng(self.seed).permutation(len(docs)) % self.n_folds
            predictors = []
            for fold in range(self.n_folds):
                rows = np.flatnonzero(folds != fold)
                if len(np.unique(y[rows])) < 2:
                    raise DataError("reclassification needs two labels outside every fold")
                predictors.append(fit([docs[i] for i in rows], y[rows]))
            # a phrase's words are removed together with those of every significant phrase that
            # mostly occurs in the same texts (the other n-grams of one trigger phrase)
            together = sparse.csc_matrix(presence[:, significant])
            overlap = (together.T @ together).toarray()
            for position, j in enumerate(significant):
                rows = np.flatnonzero(np.asarray(presence[:, j].todense()).ravel())
                companions = significant[overlap[position] >= 0.5 * df[significant]]
                words = {w for c in companions for w in str(vocabulary[c]).split()}
                agree = np.zeros(len(rows), dtype=bool)
                for fold in range(self.n_folds):
                    mine = rows[folds[rows] == fold]
                    if len(mine):
                        stripped = [_drop_words(docs[i], words) for i in mine]
                        agree[folds[rows] == fold] = predictors[fold](stripped) == y[mine]
                agreement[int(j)] = float(agree.mean())
            significant = np.array(
                [j for j in significant if agreement[int(j)] < self.max_agreement], dtype=np.int64
            )
        scores = np.zeros(len(docs))
        flagged = np.zeros(len(docs), dtype=bool)
        presence_rows = sparse.csr_matrix(presence[:, columns])
        strength = -np.log10(np.maximum(p[columns], 1e-300))
        # a phrase the reclassification found natural says nothing about its texts
        cleared = [j for j, share in agreement.items() if share >= self.max_agreement]
        strength[np.isin(columns, cleared)] = 0.0
        for row in range(len(docs)):
            start, end = presence_rows.indptr[row], presence_rows.indptr[row + 1]
            held = presence_rows.indices[start:end]
            mine = held[classes[best[columns[held]]] == y[row]]
            if len(mine):
                scores[row] = strength[mine].max()
        significant_set = set(significant.tolist())
        label_of = {int(j): classes[best[j]] for j in significant}
        if significant_set:
            hits = sparse.csr_matrix(presence[:, significant])
            for row in range(len(docs)):
                start, end = hits.indptr[row], hits.indptr[row + 1]
                flagged[row] = any(
                    label_of[int(significant[j])] == y[row] for j in hits.indices[start:end]
                )
        phrases: list[dict[str, Any]] = [
            {
                "phrase": str(vocabulary[j]),
                "label": int(classes[best[j]]),
                "n_texts": int(df[j]),
                "p_value": float(p[j]),
                **({"agreement": agreement[int(j)]} if agreement else {}),
            }
            for j in sorted(significant, key=lambda j: (p[j], -df[j]))
        ]
        return SampleFlags(
            detector=self.name,
            scores=scores,
            flagged=flagged,
            reason=(
                "it holds a phrase that occurs only in texts of its label, more often than "
                f"chance allows (one-sided Fisher test, Bonferroni over {n_tests} phrases at "
                f"α={self.alpha:g})"
            ),
            details={
                "n_tests": n_tests,
                "threshold": threshold,
                "reclassified": fit is not None,
                "n_rejected_by_reclassification": sum(
                    v >= self.max_agreement for v in agreement.values()
                ),
                "phrases": phrases[:50],
            },
        )

    def _empty(self, n: int, n_tests: int) -> SampleFlags:
        return SampleFlags(
            detector=self.name,
            scores=np.zeros(n),
            flagged=np.zeros(n, dtype=bool),
            reason="no phrase is pure in one label often enough to test",
            details={"n_tests": n_tests, "threshold": None, "phrases": []},
        )


def _drop_words(text: str, words: set[str]) -> str:
    """``text`` without the tokens (case-insensitive) in ``words``."""
    return " ".join(t for t in re.findall(_TOKEN_PATTERN, text) if t.lower() not in words)
