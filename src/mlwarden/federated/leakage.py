"""What a federated server sees, and what gradient leakage recovers from it.

:func:`server_view` builds the one update an honest-but-curious server receives in a FedSGD
round (every client takes one SGD step on its batch, momentum off), in one of three settings:

* ``plain``: one client's own update, as plain FedAvg delivers it;
* ``secagg``: the SecAgg+ aggregate of ``clients`` clients (a real Flower SecAgg+ round, so
  the server holds only the sum);
* ``dp``: one client's update made with DP-SGD (per-sample clipping to ``max_grad_norm`` and
  Gaussian noise of multiplier ``noise_multiplier``).

:func:`leakage_experiment` then runs :class:`~mlwarden.attacks.privacy.GradientLeakage` on it
and scores every reconstruction against the true inputs of the client attacked, next to the
blank guess (the mean training image).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from mlwarden.attacks.privacy.gradient_leakage import (
    GradientLeakage,
    LeakageResult,
    gradient_from_update,
    psnr,
    ssim,
)
from mlwarden.data.dataset import Dataset
from mlwarden.errors import ConfigError, SecurityWarning
from mlwarden.federated.client import (
    ROUND_KEY,
    FederatedClient,
    LocalTraining,
    SampleLevelDP,
    get_weights,
)
from mlwarden.federated.runner import run_federated
from mlwarden.federated.server import SecureAggregation

__all__ = ["SERVER_VIEWS", "ServerView", "leakage_experiment", "server_view"]

SERVER_VIEWS: tuple[str, ...] = ("plain", "secagg", "dp")
View = Literal["plain", "secagg", "dp"]
_LR = 0.1


@dataclass(frozen=True)
class ServerView:
    """The update a server received, the model it applies to, and whose data it came from."""

    view: str
    module: nn.Module
    gradients: list[torch.Tensor]
    victim: Dataset
    """The attacked client's batch (for ``secagg``, every client's samples, stacked)."""
    clients: int


def server_view(
    make_module: Callable[[], nn.Module],
    data: Dataset,
    *,
    view: View = "plain",
    batch_size: int = 1,
    clients: int = 5,
    noise_multiplier: float = 1.0,
    max_grad_norm: float = 1.0,
    seed: int = 0,
) -> ServerView:
    """The update a server sees in one FedSGD round (see the module docstring).

    Clients take consecutive batches of ``batch_size`` samples from a seeded shuffle of
    ``data``; the model is ``make_module()`` initialised under ``seed``.

    Raises
    ------
    ConfigError
        An unknown view, too little data, or fewer than 3 clients for ``secagg``.
    """
    if view not in SERVER_VIEWS:
        raise ConfigError(f"--view {view!r} is unknown; choose one of: {', '.join(SERVER_VIEWS)}")
    n_clients = clients if view == "secagg" else 1
    if view == "secagg" and clients < 3:
        raise ConfigError("SecAgg+ needs at least 3 clients")
    if batch_size < 1 or n_clients * batch_size > len(data):
        raise ConfigError(
            f"{n_clients} client(s) × batch {batch_size} needs {n_clients * batch_size} samples; "
            f"{data.name} has {len(data)}"
        )
    order = np.random.default_rng(seed).permutation(len(data))[: n_clients * batch_size]
    chosen = data.subset(np.sort(order), name=f"{data.name}#leakage")
    local = LocalTraining(epochs=1, batch_size=batch_size, lr=_LR, momentum=0.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = make_module()
    before = get_weights(module)
    if view == "secagg":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)
            result = run_federated(
                make_module,
                chosen,
                chosen,
                clients=n_clients,
                rounds=1,
                local=local,
                secure_aggregation=SecureAggregation(),
                seed=seed,
            )
        update = result.round_updates[0]
    else:
        dp = (
            SampleLevelDP(
                noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm, delta=1e-5
            )
            if view == "dp"
            else None
        )
        client = FederatedClient(
            make_module, chosen, partition_id=0, training=local, seed=seed, dp=dp
        )
        after, _, _ = client.fit([w.copy() for w in before], {ROUND_KEY: 1})
        update = [a - b for a, b in zip(after, before, strict=True)]
    return ServerView(
        view=view,
        module=module,
        gradients=gradient_from_update(module, update, lr=_LR),
        victim=chosen,
        clients=n_clients,
    )


def leakage_experiment(
    observed: ServerView,
    attack: GradientLeakage,
    *,
    batch_size: int,
    blank: np.ndarray,
) -> tuple[LeakageResult, dict[str, Any]]:
    """Attack ``observed`` assuming a batch of ``batch_size``; score it against the victim.

    For ``secagg`` every participating client's samples are candidates: each reconstruction is
    scored against the sample it resembles most (the best case for the attacker).
    """
    victim = observed.victim
    result = attack.reconstruct(
        observed.module,
        observed.gradients,
        batch_size=batch_size,
        input_shape=victim.input_shape,
        clip_range=victim.clip_range,
    )
    if observed.view == "secagg" or len(victim) != batch_size:
        closest = [int(np.argmax([psnr(x, r) for x in victim.x])) for r in result.reconstructions]
        originals = victim.x[closest]
        labels = victim.y[closest]
        scores: dict[str, Any] = {
            "psnr_db": [psnr(o, r) for o, r in zip(originals, result.reconstructions, strict=True)],
            "ssim": [ssim(o, r) for o, r in zip(originals, result.reconstructions, strict=True)],
            "blank_psnr_db": [psnr(o, blank) for o in originals],
            "blank_ssim": [ssim(o, blank) for o in originals],
            "pairing": closest,
        }
        scores["labels_recovered"] = sorted(result.labels.tolist()) == sorted(labels.tolist())
        scores["mean_psnr_db"] = float(np.mean(scores["psnr_db"]))
        scores["mean_ssim"] = float(np.mean(scores["ssim"]))
        scores["mean_blank_psnr_db"] = float(np.mean(scores["blank_psnr_db"]))
    else:
        scores = result.scores(victim.x, true_labels=victim.y, blank=blank)
        originals = victim.x
    scores["beats_blank_guess"] = bool(
        np.mean(scores["psnr_db"]) > np.mean(scores["blank_psnr_db"])
    )
    scores["originals"] = originals
    return result, scores
