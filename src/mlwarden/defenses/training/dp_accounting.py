"""Privacy accounting of DP-SGD through Opacus's accountants: ε spent, and σ for a target ε.

DP-SGD (Abadi et al., 2016) composes ``steps`` Poisson-subsampled Gaussian mechanisms, each
with sample rate ``q`` and noise multiplier ``σ``. Two of Opacus's accountants are offered:

* ``"rdp"``: Rényi DP of the sampled Gaussian mechanism (Mironov, 2017; Mironov, Talwar and
  Zhang, 2019), converted to (ε, δ) over Opacus's default orders;
* ``"prv"``: privacy random variables (Gopi, Lee and Wutschitz, 2021), numerically tight.

:func:`epsilon_spent` is the ε after a run, :func:`accountant_epsilons` what both accountants
say for the same run, and :func:`noise_multiplier_for` the smallest σ that keeps a run within a
target ε (Opacus's ``get_noise_multiplier``).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

from mlwarden.errors import ConfigError

__all__ = [
    "ACCOUNTANTS",
    "Accountant",
    "accountant_epsilons",
    "check_accountant",
    "check_budget",
    "check_delta",
    "epsilon_spent",
    "noise_multiplier_for",
    "steps_per_epoch",
    "steps_taken",
]

Accountant = Literal["rdp", "prv"]
ACCOUNTANTS: tuple[str, ...] = ("rdp", "prv")


def steps_per_epoch(n_samples: int, batch_size: int) -> int:
    """Opacus's Poisson steps per epoch: ``ceil(n / batch_size)``, so ``q = 1 / steps``."""
    return math.ceil(n_samples / batch_size)


def check_budget(epsilon: float, delta: float, n_samples: int) -> None:
    """Raise :class:`ConfigError` unless ``0 < epsilon < inf`` and ``0 < delta < 1/n_samples``.

    ``n_samples = 0`` (size unknown) skips the ``δ < 1/n`` check.
    """
    if not (isinstance(epsilon, int | float) and math.isfinite(epsilon) and epsilon > 0):
        raise ConfigError(f"--epsilon must be a positive finite number, got {epsilon!r}")
    check_delta(delta, n_samples)


def check_delta(delta: float, n_samples: int) -> None:
    """Raise :class:`ConfigError` unless ``0 < delta < 1`` and, for ``n_samples > 0``, ``< 1/n``."""
    if not (isinstance(delta, int | float) and 0 < delta < 1):
        raise ConfigError(f"--delta must lie in (0, 1), got {delta!r}")
    if n_samples > 0 and delta >= 1.0 / n_samples:
        raise ConfigError(
            f"--delta {delta:g} is not below 1/n = {1.0 / n_samples:.3g} for n={n_samples} "
            "training samples: a mechanism that publishes one random sample in the clear "
            f"meets such a δ; use δ ≪ 1/n (e.g. {10 ** math.floor(math.log10(0.1 / n_samples)):g})"
        )


def check_accountant(accountant: str) -> None:
    """Raise :class:`ConfigError` unless ``accountant`` is one of :data:`ACCOUNTANTS`."""
    if accountant not in ACCOUNTANTS:
        raise ConfigError(
            f"unknown accountant {accountant!r}; choose one of: {', '.join(ACCOUNTANTS)}"
        )


def _opacus_accountant(accountant: str, noise_multiplier: float, sample_rate: float, steps: int):  # type: ignore[no-untyped-def]
    from opacus.accountants import PRVAccountant, RDPAccountant

    check_accountant(accountant)
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

    check_accountant(accountant)
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


def steps_taken(accountant: Any) -> int:
    """Noisy steps an Opacus accountant has recorded (the sum over its history)."""
    return sum(int(steps) for _, _, steps in accountant.history)
