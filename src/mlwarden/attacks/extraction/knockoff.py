"""Model extraction by training a surrogate on the victim's answers (Knockoff Nets / Copycat).

The attacker sends query inputs to the victim, records its answers and trains a surrogate
network to imitate them (Orekondy, Schiele and Fritz, "Knockoff Nets: Stealing Functionality of
Black-Box Models", CVPR 2019; Correia-Silva et al., "Copycat CNN", IJCNN 2018). Query inputs
come from

* an unlabeled pool of natural data (``pool``): a held-out split or another dataset of the
  right shape, drawn without replacement; when the pool is exhausted, or after
  ``pool_limit`` samples, new queries are made by Jacobian-based dataset augmentation
  (Papernot et al., "Practical Black-Box Attacks against Machine Learning", AsiaCCS 2017):
  ``x + λ · sign(∇ₓ s_ŷ(x))`` on earlier queries, with ``s`` the current surrogate and ``ŷ``
  the victim's label, the sign of ``λ`` flipping every ``tau`` rounds;
* uniform noise over the valid input range (``random``).

Training adapts to what the victim reveals: soft-label cross-entropy (equivalently the KL
divergence to the victim's distribution) when it returns probabilities, rounded or not, and
hard-label cross-entropy when it returns only the top-1 label.

The attack runs in rounds whose ends are the budget checkpoints (250, 500, 1000, ...): at each,
the surrogate is trained from scratch on every answer so far and scored on held-out data by
*fidelity* (agreement with the victim's labels) and *accuracy* (agreement with the true
labels). A victim that stops answering (quota exhausted, key blocked) ends the attack with a
partial result at the queries answered.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from mlwarden.attacks.extraction.victim import QueryRefused, Victim
from mlwarden.errors import AttackError
from mlwarden.models.base import Classifier

__all__ = [
    "DEFAULT_CHECKPOINTS",
    "BudgetPoint",
    "ExtractionResult",
    "KnockoffExtraction",
    "surrogate_for",
]

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINTS: tuple[int, ...] = (250, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000)


@dataclass(frozen=True)
class BudgetPoint:
    """The surrogate after ``queries`` answers: fidelity and accuracy on held-out data."""

    queries: int
    fidelity: float | None
    accuracy: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {"queries": self.queries, "fidelity": self.fidelity, "accuracy": self.accuracy}


@dataclass
class ExtractionResult:
    """What an extraction attack achieved.

    Attributes
    ----------
    points
        One :class:`BudgetPoint` per checkpoint reached (and one at the stop, if partial).
    queries
        Queries the victim answered.
    budget
        Queries the attacker was prepared to send.
    stopped
        ``None`` when the whole budget was spent, else why the victim stopped answering
        (``quota``, ``blocked``, ...).
    hard_labels
        Whether the victim revealed only labels (the surrogate trained on hard labels).
    victim_accuracy
        The victim's accuracy on the held-out data (the ceiling of surrogate accuracy).
    first_alert_at, alerts
        Queries answered when the first gateway alert came back, and every alert seen.
    rate_limited, requests
        429 answers waited out, and requests answered.
    """

    victim: str
    query_data: str
    budget: int
    queries: int
    stopped: str | None
    hard_labels: bool
    points: list[BudgetPoint]
    victim_accuracy: float | None
    n_eval: int
    seed: int
    seconds: float
    first_alert_at: int | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    rate_limited: int = 0
    requests: int = 0
    surrogate: nn.Module | None = field(default=None, repr=False)

    @property
    def final(self) -> BudgetPoint | None:
        """The last budget point (the surrogate that was kept)."""
        return self.points[-1] if self.points else None

    def fidelity_at(self, queries: int) -> float | None:
        """Fidelity at exactly ``queries`` answers, if that checkpoint was reached."""
        for point in self.points:
            if point.queries == queries:
                return point.fidelity
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (the surrogate's weights are not included)."""
        final = self.final
        return {
            "attack": "knockoff",
            "victim": self.victim,
            "query_data": self.query_data,
            "budget": self.budget,
            "queries": self.queries,
            "stopped": self.stopped,
            "hard_labels": self.hard_labels,
            "victim_accuracy": self.victim_accuracy,
            "n_eval": self.n_eval,
            "seed": self.seed,
            "seconds": round(self.seconds, 3),
            "fidelity": final.fidelity if final else None,
            "accuracy": final.accuracy if final else None,
            "points": [p.to_dict() for p in self.points],
            "first_alert_at": self.first_alert_at,
            "alerts": self.alerts[:50],
            "n_alerts": len(self.alerts),
            "rate_limited": self.rate_limited,
            "requests": self.requests,
        }


