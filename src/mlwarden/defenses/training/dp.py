"""Differentially private training (DP-SGD) through Opacus: privatise your own loop, or train.

DP-SGD (Abadi et al., 2016, "Deep Learning with Differential Privacy"): every step samples a
Poisson batch (each sample independently with probability ``q``), clips each sample's gradient to
L2 norm ``max_grad_norm``, sums, adds Gaussian noise of standard deviation
``noise_multiplier * max_grad_norm`` and divides by the expected batch size. Opacus does all of
it; mlwarden adds the checks, the noise calibration and the record.

* :func:`make_private` is Opacus's ``PrivacyEngine.make_private`` for your own ``nn.Module``,
  optimizer and ``DataLoader``, with the noise either given (``noise_multiplier``) or calibrated
  to a target ε (``target_epsilon`` and ``epochs``) by the chosen accountant
  (:mod:`~mlwarden.defenses.training.dp_accounting`). It returns a :class:`PrivateTraining`:
  the privatised module, optimizer, data loader and criterion, the accountant, the ε spent so
  far and a :class:`~mlwarden.defenses.training.dp_record.PrivacyRecord`.
* :func:`train_dp` is the recipe ``mlwarden harden dp`` runs on it: SGD with momentum on a
  :class:`~mlwarden.data.Dataset`, one record at the end.

Models Opacus cannot train (BatchNorm mixes samples in a batch, so per-sample gradients are
undefined) are converted with ``opacus.validators.ModuleValidator.fix`` (BatchNorm → GroupNorm)
or refused with a :class:`~mlwarden.errors.ModelError` naming the layer
(:func:`make_dp_compatible`). The DP-friendly digits CNN is
:func:`mlwarden.models.zoo.digits_dp_cnn`.

Secure mode: with ``secure_mode=False`` (the default) Opacus draws the noise and the Poisson
batches from PyTorch's ordinary generator, which can be seeded, so the same seed gives the same
model on the same machine and thread count; that noise is not cryptographically secure, so
:func:`make_private` warns with :class:`~mlwarden.errors.SecurityWarning`. ``secure_mode=True``
draws from ``torchcsprng``'s cryptographic generator (Opacus's secure mode), which cannot be
seeded; without ``torchcsprng`` installed it is refused with a
:class:`~mlwarden.errors.ConfigError`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from mlwarden.defenses.training.dp_accounting import (
    ACCOUNTANTS,
    accountant_epsilons,
    check_accountant,
    check_budget,
    check_delta,
    epsilon_spent,
    noise_multiplier_for,
    steps_per_epoch,
    steps_taken,
)
from mlwarden.defenses.training.dp_compat import check_dp_compatible, make_dp_compatible
from mlwarden.defenses.training.dp_record import PrivacyRecord
from mlwarden.errors import ConfigError, ModelError, SecurityWarning

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from mlwarden.data.dataset import Dataset

__all__ = [
    # ACCOUNTANTS, PrivacyRecord, make_dp_compatible, accountant_epsilons, epsilon_spent,
    # noise_multiplier_for and steps_per_epoch live in dp_accounting, dp_record, dp_compat
    "ACCOUNTANTS",
    "GRAD_SAMPLE_MODES",
    "DPEpoch",
    "DPTrainingResult",
    "PrivacyRecord",
    "PrivateTraining",
    "accountant_epsilons",
    "epsilon_spent",
    "make_dp_compatible",
    "make_private",
    "noise_multiplier_for",
    "steps_per_epoch",
    "train_dp",
]

GRAD_SAMPLE_MODES: tuple[str, ...] = ("hooks", "functorch", "ew", "ghost")

# Defaults tuned on builtin:digits at ε=5, δ=1e-5 (see tests/defenses/test_dp_training.py).
DEFAULT_BATCH_SIZE = 256
DEFAULT_LR = 0.2
DEFAULT_MOMENTUM = 0.9
DEFAULT_EPOCHS = 15
DEFAULT_MAX_GRAD_NORM = 1.0
DEFAULT_GRAD_SAMPLE_MODE = "ghost"

INSECURE_NOISE_WARNING = (
    "secure_mode=False: Opacus draws the DP noise and the Poisson batches from PyTorch's "
    "ordinary, seedable generator, which is not cryptographically secure (an attacker who can "
    "predict or recover its state can subtract the noise, and the (ε, δ) guarantee no longer "
    "holds against them). Fine for experiments and reproducible runs; train a model you "
    "release with secure_mode=True (needs the torchcsprng package)."
)


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


@dataclass(frozen=True)
class PrivateTraining:
    """The objects :func:`make_private` privatised, and what they have spent.

    Train with ``module``, ``optimizer``, ``data_loader`` and ``criterion`` exactly as with the
    originals; every ``optimizer.step()`` clips, adds noise and is recorded by ``accountant``.

    Attributes
    ----------
    module
        Opacus's wrapper around your module (computes per-sample gradients).
    optimizer
        Opacus's ``DPOptimizer`` around your optimizer (clips, adds noise, averages).
    data_loader
        Opacus's ``DPDataLoader``: Poisson batches of your loader's dataset.
    criterion
        The loss to call: your criterion, or Opacus's ghost-clipping wrapper of it when
        ``grad_sample_mode="ghost"`` (call ``loss.backward()`` on its output as usual).
    engine
        The ``opacus.PrivacyEngine`` behind them.
    noise_multiplier, max_grad_norm, sample_rate
        σ, C and q.
    delta
        The δ that ε is reported at.
    target_epsilon
        The ε the noise was calibrated to, or ``None`` when ``noise_multiplier`` was given.
    grad_sample_mode, secure_mode
        As passed to :func:`make_private`.
    original_module
        The module you passed (wrapped in place by Opacus).
    batch_size, n_samples
        Your loader's (expected) batch size and its dataset's size (0 if it has no length).
    """

    module: nn.Module
    optimizer: torch.optim.Optimizer
    data_loader: DataLoader[Any]
    criterion: Callable[..., torch.Tensor]
    engine: Any
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    delta: float
    target_epsilon: float | None
    grad_sample_mode: str
    secure_mode: bool
    original_module: nn.Module
    batch_size: int
    n_samples: int

    @property
    def accountant(self) -> Any:
        """Opacus's accountant (``RDPAccountant`` or ``PRVAccountant``) tracking the steps."""
        return self.engine.accountant

    @property
    def steps(self) -> int:
        """Noisy optimizer steps taken so far."""
        return steps_taken(self.accountant)

    def epsilon(self) -> float:
        """ε spent so far at :attr:`delta`, by the accountant that calibrated the noise."""
        return epsilon_spent(
            noise_multiplier=self.noise_multiplier,
            sample_rate=self.sample_rate,
            steps=self.steps,
            delta=self.delta,
            accountant=self.accountant.mechanism(),
        )

    def to_standard_module(self) -> nn.Module:
        """Your module without Opacus's hooks and per-sample gradients, in eval mode.

        Call it when training is over; the privatised objects are not usable afterwards.
        """
        release = getattr(self.module, "to_standard_module", None)
        if callable(release):
            release()  # removes Opacus's hooks and grad_sample fields
        self.original_module.eval()
        for parameter in self.original_module.parameters():
            parameter.grad = None
        return self.original_module

    def record(
        self,
        *,
        epochs: int,
        dataset_sha256: str = "",
        epsilon_per_epoch: Sequence[float] | None = None,
        converted_layers: Sequence[str] = (),
    ) -> PrivacyRecord:
        """The :class:`PrivacyRecord` of the training so far.

        Parameters
        ----------
        epochs
            Epochs trained.
        dataset_sha256
            The training data's digest (:meth:`mlwarden.data.Dataset.digest`), if known.
        epsilon_per_epoch
            ε after each epoch, if you tracked it (:meth:`epsilon`); default: the ε now.
        converted_layers
            What :func:`make_dp_compatible` replaced before the optimizer was built.
        """
        steps = self.steps
        spent = tuple(epsilon_per_epoch) if epsilon_per_epoch is not None else (self.epsilon(),)
        side_by_side = accountant_epsilons(
            noise_multiplier=self.noise_multiplier,
            sample_rate=self.sample_rate,
            steps=steps,
            delta=self.delta,
        )
        return PrivacyRecord(
            epsilon=float(self.target_epsilon if self.target_epsilon is not None else spent[-1]),
            delta=float(self.delta),
            accountant=self.accountant.mechanism(),
            noise_multiplier=self.noise_multiplier,
            sample_rate=self.sample_rate,
            steps=steps,
            max_grad_norm=float(self.max_grad_norm),
            epochs=epochs,
            batch_size=self.batch_size,
            dataset_sha256=dataset_sha256,
            epsilon_per_epoch=spent,
            epsilon_rdp=side_by_side["rdp"],
            epsilon_prv=side_by_side["prv"],
            n_samples=self.n_samples,
            grad_sample_mode=self.grad_sample_mode,
            converted_layers=tuple(converted_layers),
            secure_mode=self.secure_mode,
        )


