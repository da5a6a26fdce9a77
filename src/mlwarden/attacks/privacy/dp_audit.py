"""Empirical differential-privacy audit: a statistical lower bound on a training run's ε.

Following Jagielski, Ullman and Oprea (2020), "Auditing Differentially Private Machine Learning:
How Private is Private SGD?", and Nasr, Song, Thakurta, Papernot and Carlini (2021),
"Adversary Instantiation: Lower Bounds for Differentially Private Machine Learning":

1. draw canaries (training samples given a wrong label, or out-of-distribution inputs with a
   random label) and include each one in the training set independently with probability 1/2;
2. train (one or more runs), then score every canary with a membership attack (its negative
   loss under the trained model);
3. a threshold turns scores into guesses. Any (ε, δ)-DP training satisfies
   ``TPR ≤ e^ε·FPR + δ`` and ``1 - FPR ≤ e^ε·(1 - TPR) + δ``, so a measured (TPR, FPR) gives
   ``ε ≥ max(log((TPR - δ) / FPR), log((1 - FPR - δ) / (1 - TPR)))``.

Sampling error is bounded with Clopper-Pearson intervals: the lower bound uses the lowest
plausible TPR and the highest plausible FPR, each at level ``(1 - confidence) / 2``, so it holds
with probability at least ``confidence`` (union bound). The threshold is chosen on a random half
of the canaries and the bound is evaluated on the other half, so choosing it does not bias the
bound.

Counting every canary of a run as one trial, as done here and in many audits, is exact only
for one canary per run: canaries trained together are not independent trials. Steinke, Nasr and
Jagielski (2023), "Privacy Auditing with One (1) Training Run", prove a bound that holds for many
canaries in one run: with independent inclusion and an ε-DP training run, the number of correct
guesses of an auditor that guesses "in" for the highest scores, "out" for the lowest and abstains
otherwise is dominated by ``Binomial(r, e^ε / (1 + e^ε))``. :attr:`AuditResult.epsilon_lb_one_run`
reports that bound (pure ε; for (ε, δ) their theorem adds a term of order ``n_canaries · δ`` to
the failure probability, which is not subtracted here). :attr:`AuditResult.consistent` rests on
that one-run bound whenever a run holds several canaries.

The DP runs derive their Poisson sample rate and step count from the training set's size, which
the canaries change from run to run: like Opacus, the accountant treats the size as public. A
stricter audit would fix both from a public size before drawing the canaries.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from scipy.stats import binomtest
from sklearn.metrics import roc_curve
from torch import nn

from mlwarden.data.dataset import Dataset
from mlwarden.errors import AttackError
from mlwarden.models.base import Classifier

__all__ = [
    "AuditResult",
    "CanaryKind",
    "audit_from_scores",
    "clopper_pearson",
    "epsilon_lower_bound",
    "make_canaries",
    "one_run_epsilon_bound",
    "roc_epsilon_bound",
    "run_audit",
]

CanaryKind = Literal["mislabel", "ood"]


def clopper_pearson(
    k: np.ndarray | int, n: np.ndarray | int, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided ``1 - alpha`` Clopper-Pearson interval(s) for ``k`` successes in ``n`` trials.

    The exact interval of Clopper and Pearson (1934), each end at level ``alpha / 2`` (0 for
    ``k = 0``, 1 for ``k = n``), as :func:`scipy.stats.binomtest`'s
    ``proportion_ci(method="exact")`` computes it. ``k`` and ``n`` broadcast.

    Raises
    ------
    AttackError
        ``n < 1``, ``k`` outside ``[0, n]``, or ``alpha`` outside ``(0, 1)``.
    """
    k_arr, n_arr = _check_counts(k, n, alpha)
    return _exact_bound(k_arr, n_arr, alpha / 2, "low"), _exact_bound(
        k_arr, n_arr, alpha / 2, "high"
    )


