"""A small character-level GRU language model: the generative model memorisation is measured on.

Why characters: the secrets the memorisation attack plants (``"my account number is 4 8 1 9 2
7"``) are then one token per symbol, any text can be encoded without an out-of-vocabulary
word, and the model stays small enough to train in seconds in a test and in minutes on a
corpus of a few hundred thousand characters.

* :class:`CharVocabulary`: characters to token ids, with padding, begin/end-of-line and unknown
  tokens;
* :class:`CharGRU`: embedding → GRU → linear head. ``private=True`` builds the same network on
  Opacus's ``DPGRU`` (per-sample gradients for DP-SGD); its state dict is ``nn.GRU``'s, so
  :meth:`CharGRU.standard_copy` moves the trained weights to the fast ``nn.GRU`` network;
* :class:`CharLanguageModel`: a trained network with its vocabulary: next-token log
  probabilities, sequence log probabilities, saving and loading (``torch.load`` with
  ``weights_only=True``: no pickle code runs);
* :func:`fit_language_model`: Adam on per-line examples, seeded;
* :func:`deduplicate_lines`: exact duplicate lines merged, each distinct line's count kept (the
  step that makes DP-SGD's unit of privacy a distinct line rather than one copy of it).

Each line of text is one example, framed as ``<bos> characters <eos>``; a line longer than
``max_chars`` is cut into pieces. The loss is each example's mean token cross-entropy, averaged
over the batch (so DP-SGD's unit of privacy is one example: one line, or one distinct line
once the text is deduplicated).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mlwarden.errors import ConfigError, DataError, ModelError

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "UNK",
    "CharGRU",
    "CharLanguageModel",
    "CharVocabulary",
    "DeduplicatedLines",
    "deduplicate_lines",
    "encode_batch",
    "fit_language_model",
    "sequence_loss",
    "split_lines",
]

PAD, BOS, EOS, UNK = 0, 1, 2, 3
_SPECIAL = 4
_FORMAT = "mlwarden-char-gru"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class CharVocabulary:
    """Characters to token ids: ``0`` padding, ``1`` begin of line, ``2`` end, ``3`` unknown.

    Attributes
    ----------
    chars
        The known characters, each once; character ``chars[i]`` has id ``i + 4``.
    """

    chars: str

    def __post_init__(self) -> None:
        if len(set(self.chars)) != len(self.chars):
            raise DataError("a vocabulary's characters must be distinct")
        if "\n" in self.chars:
            raise DataError("a vocabulary cannot hold the line break (it separates examples)")

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharVocabulary:
        """Every character that occurs in ``texts`` (line breaks excepted), sorted."""
        seen: set[str] = set()
        for text in texts:
            seen.update(text)
        seen.discard("\n")
        return cls("".join(sorted(seen)))

    @property
    def size(self) -> int:
        """Number of token ids, special tokens included."""
        return len(self.chars) + _SPECIAL

    def _index(self) -> dict[str, int]:
        return {c: i + _SPECIAL for i, c in enumerate(self.chars)}

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``'s characters (unknown characters map to :data:`UNK`)."""
        index = self._index()
        return [index.get(c, UNK) for c in text]

    def require(self, text: str, what: str) -> list[int]:
        """Token ids of ``text``, refusing characters the model has never seen.

        Raises
        ------
        DataError
            ``text`` holds a character outside the vocabulary (names ``what`` and the characters).
        """
        missing = sorted({c for c in text if c not in self._index()})
        if missing:
            raise DataError(
                f"{what} uses character(s) {''.join(missing)!r} the language model's vocabulary "
                "does not have; use characters from its training text"
            )
        return self.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        """The characters of ``ids``; special tokens are dropped, unknown ones become ``�``."""
        out = []
        for i in ids:
            if i == UNK:
                out.append("\ufffd")
            elif i >= _SPECIAL:
                out.append(self.chars[i - _SPECIAL])
        return "".join(out)


