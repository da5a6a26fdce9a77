"""DP-SGD for the character language model: the defence against memorised training text.

The same network as :func:`mlwarden.models.text_lm.fit_language_model`, built on Opacus's
``DPGRU`` (per-sample gradients of a recurrent layer) and trained through
:func:`~mlwarden.defenses.training.dp.make_private`: Poisson batches of lines, each line's
gradient clipped to ``max_grad_norm``, Gaussian noise calibrated so that the accountant's ε
after ``epochs`` epochs is at most ``epsilon``. The unit of privacy is one training line: a
secret repeated ``k`` times is protected at group level ``k`` (ε grows with ``k``), which is
what the memorisation benchmark measures empirically.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from mlwarden.defenses.training.dp import make_private
from mlwarden.defenses.training.dp_accounting import check_accountant, check_budget
from mlwarden.defenses.training.dp_record import PrivacyRecord
from mlwarden.errors import ConfigError, DataError
from mlwarden.models.text_lm import (
    CharGRU,
    CharLanguageModel,
    CharVocabulary,
    encode_batch,
    sequence_loss,
)

__all__ = ["DPLanguageModelResult", "train_language_model_dp"]


@dataclass(frozen=True)
class DPLanguageModelResult:
    """The DP-trained language model, its privacy record and each epoch's mean training loss."""

    model: CharLanguageModel
    record: PrivacyRecord
    losses: tuple[float, ...]


def train_language_model_dp(
    lines: Sequence[str],
    *,
    epsilon: float,
    delta: float,
    vocab: CharVocabulary | None = None,
    embed_dim: int = 32,
    hidden_size: int = 256,
    num_layers: int = 1,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-2,
    max_grad_norm: float = 1.0,
    accountant: str = "rdp",
    seed: int = 0,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> DPLanguageModelResult:
    """Train a character GRU language model with DP-SGD to (``epsilon``, ``delta``)-DP per line.

    Adam on Opacus's clipped, noised gradients (DP-Adam: the privacy guarantee is the same as
    DP-SGD's, since Adam only post-processes the noisy gradient). The noise and the Poisson
    batches are seeded (Opacus's secure mode off, announced with a
    :class:`~mlwarden.errors.SecurityWarning` by :func:`make_private`).

    Parameters
    ----------
    lines
        Training lines (one example each; no line breaks).
    epsilon, delta
        The target budget; ``delta`` must be below ``1 / len(lines)``.
    epochs, batch_size, lr, max_grad_norm
        Passes over the data, expected Poisson batch size, Adam learning rate, clipping norm.
    on_epoch
        Called after each epoch with ``(epoch, mean loss, ε spent)``.

    Returns
    -------
    DPLanguageModelResult
        The model (moved onto ``nn.GRU`` for fast inference), its privacy record and losses.

    Raises
    ------
    DataError
        No lines, or a line with a line break.
    ConfigError
        A bad budget, epoch count, batch size, learning rate, clipping norm or accountant.
    """
    if not lines:
        raise DataError("a language model needs at least one training line")
    if any("\n" in line for line in lines):
        raise DataError("training lines cannot contain line breaks; split them with split_lines")
    n = len(lines)
    check_accountant(accountant)
    check_budget(epsilon, delta, n)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs must be a positive integer, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= n:
        raise ConfigError(f"batch_size must be an integer in [1, {n}], got {batch_size!r}")
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"lr must be a positive number, got {lr!r}")
    vocab = vocab or CharVocabulary.from_texts(lines)
    tokens = encode_batch(vocab, list(lines))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(tokens),
        batch_size=batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = CharGRU(
            vocab.size,
            embed_dim=embed_dim,
            hidden_size=hidden_size,
            num_layers=num_layers,
            private=True,
        )
        network.train()
        private = make_private(
            network,
            torch.optim.Adam(network.parameters(), lr=lr),
            loader,
            max_grad_norm=max_grad_norm,
            target_delta=delta,
            target_epsilon=epsilon,
            epochs=epochs,
            accountant=accountant,
            criterion=sequence_loss,
            grad_sample_mode="hooks",
            noise_generator=torch.Generator().manual_seed(seed + 1),
        )
        losses: list[float] = []
        spent: list[float] = []
        with warnings.catch_warnings():
            # Opacus's hooks fire on the embedding, whose integer input needs no gradient
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            for epoch in range(1, epochs + 1):
                total, seen = 0.0, 0
                for (batch,) in private.data_loader:
                    private.optimizer.zero_grad(set_to_none=True)
                    if len(batch) == 0:
                        # an empty Poisson batch (probability (1-q)^n): no gradient to clip;
                        # skipping the update depends on the sampling coins only, not the data
                        continue
                    width = int((batch != 0).sum(1).max())  # drop the all-padding columns
                    batch = batch[:, :width]
                    logits, _ = private.module(batch[:, :-1])
                    loss = private.criterion(logits, batch)
                    loss.backward()
                    private.optimizer.step()
                    total += float(loss.detach()) * len(batch)
                    seen += len(batch)
                spent.append(private.epsilon())
                losses.append(total / max(seen, 1))
                if on_epoch is not None:
                    on_epoch(epoch, losses[-1], spent[-1])
    trained = private.to_standard_module()
    assert isinstance(trained, CharGRU)
    record = private.record(epochs=epochs, epsilon_per_epoch=spent)
    model = CharLanguageModel(
        trained,
        vocab,
        metadata={
            "training": {
                "kind": "dp-adam",
                "epochs": epochs,
                "batch_size": batch_size,
                "lr": lr,
                "seed": seed,
                "n_lines": n,
            },
            "privacy": record.to_dict(),
        },
    )
    return DPLanguageModelResult(model=model, record=record, losses=tuple(losses))