def make_private(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    data_loader: DataLoader[Any],
    *,
    max_grad_norm: float,
    target_delta: float,
    target_epsilon: float | None = None,
    epochs: int | None = None,
    noise_multiplier: float | None = None,
    accountant: str = "rdp",
    criterion: Callable[..., torch.Tensor] | None = None,
    grad_sample_mode: str = "hooks",
    noise_generator: torch.Generator | None = None,
    secure_mode: bool = False,
) -> PrivateTraining:
    """Privatise your module, optimizer and data loader for DP-SGD (Opacus's ``make_private``).

    Give either ``noise_multiplier`` (σ) or ``target_epsilon`` with ``epochs``: then σ is the
    smallest for which the accountant's ε after ``epochs`` epochs of Poisson batches
    (``q = 1/len(data_loader)``, ``int(1/q)`` steps an epoch, as Opacus's sampler runs them)
    is at most ``target_epsilon``.

    Parameters
    ----------
    module
        An ``nn.Module`` Opacus can compute per-sample gradients for (run
        :func:`make_dp_compatible` on it *before* building ``optimizer``). Its parameters must
        not have seen the private data without DP, or the guarantee means nothing.
    optimizer
        An optimizer over ``module``'s parameters.
    data_loader
        A loader over the private data; its batch size becomes the expected Poisson batch size.
    max_grad_norm
        Per-sample clipping norm C.
    target_delta
        The δ that ε is calibrated and reported at (below ``1/len(dataset)``).
    target_epsilon, epochs
        The target ε and the epochs it must last (instead of ``noise_multiplier``).
    noise_multiplier
        σ, when given directly (instead of ``target_epsilon``).
    accountant
        ``"rdp"`` or ``"prv"``: calibrates σ and tracks the spend.
    criterion
        The loss (default cross-entropy); needed for ``grad_sample_mode="ghost"``.
    grad_sample_mode
        Opacus's per-sample gradient engine: ``"hooks"`` (Opacus's default), ``"functorch"``,
        ``"ew"`` (expanded weights) or ``"ghost"`` (ghost clipping: Li, Tramèr, Liang and
        Hashimoto, 2022).
    noise_generator
        Seeded generator of the noise (Poisson batches come from ``data_loader``'s generator);
        not allowed in secure mode.
    secure_mode
        ``True``: Opacus's secure mode (cryptographic noise and batches from ``torchcsprng``,
        which cannot be seeded). ``False`` (default): seedable, not cryptographically secure
        noise, announced with a :class:`~mlwarden.errors.SecurityWarning`.

    Returns
    -------
    PrivateTraining
        The privatised objects, the accountant, and :meth:`PrivateTraining.record`.

    Raises
    ------
    ConfigError
        A bad ε, δ, σ, epochs, clipping norm, accountant or mode; both or neither of σ and a
        target ε; a budget no σ reaches; ``secure_mode=True`` without ``torchcsprng`` or with a
        ``noise_generator``.
    ModelError
        Opacus cannot compute per-sample gradients for a layer of ``module``.
    """
    from opacus import PrivacyEngine

    n_samples = _dataset_size(data_loader)
    check_accountant(accountant)
    _check_mode(grad_sample_mode)
    if not (
        isinstance(max_grad_norm, int | float)
        and math.isfinite(max_grad_norm)
        and max_grad_norm > 0
    ):
        raise ConfigError(f"--max-grad-norm must be a positive number, got {max_grad_norm!r}")
    if (noise_multiplier is None) == (target_epsilon is None):
        raise ConfigError(
            "give either noise_multiplier or target_epsilon (with epochs), not "
            f"{'both' if noise_multiplier is not None else 'neither'}"
        )
    if target_epsilon is not None:
        check_budget(target_epsilon, target_delta, n_samples)
        if not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(
                f"target_epsilon needs epochs, a positive integer, to calibrate for; got {epochs!r}"
            )
    else:
        check_delta(target_delta, n_samples)
        if not (
            isinstance(noise_multiplier, int | float)
            and math.isfinite(noise_multiplier)
            and noise_multiplier >= 0
        ):
            raise ConfigError(
                f"noise_multiplier must be a finite number >= 0, got {noise_multiplier!r}"
            )
    if secure_mode and noise_generator is not None:
        raise ConfigError(
            "noise_generator cannot be used with secure_mode=True: secure mode draws from a "
            "cryptographic generator that cannot be seeded; drop noise_generator, or use "
            "secure_mode=False for a seeded run"
        )
    check_dp_compatible(module)

    sample_rate = 1.0 / len(data_loader)
    # Opacus's Poisson sampler runs int(1 / sample_rate) steps an epoch, which float rounding
    # makes one fewer than len(data_loader) for some sizes (93, 99, 105, ...): calibrate the
    # noise for the steps that are actually run
    per_epoch = int(1.0 / sample_rate)
    if target_epsilon is not None:
        sigma = noise_multiplier_for(
            epsilon=target_epsilon,
            delta=target_delta,
            sample_rate=sample_rate,
            steps=per_epoch * int(epochs or 0),
            accountant=accountant,
        )
    else:
        sigma = float(noise_multiplier or 0.0)
    loss = criterion if criterion is not None else nn.CrossEntropyLoss()
    with warnings.catch_warnings():
        # replaced by mlwarden's SecurityWarning below, which says what it means
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        try:
            engine = PrivacyEngine(accountant=accountant, secure_mode=secure_mode)
        except ImportError as exc:
            raise ConfigError(
                "secure_mode=True needs the torchcsprng package (Opacus draws cryptographically "
                "secure noise from it), and it cannot be imported "
                f"({exc.__cause__ or exc}); install a torchcsprng build that matches your "
                "torch, or use secure_mode=False (seedable noise, not cryptographically secure)"
            ) from exc
        prepared = engine.make_private(
            module=module,
            optimizer=optimizer,
            criterion=loss,
            data_loader=data_loader,
            noise_multiplier=sigma,
            max_grad_norm=max_grad_norm,
            poisson_sampling=True,
            noise_generator=noise_generator,
            grad_sample_mode=grad_sample_mode,
        )
    if not secure_mode:
        warnings.warn(INSECURE_NOISE_WARNING, SecurityWarning, stacklevel=2)
    if grad_sample_mode == "ghost":
        private_module, dp_optimizer, dp_criterion, dp_loader = prepared
    else:
        private_module, dp_optimizer, dp_loader = prepared
        dp_criterion = loss
    if len(dp_loader) != per_epoch or dp_loader.sample_rate != sample_rate:  # pragma: no cover
        raise ModelError(
            f"Opacus runs {len(dp_loader)} steps an epoch at sample rate "
            f"{dp_loader.sample_rate}; mlwarden accounted for {per_epoch} at {sample_rate}"
        )
    return PrivateTraining(
        module=private_module,
        optimizer=dp_optimizer,
        data_loader=dp_loader,
        criterion=dp_criterion,
        engine=engine,
        noise_multiplier=sigma,
        max_grad_norm=float(max_grad_norm),
        sample_rate=sample_rate,
        delta=float(target_delta),
        target_epsilon=None if target_epsilon is None else float(target_epsilon),
        grad_sample_mode=grad_sample_mode,
        secure_mode=secure_mode,
        original_module=module,
        batch_size=int(data_loader.batch_size or 0),
        n_samples=n_samples,
    )


