"""The epoch loop shared by the robust trainers, and the torch helpers they use.

A trainer is constructed with keyword-only hyperparameters that it only stores; ``fit(module,
x, y)`` validates them, trains ``module`` in place with Adam on seeded shuffles, and after every
epoch measures the held-out metrics the subclass defines. Learned state ends in ``_``:
``module_`` (the trained module) and ``history_`` (one :class:`EpochRecord` per epoch).
"""

from __future__ import annotations

import contextlib
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mlwarden.attacks.evasion.gradient_descent import (
    FixedStep,
    classification_objective,
    projected_gradient_descent,
    random_start,
)
from mlwarden.data.dataset import check_shapes
from mlwarden.errors import ConfigError, DataError

__all__ = [
    "EpochRecord",
    "RobustTrainer",
    "as_tensors",
    "evaluate_accuracy",
    "pgd_robust_accuracy",
    "set_mode",
]


@dataclass(frozen=True)
class EpochRecord:
    """What one training epoch did and how the model scored on held-out data afterwards.

    Attributes
    ----------
    epoch
        1-based epoch number.
    train_loss
        Mean training loss over the epoch's batches.
    clean_accuracy
        Held-out accuracy on unperturbed inputs (``None`` without held-out data).
    robust_accuracy
        Held-out accuracy under PGD at the target ε (adversarial training only).
    noisy_accuracy
        Held-out accuracy of the base model under Gaussian noise σ (noise training only).
    eps
        The training ε at the end of the epoch (it ramps up during warm-up).
    seconds
        Wall time of the epoch, training and evaluation.
    """

    epoch: int
    train_loss: float
    clean_accuracy: float | None = None
    robust_accuracy: float | None = None
    noisy_accuracy: float | None = None
    eps: float | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view without the fields this trainer does not measure."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def as_tensors(x: Any, y: Any, *, what: str = "training data") -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` as a float32 tensor and ``y`` as int64 labels, or :class:`DataError`."""
    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    yt = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    check_shapes(xt, yt, source=what)
    if yt.is_floating_point() or yt.is_complex():
        raise DataError(f"{what}: labels must be integers, got {yt.dtype}")
    xt = xt.to(torch.float32)
    if not torch.isfinite(xt).all():
        raise DataError(f"{what}: x contains NaN or infinite values")
    return xt, yt.to(torch.int64)


def set_mode(module: nn.Module, training: bool) -> bool:
    """Switch ``module`` to training or evaluation mode; return whether it was training.

    ``torch.export`` graph modules carry their mode in the graph and refuse ``train()`` and
    ``eval()``; for them this is a no-op.
    """
    was_training = bool(getattr(module, "training", False))
    with contextlib.suppress(NotImplementedError, RuntimeError):
        module.train(training)
    return was_training


def evaluate_accuracy(
    module: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024
) -> float:
    """Accuracy of ``module`` on ``(x, y)`` in evaluation mode (the mode is restored)."""
    was_training = set_mode(module, False)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            logits = module(x[start : start + batch_size])
            correct += int((logits.argmax(1) == y[start : start + batch_size]).sum())
    set_mode(module, was_training)
    return correct / max(len(x), 1)


def pgd_robust_accuracy(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: str,
    steps: int,
    clip_range: tuple[float, float],
    generator: torch.Generator,
    batch_size: int = 1024,
) -> float:
    """Accuracy under PGD-``steps`` (cross-entropy, random start, step ``2.5·ε/steps``).

    A sample counts as robust only if *every* iterate is still classified correctly, which
    matches PGD with per-sample early stopping (Madry et al., 2018).
    """
    was_training = set_mode(module, False)
    robust = 0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        found = projected_gradient_descent(
            classification_objective(module, yb, targeted=False, loss="ce"),
            xb,
            eps=eps,
            norm=norm,
            steps=steps,
            clip_range=clip_range,
            step_rule=FixedStep(2.5 * eps / steps, norm),
            start=random_start(xb, eps, norm, generator),
            early_stop=True,
        )
        robust += int((~found.success).sum())
    set_mode(module, was_training)
    return robust / max(len(x), 1)


def _check_positive_int(name: str, value: Any, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_positive_float(name: str, value: Any, *, allow_zero: bool = False) -> None:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and (value >= 0 if allow_zero else value > 0)
    )
    if not ok:
        raise ConfigError(
            f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value!r}"
        )