def _check_counts(
    k: np.ndarray | int, n: np.ndarray | int, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    k_arr, n_arr = np.broadcast_arrays(np.asarray(k), np.asarray(n))
    if (n_arr < 1).any() or (k_arr < 0).any() or (k_arr > n_arr).any():
        raise AttackError(f"clopper_pearson needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not 0 < alpha < 1:
        raise AttackError(f"alpha must be in (0, 1), got {alpha}")
    return k_arr, n_arr


def _exact_bound(
    k: np.ndarray, n: np.ndarray, alpha: float, end: Literal["low", "high"]
) -> np.ndarray:
    """One end of the exact interval at level ``alpha``: the one-sided bound ``binomtest`` gives.

    ``"low"``: ``alternative="greater"``, 0 for ``k = 0``; ``"high"``: ``alternative="less"``,
    1 for ``k = n``. Each distinct ``(k, n)`` pair is computed once (the one-sided form skips
    the two-sided p-value, which ``binomtest`` would compute and the interval does not need).
    """
    if k.size == 0:
        return np.zeros(k.shape)
    pairs, inverse = np.unique(
        np.stack([k.ravel(), n.ravel()]).astype(np.int64), axis=1, return_inverse=True
    )
    alternative = "greater" if end == "low" else "less"
    values = np.array(
        [
            getattr(
                binomtest(int(ki), int(ni), alternative=alternative).proportion_ci(
                    confidence_level=1.0 - alpha, method="exact"
                ),
                end,
            )
            for ki, ni in pairs.T
        ],
        dtype=np.float64,
    )
    return values[inverse.ravel()].reshape(k.shape)


def epsilon_lower_bound(
    tpr: np.ndarray | float, fpr: np.ndarray | float, delta: float
) -> np.ndarray:
    """``max(log((TPR - δ) / FPR), log((1 - FPR - δ) / (1 - TPR)), 0)``, elementwise.

    The largest ε that an attack with this (TPR, FPR) rules out for (ε, δ)-DP; ``inf`` when a
    denominator is zero and its numerator is positive.
    """
    t = np.asarray(tpr, dtype=np.float64)
    f = np.asarray(fpr, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        direct = np.where(t - delta > 0, np.log(np.maximum(t - delta, 1e-300)) - np.log(f), -np.inf)
        mirror = np.where(
            1 - f - delta > 0, np.log(np.maximum(1 - f - delta, 1e-300)) - np.log(1 - t), -np.inf
        )
    return np.maximum(np.maximum(direct, mirror), 0.0)


@dataclass(frozen=True)
class AuditResult:
    """The outcome of an empirical DP audit.

    Attributes
    ----------
    epsilon_lb
        The ε lower bound that holds with probability ``confidence`` (Clopper-Pearson).
    epsilon_point
        The same bound from the raw TPR/FPR, without sampling error (may be ``inf``).
    epsilon_ci
        ``(epsilon_lb, ε from the most favourable ends of the intervals)``: a range covering
        the measured ε with probability 1 − 2α, not an upper bound on the mechanism's ε.
    threshold
        Score threshold chosen on the selection half.
    tpr, fpr, tpr_ci, fpr_ci
        Measured rates on the evaluation half and their Clopper-Pearson intervals.
    n_in, n_out
        Included / excluded canary trials in the evaluation half.
    claimed_epsilon
        The ε the training claims (``None`` for non-private training).
    epsilon_lb_one_run
        The one-run lower bound of Steinke et al. (2023) at the same confidence, from the same
        halves (see the module docstring).
    """

    epsilon_lb: float
    epsilon_point: float
    epsilon_ci: tuple[float, float]
    threshold: float
    tpr: float
    fpr: float
    tpr_ci: tuple[float, float]
    fpr_ci: tuple[float, float]
    n_in: int
    n_out: int
    delta: float
    confidence: float
    claimed_epsilon: float | None = None
    epsilon_lb_one_run: float = 0.0
    canary: str = "scores"
    n_canaries: int = 0
    n_runs: int = 0

    @property
    def epsilon_lb_verdict(self) -> float:
        """The lower bound the verdict rests on.

        The Clopper-Pearson bound treats every canary as an independent trial, which is exact
        only when each training run holds one canary; with several canaries per run the
        one-run bound of Steinke et al. (2023), valid for many canaries in one run, is used.
        """
        several_per_run = self.n_runs > 0 and self.n_canaries > self.n_runs
        return self.epsilon_lb_one_run if several_per_run else self.epsilon_lb

    @property
    def consistent(self) -> bool | None:
        """Whether the verdict's lower bound sits at or below the claimed ε (``None`` if none)."""
        if self.claimed_epsilon is None:
            return None
        return self.epsilon_lb_verdict <= self.claimed_epsilon

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (infinite values as strings)."""
        values = asdict(self)
        values["consistent"] = self.consistent
        values["epsilon_lb_verdict"] = self.epsilon_lb_verdict
        return {k: _json_float(v) for k, v in values.items()}


def _json_float(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, tuple):
        return [_json_float(v) for v in value]
    return value


def _threshold_bounds(
    scores: np.ndarray, included: np.ndarray, alpha: float, delta: float
) -> tuple[np.ndarray, np.ndarray]:
    """For every candidate threshold (guess "in" when ``score >= t``), the conservative ε bound.

    The candidates are the distinct scores, read off :func:`sklearn.metrics.roc_curve` (its
    leading "flag nothing" point at ``+inf`` is not a candidate).
    """
    n_in, n_out = int(included.sum()), int((~included).sum())
    fpr, tpr, thresholds = roc_curve(included, scores, drop_intermediate=False)
    tp = np.rint(tpr[1:] * n_in).astype(np.int64)
    fp = np.rint(fpr[1:] * n_out).astype(np.int64)
    # the two ends the bound uses, each at alpha / 2 as in clopper_pearson(..., alpha)
    tpr_lo = _exact_bound(*_check_counts(tp, n_in, alpha), alpha / 2, "low")
    fpr_hi = _exact_bound(*_check_counts(fp, n_out, alpha), alpha / 2, "high")
    return thresholds[1:], epsilon_lower_bound(tpr_lo, fpr_hi, delta)


def roc_epsilon_bound(
    scores: np.ndarray, is_member: np.ndarray, *, delta: float, confidence: float = 0.95
) -> float:
    """The largest Clopper-Pearson ε lower bound over every threshold of a membership score.

    A check of a DP claim against a whole ROC curve: (ε, δ)-DP training must keep this at or
    below ε, up to the chance of a false alarm, which grows with the number of thresholds
    (no held-out split: use :func:`audit_from_scores` for a bound to report).
    """
    s = np.asarray(scores, dtype=np.float64)
    m = np.asarray(is_member, dtype=bool)
    if s.shape != m.shape or s.ndim != 1 or m.all() or not m.any():
        raise AttackError("scores and is_member must be 1-D, equally long, with both classes")
    _, bounds = _threshold_bounds(s, m, 1.0 - confidence, delta)
    return float(bounds.max())


_GUESS_FRACTIONS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)


def one_run_epsilon_bound(correct: int, guesses: int, confidence: float) -> float:
    """ε lower bound from ``correct`` of ``guesses`` membership guesses (Steinke et al., 2023).

    The largest ε with ``P[Binomial(guesses, e^ε / (1 + e^ε)) ≥ correct] ≤ 1 - confidence``:
    the logit of the one-sided Clopper-Pearson lower bound on the guessing accuracy, floored at 0.
    """
    if guesses < 1 or not 0 <= correct <= guesses:
        return 0.0
    if correct == 0:
        return 0.0
    ci = binomtest(correct, guesses, alternative="greater").proportion_ci(
        confidence, method="exact"
    )
    p_low = float(ci.low)
    return max(0.0, math.log(p_low) - math.log1p(-p_low)) if p_low < 1 else math.inf


def _one_run_guess(
    scores: np.ndarray, included: np.ndarray, high: float, low: float
) -> tuple[int, int]:
    """Correct guesses and guesses made: "in" when ``score >= high``, "out" when ``< low``."""
    guess_in, guess_out = scores >= high, scores < low
    correct = int((guess_in & included).sum() + (guess_out & ~included).sum())
    return correct, int(guess_in.sum() + guess_out.sum())


def _one_run_bound(
    sel_s: np.ndarray, sel_inc: np.ndarray, ev_s: np.ndarray, ev_inc: np.ndarray, confidence: float
) -> float:
    """Pick the guessing thresholds on the selection half, bound ε on the evaluation half."""
    best, chosen = -1.0, (math.inf, -math.inf)
    for top in _GUESS_FRACTIONS:
        for bottom in _GUESS_FRACTIONS:
            if top + bottom == 0:
                continue
            high = float(np.quantile(sel_s, 1.0 - top)) if top else math.inf
            low = float(np.quantile(sel_s, bottom)) if bottom else -math.inf
            if low > high:
                continue
            bound = one_run_epsilon_bound(*_one_run_guess(sel_s, sel_inc, high, low), confidence)
            if bound > best:
                best, chosen = bound, (high, low)
    return one_run_epsilon_bound(*_one_run_guess(ev_s, ev_inc, *chosen), confidence)


def audit_from_scores(
    scores: np.ndarray,
    included: np.ndarray,
    *,
    delta: float,
    confidence: float = 0.95,
    seed: int = 0,
    claimed_epsilon: float | None = None,
) -> AuditResult:
    """Turn canary scores (higher means "was trained on") into an ε lower bound.

    The trials are split at random into a selection half, where the threshold maximising the
    conservative bound is picked, and an evaluation half, where the bound is measured.

    Raises
    ------
    AttackError
        Fewer than 4 included or excluded trials, or ``delta``/``confidence`` out of range.
    """
    s = np.asarray(scores, dtype=np.float64)
    inc = np.asarray(included, dtype=bool)
    if s.shape != inc.shape or s.ndim != 1 or not np.isfinite(s).all():
        raise AttackError("scores and included must be 1-D, the same length, and finite")
    if not 0 <= delta < 1:
        raise AttackError(f"delta must be in [0, 1), got {delta}")
    if not 0 < confidence < 1:
        raise AttackError(f"confidence must be in (0, 1), got {confidence}")
    if inc.sum() < 4 or (~inc).sum() < 4:
        raise AttackError(
            f"an audit needs at least 4 included and 4 excluded canary trials, got "
            f"{int(inc.sum())} and {int((~inc).sum())}; add canaries or runs"
        )
    alpha = 1.0 - confidence
    rng = np.random.default_rng(seed)
    # halves drawn blind to inclusion: a split stratified by inclusion would tell the
    # evaluation half how many of its canaries were included, which the one-run bound's
    # proof (each canary included with probability 1/2, independently) does not allow
    select = np.zeros(len(s), dtype=bool)
    select[rng.permutation(len(s))[: len(s) // 2]] = True
    for half, name in ((select, "selection"), (~select, "evaluation")):
        if inc[half].sum() < 2 or (~inc[half]).sum() < 2:
            raise AttackError(
                f"the {name} half holds {int(inc[half].sum())} included and "
                f"{int((~inc[half]).sum())} excluded canary trials (need 2 of each); add "
                "canaries or runs, or change the seed"
            )
    thresholds, bounds = _threshold_bounds(s[select], inc[select], alpha, delta)
    threshold = float(thresholds[int(np.argmax(bounds))])

    ev_s, ev_inc = s[~select], inc[~select]
    guess = ev_s >= threshold
    n_in, n_out = int(ev_inc.sum()), int((~ev_inc).sum())
    tp, fp = int((guess & ev_inc).sum()), int((guess & ~ev_inc).sum())
    tpr_lo, tpr_hi = clopper_pearson(tp, n_in, alpha)
    fpr_lo, fpr_hi = clopper_pearson(fp, n_out, alpha)
    lower = float(epsilon_lower_bound(tpr_lo, fpr_hi, delta))
    upper = float(epsilon_lower_bound(tpr_hi, fpr_lo, delta))
    one_run = _one_run_bound(s[select], inc[select], ev_s, ev_inc, confidence)
    return AuditResult(
        epsilon_lb=lower,
        epsilon_point=float(epsilon_lower_bound(tp / n_in, fp / n_out, delta)),
        epsilon_ci=(lower, upper),
        threshold=threshold,
        tpr=tp / n_in,
        fpr=fp / n_out,
        tpr_ci=(float(tpr_lo), float(tpr_hi)),
        fpr_ci=(float(fpr_lo), float(fpr_hi)),
        n_in=n_in,
        n_out=n_out,
        delta=float(delta),
        confidence=float(confidence),
        claimed_epsilon=claimed_epsilon,
        epsilon_lb_one_run=one_run,
    )


def make_canaries(
    train: Dataset, n_canaries: int, *, kind: CanaryKind = "mislabel", seed: int = 0
) -> tuple[Dataset, Dataset]:
    """Split ``train`` into ``(base, canaries)``.

    ``mislabel``: ``n_canaries`` training samples taken out of the data and given a random wrong
    label. ``ood``: ``n_canaries`` inputs drawn uniformly from the valid range (binarised to its
    ends) with random labels; ``base`` is all of ``train``.
    """
    if n_canaries < 8:
        raise AttackError(f"n_canaries must be at least 8, got {n_canaries}")
    rng = np.random.default_rng(seed)
    if kind == "mislabel":
        if n_canaries > len(train) // 2:
            raise AttackError(
                f"n_canaries={n_canaries} is more than half of the {len(train)} training samples"
            )
        order = rng.permutation(len(train))
        chosen, rest = np.sort(order[:n_canaries]), np.sort(order[n_canaries:])
        shift = rng.integers(1, train.n_classes, size=n_canaries)
        canaries = train.subset(chosen, name=f"{train.name}:canaries")
        canaries = canaries.with_samples(y=(canaries.y + shift) % train.n_classes)
        return train.subset(rest), canaries
    if kind == "ood":
        low, high = train.clip_range
        bits = rng.random((n_canaries, *train.input_shape)) < 0.5
        x = np.where(bits, high, low).astype(np.float32)
        y = rng.integers(0, train.n_classes, size=n_canaries).astype(np.int64)
        canaries = train.with_samples(x, y, name=f"{train.name}:ood-canaries")
        return train, canaries
    raise AttackError(f"canary kind must be 'mislabel' or 'ood', got {kind!r}")


TrainFn = Callable[[Dataset, int], "nn.Module | Classifier"]


def _canary_scores(model: nn.Module | Classifier, canaries: Dataset) -> np.ndarray:
    from mlwarden.attacks.privacy.membership import per_sample_loss

    if isinstance(model, Classifier):
        return -per_sample_loss(model, canaries.x, canaries.y)
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(canaries.x)).double()
    loss = nn.functional.cross_entropy(logits, torch.from_numpy(canaries.y), reduction="none")
    return -loss.numpy()


def run_audit(
    train_fn: TrainFn,
    train: Dataset,
    *,
    n_canaries: int = 200,
    canary: CanaryKind = "mislabel",
    n_runs: int = 1,
    delta: float = 1e-5,
    confidence: float = 0.95,
    claimed_epsilon: float | None = None,
    seed: int = 0,
    on_run: Callable[[int], None] | None = None,
) -> AuditResult:
    """Audit the training procedure ``train_fn(dataset, seed) -> model`` with canaries.

    Each of ``n_runs`` runs trains on the base data plus every canary whose coin (probability
    1/2, fresh per run) came up heads; every canary of every run is one trial, scored by its
    negative loss under that run's model.
    """
    if n_runs < 1:
        raise AttackError(f"n_runs must be >= 1, got {n_runs}")
    base, canaries = make_canaries(train, n_canaries, kind=canary, seed=seed)
    rng = np.random.default_rng(seed + 1)
    all_scores, all_included = [], []
    for run in range(n_runs):
        if on_run is not None:
            on_run(run)
        included = rng.random(n_canaries) < 0.5
        chosen = canaries.subset(np.flatnonzero(included))
        data = train.with_samples(
            np.concatenate([base.x, chosen.x]),
            np.concatenate([base.y, chosen.y]),
            name=f"{train.name}+canaries",
        )
        model = train_fn(data, seed + run)
        all_scores.append(_canary_scores(model, canaries))
        all_included.append(included)
    result = audit_from_scores(
        np.concatenate(all_scores),
        np.concatenate(all_included),
        delta=delta,
        confidence=confidence,
        seed=seed,
        claimed_epsilon=claimed_epsilon,
    )
    return AuditResult(
        **{**asdict(result), "canary": canary, "n_canaries": n_canaries, "n_runs": n_runs}
    )