def _dataset_size(data_loader: DataLoader[Any]) -> int:
    try:
        return len(data_loader.dataset)  # type: ignore[arg-type]
    except TypeError:
        return 0


def _check_mode(grad_sample_mode: str) -> None:
    if grad_sample_mode not in GRAD_SAMPLE_MODES:
        raise ConfigError(
            f"unknown grad_sample_mode {grad_sample_mode!r}; choose one of: "
            f"{', '.join(GRAD_SAMPLE_MODES)}"
        )


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
    _check_mode(grad_sample_mode)


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
    secure_mode: bool = False,
) -> DPTrainingResult:
    """Train ``module`` with DP-SGD to (``epsilon``, ``delta``)-DP on ``train`` (Abadi et al. 2016).

    A recipe on :func:`make_private`: the noise multiplier is the smallest σ for which the
    chosen accountant's ε after ``epochs`` epochs of Poisson batches (``q = 1/ceil(n/batch_size)``)
    is at most ``epsilon``; training is SGD with momentum on Opacus's noisy, clipped gradients.

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
        Seeds the Poisson sampler and the noise (the noise only when ``secure_mode`` is off).
    on_epoch
        Called with each :class:`DPEpoch` as it finishes.
    val
        Held-out data; when given each epoch records its accuracy.
    grad_sample_mode
        Opacus's per-sample gradient engine (see :func:`make_private`); ``"ghost"`` (ghost
        clipping) is the default here, fastest on the digits CNN (``benchmarks/bench_dp.py``).
        All four compute the same clipped sum, so the same seed gives the same model up to
        floating-point rounding.
    secure_mode
        Opacus's secure mode (see :func:`make_private`): off by default, with a
        :class:`~mlwarden.errors.SecurityWarning`; on, the run cannot be reproduced from
        ``seed``.

    Returns
    -------
    DPTrainingResult
        The plain trained module (Opacus wrappers removed, in eval mode), its
        :class:`PrivacyRecord` and the per-epoch history.

    Raises
    ------
    ConfigError
        A bad ε, δ (not below 1/n), epochs, clipping norm, batch size, learning rate or
        accountant; a budget no noise level reaches; secure mode without ``torchcsprng``.
    ModelError
        Opacus cannot compute per-sample gradients for the model (see
        :func:`make_dp_compatible`).
    """
    n = len(train)
    check_accountant(accountant)
    check_budget(epsilon, delta, n)
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

    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(xt, yt),
        batch_size=batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    module.train()
    private = make_private(
        module,
        torch.optim.SGD(module.parameters(), lr=lr, momentum=momentum),
        loader,
        max_grad_norm=max_grad_norm,
        target_delta=delta,
        target_epsilon=epsilon,
        epochs=epochs,
        accountant=accountant,
        criterion=nn.CrossEntropyLoss(),
        grad_sample_mode=grad_sample_mode,
        noise_generator=None if secure_mode else torch.Generator().manual_seed(seed + 1),
        secure_mode=secure_mode,
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
            for xb, yb in private.data_loader:
                private.optimizer.zero_grad(set_to_none=True)
                logits = private.module(xb)
                loss = private.criterion(logits, yb)
                loss.backward()
                private.optimizer.step()
                if len(yb):
                    loss_sum += float(loss.detach()) * len(yb)
                    correct += int((logits.detach().argmax(1) == yb).sum())
                    seen += len(yb)
            eps_now = private.epsilon()
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
    trained = private.to_standard_module()
    privacy = private.record(
        epochs=epochs,
        dataset_sha256=train.digest(),
        epsilon_per_epoch=spent,
        converted_layers=converted,
    )
    return DPTrainingResult(module=trained, record=privacy, history=history)