class RobustTrainer(ABC):
    """Base class of the robust trainers: the seeded epoch loop and the held-out curve.

    Parameters
    ----------
    epochs
        Passes over the training data.
    batch_size
        Samples per optimisation step.
    lr, weight_decay
        Adam's learning rate and L2 weight decay.
    clip_range
        ``(low, high)``: the valid input range; perturbed inputs never leave it.
    eval_samples
        Held-out samples scored after every epoch (a fixed seeded subset), to bound the cost of
        the curve.
    seed
        Seeds the shuffles and every random draw of the trainer.
    """

    def __init__(
        self,
        *,
        epochs: int = 10,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        clip_range: tuple[float, float] = (0.0, 1.0),
        eval_samples: int = 500,
        seed: int = 0,
    ) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.clip_range = clip_range
        self.eval_samples = eval_samples
        self.seed = seed

    def _validate_params(self) -> None:
        _check_positive_int("epochs", self.epochs)
        _check_positive_int("batch_size", self.batch_size)
        _check_positive_int("eval_samples", self.eval_samples)
        _check_positive_float("lr", self.lr)
        _check_positive_float("weight_decay", self.weight_decay, allow_zero=True)
        _check_positive_int("seed", self.seed, minimum=0)
        low, high = (float(v) for v in self.clip_range)
        if not low < high:
            raise ConfigError(
                f"clip_range must be (low, high) with low < high, got {self.clip_range!r}"
            )

    def held_out(self, x_val: Any, y_val: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The held-out samples the curve is measured on: at most ``eval_samples``, seeded."""
        xv, yv = as_tensors(x_val, y_val, what="held-out data")
        if len(xv) > self.eval_samples:
            generator = torch.Generator().manual_seed(self.seed + 1)
            pick = torch.randperm(len(xv), generator=generator)[: self.eval_samples].sort().values
            xv, yv = xv[pick], yv[pick]
        return xv, yv

    @abstractmethod
    def batch_loss(
        self,
        module: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        progress: float = math.inf,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The training loss of one batch (scalar, differentiable in the parameters).

        ``progress`` is the number of epochs completed so far, fractional within an epoch; it
        drives warm-up schedules (``inf``, the default, means fully warmed up).
        """

    @abstractmethod
    def evaluate(
        self, module: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> dict[str, float]:
        """Held-out metrics of ``module`` (keys are :class:`EpochRecord` fields).

        ``fit`` calls it after every epoch; call it before training for a baseline.
        """

    def _epoch_extras(self, progress: float) -> dict[str, float]:
        return {}

    def fit(
        self,
        module: nn.Module,
        x: Any,
        y: Any,
        *,
        x_val: Any = None,
        y_val: Any = None,
        on_epoch: Callable[[EpochRecord], None] | None = None,
    ) -> RobustTrainer:
        """Train ``module`` in place on ``(x, y)``; return ``self``.

        Parameters
        ----------
        module
            A PyTorch module returning logits; ``torch.export`` graph modules work too.
        x, y
            Training inputs (NumPy or torch, ``(n, *input_shape)``) and integer labels.
        x_val, y_val
            Held-out data for the per-epoch curve; without it only the loss is recorded.
        on_epoch
            Called with each :class:`EpochRecord` as soon as the epoch ends (for progress).

        Raises
        ------
        ConfigError
            A hyperparameter is invalid.
        DataError
            The data are malformed.
        """
        self._validate_params()
        xt, yt = as_tensors(x, y)
        has_val = x_val is not None and y_val is not None
        if has_val:
            xv, yv = self.held_out(x_val, y_val)
        params = [p for p in module.parameters()]
        if not params:
            raise ConfigError("the module has no parameters to train")
        flags = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(True)
        optimizer = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        shuffle = torch.Generator().manual_seed(self.seed)
        noise = torch.Generator().manual_seed(self.seed + 2)
        evaluation = torch.Generator().manual_seed(self.seed + 3)
        n_batches = math.ceil(len(xt) / self.batch_size)
        self.history_: list[EpochRecord] = []
        for epoch in range(self.epochs):
            started = time.perf_counter()
            set_mode(module, True)
            order = torch.randperm(len(xt), generator=shuffle)
            total = 0.0
            for i, start in enumerate(range(0, len(xt), self.batch_size)):
                idx = order[start : start + self.batch_size]
                progress = epoch + i / n_batches
                loss = self.batch_loss(module, xt[idx], yt[idx], progress=progress, generator=noise)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach())
            set_mode(module, False)
            metrics = self.evaluate(module, xv, yv, evaluation) if has_val else {}
            record = EpochRecord(
                epoch=epoch + 1,
                train_loss=total / n_batches,
                seconds=round(time.perf_counter() - started, 3),
                **self._epoch_extras(epoch + 1.0),
                **metrics,
            )
            self.history_.append(record)
            if on_epoch is not None:
                on_epoch(record)
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)
        self.module_ = module
        return self

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.endswith("_"))
        return f"{type(self).__name__}({params})"