class CharGRU(nn.Module):
    """Embedding → GRU → linear head over a character vocabulary.

    Parameters
    ----------
    vocab_size
        Number of token ids (:attr:`CharVocabulary.size`).
    embed_dim, hidden_size, num_layers
        Network size.
    private
        Build the GRU from Opacus's ``DPGRU`` (needed for DP-SGD's per-sample gradients); the
        state dict is the same as with ``nn.GRU``.
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        embed_dim: int = 32,
        hidden_size: int = 256,
        num_layers: int = 1,
        private: bool = False,
    ) -> None:
        super().__init__()
        for key, value in (
            ("vocab_size", vocab_size),
            ("embed_dim", embed_dim),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.private = private
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.gru: nn.Module
        if private:
            from opacus.layers import DPGRU

            self.gru = DPGRU(embed_dim, hidden_size, num_layers=num_layers, batch_first=True)
        else:
            self.gru = nn.GRU(embed_dim, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    def config(self) -> dict[str, int]:
        """The constructor's size arguments."""
        return {
            "vocab_size": self.vocab_size,
            "embed_dim": self.embed_dim,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
        }

    def forward(
        self, tokens: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(batch, time, vocab)`` for each next token, and the final hidden state.

        ``state`` is the hidden state ``(num_layers, batch, hidden_size)`` to start from
        (zeros when ``None``).
        """
        output, last = self.gru(self.embedding(tokens), state)
        return self.head(output), last

    def standard_copy(self) -> CharGRU:
        """The same weights on ``nn.GRU`` (fast inference), in eval mode."""
        copy = CharGRU(
            self.vocab_size,
            embed_dim=self.embed_dim,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
        )
        # DPGRU's state dict has nn.GRU's names, but nested in a module it also keeps its
        # cells' own names (Opacus filters them only at the top level): take nn.GRU's keys
        state = self.state_dict()
        copy.load_state_dict({key: state[key] for key in copy.state_dict()})
        return copy.eval()


def split_lines(texts: Iterable[str], max_chars: int) -> list[str]:
    """Every non-empty line of ``texts``, cut into pieces of at most ``max_chars`` characters."""
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise ConfigError(f"max_chars must be a positive integer, got {max_chars!r}")
    lines = []
    for text in texts:
        for line in text.split("\n"):
            line = line.strip()
            for start in range(0, len(line), max_chars):
                lines.append(line[start : start + max_chars])
    return lines


@dataclass(frozen=True)
class DeduplicatedLines:
    """Each distinct line once, in order of first appearance, with how often it occurred.

    Attributes
    ----------
    lines
        The distinct lines.
    counts
        ``counts[i]``: how many times ``lines[i]`` occurred in the input (at least 1).
    """

    lines: tuple[str, ...]
    counts: tuple[int, ...]

    @property
    def n_input(self) -> int:
        """Number of lines before deduplication."""
        return sum(self.counts)

    @property
    def duplicates_removed(self) -> int:
        """Lines dropped because an identical line came earlier."""
        return self.n_input - len(self.lines)

    @property
    def max_count(self) -> int:
        """Occurrences of the most repeated line (0 for no lines)."""
        return max(self.counts, default=0)


def deduplicate_lines(lines: Iterable[str]) -> DeduplicatedLines:
    """Merge exact duplicate lines: keep the first copy of each, count the copies.

    Why: a text repeated ``k`` times is memorised far more than one seen once (Carlini et al.
    2019; Kandpal, Wallace and Raffel 2022, "Deduplicating Training Data Mitigates Privacy
    Risks in Language Models"), and DP-SGD's guarantee is per training example, so ``k``
    copies of a secret are protected only at group level ``k``. Training on the distinct
    lines makes all copies of a line one example. Only byte-identical lines are merged: a
    secret repeated inside lines that differ elsewhere is kept in each of them.
    """
    counts: dict[str, int] = {}
    for line in lines:
        counts[line] = counts.get(line, 0) + 1
    return DeduplicatedLines(lines=tuple(counts), counts=tuple(counts.values()))


def encode_batch(vocab: CharVocabulary, lines: Sequence[str]) -> torch.Tensor:
    """``(n, longest + 2)`` token ids: ``<bos> line <eos>``, right-padded with :data:`PAD`."""
    width = max((len(line) for line in lines), default=0) + 2
    out = torch.full((len(lines), width), PAD, dtype=torch.long)
    for row, line in enumerate(lines):
        ids = [BOS, *vocab.encode(line), EOS]
        out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def sequence_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of each example's mean next-token cross-entropy (padding ignored).

    ``logits`` are the network's outputs on ``tokens[:, :-1]``; the targets are
    ``tokens[:, 1:]``.
    """
    targets = tokens[:, 1:]
    per_token = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
    ).view(targets.shape)
    mask = (targets != PAD).to(per_token.dtype)
    per_example = (per_token * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    return per_example.mean()


class CharLanguageModel:
    """A trained :class:`CharGRU` with its vocabulary: the generative model under attack.

    Parameters
    ----------
    network
        The trained network (a private one is converted with :meth:`CharGRU.standard_copy`).
    vocab
        The vocabulary it was trained with.
    metadata
        JSON-serialisable facts saved with it (training recipe, privacy record).
    """

    def __init__(
        self,
        network: CharGRU,
        vocab: CharVocabulary,
        *,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if network.vocab_size != vocab.size:
            raise ModelError(
                f"the network has {network.vocab_size} token ids but the vocabulary "
                f"{vocab.size}; pass the vocabulary it was trained with"
            )
        self.network = network.standard_copy() if network.private else network.eval()
        self.vocab = vocab
        self.metadata = dict(metadata or {})

    @property
    def hidden_size(self) -> int:
        """Width of the GRU state."""
        return self.network.hidden_size

    def token_ids(self, text: str, what: str) -> list[int]:
        """Token ids of ``text`` (:meth:`CharVocabulary.require`: unknown characters refused)."""
        return self.vocab.require(text, what)

    def decode(self, ids: Sequence[int]) -> str:
        """The text of token ids (special tokens dropped)."""
        return self.vocab.decode(ids)

    @torch.no_grad()
    def prime(self, text: str, *, what: str = "the prefix") -> tuple[torch.Tensor, torch.Tensor]:
        """Read ``<bos> text``: the next-token log probabilities ``(vocab,)`` and the state.

        Raises
        ------
        DataError
            ``text`` uses characters outside the vocabulary.
        """
        ids = torch.tensor([[BOS, *self.vocab.require(text, what)]], dtype=torch.long)
        logits, state = self.network(ids)
        return torch.log_softmax(logits[0, -1].double(), -1), state

    @torch.no_grad()
    def step(self, state: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed one token per row: log probabilities ``(batch, vocab)`` of the next, new state.

        ``state`` is ``(num_layers, batch, hidden)``; ``tokens`` is ``(batch,)``.
        """
        logits, new_state = self.network(tokens.view(-1, 1), state)
        return torch.log_softmax(logits[:, -1].double(), -1), new_state

    @torch.no_grad()
    def continuation_log_prob(
        self, prefix: str, continuations: Sequence[str], *, batch_size: int = 4096
    ) -> np.ndarray:
        """``log p(continuation | <bos> prefix)`` in nats for each continuation (no ``<eos>``).

        Computed by running the whole sequence through the network, batch by batch: an
        independent path from the trie enumeration of
        :mod:`mlwarden.attacks.privacy.memorization`, which it is tested against.
        """
        prefix_ids = [BOS, *self.vocab.require(prefix, "the prefix")]
        out = np.empty(len(continuations), dtype=np.float64)
        for start in range(0, len(continuations), batch_size):
            chunk = continuations[start : start + batch_size]
            ids = [self.vocab.require(c, "a continuation") for c in chunk]
            lengths = {len(i) for i in ids}
            if len(lengths) != 1:
                raise DataError("continuations scored together must have the same length")
            tokens = torch.tensor([prefix_ids + i for i in ids], dtype=torch.long)
            logits, _ = self.network(tokens[:, :-1])
            logp = torch.log_softmax(logits.double(), -1)
            n = lengths.pop()
            picked = logp[:, -n:].gather(2, tokens[:, -n:].unsqueeze(2)).squeeze(2)
            out[start : start + len(chunk)] = picked.sum(1).numpy()
        return out

    @torch.no_grad()
    def line_losses(self, lines: Sequence[str], *, batch_size: int = 256) -> np.ndarray:
        """Each line's mean next-token cross-entropy (nats per token, ``<eos>`` included).

        Lines are scored in batches of similar length (sorted), so padding stays small.
        """
        out = np.empty(len(lines), dtype=np.float64)
        order = sorted(range(len(lines)), key=lambda i: len(lines[i]))
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            tokens = encode_batch(self.vocab, [lines[i] for i in chosen])
            logits, _ = self.network(tokens[:, :-1])
            targets = tokens[:, 1:]
            per_token = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
            ).view(targets.shape)
            mask = (targets != PAD).to(per_token.dtype)
            out[chosen] = ((per_token * mask).sum(1) / mask.sum(1).clamp_min(1.0)).double().numpy()
        return out

    @torch.no_grad()
    def mean_loss(self, lines: Sequence[str], *, batch_size: int = 256) -> float:
        """Mean per-line next-token cross-entropy (nats per token) on ``lines``."""
        if not lines:
            raise DataError("mean_loss needs at least one line")
        total = 0.0
        for start in range(0, len(lines), batch_size):
            tokens = encode_batch(self.vocab, lines[start : start + batch_size])
            logits, _ = self.network(tokens[:, :-1])
            total += float(sequence_loss(logits, tokens)) * len(tokens)
        return total / len(lines)

    def save(self, path: str | Path) -> Path:
        """Write the weights, vocabulary and metadata to ``path`` (atomic)."""
        import json

        from mlwarden._io import atomic_write_with

        payload = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "config": self.network.config(),
            "chars": self.vocab.chars,
            "metadata_json": json.dumps(self.metadata),
            "state_dict": self.network.state_dict(),
        }

        def write(tmp: Path) -> None:
            torch.save(payload, tmp)

        return atomic_write_with(path, write)

    @classmethod
    def load(cls, path: str | Path) -> CharLanguageModel:
        """Read a model :meth:`save` wrote (``weights_only=True``: no pickled code runs).

        Raises
        ------
        ModelError
            The file is missing, not a saved language model, or damaged.
        """
        import json

        source = Path(path)
        if not source.is_file():
            raise ModelError(f"language model file {str(source)!r} does not exist")
        try:
            payload = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a damaged or foreign file
            raise ModelError(
                f"{str(source)!r} is not a language model saved by mlwarden ({exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''})"
            ) from exc
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ModelError(
                f"{str(source)!r} is not a language model saved by mlwarden "
                f"(expected format {_FORMAT!r})"
            )
        try:
            vocab = CharVocabulary(str(payload["chars"]))
            config = {k: int(v) for k, v in payload["config"].items()}
            network = CharGRU(
                config["vocab_size"],
                embed_dim=config["embed_dim"],
                hidden_size=config["hidden_size"],
                num_layers=config["num_layers"],
            )
            network.load_state_dict(payload["state_dict"])
            metadata = json.loads(payload.get("metadata_json", "{}"))
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelError(f"{str(source)!r} is a damaged language model file: {exc}") from exc
        return cls(network, vocab, metadata=metadata)


def _check_training(epochs: int, batch_size: int, lr: float) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs must be a positive integer, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"lr must be a positive number, got {lr!r}")


def fit_language_model(
    lines: Sequence[str],
    *,
    vocab: CharVocabulary | None = None,
    embed_dim: int = 32,
    hidden_size: int = 256,
    num_layers: int = 1,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
) -> CharLanguageModel:
    """Train a :class:`CharGRU` on ``lines`` with Adam (no privacy), seeded.

    Each epoch shuffles the lines with a generator seeded from ``seed``; gradients are clipped
    to norm 1 (the usual guard against exploding recurrent gradients).

    Parameters
    ----------
    lines
        Training examples, one line each (:func:`split_lines` cuts a corpus into them).
    vocab
        The vocabulary; by default every character of ``lines``.

    Raises
    ------
    DataError
        ``lines`` is empty or a line holds a line break.
    ConfigError
        A bad size, epoch count, batch size or learning rate.
    """
    if not lines:
        raise DataError("a language model needs at least one training line")
    if any("\n" in line for line in lines):
        raise DataError("training lines cannot contain line breaks; split them with split_lines")
    _check_training(epochs, batch_size, lr)
    vocab = vocab or CharVocabulary.from_texts(lines)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = CharGRU(
            vocab.size, embed_dim=embed_dim, hidden_size=hidden_size, num_layers=num_layers
        )
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(network.parameters(), lr=lr)
        network.train()
        for _ in range(epochs):
            order = torch.randperm(len(lines), generator=generator).tolist()
            for start in range(0, len(order), batch_size):
                tokens = encode_batch(vocab, [lines[i] for i in order[start : start + batch_size]])
                optimizer.zero_grad(set_to_none=True)
                logits, _ = network(tokens[:, :-1])
                loss = sequence_loss(logits, tokens)
                loss.backward()
                nn.utils.clip_grad_norm_(network.parameters(), 1.0)
                optimizer.step()
    return CharLanguageModel(
        network,
        vocab,
        metadata={
            "training": {
                "kind": "adam",
                "epochs": epochs,
                "batch_size": batch_size,
                "lr": lr,
                "seed": seed,
                "n_lines": len(lines),
            }
        },
    )
