"""The attack contract: one class per attack, one call, one result type.

Every attack validates its inputs, runs its own ``_generate`` hook on batches, then projects the
output back into the ε-ball and the valid input range and scores it with one final prediction,
so that every attack returns an :class:`AttackResult` whose invariants hold by construction
(pattern after Foolbox 3's ``FixedEpsilonAttack``).
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal, final

import numpy as np
import torch

from mlwarden.data.dataset import check_labels
from mlwarden.errors import AttackError, DataError
from mlwarden.models.base import Classifier, DifferentiableClassifier, gradient_path_problem

__all__ = ["NORMS", "Attack", "AttackResult", "Norm", "project"]

Norm = Literal["linf", "l2"]
NORMS: tuple[str, ...] = ("linf", "l2")
_RANGE_TOLERANCE = 1e-5


@dataclass(frozen=True)
class AttackResult:
    """What an attack produced.

    Attributes
    ----------
    x_adv
        Adversarial inputs, same shape and dtype (float32) as the inputs.
    success
        Per sample: the final prediction on ``x_adv`` meets the attack's goal (misclassified, or
        the target class when targeted). Samples the model already gets wrong count as success.
    queries
        Per sample: model evaluations (forward passes) the attack spent on it.
    predictions
        The model's labels for ``x_adv``.
    """

    attack: str
    norm: str
    eps: float
    targeted: bool
    x_adv: np.ndarray
    success: np.ndarray
    queries: np.ndarray
    predictions: np.ndarray

    @property
    def success_rate(self) -> float:
        """Fraction of samples on which the attack met its goal."""
        return float(self.success.mean()) if len(self.success) else 0.0

    def robust_accuracy(self, y: np.ndarray) -> float:
        """Fraction of samples still classified as their true label ``y`` after the attack."""
        return float((self.predictions == np.asarray(y)).mean()) if len(y) else 0.0


def project(
    x_adv: torch.Tensor,
    x: torch.Tensor,
    eps: float,
    norm: str,
    clip_range: tuple[float, float],
) -> torch.Tensor:
    """Project ``x_adv`` onto the ``norm`` ε-ball around ``x``, then into ``clip_range``."""
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        flat = delta.flatten(1).norm(p=2, dim=1).clamp_min(1e-12)
        factor = (eps / flat).clamp(max=1.0).view(-1, *([1] * (x.dim() - 1)))
        delta = delta * factor
    return (x + delta).clamp(clip_range[0], clip_range[1])


class Attack(ABC):
    """Base class of every attack.

    Subclasses set :attr:`name` and :attr:`needs_gradients`, take keyword-only hyperparameters
    in ``__init__`` (stored, not validated beyond types), and implement :meth:`_generate`.

    Parameters
    ----------
    eps
        Perturbation budget in the chosen ``norm``, in input units.
    norm
        ``"linf"`` or ``"l2"``.
    targeted
        Aim for the labels passed as ``target`` to :meth:`generate` instead of any wrong class.
    seed
        Seed of every random choice (random starts, sampled squares).
    batch_size
        Inputs attacked at once; defaults to the classifier's batch size.
    """

    name: ClassVar[str]
    needs_gradients: ClassVar[bool] = True
    needs_scores: ClassVar[bool] = True
    """Whether the attack reads scores (probabilities); decision-based ones need only labels."""
    supported_norms: ClassVar[tuple[str, ...]] = NORMS
    #: The input modalities the attack works on: ``"tensor"`` (images, tabular) or ``"text"``.
    modalities: ClassVar[tuple[str, ...]] = ("tensor",)

    def __init__(
        self,
        *,
        eps: float,
        norm: Norm = "linf",
        targeted: bool = False,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        self.eps = eps
        self.norm = norm
        self.targeted = targeted
        self.seed = seed
        self.batch_size = batch_size

    def _validate_params(self) -> None:
        # any real number (NumPy scalars included: ε often comes out of an array), but not a bool
        if (
            isinstance(self.eps, bool)
            or not isinstance(self.eps, numbers.Real)
            or not math.isfinite(self.eps)
            or self.eps < 0
        ):
            raise AttackError(f"{self.name}: eps must be a finite number >= 0, got {self.eps!r}")
        if self.norm not in self.supported_norms:
            raise AttackError(
                f"{self.name}: norm must be one of {list(self.supported_norms)}, got {self.norm!r}"
            )
        if self.batch_size is not None and self.batch_size < 1:
            raise AttackError(f"{self.name}: batch_size must be >= 1, got {self.batch_size}")

    def _check_counts(self, *names: str) -> None:
        """Raise :class:`AttackError` unless each named hyperparameter is an integer >= 1."""
        for key in names:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise AttackError(f"{self.name}: {key} must be an integer >= 1, got {value!r}")

    @final
    def generate(
        self,
        classifier: Classifier,
        x: np.ndarray,
        y: np.ndarray,
        *,
        target: np.ndarray | None = None,
    ) -> AttackResult:
        """Attack ``classifier`` on inputs ``x`` with true labels ``y``.

        Raises
        ------
        AttackError
            Parameters are invalid, the classifier lacks gradients this attack needs, or inputs
            and labels do not match the classifier.
        """
        self._validate_params()
        if self.needs_gradients and not classifier.differentiable:
            raise AttackError(
                f"{self.name} needs gradients but the model is black-box "
                f"({type(classifier).__name__}); use a gradient-free attack such as square"
            )
        x_np = classifier.check_inputs(x)
        y_np = _labels(y, len(x_np), classifier.n_classes, "y")
        low, high = classifier.clip_range
        if self.needs_gradients and len(x_np) and isinstance(classifier, DifferentiableClassifier):
            problem = gradient_path_problem(classifier, np.clip(x_np[:2], low, high))
            if problem is not None:
                raise AttackError(
                    f"{self.name} needs input gradients, but the model gives none: {problem}; "
                    "use a gradient-free attack such as square or hsj"
                )
        if np.isnan(x_np).any():
            raise AttackError(
                f"inputs contain {int(np.isnan(x_np).sum())} NaN values; impute or drop them "
                "before attacking"
            )
        if len(x_np) and (
            x_np.min() < low - _RANGE_TOLERANCE or x_np.max() > high + _RANGE_TOLERANCE
        ):
            raise AttackError(
                f"inputs span [{x_np.min():.4g}, {x_np.max():.4g}], outside the model's valid "
                f"range [{low}, {high}]; scale the data or set clip_range"
            )
        if self.targeted:
            if target is None:
                raise AttackError(f"{self.name}: targeted=True needs target labels")
            goal = _labels(target, len(x_np), classifier.n_classes, "target")
        elif target is not None:
            raise AttackError(f"{self.name}: target labels given but targeted=False")
        else:
            goal = y_np

        device = getattr(classifier, "device", torch.device("cpu"))
        batch = self.batch_size or classifier.batch_size
        x_adv = np.empty_like(x_np)
        queries = np.zeros(len(x_np), dtype=np.int64)
        for start in range(0, len(x_np), batch):
            sl = slice(start, start + batch)
            xb = torch.from_numpy(np.clip(x_np[sl], low, high)).to(device)
            gb = torch.from_numpy(goal[sl]).to(device)
            adv, used = self._generate(classifier, xb, gb, seed=_batch_seed(self.seed, start))
            adv = project(adv.detach().to(xb.dtype), xb, float(self.eps), self.norm, (low, high))
            x_adv[sl] = adv.cpu().numpy()
            queries[sl] = used.cpu().numpy()
        predictions = classifier.predict(x_adv)
        success = predictions == goal if self.targeted else predictions != goal
        return AttackResult(
            attack=self.name,
            norm=self.norm,
            eps=float(self.eps),
            targeted=self.targeted,
            x_adv=x_adv,
            success=success,
            queries=queries,
            predictions=predictions,
        )

    @abstractmethod
    def _generate(
        self, classifier: Classifier, x: torch.Tensor, goal: torch.Tensor, *, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return adversarial inputs for one batch and the queries spent per sample.

        ``goal`` holds the true labels (untargeted) or the target labels (targeted). The output
        is projected and clipped by the caller, so hooks may overshoot.
        """

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


def _labels(values: np.ndarray, n: int, n_classes: int, what: str) -> np.ndarray:
    """The data layer's label check, as the attack contract's :class:`AttackError`."""
    try:
        return check_labels(values, n=n, n_classes=n_classes, source=what)
    except DataError as exc:
        raise AttackError(str(exc)) from None


def _batch_seed(seed: int, start: int) -> int:
    """The seed of the batch starting at sample ``start``: ``seed`` itself for the first batch.

    Later batches draw from ``SeedSequence([seed, start])``, so two attacks with different
    seeds never share a batch's random stream (``seed + start`` would: seed 0's second batch of
    512 would replay seed 512's first).
    """
    if start == 0:
        return seed
    return int(np.random.SeedSequence([seed, start]).generate_state(1, dtype=np.uint64)[0] >> 1)
