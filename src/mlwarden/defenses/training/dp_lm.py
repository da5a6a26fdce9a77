"""DP-SGD for the character language model: the defence against memorised training text.

The same network as :func:`mlwarden.models.text_lm.fit_language_model`, built on Opacus's
``DPGRU`` (per-sample gradients of a recurrent layer) and trained through
:func:`~mlwarden.defenses.training.dp.make_private`: Poisson batches of lines, each line's
gradient clipped to ``max_grad_norm``, Gaussian noise calibrated so that the accountant's ε
after ``epochs`` epochs is at most ``epsilon``.

The unit of privacy is explicit (``privacy_unit``):

* ``"distinct-line"`` (the default): exact duplicate lines are merged before training
  (:func:`~mlwarden.models.text_lm.deduplicate_lines`), so one example is one distinct line and
  (ε, δ) covers all copies of a line together. Deduplication is a stable transformation:
  adding or removing every copy of one line changes the deduplicated set by one line, so the
  guarantee holds for that neighbouring relation (Kandpal, Wallace and Raffel 2022 show
  deduplication alone already cuts memorisation of repeated text).
* ``"line"``: every line, copies included, is one example: a line repeated ``k`` times is
  protected only at group level ``k`` (ε grows to about ``k·ε``), which the memorisation
  benchmark measures (the 64-times canary stays exposed). A :class:`~mlwarden.errors.SecurityWarning`
  says so when the text has duplicates.

Neither unit protects a secret repeated inside lines that differ elsewhere (near-duplicates):
exact-match deduplication keeps each such line, and the secret is then protected at group level
``k`` for its ``k`` lines. The privacy record states the unit, the duplicates removed and this
limit.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch

from mlwarden.defenses.training.dp import make_private
from mlwarden.defenses.training.dp_accounting import check_accountant, check_budget
from mlwarden.defenses.training.dp_record import PrivacyRecord
from mlwarden.errors import ConfigError, DataError, SecurityWarning
from mlwarden.models.text_lm import (
    CharGRU,
    CharLanguageModel,
    CharVocabulary,
    DeduplicatedLines,
    deduplicate_lines,
    encode_batch,
    sequence_loss,
)

__all__ = [
    "DEFAULT_PRIVACY_UNIT",
    "PRIVACY_UNITS",
    "DPLanguageModelResult",
    "PrivacyUnit",
    "check_privacy_unit",
    "privacy_unit_notes",
    "train_language_model_dp",
]

PrivacyUnit = Literal["distinct-line", "line"]
PRIVACY_UNITS: tuple[str, ...] = ("distinct-line", "line")
"""The units :func:`train_language_model_dp` can protect: one distinct line, or one line."""
DEFAULT_PRIVACY_UNIT: PrivacyUnit = "distinct-line"
"""The default unit: a repeated secret is covered by the stated ε, not by a multiple of it."""

NEAR_DUPLICATE_NOTE = (
    "Deduplication (privacy_unit='distinct-line') merges only exact duplicate lines: a "
    "secret repeated inside lines that differ elsewhere (near-duplicates, a secret embedded "
    "in varying text) stays in each of those lines and is protected only at group level k "
    "(about k·ε for k such lines); scrub secrets from the text before training."
)


def check_privacy_unit(privacy_unit: object, *, name: str = "privacy_unit") -> PrivacyUnit:
    """``privacy_unit`` if it is one of :data:`PRIVACY_UNITS`.

    Raises
    ------
    ConfigError
        Any other value (the message names ``name``, the allowed units and the value given).
    """
    if privacy_unit not in PRIVACY_UNITS:
        raise ConfigError(f"{name} must be one of {', '.join(PRIVACY_UNITS)}, got {privacy_unit!r}")
    return privacy_unit  # type: ignore[return-value]


def privacy_unit_notes(
    privacy_unit: PrivacyUnit, deduplicated: DeduplicatedLines, epsilon: float
) -> tuple[str, ...]:
    """What a DP guarantee with ``privacy_unit`` covers and what it leaves out, in words.

    ``deduplicated`` is :func:`~mlwarden.models.text_lm.deduplicate_lines` of the input text
    (its counts say how repeated the text was, whichever unit trained).
    """
    repeated = sum(1 for count in deduplicated.counts if count > 1)
    if privacy_unit == "distinct-line":
        unit = (
            f"Unit of privacy: one distinct line. {deduplicated.duplicates_removed} exact "
            f"duplicate line(s) were merged before DP-SGD ({deduplicated.n_input} lines in, "
            f"{len(deduplicated.lines)} trained); (ε={epsilon:g}, δ) covers all copies of a "
            "line together."
        )
    else:
        unit = (
            f"Unit of privacy: one line, copies counted separately. {repeated} distinct "
            f"line(s) occur more than once (the most repeated {deduplicated.max_count} times); "
            f"a line repeated k times is protected only at group level k (about "
            f"{deduplicated.max_count}·ε={deduplicated.max_count * epsilon:g} for the most "
            "repeated). Train with privacy_unit='distinct-line' to merge them."
        )
    return (unit, NEAR_DUPLICATE_NOTE)


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
    privacy_unit: PrivacyUnit = DEFAULT_PRIVACY_UNIT,
    seed: int = 0,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> DPLanguageModelResult:
    """Train a character GRU language model with DP-SGD to (``epsilon``, ``delta``)-DP per unit.

    Adam on Opacus's clipped, noised gradients (DP-Adam: the privacy guarantee is the same as
    DP-SGD's, since Adam only post-processes the noisy gradient). The noise and the Poisson
    batches are seeded (Opacus's secure mode off, announced with a
    :class:`~mlwarden.errors.SecurityWarning` by :func:`make_private`).

    Parameters
    ----------
    lines
        Training lines (no line breaks).
    epsilon, delta
        The target budget; ``delta`` must be below one over the number of trained lines.
    privacy_unit
        ``"distinct-line"`` (default): train on each distinct line once, so the guarantee is
        per distinct line; ``"line"``: every copy is an example (a repeated line gets group
        privacy only; warns when there are duplicates). See the module docstring.
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
        A bad budget, epoch count, batch size, learning rate, clipping norm, accountant or
        privacy unit.

    Warns
    -----
    SecurityWarning
        ``privacy_unit="line"`` on text with duplicate lines (they get group privacy only).
    """
    unit = check_privacy_unit(privacy_unit)
    if not lines:
        raise DataError("a language model needs at least one training line")
    if any("\n" in line for line in lines):
        raise DataError("training lines cannot contain line breaks; split them with split_lines")
    deduplicated = deduplicate_lines(lines)
    if unit == "distinct-line":
        lines = list(deduplicated.lines)
    elif deduplicated.duplicates_removed:
        warnings.warn(
            f"privacy_unit='line' on text with {deduplicated.duplicates_removed} duplicate "
            f"line(s) (the most repeated occurs {deduplicated.max_count} times): a line "
            "repeated k times is protected only at group level k; privacy_unit='distinct-line' "
            "merges them",
            SecurityWarning,
            stacklevel=2,
        )
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
    record = replace(
        private.record(epochs=epochs, epsilon_per_epoch=spent),
        privacy_unit=unit,
        duplicates_removed=deduplicated.duplicates_removed if unit == "distinct-line" else 0,
        notes=privacy_unit_notes(unit, deduplicated, epsilon),
    )
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
                "n_input_lines": deduplicated.n_input,
                "privacy_unit": unit,
            },
            "privacy": record.to_dict(),
        },
    )
    return DPLanguageModelResult(model=model, record=record, losses=tuple(losses))
