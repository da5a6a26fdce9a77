"""Gradient leakage: reconstruct a client's training inputs and labels from one shared update.

In federated learning the server receives model updates, not data; but an update is a function
of the data, and for a small batch it can be inverted. Two attacks, one loop:

* **DLG** (Zhu, Liu and Han, 2019, "Deep Leakage from Gradients"): optimise dummy inputs with
  L-BFGS so that their gradient matches the shared one in squared L2 distance. The label is
  read off the update first, as **iDLG** does (Zhao, Mopuri and Bilen, 2020, "iDLG: Improved
  Deep Leakage from Gradients"): with softmax cross-entropy, the gradient of the last layer's
  bias is ``p - onehot(y)`` (averaged over the batch), negative only at the true labels.
* **Inverting gradients** (Geiping, Bauermeister, Dröge and Moeller, 2020, "Inverting Gradients
  -- How easy is it to break privacy in federated learning?"): match the *direction* (cosine
  distance over all layers, which is blind to the update's scale, so the learning rate need not
  be known), add a total-variation prior, take signed Adam steps on a learning-rate schedule,
  keep the inputs in the valid range, and keep the best of several random restarts.

The update a client sends after one local SGD step of learning rate ``lr`` is
``-lr * gradient``: :func:`gradient_from_update` turns it back. An attacker who sees a
secure-aggregation sum (many clients' updates added) or a DP-noised update gets the same call;
the reconstruction then shows what that defence left.

Quality is reported per sample as PSNR and SSIM against the true inputs (:func:`psnr`,
:func:`ssim`), and against a *blank guess* (the mean training image, what an attacker knows
without the update): a reconstruction no closer than the blank guess leaked nothing visible.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torch import nn

from mlwarden.attacks.privacy.inversion import _total_variation
from mlwarden.errors import AttackError

__all__ = [
    "GRADIENT_LEAKAGE_METHODS",
    "GradientLeakage",
    "LeakageResult",
    "gradient_from_update",
    "infer_labels",
    "match_samples",
    "psnr",
    "ssim",
]

GRADIENT_LEAKAGE_METHODS: tuple[str, ...] = ("inverting", "dlg")


def _total(parts: Iterable[torch.Tensor]) -> torch.Tensor:
    """The sum of every element of every tensor in ``parts``."""
    return torch.stack([p.sum() for p in parts]).sum()


def gradient_from_update(
    module: nn.Module, update: Sequence[np.ndarray] | dict[str, np.ndarray], *, lr: float
) -> list[torch.Tensor]:
    """The gradient behind a one-step SGD update: ``-update / lr``, one tensor per parameter.

    Parameters
    ----------
    module
        The model the update belongs to (its parameters give the order and shapes).
    update
        ``new_weights - old_weights`` in ``state_dict`` order (a list) or by name (a dict);
        buffers, if present, are skipped.
    lr
        The client's learning rate (any positive value for the scale-blind ``inverting``).

    Raises
    ------
    AttackError
        Shapes or counts that do not match the module, or ``lr <= 0``.
    """
    if not lr > 0:
        raise AttackError(f"lr must be > 0, got {lr!r}")
    keys = list(module.state_dict().keys())
    by_name = dict(update) if isinstance(update, dict) else dict(zip(keys, update, strict=False))
    if not isinstance(update, dict) and len(update) != len(keys):
        raise AttackError(f"the update has {len(update)} arrays; the model has {len(keys)}")
    grads = []
    for name, parameter in module.named_parameters():
        if name not in by_name:
            raise AttackError(f"the update has no array for parameter {name!r}")
        value = torch.as_tensor(np.asarray(by_name[name]), dtype=parameter.dtype)
        if tuple(value.shape) != tuple(parameter.shape):
            raise AttackError(
                f"update for {name} has shape {tuple(value.shape)}, the model's is "
                f"{tuple(parameter.shape)}"
            )
        grads.append(-value / lr)
    return grads


def infer_labels(
    gradients: Sequence[torch.Tensor], module: nn.Module, batch_size: int
) -> np.ndarray:
    """Labels read off the last layer's gradient (iDLG; Wainakh et al., 2022, for batches).

    The last linear layer's bias gradient is ``mean(p - onehot(y))``: a class present in the
    batch has a negative entry. For one sample it is the single negative entry (Zhao et al.,
    2020); for a batch, the ``batch_size`` most negative entries (repeating the most negative
    when fewer classes are negative, as repeated labels leave fewer).

    Raises
    ------
    AttackError
        The model's last parameter is not a bias of a linear layer.
    """
    names = [name for name, _ in module.named_parameters()]
    if len(names) < 2 or not names[-1].endswith("bias") or gradients[-1].dim() != 1:
        raise AttackError(
            "label inference needs the last layer to be a linear layer with a bias; pass labels"
        )
    bias_grad = gradients[-1].detach().double()
    weight_grad = gradients[-2].detach().double()
    if batch_size == 1:
        # the true class's row of the weight gradient is (p_y - 1) h: all ≤ 0 for ReLU features
        return np.array(
            [int(torch.argmin(weight_grad.sum(1) if weight_grad.dim() == 2 else bias_grad))]
        )
    order = torch.argsort(bias_grad)
    negative = [int(c) for c in order if bias_grad[c] < 0]
    labels = negative[:batch_size]
    while len(labels) < batch_size:
        labels.append(negative[0] if negative else int(order[0]))
    return np.array(sorted(labels))


def psnr(reference: np.ndarray, estimate: np.ndarray, *, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range² / MSE)`` (inf when equal)."""
    mse = float(
        np.mean((np.asarray(reference, np.float64) - np.asarray(estimate, np.float64)) ** 2)
    )
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def ssim(
    reference: np.ndarray, estimate: np.ndarray, *, data_range: float = 1.0, sigma: float = 1.5
) -> float:
    """Structural similarity (Wang, Bovik, Sheikh and Simoncelli, 2004), Gaussian window σ.

    Computed per channel over the last two axes with Gaussian-weighted local statistics
    (``K1 = 0.01``, ``K2 = 0.03``, reflecting borders so small images keep every pixel) and
    averaged. 1 for identical images.
    """
    a = np.asarray(reference, np.float64)
    b = np.asarray(estimate, np.float64)
    if a.shape != b.shape:
        raise AttackError(f"ssim needs equal shapes, got {a.shape} and {b.shape}")
    if a.ndim == 1:
        a, b = a[None, None, :], b[None, None, :]
    elif a.ndim == 2:
        a, b = a[None], b[None]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for x, y in zip(a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:]), strict=True):

        def smooth(v: np.ndarray) -> np.ndarray:
            return gaussian_filter(v, sigma=sigma, mode="reflect", truncate=3.5)

        mx, my = smooth(x), smooth(y)
        vx = smooth(x * x) - mx * mx
        vy = smooth(y * y) - my * my
        cov = smooth(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        values.append(float(s.mean()))
    return float(np.mean(values))


def match_samples(originals: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """For each original, the index of the reconstruction closest to it (batch order is lost).

    A batch's gradient is the same for any order of its samples, so reconstructions come back
    in no particular order; each original is paired with a distinct reconstruction by the
    assignment that minimises the total squared error (Hungarian algorithm).
    """
    from scipy.optimize import linear_sum_assignment

    a = originals.reshape(len(originals), -1).astype(np.float64)
    b = reconstructions.reshape(len(reconstructions), -1).astype(np.float64)
    cost = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    out = np.empty(len(a), dtype=np.int64)
    out[rows] = cols
    return out


@dataclass(frozen=True)
class LeakageResult:
    """What one gradient-leakage attack recovered.

    Attributes
    ----------
    reconstructions
        The reconstructed inputs, ``(batch, *input_shape)``.
    labels
        The labels used (inferred from the update unless given).
    labels_inferred
        Whether :attr:`labels` were read off the update (iDLG) rather than given.
    gradient_loss
        The best restart's final gradient-matching loss.
    restart_losses
        Every restart's final loss.
    params
        The attack's settings.
    """

    reconstructions: np.ndarray
    labels: np.ndarray
    labels_inferred: bool
    gradient_loss: float
    restart_losses: tuple[float, ...]
    params: dict[str, Any] = field(default_factory=dict)

    def scores(
        self,
        originals: np.ndarray,
        *,
        true_labels: np.ndarray | None = None,
        blank: np.ndarray | None = None,
        data_range: float = 1.0,
    ) -> dict[str, Any]:
        """Per-sample PSNR/SSIM against ``originals`` (paired by :func:`match_samples`).

        ``blank`` (one input, e.g. the mean training image) is scored the same way: the bar a
        reconstruction must clear to have leaked anything. ``true_labels`` adds whether the
        label set was recovered.
        """
        pairing = match_samples(originals, self.reconstructions)
        matched = self.reconstructions[pairing]
        out: dict[str, Any] = {
            "psnr_db": [
                psnr(o, r, data_range=data_range) for o, r in zip(originals, matched, strict=True)
            ],
            "ssim": [
                ssim(o, r, data_range=data_range) for o, r in zip(originals, matched, strict=True)
            ],
            "pairing": pairing.tolist(),
        }
        out["mean_psnr_db"] = float(np.mean(out["psnr_db"]))
        out["mean_ssim"] = float(np.mean(out["ssim"]))
        if blank is not None:
            out["blank_psnr_db"] = [psnr(o, blank, data_range=data_range) for o in originals]
            out["blank_ssim"] = [ssim(o, blank, data_range=data_range) for o in originals]
            out["mean_blank_psnr_db"] = float(np.mean(out["blank_psnr_db"]))
        if true_labels is not None:
            out["labels_recovered"] = sorted(int(v) for v in self.labels) == sorted(
                int(v) for v in true_labels
            )
        return out


class GradientLeakage:
    """Reconstruct a batch of inputs from its gradient (DLG/iDLG or inverting gradients).

    Parameters
    ----------
    method
        ``"inverting"`` (Geiping et al., 2020: cosine distance, TV prior, signed Adam) or
        ``"dlg"`` (Zhu et al., 2019, with iDLG labels: L2 distance, L-BFGS).
    iterations
        Optimisation steps per restart.
    restarts
        Independent random starts; the one with the lowest final loss wins.
    lr
        Step size (Adam for ``inverting``, L-BFGS for ``dlg``).
    tv_weight
        Weight of the total-variation prior (``inverting``).
    seed
        Seed of the random starts.
    """

    def __init__(
        self,
        *,
        method: Literal["inverting", "dlg"] = "inverting",
        iterations: int = 1000,
        restarts: int = 2,
        lr: float = 0.1,
        tv_weight: float = 1e-4,
        seed: int = 0,
    ) -> None:
        self.method = method
        self.iterations = iterations
        self.restarts = restarts
        self.lr = lr
        self.tv_weight = tv_weight
        self.seed = seed

    def _validate(self) -> None:
        if self.method not in GRADIENT_LEAKAGE_METHODS:
            raise AttackError(
                f"method {self.method!r} is unknown; choose one of: "
                f"{', '.join(GRADIENT_LEAKAGE_METHODS)}"
            )
        for name in ("iterations", "restarts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise AttackError(f"{name} must be a positive whole number, got {value!r}")
        if not self.lr > 0 or self.tv_weight < 0:
            raise AttackError(
                f"lr must be > 0 and tv_weight ≥ 0, got lr={self.lr!r}, tv_weight={self.tv_weight!r}"
            )

    def reconstruct(
        self,
        module: nn.Module,
        gradients: Sequence[torch.Tensor],
        *,
        batch_size: int,
        input_shape: tuple[int, ...],
        clip_range: tuple[float, float] = (0.0, 1.0),
        labels: np.ndarray | None = None,
    ) -> LeakageResult:
        """Inputs (and labels) whose gradient on ``module`` matches ``gradients``.

        Parameters
        ----------
        module
            The model at the weights the update was computed on (not changed).
        gradients
            One tensor per parameter (:func:`gradient_from_update` makes them from an update).
        batch_size
            How many samples the gradient averages (the attacker's guess).
        input_shape, clip_range
            Shape and valid range of one input.
        labels
            Known labels; ``None`` infers them from the update (iDLG).

        Raises
        ------
        AttackError
            Bad settings, or gradients that do not match the module's parameters.
        """
        self._validate()
        params: list[torch.Tensor] = list(module.parameters())
        if len(gradients) != len(params) or any(
            tuple(g.shape) != tuple(p.shape) for g, p in zip(gradients, params, strict=False)
        ):
            raise AttackError("the gradients do not match the model's parameters (count or shapes)")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise AttackError(f"batch_size must be a positive whole number, got {batch_size!r}")
        target = [g.detach().to(torch.float32) for g in gradients]
        inferred = labels is None
        label_array = (
            infer_labels(target, module, batch_size) if labels is None else np.asarray(labels)
        )
        y = torch.as_tensor(label_array, dtype=torch.long)
        low, high = clip_range
        was_training = module.training
        module.eval()
        generator = torch.Generator().manual_seed(self.seed)
        best: tuple[float, torch.Tensor] | None = None
        losses = []
        try:
            for _ in range(self.restarts):
                start = torch.rand((batch_size, *input_shape), generator=generator)
                x = (low + (high - low) * start).requires_grad_(True)
                if self.method == "inverting":
                    loss = self._inverting(module, params, target, x, y, clip_range)
                else:
                    loss = self._dlg(module, params, target, x, y, clip_range)
                losses.append(loss)
                if best is None or loss < best[0]:
                    best = (loss, x.detach().clone())
        finally:
            module.train(was_training)
            for p in params:
                p.grad = None
        assert best is not None
        return LeakageResult(
            reconstructions=best[1].numpy(),
            labels=label_array,
            labels_inferred=inferred,
            gradient_loss=best[0],
            restart_losses=tuple(losses),
            params={
                "method": self.method,
                "iterations": self.iterations,
                "restarts": self.restarts,
                "lr": self.lr,
                "tv_weight": self.tv_weight,
                "seed": self.seed,
                "batch_size": batch_size,
            },
        )

    def _gradient_of(
        self, module: nn.Module, params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        loss = nn.functional.cross_entropy(module(x), y)
        return torch.autograd.grad(loss, params, create_graph=True)

    def _inverting(
        self,
        module: nn.Module,
        params: list[torch.Tensor],
        target: list[torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
        clip_range: tuple[float, float],
    ) -> float:
        optimizer = torch.optim.Adam([x], lr=self.lr)
        schedule = torch.optim.lr_scheduler.MultiStepLR(
            optimizer,
            milestones=[int(self.iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)],
            gamma=0.1,
        )
        target_norm = torch.sqrt(_total(t * t for t in target))
        loss_value = math.inf
        for _ in range(self.iterations):
            optimizer.zero_grad()
            grads = self._gradient_of(module, params, x, y)
            dot = _total(g * t for g, t in zip(grads, target, strict=True))
            norm = torch.sqrt(_total(g * g for g in grads))
            loss = 1 - dot / (norm * target_norm + 1e-12)
            total = loss + self.tv_weight * _total_variation(x).sum()
            (x_grad,) = torch.autograd.grad(total, [x])
            x.grad = x_grad.sign()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                x.clamp_(*clip_range)
            loss_value = float(loss.detach())
        return loss_value

    def _dlg(
        self,
        module: nn.Module,
        params: list[torch.Tensor],
        target: list[torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
        clip_range: tuple[float, float],
    ) -> float:
        optimizer = torch.optim.LBFGS([x], lr=self.lr, max_iter=1, history_size=100)
        state = {"loss": math.inf}

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            grads = self._gradient_of(module, params, x, y)
            loss = _total((g - t) ** 2 for g, t in zip(grads, target, strict=True))
            (x_grad,) = torch.autograd.grad(loss, [x])
            x.grad = x_grad
            state["loss"] = float(loss.detach())
            return loss.detach()

        for _ in range(self.iterations):
            optimizer.step(closure)
            with torch.no_grad():
                x.clamp_(*clip_range)
            if not math.isfinite(state["loss"]):
                break
        return state["loss"]