def surrogate_for(input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """A small surrogate: a two-convolution CNN for ``(C, H, W)`` images, else a 2-layer MLP."""
    if len(input_shape) == 3 and min(input_shape[1:]) >= 4:
        channels, height, width = input_shape
        return nn.Sequential(
            nn.Conv2d(channels, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * (height // 2) * (width // 2), 64),
            nn.ReLU(),
            nn.Linear(64, n_classes),
        )
    features = int(np.prod(input_shape))
    return nn.Sequential(
        nn.Flatten(), nn.Linear(features, 128), nn.ReLU(), nn.Linear(128, n_classes)
    )


class KnockoffExtraction:
    """Steal a victim's function by training a surrogate on its answers.

    Parameters
    ----------
    budget
        Queries to send at most.
    checkpoints
        Query counts at which the surrogate is trained and scored (those below ``budget``;
        the budget itself is always one).
    query_data
        ``"pool"`` (needs ``pool`` in :meth:`run`) or ``"random"`` (uniform noise).
    pool_limit
        Use at most this many pool samples, then continue with Jacobian augmentation
        (``None``: the whole pool).
    augmentation_step
        λ of the Jacobian augmentation, in input units.
    tau
        The augmentation step's sign flips every ``tau`` rounds (Papernot et al.'s reservoir
        schedule, simplified).
    epochs, min_steps, lr, train_batch_size
        Surrogate training: at least ``epochs`` passes and ``min_steps`` optimiser steps with
        Adam at ``lr``.
    query_batch_size
        Inputs sent to the victim per call.
    num_threads
        PyTorch intra-op threads while the surrogate trains (restored afterwards): batches of 64
        small inputs train fastest on one thread, and far slower on a busy machine with more.
        ``None`` leaves the setting alone.
    seed
        Seed of pool draws, noise, initialisation and shuffling.
    """

    name = "knockoff"

    def __init__(
        self,
        *,
        budget: int,
        checkpoints: tuple[int, ...] = DEFAULT_CHECKPOINTS,
        query_data: str = "pool",
        pool_limit: int | None = None,
        augmentation_step: float = 0.1,
        tau: int = 3,
        epochs: int = 15,
        min_steps: int = 600,
        lr: float = 2e-3,
        train_batch_size: int = 64,
        query_batch_size: int = 250,
        num_threads: int | None = 1,
        seed: int = 0,
    ) -> None:
        self.budget = budget
        self.checkpoints = checkpoints
        self.query_data = query_data
        self.pool_limit = pool_limit
        self.augmentation_step = augmentation_step
        self.tau = tau
        self.epochs = epochs
        self.min_steps = min_steps
        self.lr = lr
        self.train_batch_size = train_batch_size
        self.query_batch_size = query_batch_size
        self.num_threads = num_threads
        self.seed = seed

    def _validate(self, pool: np.ndarray | None) -> None:
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 1:
            raise AttackError(f"budget must be a positive integer, got {self.budget!r}")
        if self.query_data not in ("pool", "random"):
            raise AttackError(f"query_data must be 'pool' or 'random', got {self.query_data!r}")
        if self.query_data == "pool" and (pool is None or len(pool) == 0):
            raise AttackError("query_data='pool' needs a non-empty pool of unlabeled inputs")
        if self.pool_limit is not None and self.pool_limit < 1:
            raise AttackError(f"pool_limit must be >= 1 or None, got {self.pool_limit}")
        if self.epochs < 1 or self.min_steps < 0 or self.lr <= 0:
            raise AttackError(
                f"epochs must be >= 1, min_steps >= 0 and lr > 0; got {self.epochs}, "
                f"{self.min_steps}, {self.lr}"
            )
        if self.query_batch_size < 1 or self.train_batch_size < 1:
            raise AttackError("query_batch_size and train_batch_size must be >= 1")

    def schedule(self) -> list[int]:
        """The checkpoints this run stops at: those below the budget, then the budget."""
        return sorted({c for c in self.checkpoints if 0 < c < self.budget} | {self.budget})

    def run(
        self,
        victim: Victim,
        *,
        x_eval: np.ndarray,
        y_eval: np.ndarray | None = None,
        eval_labels: np.ndarray | Classifier | None = None,
        pool: np.ndarray | None = None,
        query_data_name: str | None = None,
    ) -> ExtractionResult:
        """Attack ``victim`` and score the surrogate at every checkpoint.

        Parameters
        ----------
        victim
            The model to steal (:class:`LocalVictim` or :class:`HttpVictim`).
        x_eval, y_eval
            Held-out inputs (and true labels, for accuracy) the surrogate is scored on; never
            used for training.
        eval_labels
            The victim's top-1 labels on ``x_eval``, or a classifier that computes them (the
            evaluator's copy of the model). ``None``: ask ``victim`` at the end, counted apart
            from the budget; without an answer fidelity is left out (``None``).
        pool
            Unlabeled natural inputs for ``query_data="pool"``.
        query_data_name
            How the query data is named in the result.
        """
        self._validate(pool)
        started = time.perf_counter()
        x_eval = np.asarray(x_eval, dtype=np.float32)
        if tuple(x_eval.shape[1:]) != tuple(victim.input_shape):
            raise AttackError(
                f"evaluation inputs have shape {tuple(x_eval.shape[1:])}; the victim expects "
                f"{tuple(victim.input_shape)}"
            )
        if pool is not None and tuple(pool.shape[1:]) != tuple(victim.input_shape):
            raise AttackError(
                f"query pool inputs have shape {tuple(pool.shape[1:])}; the victim expects "
                f"{tuple(victim.input_shape)}"
            )
        rng = np.random.default_rng(self.seed)
        low, high = victim.clip_range
        order = rng.permutation(len(pool)) if pool is not None else np.zeros(0, dtype=np.int64)
        pool_budget = len(order) if self.pool_limit is None else min(len(order), self.pool_limit)
        pool_used = 0

        xs: list[np.ndarray] = []
        ts: list[np.ndarray] = []
        hard = True  # hard-label training only when every answer was a one-hot label
        stopped: str | None = None
        predictions: list[tuple[int, np.ndarray]] = []
        surrogate: nn.Module | None = None
        answered = 0
        for round_index, checkpoint in enumerate(self.schedule()):
            need = checkpoint - answered
            if self.query_data == "random":
                new = rng.uniform(low, high, size=(need, *victim.input_shape)).astype(np.float32)
            else:
                take = min(need, pool_budget - pool_used)
                parts = []
                if take > 0:
                    assert pool is not None
                    parts.append(pool[order[pool_used : pool_used + take]].astype(np.float32))
                    pool_used += take
                if need - take > 0:
                    parts.append(
                        self._augment(
                            surrogate,
                            victim,
                            np.concatenate(xs) if xs else parts[0],
                            np.concatenate(ts) if ts else None,
                            need - take,
                            rng,
                            round_index,
                        )
                    )
                new = np.concatenate(parts)
            try:
                for start in range(0, len(new), self.query_batch_size):
                    chunk = new[start : start + self.query_batch_size]
                    answer = victim.query(chunk)
                    xs.append(chunk[: len(answer.targets)])
                    ts.append(answer.targets)
                    hard = hard and answer.hard
                    answered += len(answer.targets)
            except QueryRefused as refused:
                if refused.partial is not None and len(refused.partial.targets):
                    got = len(refused.partial.targets)
                    xs.append(chunk[:got])
                    ts.append(refused.partial.targets)
                    hard = hard and refused.partial.hard
                    answered += got
                stopped = refused.reason
                logger.info("victim stopped answering after %d queries: %s", answered, refused)
            if answered == 0 or (predictions and predictions[-1][0] == answered):
                break  # nothing new was answered: the last surrogate stands
            surrogate = self._train(np.concatenate(xs), np.concatenate(ts), hard, victim)
            predictions.append((answered, _predict(surrogate, x_eval)))
            if stopped:
                break

        victim_labels, victim_accuracy = self._eval_labels(victim, x_eval, y_eval, eval_labels)
        points = []
        for queries, predicted in predictions:
            fidelity = (
                float(np.mean(predicted == victim_labels)) if victim_labels is not None else None
            )
            accuracy = float(np.mean(predicted == y_eval)) if y_eval is not None else None
            points.append(BudgetPoint(queries=queries, fidelity=fidelity, accuracy=accuracy))
        return ExtractionResult(
            victim=victim.description,
            query_data=query_data_name or self.query_data,
            budget=self.budget,
            queries=victim.queries,
            stopped=stopped,
            hard_labels=hard and answered > 0,
            points=points,
            victim_accuracy=victim_accuracy,
            n_eval=len(x_eval),
            seed=self.seed,
            seconds=time.perf_counter() - started,
            first_alert_at=victim.first_alert_at,
            alerts=list(victim.alerts),
            rate_limited=int(getattr(victim, "rate_limited", 0)),
            requests=victim.requests,
            surrogate=surrogate,
        )

    def _eval_labels(
        self,
        victim: Victim,
        x_eval: np.ndarray,
        y_eval: np.ndarray | None,
        eval_labels: np.ndarray | Classifier | None,
    ) -> tuple[np.ndarray | None, float | None]:
        labels: np.ndarray | None
        if isinstance(eval_labels, Classifier):
            labels = eval_labels.predict(x_eval)
        elif eval_labels is not None:
            labels = np.asarray(eval_labels)
            if labels.shape != (len(x_eval),):
                raise AttackError(
                    f"eval_labels has shape {labels.shape}; expected ({len(x_eval)},)"
                )
        else:
            counted = victim.queries
            try:
                labels = victim.query(x_eval).targets.argmax(axis=1)
            except QueryRefused:
                labels = None
            finally:
                victim.queries = counted  # evaluation queries are not the attacker's budget
        accuracy = (
            float(np.mean(labels == y_eval)) if labels is not None and y_eval is not None else None
        )
        return labels, accuracy

    def _train(self, x: np.ndarray, targets: np.ndarray, hard: bool, victim: Victim) -> nn.Module:
        if self.num_threads is None:
            return self._fit(x, targets, hard, victim)
        previous = torch.get_num_threads()
        torch.set_num_threads(self.num_threads)
        try:
            return self._fit(x, targets, hard, victim)
        finally:
            torch.set_num_threads(previous)

    def _fit(self, x: np.ndarray, targets: np.ndarray, hard: bool, victim: Victim) -> nn.Module:
        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        model = surrogate_for(tuple(victim.input_shape), victim.n_classes)
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        tt = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32))
        labels = tt.argmax(dim=1)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        steps_per_epoch = max(1, -(-len(xt) // self.train_batch_size))
        epochs = max(self.epochs, -(-self.min_steps // steps_per_epoch))
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(xt), generator=generator)
            for start in range(0, len(xt), self.train_batch_size):
                idx = order[start : start + self.train_batch_size]
                optimizer.zero_grad(set_to_none=True)
                logits = model(xt[idx])
                if hard:
                    loss = nn.functional.cross_entropy(logits, labels[idx])
                else:  # soft labels: cross-entropy to the victim's distribution (KL + const)
                    loss = -(tt[idx] * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
                loss.backward()
                optimizer.step()
        return model.eval()

    def _augment(
        self,
        surrogate: nn.Module | None,
        victim: Victim,
        x_seen: np.ndarray,
        t_seen: np.ndarray | None,
        count: int,
        rng: np.random.Generator,
        round_index: int,
    ) -> np.ndarray:
        """Jacobian-based augmentation of ``count`` earlier queries (Papernot et al. 2017)."""
        low, high = victim.clip_range
        idx = rng.choice(len(x_seen), size=count, replace=count > len(x_seen))
        base = torch.from_numpy(np.ascontiguousarray(x_seen[idx], dtype=np.float32))
        step = self.augmentation_step * (-1.0 if (round_index // self.tau) % 2 else 1.0)
        if surrogate is None or t_seen is None:  # no surrogate yet: random sign directions
            direction = torch.from_numpy(
                np.sign(rng.standard_normal(base.shape)).astype(np.float32)
            )
        else:
            labels = torch.from_numpy(t_seen[idx].argmax(axis=1))
            base.requires_grad_(True)
            logits = surrogate(base)
            chosen = logits.gather(1, labels[:, None]).sum()
            (grad,) = torch.autograd.grad(chosen, base)
            direction = grad.sign()
            base = base.detach()
        return (base + step * direction).clamp(low, high).numpy().astype(np.float32)


def _predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).argmax(1).numpy()
