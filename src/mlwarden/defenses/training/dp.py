"""Differentially private training (DP-SGD) through Opacus, with its privacy accounting.

:func:`train_dp` trains a PyTorch module with DP-SGD (Abadi et al., 2016, "Deep Learning with
Differential Privacy"): every step samples a Poisson batch (each sample independently with
probability ``q``), clips each sample's gradient to L2 norm ``max_grad_norm``, sums, adds
Gaussian noise of standard deviation ``noise_multiplier * max_grad_norm`` and averages. Opacus
does all of it (``PrivacyEngine.make_private``); mlwarden chooses the noise multiplier for the
target (ε, δ) with Opacus's ``get_noise_multiplier`` and the chosen accountant:

* ``"rdp"``: Rényi DP of the sampled Gaussian mechanism (Mironov, 2017; Mironov, Talwar and
  Zhang, 2019), converted to (ε, δ) over Opacus's default orders;
* ``"prv"``: privacy random variables (Gopi, Lee and Wutschitz, 2021), numerically tight.

Every result carries a :class:`PrivacyRecord`: the budget, the mechanism's parameters, the
data's digest and the spent ε after each epoch; :func:`accountant_epsilons` reports what both
accountants say for the same run side by side.

Models Opacus cannot train (BatchNorm mixes samples in a batch, so per-sample gradients are
undefined) are converted with ``opacus.validators.ModuleValidator.fix`` (BatchNorm → GroupNorm)
or refused with a :class:`~mlwarden.errors.ModelError` naming the layer
(:func:`make_dp_compatible`). :func:`digits_dp_cnn` is a DP-friendly digits CNN (GroupNorm and
tanh activations, after Papernot et al., 2021, "Tempered Sigmoid Activations for Deep Learning
with Differential Privacy").

Determinism: with the same ``seed`` the Poisson batches, the noise and the initial weights are
the same, so on the same machine and thread count the trained weights are identical (Opacus
runs in ``secure_mode=False``; secure mode draws from a cryptographic generator that cannot be
seeded).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from mlwarden.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from mlwarden.data.dataset import Dataset

__all__ = [
    "ACCOUNTANTS",
    "GRAD_SAMPLE_MODES",
    "DPEpoch",
    "DPTrainingResult",
    "PrivacyRecord",
    "accountant_epsilons",
    "digits_dp_cnn",
    "epsilon_spent",
    "make_dp_compatible",
    "noise_multiplier_for",
    "steps_per_epoch",
    "train_dp",
]

Accountant = Literal["rdp", "prv"]
ACCOUNTANTS: tuple[str, ...] = ("rdp", "prv")
GRAD_SAMPLE_MODES: tuple[str, ...] = ("hooks", "functorch", "ew", "ghost")

# Defaults tuned on builtin:digits at ε=5, δ=1e-5 (see tests/defenses/test_dp_training.py).
DEFAULT_BATCH_SIZE = 256
DEFAULT_LR = 0.2
DEFAULT_MOMENTUM = 0.9
DEFAULT_EPOCHS = 15
DEFAULT_MAX_GRAD_NORM = 1.0
DEFAULT_GRAD_SAMPLE_MODE = "ghost"


@dataclass(frozen=True)
class PrivacyRecord:
    """The (ε, δ)-DP guarantee a model was trained under and how it was obtained.

    Attributes
    ----------
    epsilon
        The target ε the noise was calibrated to: the claimed guarantee. The accountant's ε
        after training (``epsilon_spent``) never exceeds it.
    delta
        The target δ.
    accountant
        ``"rdp"`` or ``"prv"``: the accountant that calibrated the noise and tracked the spend.
    noise_multiplier
        σ: the noise standard deviation divided by ``max_grad_norm``.
    sample_rate
        q: each sample's probability of joining a (Poisson) batch.
    steps
        Noisy optimizer steps taken.
    max_grad_norm
        C: every per-sample gradient is clipped to this L2 norm.
    epochs, batch_size
        Training length and the expected (logical) batch size.
    dataset_sha256
        SHA-256 of the training data (:meth:`mlwarden.data.Dataset.digest`).
    epsilon_per_epoch
        The chosen accountant's ε spent after each epoch.
    epsilon_rdp, epsilon_prv
        What each accountant says for the finished run (side by side).
    n_samples
        Training-set size (δ must be below ``1/n_samples``).
    grad_sample_mode
        How Opacus computed per-sample gradients.
    converted_layers
        Layers :func:`make_dp_compatible` replaced (e.g. ``"1: BatchNorm2d -> GroupNorm"``).
    """

    epsilon: float
    delta: float
    accountant: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    epochs: int
    batch_size: int
    dataset_sha256: str
    epsilon_per_epoch: tuple[float, ...] = ()
    epsilon_rdp: float | None = None
    epsilon_prv: float | None = None
    n_samples: int = 0
    grad_sample_mode: str = "hooks"
    converted_layers: tuple[str, ...] = ()

    @property
    def epsilon_spent(self) -> float:
        """The chosen accountant's ε at the end of training."""
        return self.epsilon_per_epoch[-1] if self.epsilon_per_epoch else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (``epsilon_spent`` included)."""
        out = asdict(self)
        out["epsilon_per_epoch"] = list(self.epsilon_per_epoch)
        out["epsilon_spent"] = self.epsilon_spent
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrivacyRecord:
        """The record :meth:`to_dict` wrote (extra keys ignored)."""
        names = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in names}
        values["epsilon_per_epoch"] = tuple(values.get("epsilon_per_epoch", ()))
        values["converted_layers"] = tuple(values.get("converted_layers", ()))
        return cls(**values)


@dataclass(frozen=True)
class DPEpoch:
    """One DP-SGD epoch: mean loss and accuracy on its Poisson batches, ε spent so far."""

    epoch: int
    train_loss: float
    train_accuracy: float
    epsilon_spent: float
    test_accuracy: float | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view without unmeasured fields."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class DPTrainingResult:
    """What :func:`train_dp` returns: the plain trained module, its record and its curve."""

    module: nn.Module
    record: PrivacyRecord
    history: list[DPEpoch] = field(default_factory=list)


def digits_dp_cnn() -> nn.Module:
    """A DP-friendly CNN for ``1x8x8`` digits: GroupNorm instead of BatchNorm, tanh activations.

    Bounded activations keep the gradient norm from exploding when clipped noise is added
    (Papernot, Thakurta, Song, Chien and Erlingsson, 2021, "Tempered Sigmoid Activations for
    Deep Learning with Differential Privacy"); GroupNorm normalises per sample, so per-sample
    gradients exist.
    """
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1),
        nn.GroupNorm(4, 16),
        nn.Tanh(),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        nn.GroupNorm(4, 32),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


def make_dp_compatible(module: nn.Module) -> tuple[nn.Module, list[str]]:
    """``module`` made trainable by Opacus, and the names of the layers that were replaced.

    Uses ``opacus.validators.ModuleValidator``: layers it can fix (BatchNorm → GroupNorm,
    InstanceNorm running statistics) are replaced in a copy; anything left that Opacus cannot
    compute per-sample gradients for is refused.

    Raises
    ------
    ModelError
        The module is a ``torch.export`` / TorchScript graph (its layers are gone, so Opacus
        cannot hook them), or a layer cannot be fixed; the message names the layer.
    """
    from opacus.validators import ModuleValidator

    if isinstance(module, torch.jit.ScriptModule | torch.fx.GraphModule):
        raise ModelError(
            f"a {type(module).__name__} (exported or scripted graph) has no layers Opacus can "
            "hook for per-sample gradients; DP-train an nn.Module architecture instead "
            "(--model zoo:NAME trains that zoo model's architecture from scratch)"
        )
    before = {name: type(sub).__name__ for name, sub in module.named_modules()}
    errors = _layer_errors(module)
    if not errors:
        return module, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fixed = ModuleValidator.fix(module)
    remaining = _layer_errors(fixed)
    if remaining:
        detail = "; ".join(f"layer {name!r}: {reason}" for name, reason in remaining)
        raise ModelError(
            f"Opacus cannot train this model with differential privacy: {detail}. Replace "
            "those layers (e.g. BatchNorm → GroupNorm, LSTM → opacus.layers.DPLSTM)"
        )
    after = {name: type(sub).__name__ for name, sub in fixed.named_modules()}
    converted = [
        f"{name or '<root>'}: {kind} -> {after.get(name, '?')}"
        for name, kind in before.items()
        if after.get(name) != kind
    ]
    return fixed, converted


def _layer_errors(module: nn.Module) -> list[tuple[str, str]]:
    """``(layer name, Opacus's reason)`` for every leaf layer Opacus's validators reject."""
    from opacus.validators import ModuleValidator

    errors: list[tuple[str, str]] = []
    for name, sub in module.named_modules():
        if any(True for _ in sub.children()):
            continue
        for error in ModuleValidator.validate(sub, strict=False):
            errors.append((name or "<root>", str(error).strip().splitlines()[0]))
    return errors


def steps_per_epoch(n_samples: int, batch_size: int) -> int:
    """Opacus's Poisson steps per epoch: ``ceil(n / batch_size)``, so ``q = 1 / steps``."""
    return math.ceil(n_samples / batch_size)


def _check_budget(epsilon: float, delta: float, n_samples: int) -> None:
    if not (isinstance(epsilon, int | float) and math.isfinite(epsilon) and epsilon > 0):
        raise ConfigError(f"--epsilon must be a positive finite number, got {epsilon!r}")
    if not (isinstance(delta, int | float) and 0 < delta < 1):
        raise ConfigError(f"--delta must lie in (0, 1), got {delta!r}")
    if n_samples > 0 and delta >= 1.0 / n_samples:
        raise ConfigError(
            f"--delta {delta:g} is not below 1/n = {1.0 / n_samples:.3g} for n={n_samples} "
            "training samples: a mechanism that publishes one random sample in the clear "
            f"meets such a δ; use δ ≪ 1/n (e.g. {10 ** math.floor(math.log10(0.1 / n_samples)):g})"
        )


def _check_accountant(accountant: str) -> None:
    if accountant not in ACCOUNTANTS:
        raise ConfigError(
            f"unknown accountant {accountant!r}; choose one of: {', '.join(ACCOUNTANTS)}"
        )


def _opacus_accountant(accountant: str, noise_multiplier: float, sample_rate: float, steps: int):  # type: ignore[no-untyped-def]
    from opacus.accountants import PRVAccountant, RDPAccountant

    _check_accountant(accountant)
    acc = RDPAccountant() if accountant == "rdp" else PRVAccountant()
    acc.history = [(float(noise_multiplier), float(sample_rate), int(steps))] if steps else []
    return acc


def epsilon_spent(
    *,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: str = "rdp",
) -> float:
    """ε of ``steps`` Poisson-subsampled Gaussian steps at (σ, q), by Opacus's accountant.

    Parameters
    ----------
    noise_multiplier, sample_rate, steps
        σ, q and the number of steps.
    delta
        The δ to convert to.
    accountant
        ``"rdp"`` (Mironov 2017, over Opacus's ``DEFAULT_ALPHAS``) or ``"prv"`` (Gopi et al.
        2021, Opacus's default ``eps_error=0.01``).
    """
    if steps <= 0:
        return 0.0
    return float(
        _opacus_accountant(accountant, noise_multiplier, sample_rate, steps).get_epsilon(delta)
    )


def accountant_epsilons(
    *, noise_multiplier: float, sample_rate: float, steps: int, delta: float
) -> dict[str, float]:
    """ε by every accountant for the same run: ``{"rdp": ..., "prv": ...}``."""
    return {
        name: epsilon_spent(
            noise_multiplier=noise_multiplier,
            sample_rate=sample_rate,
            steps=steps,
            delta=delta,
            accountant=name,
        )
        for name in ACCOUNTANTS
    }


def noise_multiplier_for(
    *, epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str = "rdp"
) -> float:
    """The smallest σ (to Opacus's tolerance) whose ε after ``steps`` steps is at most ``epsilon``.

    Opacus's ``get_noise_multiplier`` (bisection on the accountant's ε).

    Raises
    ------
    ConfigError
        The budget is too small for any σ Opacus will consider.
    """
    from opacus.accountants.utils import get_noise_multiplier

    _check_accountant(accountant)
    try:
        with warnings.catch_warnings():
            # the bisection probes extreme σ, where RDP's best order sits at the grid's end
            warnings.filterwarnings("ignore", message="Optimal order is the")
            sigma = get_noise_multiplier(
                target_epsilon=epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=accountant,
            )
    except ValueError as exc:
        raise ConfigError(
            f"no noise multiplier reaches ε={epsilon:g} at δ={delta:g} with q={sample_rate:.4g} "
            f"over {steps} steps ({exc}); raise --epsilon, or train fewer epochs"
        ) from exc
    return float(sigma)


def _check_training_params(
    *,
    epochs: int,
    max_grad_norm: float,
    batch_size: int,
    lr: float,
    n_samples: int,
    grad_sample_mode: str,
) -> None:
    if not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"--epochs must be a positive integer, got {epochs!r}")
    if not (math.isfinite(max_grad_norm) and max_grad_norm > 0):
        raise ConfigError(f"--max-grad-norm must be a positive number, got {max_grad_norm!r}")
    if not isinstance(batch_size, int) or not 1 <= batch_size <= n_samples:
        raise ConfigError(
            f"--batch-size must be an integer in [1, {n_samples}] (the training-set size), "
            f"got {batch_size!r}"
        )
    if not (math.isfinite(lr) and lr > 0):
        raise ConfigError(f"--lr must be a positive number, got {lr!r}")
    if grad_sample_mode not in GRAD_SAMPLE_MODES:
        raise ConfigError(
            f"unknown grad_sample_mode {grad_sample_mode!r}; choose one of: "
            f"{', '.join(GRAD_SAMPLE_MODES)}"
        )


def _accuracy(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    was_training = module.training
    module.eval()
    with torch.no_grad():
        correct = sum(
            int((module(x[i : i + 1024]).argmax(1) == y[i : i + 1024]).sum())
            for i in range(0, len(x), 1024)
        )
    module.train(was_training)
    return correct / len(x)


def train_dp(
    module: nn.Module,
    train: Dataset,
    *,
    epsilon: float,
    delta: float,
    epochs: int,
    max_grad_norm: float,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lr: float = DEFAULT_LR,
    accountant: str = "rdp",
    seed: int = 0,
    on_epoch: Callable[[DPEpoch], None] | None = None,
    val: Dataset | None = None,
    momentum: float = DEFAULT_MOMENTUM,
    grad_sample_mode: str = DEFAULT_GRAD_SAMPLE_MODE,
) -> DPTrainingResult:
    """Train ``module`` with DP-SGD to (``epsilon``, ``delta``)-DP on ``train`` (Abadi et al. 2016).

    The noise multiplier is the smallest σ for which the chosen accountant's ε after
    ``epochs`` epochs of Poisson batches (``q = 1/ceil(n/batch_size)``) is at most
    ``epsilon``. Training is SGD with momentum on Opacus's noisy, clipped gradients.

    Parameters
    ----------
    module
        An ``nn.Module`` mapping a batch to logits, trained in place after
        :func:`make_dp_compatible` (a BatchNorm model is converted first, so the returned
        module may be a converted copy). Its parameters must not have seen ``train``
        without DP, or the guarantee means nothing.
    train
        The private training data.
    epsilon, delta
        The target budget; ``delta`` must be below ``1/len(train)``.
    epochs
        Passes over the data (each ``ceil(n/batch_size)`` Poisson steps).
    max_grad_norm
        Per-sample clipping norm C.
    batch_size
        Expected (logical) Poisson batch size.
    lr, momentum
        SGD learning rate and momentum.
    accountant
        ``"rdp"`` or ``"prv"``: calibrates σ and tracks the spend.
    seed
        Seeds the Poisson sampler and the noise.
    on_epoch
        Called with each :class:`DPEpoch` as it finishes.
    val
        Held-out data; when given each epoch records its accuracy.
    grad_sample_mode
        Opacus's per-sample gradient engine: ``"hooks"`` (Opacus's default), ``"functorch"``,
        ``"ew"`` (expanded weights) or ``"ghost"`` (ghost clipping: Li, Tramèr, Liang and
        Hashimoto, 2022; the default, fastest on the digits CNN, see ``benchmarks/bench_dp.py``).
        All four compute the same clipped sum, so the same seed gives the same model up to
        floating-point rounding.

    Returns
    -------
    DPTrainingResult
        The plain trained module (Opacus wrappers removed, in eval mode), its
        :class:`PrivacyRecord` and the per-epoch history.

    Raises
    ------
    ConfigError
        A bad ε, δ (not below 1/n), epochs, clipping norm, batch size, learning rate or
        accountant; or a budget no noise level reaches.
    ModelError
        Opacus cannot compute per-sample gradients for the model (see
        :func:`make_dp_compatible`).
    """
    from opacus import PrivacyEngine

    n = len(train)
    _check_accountant(accountant)
    _check_budget(epsilon, delta, n)
    _check_training_params(
        epochs=epochs,
        max_grad_norm=max_grad_norm,
        batch_size=batch_size,
        lr=lr,
        n_samples=n,
        grad_sample_mode=grad_sample_mode,
    )
    module, converted = make_dp_compatible(module)
    xt = torch.from_numpy(np.ascontiguousarray(train.x, dtype=np.float32))
    yt = torch.from_numpy(np.ascontiguousarray(train.y).astype(np.int64))
    xv = yv = None
    if val is not None:
        xv = torch.from_numpy(np.ascontiguousarray(val.x, dtype=np.float32))
        yv = torch.from_numpy(np.ascontiguousarray(val.y).astype(np.int64))

    sample_rate = 1.0 / steps_per_epoch(n, batch_size)
    # Opacus's Poisson sampler runs int(1 / sample_rate) steps an epoch, which float rounding
    # makes one fewer than ceil(n / batch_size) for some sizes (93, 99, 105, ...): calibrate
    # the noise for the steps that are actually run
    per_epoch = int(1.0 / sample_rate)
    total_steps = per_epoch * epochs
    sigma = noise_multiplier_for(
        epsilon=epsilon,
        delta=delta,
        sample_rate=sample_rate,
        steps=total_steps,
        accountant=accountant,
    )
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(xt, yt),
        batch_size=batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    module.train()
    optimizer = torch.optim.SGD(module.parameters(), lr=lr, momentum=momentum)
    criterion = nn.CrossEntropyLoss()
    with warnings.catch_warnings():
        # Opacus warns that secure_mode is off: seeded, reproducible runs need it off.
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant=accountant, secure_mode=False)
        prepared = engine.make_private(
            module=module,
            optimizer=optimizer,
            criterion=criterion,
            data_loader=loader,
            noise_multiplier=sigma,
            max_grad_norm=max_grad_norm,
            poisson_sampling=True,
            noise_generator=torch.Generator().manual_seed(seed + 1),
            grad_sample_mode=grad_sample_mode,
        )
    if grad_sample_mode == "ghost":
        private_module, dp_optimizer, dp_criterion, dp_loader = prepared
    else:
        private_module, dp_optimizer, dp_loader = prepared
        dp_criterion = criterion
    if len(dp_loader) != per_epoch or dp_loader.sample_rate != sample_rate:  # pragma: no cover
        raise ModelError(
            f"Opacus runs {len(dp_loader)} steps an epoch at sample rate "
            f"{dp_loader.sample_rate}; mlwarden accounted for {per_epoch} at {sample_rate}"
        )

    history: list[DPEpoch] = []
    spent: list[float] = []
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # Opacus's backward hooks fire on the first layer, whose input needs no gradient;
        # torch warns about that, harmlessly for per-sample parameter gradients.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        torch.manual_seed(seed + 2)  # dropout and any other global-RNG layers
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            loss_sum, correct, seen = 0.0, 0, 0
            for xb, yb in dp_loader:
                dp_optimizer.zero_grad(set_to_none=True)
                logits = private_module(xb)
                loss = dp_criterion(logits, yb)
                loss.backward()
                dp_optimizer.step()
                if len(yb):
                    loss_sum += float(loss.detach()) * len(yb)
                    correct += int((logits.detach().argmax(1) == yb).sum())
                    seen += len(yb)
            eps_now = epsilon_spent(
                noise_multiplier=sigma,
                sample_rate=sample_rate,
                steps=_steps_taken(engine.accountant),
                delta=delta,
                accountant=accountant,
            )
            spent.append(eps_now)
            test_acc = _accuracy(module, xv, yv) if xv is not None and yv is not None else None
            record = DPEpoch(
                epoch=epoch,
                train_loss=loss_sum / max(seen, 1),
                train_accuracy=correct / max(seen, 1),
                epsilon_spent=eps_now,
                test_accuracy=test_acc,
                seconds=time.perf_counter() - started,
            )
            history.append(record)
            if on_epoch is not None:
                on_epoch(record)
    steps_taken = _steps_taken(engine.accountant)
    side_by_side = accountant_epsilons(
        noise_multiplier=sigma, sample_rate=sample_rate, steps=steps_taken, delta=delta
    )
    if hasattr(private_module, "to_standard_module"):
        private_module.to_standard_module()  # removes Opacus's hooks and grad_sample fields
    module.eval()
    for parameter in module.parameters():
        parameter.grad = None
    privacy = PrivacyRecord(
        epsilon=float(epsilon),
        delta=float(delta),
        accountant=accountant,
        noise_multiplier=sigma,
        sample_rate=sample_rate,
        steps=steps_taken,
        max_grad_norm=float(max_grad_norm),
        epochs=epochs,
        batch_size=batch_size,
        dataset_sha256=train.digest(),
        epsilon_per_epoch=tuple(spent),
        epsilon_rdp=side_by_side["rdp"],
        epsilon_prv=side_by_side["prv"],
        n_samples=n,
        grad_sample_mode=grad_sample_mode,
        converted_layers=tuple(converted),
    )
    return DPTrainingResult(module=module, record=privacy, history=history)


def _steps_taken(accountant: Any) -> int:
    """Noisy steps the Opacus accountant saw (every one at the same σ and q here)."""
    return sum(int(steps) for _, _, steps in accountant.history)
