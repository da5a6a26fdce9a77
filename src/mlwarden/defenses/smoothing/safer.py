"""SAFER: certified robustness to synonym substitution by randomized smoothing over synonym sets.

After Ye, Gong and Liu, "SAFER: A Structure-free Approach for Certified Robustness to
Adversarial Word Substitutions" (ACL 2020). Every word ``w`` has a perturbation set ``S_w``: the
word and its synonyms in the shipped WordNet table (stop words keep ``S_w = {w}``). The
smoothed classifier ``g`` labels a text with the class the base model gives most often when
every word is replaced, independently and uniformly, by a member of its set.

Certificate (Theorem 1 of the paper): let ``z_j = min_{w' in S_{x_j}} |S_{x_j} ∩ S_{w'}| /
|S_{x_j}|`` be the smallest overlap of word ``j``'s set with the set of any word it may become,
and ``Δ_R = 1 - prod(z_j)`` over the ``R`` smallest ``z_j``; ``Δ_R`` bounds the total-variation
distance between the smoothing distributions at ``x`` and at any ``x'`` with at most ``R`` words
substituted inside their sets. If a lower confidence bound ``p_A`` on the top class's
probability satisfies ``p_A - Δ_R > 1/2``, then ``g(x') = g(x)`` for all such ``x'`` (with
probability ``1 - alpha`` over the sampling). :meth:`SaferSmoothing.certify` reports the largest
such ``R`` per text.

What the certificate assumes: substitutions are drawn from the shipped table (any part of
speech; a superset of what :class:`~mlwarden.attacks.evasion.text_synonym.TextSynonymAttack`
tries), stop words are never replaced, and punctuation and word boundaries are kept. It says
nothing about insertions, deletions, paraphrases or misspellings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlwarden.data.text.dataset import as_text_array
from mlwarden.data.text.lexicon import SynonymTable, load_synonyms, match_case
from mlwarden.data.text.tokens import STOP_WORDS, tokenize
from mlwarden.defenses.smoothing.smoothed import ABSTAIN, clopper_pearson_lower
from mlwarden.errors import ConfigError
from mlwarden.models.base import Classifier

__all__ = ["SaferCertificate", "SaferSmoothing", "safer_certified_accuracy"]


@dataclass(frozen=True)
class SaferCertificate:
    """SAFER's answers for a batch of texts.

    Attributes
    ----------
    predictions
        The smoothed label per text, :data:`ABSTAIN` (-1) when ``p_A <= 1/2``.
    p_lower
        One-sided ``1 - alpha`` Clopper-Pearson lower bound on the top class's probability.
    certified_words
        Per text: how many words may be substituted (inside their sets) with the prediction
        certified not to change; ``-1`` when abstaining.
    n_words
        Word tokens per text.
    """

    predictions: np.ndarray
    p_lower: np.ndarray
    certified_words: np.ndarray
    n_words: np.ndarray


def safer_certified_accuracy(
    certificate: SaferCertificate, y: np.ndarray, shares: Sequence[float] = (0.01, 0.02, 0.05)
) -> dict[float, float]:
    """Share of texts correctly classified and certified at ``floor(share * words)`` words."""
    y = np.asarray(y)
    correct = certificate.predictions == y
    out: dict[float, float] = {}
    for share in shares:
        needed = np.floor(share * certificate.n_words + 1e-9).astype(np.int64)
        out[float(share)] = float((correct & (certificate.certified_words >= needed)).mean())
    return out


class SaferSmoothing:
    """Randomized smoothing of a text classifier over synonym sets (SAFER, Ye et al. 2020).

    Parameters
    ----------
    n0
        Samples per text to choose the top class.
    n
        Samples per text to bound its probability.
    alpha
        Failure probability of the certificate (one-sided Clopper-Pearson bound).
    max_set_size
        Largest perturbation set (the word and its first synonyms); ``None``: all synonyms.
    seed
        Seed of the random substitutions.
    synonyms
        The synonym table; the shipped WordNet 3.0 table by default.
    batch_size
        Sampled texts sent to the model per call.
    """

    def __init__(
        self,
        *,
        n0: int = 50,
        n: int = 500,
        alpha: float = 0.05,
        max_set_size: int | None = None,
        seed: int = 0,
        synonyms: SynonymTable | None = None,
        batch_size: int = 1000,
    ) -> None:
        self.n0 = n0
        self.n = n
        self.alpha = alpha
        self.max_set_size = max_set_size
        self.seed = seed
        self.synonyms = synonyms
        self.batch_size = batch_size

    def _validate(self) -> SynonymTable:
        for key in ("n0", "n", "batch_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"SAFER: {key} must be an integer >= 1, got {value!r}")
        if not 0.0 < self.alpha < 0.5:
            raise ConfigError(f"SAFER: alpha must lie in (0, 0.5), got {self.alpha!r}")
        if self.max_set_size is not None and self.max_set_size < 1:
            raise ConfigError(f"SAFER: max_set_size must be >= 1, got {self.max_set_size}")
        return self.synonyms if self.synonyms is not None else load_synonyms()

    def perturbation_set(self, word: str, table: SynonymTable | None = None) -> list[str]:
        """``S_w``: the lower-cased word first, then its synonyms (any part of speech)."""
        table = table if table is not None else self._validate()
        lower = word.lower()
        if lower in STOP_WORDS:
            return [lower]
        members = [lower, *table.synonyms(lower)]
        return members if self.max_set_size is None else members[: self.max_set_size]

    def overlap(
        self, word: str, table: SynonymTable | None = None, cache: dict[str, float] | None = None
    ) -> float:
        """``z_w = min over w' in S_w of |S_w ∩ S_w'| / |S_w|`` (1 for a singleton set)."""
        lower = word.lower()
        if cache is not None and lower in cache:
            return cache[lower]
        table = table if table is not None else self._validate()
        own = self.perturbation_set(lower, table)
        mine = set(own)
        value = min(len(mine & set(self.perturbation_set(w, table))) for w in own) / len(own)
        if cache is not None:
            cache[lower] = value
        return value

    def sample(self, text: str, count: int, rng: np.random.Generator) -> list[str]:
        """``count`` texts with every word replaced by a uniform member of its set."""
        table = self._validate()
        tokens = tokenize(text)
        sets = [self.perturbation_set(w, table) for w in tokens.words]
        draws = [rng.integers(len(s), size=count) if len(s) > 1 else None for s in sets]
        out = []
        for k in range(count):
            words = [
                w if d is None else match_case(s[int(d[k])], w)
                for w, s, d in zip(tokens.words, sets, draws, strict=True)
            ]
            out.append(tokens.join(words))
        return out

    def _counts(
        self, classifier: Classifier, text: str, count: int, rng: np.random.Generator
    ) -> np.ndarray:
        counts = np.zeros(classifier.n_classes, dtype=np.int64)
        done = 0
        while done < count:
            size = min(self.batch_size, count - done)
            batch = as_text_array(self.sample(text, size, rng), source="SAFER samples")
            counts += np.bincount(classifier.predict(batch), minlength=classifier.n_classes)
            done += size
        return counts

    def certify(self, classifier: Classifier, texts: Any) -> SaferCertificate:
        """Smoothed predictions and the number of words certified per text (see the module)."""
        table = self._validate()
        items = as_text_array(texts, source="SAFER inputs")
        predictions = np.full(len(items), ABSTAIN, dtype=np.int64)
        p_lower = np.zeros(len(items))
        certified = np.full(len(items), -1, dtype=np.int64)
        n_words = np.zeros(len(items), dtype=np.int64)
        cache: dict[str, float] = {}
        for i, text in enumerate(items):
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, i]))
            top = int(self._counts(classifier, str(text), self.n0, rng).argmax())
            count = int(self._counts(classifier, str(text), self.n, rng)[top])
            bound = float(
                clopper_pearson_lower(np.array([count]), np.array([self.n]), self.alpha)[0]
            )
            words = tokenize(str(text)).words
            n_words[i] = len(words)
            p_lower[i] = bound
            if bound <= 0.5:
                continue
            predictions[i] = top
            overlaps = np.sort([self.overlap(w, table, cache) for w in words])
            # Δ_R = 1 - prod of the R smallest overlaps; certified while p_A - Δ_R > 1/2
            keeps = np.concatenate([[1.0], np.cumprod(overlaps)])
            ok = np.flatnonzero(bound - (1.0 - keeps) > 0.5)
            certified[i] = int(ok.max())
        return SaferCertificate(
            predictions=predictions, p_lower=p_lower, certified_words=certified, n_words=n_words
        )
