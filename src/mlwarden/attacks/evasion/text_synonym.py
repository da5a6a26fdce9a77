"""Synonym substitution against text classifiers, within a hard budget of changed words.

The attack rewrites a text by replacing a few words with WordNet synonyms until the classifier
changes its decision, never changing more than ``eps`` (default 5%) of the word tokens, never
touching stop words or named entities (capitalised words inside a sentence), and drawing every
replacement from the synonym table for the part of speech the word has in context.

* ``mode="score"`` (needs probabilities): word importance by deletion (TextFooler, Jin et al.
  2020): the drop in the probability of the true class when the word is removed, measured for
  all eligible words in one batched query; it orders the words. Then greedy substitution
  (PWWS, Ren et al. 2019; the full greedy search Yoo et al. 2020 found strongest): in each
  round every remaining word's candidates are scored in batched ``predict_proba`` calls (all
  candidates of a position in one call, small positions pooled), and the single substitution that lowers the true-class probability most is
  kept; a candidate that flips the label ends the attack at once (the most important words
  are tried first, so flips come early). Rounds repeat until success, the budget, or no
  substitution helps. With a budget of ``k`` words the best-first choice is what maximises
  the loss drop of a linear model (whose word effects add up); rounds after the first re-score
  only the ``refine_positions`` most promising words of the first round. ``search=
  "importance"`` instead visits each word once in order of importance and keeps its best swap
  (TextFooler's greedy), one batched call per word: fewer queries, lower success.
* ``mode="label"`` (predicted labels only): without scores there is no importance ranking;
  seeded random search draws ``label_trials`` sets of budget-sized substitutions at once,
  queries them in one batch, keeps the first that flips the label and then drops each
  substitution the flip does not need (one query each).

Queries are counted per text sent to the model. The result is a :class:`TextAttackResult`:
adversarial texts, substitutions, share of words changed and queries per text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from mlwarden.attacks.base import Attack, AttackResult, _labels
from mlwarden.data.text.lexicon import SynonymTable, load_synonyms, match_case
from mlwarden.data.text.tokens import STOP_WORDS, TokenizedText, tokenize
from mlwarden.errors import AttackError, DataError
from mlwarden.models.base import Classifier

__all__ = ["Substitution", "TextAttackResult", "TextSynonymAttack", "word_budget"]

Mode = Literal["score", "label"]
Search = Literal["greedy", "importance"]


@dataclass(frozen=True)
class Substitution:
    """Word ``position`` (a token index) changed from ``original`` to ``replacement``."""

    position: int
    original: str
    replacement: str


@dataclass(frozen=True)
class TextAttackResult(AttackResult):
    """An :class:`AttackResult` over texts (``x_adv`` is an object array of strings).

    Attributes
    ----------
    substitutions
        Per text, the substitutions made (empty where nothing was changed).
    n_words
        Per text, the number of word tokens (the budget's denominator).
    """

    substitutions: tuple[tuple[Substitution, ...], ...] = field(default=())
    n_words: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def changed_share(self) -> np.ndarray:
        """Per text: share of its word tokens that were substituted."""
        counts = np.array([len(s) for s in self.substitutions], dtype=np.float64)
        return counts / np.maximum(self.n_words, 1)

    @property
    def mean_changed_share(self) -> float:
        """Mean share of words changed over the successful texts (0 when none succeeded)."""
        return float(self.changed_share[self.success].mean()) if self.success.any() else 0.0

    @property
    def queries_per_success(self) -> float:
        """All queries spent divided by the number of successes (``inf`` without success)."""
        n = int(self.success.sum())
        return float(self.queries.sum()) / n if n else math.inf


def _batch(texts: list[str]) -> np.ndarray:
    """Texts as the 1-D object array text classifiers take."""
    array = np.empty(len(texts), dtype=object)
    array[:] = texts
    return array


def _groups(
    positions: list[int], candidates: dict[int, list[str]], min_texts: int
) -> list[list[int]]:
    """``positions`` in order, cut into groups of whole positions with ``min_texts`` candidates.

    Each group is one ``predict_proba`` call: every candidate of a position is always in the
    same call, and small positions are pooled so the per-call overhead of the model is paid
    rarely; early exit on a flip happens between groups.
    """
    groups: list[list[int]] = []
    current: list[int] = []
    size = 0
    for position in positions:
        current.append(position)
        size += len(candidates[position])
        if size >= min_texts:
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    return groups


def _variants(
    classifier: Classifier, tokens: TokenizedText, variants: list[dict[int, str]]
) -> np.ndarray:
    """Probabilities of ``tokens`` with each set of word replacements (``""`` deletes a word).

    A text classifier may answer from the words directly
    (:meth:`~mlwarden.models.text.TextClassifier.predict_proba_variants`) instead of
    re-tokenizing every candidate text; any other gets the rebuilt strings.
    """
    fast = getattr(classifier, "predict_proba_variants", None)
    if fast is not None:
        return np.asarray(fast(tokens, variants))
    return classifier.predict_proba(_batch([tokens.substitute(v) for v in variants]))


def word_budget(n_words: int, eps: float) -> int:
    """How many of ``n_words`` words may change: ``floor(eps * n_words)`` (rounding-safe)."""
    return math.floor(eps * n_words + 1e-9)


class TextSynonymAttack(Attack):
    """Greedy synonym substitution within a budget on the share of changed words.

    Parameters
    ----------
    eps
        Largest share of word tokens that may change (0.05: at most 3 of 60 words).
    mode
        ``"score"`` (probabilities, importance-ordered greedy) or ``"label"`` (labels only,
        seeded random search).
    search
        In ``"score"`` mode: ``"greedy"`` (every round re-scores the words and keeps the best
        swap; strongest) or ``"importance"`` (TextFooler: visit the words once in order of
        deletion importance, keeping each word's best swap; one model call per word, fewest
        queries).
    max_candidates
        Synonyms tried per word (the table's first ones for the word's part of speech).
    refine_positions
        After the first greedy round scored every word, later rounds re-score only this many
        words, those whose best swap lowered the loss most in the first round (``None``: all
        words every round). For a linear model the ranking does not change between rounds.
    min_batch_texts
        Candidate texts pooled per model call: all candidates of one word position always go
        in one call, and consecutive positions are pooled until this many texts (1: one call
        per position).
    label_trials
        Random substitution sets tried per text in ``"label"`` mode.
    targeted, seed, batch_size
        See :class:`~mlwarden.attacks.base.Attack`; ``seed`` matters only in ``"label"`` mode.
    synonyms
        The synonym table; the shipped WordNet 3.0 table by default.
    """

    name: ClassVar[str] = "text-synonym"
    needs_gradients: ClassVar[bool] = False
    supported_norms: ClassVar[tuple[str, ...]] = ("word-share",)
    modalities: ClassVar[tuple[str, ...]] = ("text",)

    def __init__(
        self,
        *,
        eps: float = 0.05,
        norm: str = "word-share",
        mode: Mode = "score",
        search: Search = "greedy",
        max_candidates: int = 50,
        refine_positions: int | None = 8,
        min_batch_texts: int = 256,
        label_trials: int = 200,
        targeted: bool = False,
        seed: int = 0,
        batch_size: int | None = None,
        synonyms: SynonymTable | None = None,
    ) -> None:
        super().__init__(eps=eps, norm=norm, targeted=targeted, seed=seed, batch_size=batch_size)  # type: ignore[arg-type]
        self.mode = mode
        self.search = search
        self.max_candidates = max_candidates
        self.refine_positions = refine_positions
        self.min_batch_texts = min_batch_texts
        self.label_trials = label_trials
        self.synonyms = synonyms

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.eps > 1:
            raise AttackError(f"{self.name}: eps is a share of words in [0, 1], got {self.eps}")
        if self.mode not in ("score", "label"):
            raise AttackError(f"{self.name}: mode must be 'score' or 'label', got {self.mode!r}")
        if self.search not in ("greedy", "importance"):
            raise AttackError(
                f"{self.name}: search must be 'greedy' or 'importance', got {self.search!r}"
            )
        self._check_counts("max_candidates", "label_trials", "min_batch_texts")
        if self.refine_positions is not None:
            self._check_counts("refine_positions")

    def generate(  # type: ignore[override,misc]
        self,
        classifier: Classifier,
        x: Sequence[str] | np.ndarray,
        y: np.ndarray,
        *,
        target: np.ndarray | None = None,
    ) -> TextAttackResult:
        """Attack ``classifier`` on texts ``x`` with true labels ``y``.

        Overrides :meth:`Attack.generate` because the tensor contract's projection and clipping
        mean nothing for text; this method keeps the same guarantees its own way: every
        output differs from its input only in at most ``floor(eps * words)`` substitutions
        drawn from the synonym table, and ``success`` is recomputed from one final prediction.

        Raises
        ------
        AttackError
            Invalid parameters, a classifier that does not take text, or inputs and labels that
            do not match.
        """
        self._validate_params()
        if getattr(classifier, "modality", "tensor") != "text":
            raise AttackError(
                f"{self.name} attacks text classifiers; {type(classifier).__name__} takes "
                "tensors (use an image or tabular attack such as pgd or square)"
            )
        try:
            texts = classifier.check_inputs(x)  # type: ignore[arg-type]
        except DataError as exc:
            raise AttackError(str(exc)) from None
        y_np = _labels(y, len(texts), classifier.n_classes, "y")
        if self.targeted:
            if target is None:
                raise AttackError(f"{self.name}: targeted=True needs target labels")
            goal = _labels(target, len(texts), classifier.n_classes, "target")
        elif target is not None:
            raise AttackError(f"{self.name}: target labels given but targeted=False")
        else:
            goal = y_np
        table = self.synonyms if self.synonyms is not None else load_synonyms()

        adversarial = np.empty(len(texts), dtype=object)
        queries = np.zeros(len(texts), dtype=np.int64)
        n_words = np.zeros(len(texts), dtype=np.int64)
        substitutions: list[tuple[Substitution, ...]] = []
        for i, text in enumerate(texts):
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, i]))
            made, used, count = self._attack_one(classifier, str(text), int(goal[i]), table, rng)
            adversarial[i] = made[0]
            substitutions.append(made[1])
            queries[i] = used
            n_words[i] = count
        predictions = classifier.predict(adversarial) if len(texts) else np.zeros(0, np.int64)
        success = predictions == goal if self.targeted else predictions != goal
        return TextAttackResult(
            attack=self.name,
            norm=self.norm,
            eps=float(self.eps),
            targeted=self.targeted,
            x_adv=adversarial,
            success=success,
            queries=queries + 1,  # the final prediction on each output
            predictions=predictions,
            substitutions=tuple(substitutions),
            n_words=n_words,
        )

    def _generate(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - not used
        raise AttackError(f"{self.name} runs through generate() on texts")

    # --- one text -----------------------------------------------------------------------------

    def candidates(self, tokens: TokenizedText, table: SynonymTable) -> dict[int, list[str]]:
        """Eligible word positions and their case-matched candidates, in position order.

        Eligible: not a stop word, not a named entity, at least 3 letters, with synonyms for
        the part of speech :meth:`SynonymTable.guess_pos` gives it (the first
        ``max_candidates``). Defences that train on substitutions draw from the same lists.
        """
        out: dict[int, list[str]] = {}
        lowered = [w.lower() for w in tokens.words]
        for index, word in enumerate(tokens.words):
            if lowered[index] in STOP_WORDS or len(word) < 3 or tokens.is_named_entity(index):
                continue
            pos = table.guess_pos(lowered, index)
            if pos is None:
                continue
            synonyms = table.synonyms(word, pos)[: self.max_candidates]
            if synonyms:
                out[index] = [match_case(s, word) for s in synonyms]
        return out

    def _goal_loss(self, proba: np.ndarray, goal: int) -> np.ndarray:
        """What the attack lowers: p(goal) untargeted, 1 - p(goal) targeted."""
        return 1.0 - proba[:, goal] if self.targeted else proba[:, goal]

    def _reached(self, labels: np.ndarray, goal: int) -> np.ndarray:
        return labels == goal if self.targeted else labels != goal

    def _attack_one(
        self,
        classifier: Classifier,
        text: str,
        goal: int,
        table: SynonymTable,
        rng: np.random.Generator,
    ) -> tuple[tuple[str, tuple[Substitution, ...]], int, int]:
        tokens = tokenize(text)
        budget = word_budget(len(tokens), float(self.eps))
        if self.mode == "score":
            proba = classifier.predict_proba(_batch([text]))
            queries = 1
            if self._reached(proba.argmax(axis=1), goal)[0] or budget == 0:
                return (text, ()), queries, len(tokens)
            chosen, used = self._greedy(classifier, tokens, goal, table, budget, proba)
        else:
            label = classifier.predict(_batch([text]))
            queries = 1
            if self._reached(label, goal)[0] or budget == 0:
                return (text, ()), queries, len(tokens)
            chosen, used = self._random_search(classifier, tokens, goal, table, budget, rng)
        subs = tuple(
            Substitution(position=p, original=tokens.words[p], replacement=w)
            for p, w in sorted(chosen.items())
        )
        return (tokens.substitute(chosen), subs), queries + used, len(tokens)

    def _greedy(
        self,
        classifier: Classifier,
        tokens: TokenizedText,
        goal: int,
        table: SynonymTable,
        budget: int,
        proba: np.ndarray,
    ) -> tuple[dict[int, str], int]:
        candidates = self.candidates(tokens, table)
        if not candidates:
            return {}, 0
        positions = list(candidates)
        deleted: list[dict[int, str]] = [{p: ""} for p in positions]
        loss_now = float(self._goal_loss(proba, goal)[0])
        importance = loss_now - self._goal_loss(_variants(classifier, tokens, deleted), goal)
        queries = len(deleted)
        order = [positions[k] for k in np.argsort(-importance, kind="stable")]
        chosen: dict[int, str] = {}
        if self.search == "importance":
            for position in order:
                if len(chosen) >= budget:
                    break
                options = candidates[position]
                trial = [{**chosen, position: option} for option in options]
                trial_proba = _variants(classifier, tokens, trial)
                queries += len(trial)
                losses = self._goal_loss(trial_proba, goal)
                flipped = self._reached(trial_proba.argmax(axis=1), goal)
                if flipped.any():
                    pick = int(np.flatnonzero(flipped)[np.argmin(losses[flipped])])
                    chosen[position] = options[pick]
                    break
                pick = int(np.argmin(losses))
                if losses[pick] < loss_now:
                    chosen[position] = options[pick]
                    loss_now = float(losses[pick])
            return chosen, queries
        first_round: dict[int, float] = {}
        while len(chosen) < budget:
            best: tuple[float, int, str] | None = None
            remaining = [p for p in order if p not in chosen]
            for group in _groups(remaining, candidates, self.min_batch_texts):
                trial = [
                    {**chosen, position: option}
                    for position in group
                    for option in candidates[position]
                ]
                trial_proba = _variants(classifier, tokens, trial)
                queries += len(trial)
                all_losses = self._goal_loss(trial_proba, goal)
                all_flipped = self._reached(trial_proba.argmax(axis=1), goal)
                start = 0
                for position in group:  # in order of importance
                    options = candidates[position]
                    losses = all_losses[start : start + len(options)]
                    flipped = all_flipped[start : start + len(options)]
                    start += len(options)
                    if flipped.any():
                        pick = int(np.flatnonzero(flipped)[np.argmin(losses[flipped])])
                        chosen[position] = options[pick]
                        return chosen, queries
                    pick = int(np.argmin(losses))
                    if not chosen:
                        first_round[position] = float(losses[pick])
                    if best is None or losses[pick] < best[0]:
                        best = (float(losses[pick]), position, options[pick])
            if best is None or best[0] >= loss_now:
                break
            loss_now, position, word = best
            chosen[position] = word
            if len(chosen) == 1 and self.refine_positions is not None:
                # later rounds re-score only the words whose best swap helped most at first
                order = sorted(first_round, key=lambda p: first_round[p])
                order = order[: self.refine_positions + 1]
        return chosen, queries

    def _random_search(
        self,
        classifier: Classifier,
        tokens: TokenizedText,
        goal: int,
        table: SynonymTable,
        budget: int,
        rng: np.random.Generator,
    ) -> tuple[dict[int, str], int]:
        candidates = self.candidates(tokens, table)
        if not candidates:
            return {}, 0
        positions = list(candidates)
        size = min(budget, len(positions))
        trials: list[dict[int, str]] = []
        for _ in range(self.label_trials):
            picked = rng.choice(len(positions), size=size, replace=False)
            trials.append(
                {
                    positions[k]: candidates[positions[k]][
                        int(rng.integers(len(candidates[positions[k]])))
                    ]
                    for k in sorted(picked)
                }
            )
        # label-only: of the model's answer only the arg-max (the label) is used
        labels = _variants(classifier, tokens, trials).argmax(axis=1)
        queries = len(trials)
        hits = np.flatnonzero(self._reached(labels, goal))
        if not len(hits):
            return {}, queries
        chosen = dict(trials[int(hits[0])])
        for position in sorted(chosen):  # drop the substitutions the flip does not need
            reduced = {p: w for p, w in chosen.items() if p != position}
            queries += 1
            if self._reached(_variants(classifier, tokens, [reduced]).argmax(axis=1), goal)[0]:
                chosen = reduced
        return chosen, queries
