"""Unintended memorisation of training text: canary exposure and verbatim regurgitation.

The test of Carlini, Liu, Erlingsson, Kos and Song (2019), "The Secret Sharer: Evaluating and
Testing Unintended Memorization in Neural Networks". Random secrets in a fixed format
(:class:`CanarySpace`, e.g. ``"my account number is 4 8 1 9 2 7"``: ``10**6`` possible
secrets) are planted in the training text, each repeated some number of times
(:func:`plant_canaries`); after training, each secret's *log-perplexity* ``-log2 p(secret |
prefix)`` is compared with that of every other secret of the space. Its rank ``r`` (1: the
model finds it the likeliest of all) gives the *exposure* ``log2 |R| - log2 r``, between 0 and
``log2 |R|`` bits; a secret the model never saw has rank uniform on ``1..|R|`` and expected
exposure about ``1 / ln 2 ≈ 1.44`` bits (:data:`RANDOM_BASELINE_BITS`).

* Exact rank (:func:`candidate_log_perplexities`): all ``|R|`` secrets are scored by walking
  the trie of the space with the recurrent state, level by level, in batches: the prefix is
  read once, each state at depth ``d`` is shared by the ``|A|**(L-d)`` secrets below it, so
  the ``10**6`` six-digit secrets cost about ``2 * 10**5`` batched GRU steps instead of
  ``7 * 10**6``.
* Extrapolated rank (:func:`extrapolated_exposure`): the paper's estimate for spaces too large
  to enumerate: fit a skew-normal distribution to the log-perplexities of a uniform sample of
  secrets (``scipy.stats.skewnorm``) and read the exposure off its CDF,
  ``-log2 F(log-perplexity of the canary)``.
* Regurgitation (:func:`greedy_decode`, :func:`beam_decode`): decoding from the prefix, does
  the model write the secret out verbatim?
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import numpy as np
import torch
from scipy import stats

from mlwarden.errors import AttackError

__all__ = [
    "RANDOM_BASELINE_BITS",
    "Canary",
    "CanaryExposure",
    "CanarySpace",
    "LanguageModel",
    "MemorizationAttack",
    "MemorizationResult",
    "beam_decode",
    "canaries_from_dict",
    "canaries_to_dict",
    "candidate_log_perplexities",
    "exposure_from_rank",
    "extrapolated_exposure",
    "greedy_decode",
    "plant_canaries",
    "rank_of",
]

RANDOM_BASELINE_BITS = 1.0 / math.log(2.0)
"""Expected exposure of a secret the model never saw (rank uniform on ``1..|R|``), in the limit
of a large space: ``E[log2 |R| - log2 r] → 1 / ln 2``."""

_LOG2 = math.log(2.0)


class LanguageModel(Protocol):
    """What the attack needs of a generative model (:class:`~mlwarden.models.text_lm.CharLanguageModel`)."""

    def token_ids(self, text: str, what: str) -> list[int]:
        """Token ids of ``text``; raises :class:`~mlwarden.errors.DataError` for unknown symbols."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """The text of token ids."""
        ...

    def prime(self, text: str, *, what: str = ...) -> tuple[torch.Tensor, torch.Tensor]:
        """Log probabilities ``(vocab,)`` of the token after ``<bos> text``, and the state."""
        ...

    def step(self, state: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed one token per row: next-token log probabilities ``(batch, vocab)``, new state."""
        ...

    def continuation_log_prob(self, prefix: str, continuations: Sequence[str]) -> np.ndarray:
        """``log p(continuation | <bos> prefix)`` in nats, by a full forward pass."""
        ...


@dataclass(frozen=True)
class CanarySpace:
    """The format of the planted secrets and the space ``R`` of all possible ones.

    A secret is ``length`` symbols of ``alphabet``; the canary line is ``prefix`` followed by
    the symbols joined with ``separator``: with the defaults, ``"my account number is 4 8 1 9
    2 7"`` and ``|R| = 10**6``.
    """

    prefix: str = "my account number is "
    alphabet: str = "0123456789"
    length: int = 6
    separator: str = " "

    def __post_init__(self) -> None:
        if len(self.alphabet) < 2 or len(set(self.alphabet)) != len(self.alphabet):
            raise AttackError(
                f"a canary alphabet needs at least two distinct symbols, got {self.alphabet!r}"
            )
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < 1:
            raise AttackError(f"a canary length must be a positive integer, got {self.length!r}")
        if len(self.separator) > 1 or (self.separator and self.separator in self.alphabet):
            raise AttackError(
                f"the canary separator must be one character outside the alphabet (or empty), "
                f"got {self.separator!r}"
            )
        if "\n" in self.prefix + self.alphabet + self.separator:
            raise AttackError("a canary cannot contain a line break")

    @property
    def size(self) -> int:
        """``|R|``: the number of possible secrets."""
        return len(self.alphabet) ** self.length

    @property
    def bits(self) -> float:
        """``log2 |R|``: the largest exposure a secret can have."""
        return self.length * math.log2(len(self.alphabet))

    def check_secret(self, secret: str) -> str:
        """``secret`` if it is ``length`` symbols of the alphabet.

        Raises
        ------
        AttackError
            Wrong length or a symbol outside the alphabet.
        """
        if len(secret) != self.length or any(s not in self.alphabet for s in secret):
            raise AttackError(
                f"secret {secret!r} is not {self.length} symbols of {self.alphabet!r}"
            )
        return secret

    def secret_text(self, secret: str) -> str:
        """What follows the prefix in the canary line: the symbols joined by the separator."""
        return self.separator.join(self.check_secret(secret))

    def render(self, secret: str) -> str:
        """The whole canary line."""
        return self.prefix + self.secret_text(secret)

    def index(self, secret: str) -> int:
        """The secret's position in the enumeration order (base-``|A|`` number, first symbol
        most significant)."""
        base = len(self.alphabet)
        value = 0
        for symbol in self.check_secret(secret):
            value = value * base + self.alphabet.index(symbol)
        return value

    def secret_at(self, index: int) -> str:
        """The secret at enumeration position ``index``."""
        if not 0 <= index < self.size:
            raise AttackError(f"secret index must be in [0, {self.size}), got {index}")
        base = len(self.alphabet)
        symbols = []
        for _ in range(self.length):
            index, digit = divmod(index, base)
            symbols.append(self.alphabet[digit])
        return "".join(reversed(symbols))

    def random_secrets(self, n: int, seed: int) -> list[str]:
        """``n`` distinct secrets drawn uniformly (seeded)."""
        if not 0 <= n <= self.size:
            raise AttackError(f"cannot draw {n} distinct secrets from a space of {self.size}")
        rng = np.random.default_rng(seed)
        chosen: list[int] = []
        seen: set[int] = set()
        while len(chosen) < n:  # bounded: n <= size, and each draw is new with prob >= 1/size
            value = int(rng.integers(self.size))
            if value not in seen:
                seen.add(value)
                chosen.append(value)
        return [self.secret_at(i) for i in chosen]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (with ``size`` and ``bits``)."""
        return {**asdict(self), "size": self.size, "bits": self.bits}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CanarySpace:
        """The space :meth:`to_dict` wrote (derived keys ignored)."""
        try:
            return cls(
                prefix=str(data["prefix"]),
                alphabet=str(data["alphabet"]),
                length=data["length"],
                separator=str(data.get("separator", " ")),
            )
        except KeyError as exc:
            raise AttackError(f"a canary space needs {exc.args[0]!r}") from None


@dataclass(frozen=True)
class Canary:
    """One planted secret and how many times its line was put into the training text."""

    secret: str
    repetitions: int


def canaries_to_dict(space: CanarySpace, canaries: Sequence[Canary]) -> dict[str, Any]:
    """The canary file's content: the space and each secret with its repetition count.

    The secrets are what the attack measures; keep the file as private as the training data.
    """
    return {
        "space": space.to_dict(),
        "canaries": [{"secret": c.secret, "repetitions": c.repetitions} for c in canaries],
    }


def canaries_from_dict(data: Any) -> tuple[CanarySpace, list[Canary]]:
    """The space and canaries :func:`canaries_to_dict` wrote.

    Raises
    ------
    AttackError
        A missing key, a secret outside the space, or a bad repetition count.
    """
    if not isinstance(data, dict) or not isinstance(data.get("space"), dict):
        raise AttackError("a canary file is a mapping with 'space' and 'canaries'")
    space = CanarySpace.from_dict(data["space"])
    items = data.get("canaries")
    if not isinstance(items, list) or not items:
        raise AttackError("a canary file needs a non-empty 'canaries' list")
    canaries = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "secret" not in item:
            raise AttackError(f"canary {i} needs a 'secret'")
        count = item.get("repetitions", 0)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise AttackError(f"canary {i}: repetitions must be an integer >= 0, got {count!r}")
        canaries.append(Canary(space.check_secret(str(item["secret"])), count))
    return space, canaries


def plant_canaries(
    lines: Sequence[str],
    space: CanarySpace,
    repetitions: Sequence[int] = (1, 4, 16, 64),
    *,
    per_count: int = 1,
    seed: int = 0,
) -> tuple[list[str], list[Canary]]:
    """A copy of ``lines`` with random canaries inserted at random positions.

    For each count in ``repetitions`` (0 allowed: a control secret drawn but never inserted),
    ``per_count`` distinct secrets are drawn; each canary's line is inserted that many times.
    ``lines`` itself is not changed.

    Returns
    -------
    (lines, canaries)
        The new training lines and the planted canaries (controls included).
    """
    counts = list(repetitions)
    if not counts or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts):
        raise AttackError(f"repetitions must be integers >= 0, got {counts!r}")
    if isinstance(per_count, bool) or not isinstance(per_count, int) or per_count < 1:
        raise AttackError(f"per_count must be a positive integer, got {per_count!r}")
    secrets = space.random_secrets(len(counts) * per_count, seed)
    canaries = [
        Canary(secret=secrets[i * per_count + j], repetitions=count)
        for i, count in enumerate(counts)
        for j in range(per_count)
    ]
    inserted = [space.render(c.secret) for c in canaries for _ in range(c.repetitions)]
    out = list(lines) + inserted
    # a seeded shuffle of the positions: the canaries land among the real lines
    order = np.random.default_rng([seed, 1]).permutation(len(out))
    return [out[i] for i in order], canaries


def _symbol_ids(model: LanguageModel, space: CanarySpace) -> tuple[torch.Tensor, int | None]:
    ids = model.token_ids(space.alphabet, "the canary alphabet")
    separator = model.token_ids(space.separator, "the canary separator") if space.separator else []
    return torch.tensor(ids, dtype=torch.long), (separator[0] if separator else None)


def candidate_log_perplexities(
    model: LanguageModel, space: CanarySpace, *, max_batch: int = 65536
) -> np.ndarray:
    """``-log2 p(secret text | prefix)`` for every secret of ``space``, in enumeration order.

    The trie of the space is walked with the model's recurrent state: the prefix is read once;
    at depth ``d`` every state is extended by each symbol (and the separator) in one batched
    step, and the score of a symbol is read from its parent's next-token distribution, so the
    last level needs no step at all. At most ``max_batch`` states are stepped at once
    (depth-first over chunks), which bounds memory whatever the space.

    Returns
    -------
    ndarray
        ``(space.size,)`` log-perplexities in bits; ``space.index(secret)`` is a secret's row.
    """
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise AttackError(f"max_batch must be a positive integer, got {max_batch!r}")
    symbols, separator = _symbol_ids(model, space)
    n_symbols = len(symbols)
    logp, state = model.prime(space.prefix, what="the canary prefix")

    def expand(
        state: torch.Tensor, logp: torch.Tensor, base: torch.Tensor, depth: int
    ) -> torch.Tensor:
        # state (layers, n, hidden), logp (n, vocab), base (n,): -log p of the path so far
        chunk = max(1, max_batch // n_symbols)
        if len(base) > chunk:
            return torch.cat(
                [
                    expand(state[:, i : i + chunk], logp[i : i + chunk], base[i : i + chunk], depth)
                    for i in range(0, len(base), chunk)
                ]
            )
        scores = base[:, None] - logp[:, symbols]  # (n, |A|)
        if depth == space.length - 1:
            return scores.reshape(-1)
        n = len(base)
        child_state = state.repeat_interleave(n_symbols, dim=1)
        child_logp, child_state = model.step(child_state, symbols.repeat(n))
        child_scores = scores.reshape(-1)
        if separator is not None:
            child_scores = child_scores - child_logp[:, separator]
            sep = torch.full((n * n_symbols,), separator, dtype=torch.long)
            child_logp, child_state = model.step(child_state, sep)
        return expand(child_state, child_logp, child_scores, depth + 1)

    nats = expand(state, logp[None, :], torch.zeros(1, dtype=torch.float64), 0)
    return (nats / _LOG2).numpy()


def rank_of(log_perplexities: np.ndarray, index: int) -> int:
    """1 + the number of secrets strictly likelier (lower log-perplexity) than secret ``index``."""
    scores = np.asarray(log_perplexities)
    return 1 + int((scores < scores[index]).sum())


def exposure_from_rank(rank: int, size: int) -> float:
    """``log2 size - log2 rank`` (Carlini et al. 2019, Definition 3)."""
    if not 1 <= rank <= size:
        raise AttackError(f"rank must be in [1, {size}], got {rank}")
    return math.log2(size) - math.log2(rank)


def extrapolated_exposure(
    canary_log_perplexity: float | np.ndarray, sample_log_perplexities: np.ndarray, size: int
) -> np.ndarray:
    """Exposure estimated from a skew-normal fit (Carlini et al. 2019, Section 4.3).

    Fits :func:`scipy.stats.skewnorm` to the log-perplexities of uniformly sampled secrets and
    returns ``-log2 F(x)`` for each canary log-perplexity ``x``, capped at ``log2 size`` (no
    secret can have more).
    """
    sample = np.asarray(sample_log_perplexities, dtype=np.float64)
    if sample.ndim != 1 or len(sample) < 10 or not np.isfinite(sample).all():
        raise AttackError("the skew-normal fit needs at least 10 finite sampled log-perplexities")
    shape, loc, scale = stats.skewnorm.fit(sample)
    log_cdf = stats.skewnorm.logcdf(
        np.asarray(canary_log_perplexity, dtype=np.float64), shape, loc, scale
    )
    return np.minimum(-log_cdf / _LOG2, math.log2(size))


def greedy_decode(model: LanguageModel, prefix: str, n_tokens: int) -> list[int]:
    """The ``n_tokens`` token ids greedy decoding writes after ``<bos> prefix``."""
    logp, state = model.prime(prefix, what="the decoding prefix")
    out: list[int] = []
    for _ in range(n_tokens):
        token = int(torch.argmax(logp))
        out.append(token)
        next_logp, state = model.step(state, torch.tensor([token]))
        logp = next_logp[0]
    return out


def beam_decode(
    model: LanguageModel, prefix: str, n_tokens: int, beam_width: int
) -> tuple[list[int], float]:
    """The likeliest ``n_tokens`` continuation beam search finds, and its log probability (nats).

    Keeps the ``beam_width`` likeliest partial sequences at every step; with ``beam_width`` at
    least ``vocab ** (n_tokens - 1)`` it is exact.
    """
    if isinstance(beam_width, bool) or not isinstance(beam_width, int) or beam_width < 1:
        raise AttackError(f"beam_width must be a positive integer, got {beam_width!r}")
    logp, state = model.prime(prefix, what="the decoding prefix")
    scores = torch.zeros(1, dtype=torch.float64)
    sequences = torch.zeros(1, 0, dtype=torch.long)
    logp = logp[None, :]
    vocab = logp.shape[1]
    for position in range(n_tokens):
        total = (scores[:, None] + logp).reshape(-1)
        k = min(beam_width, len(total))
        scores, flat = torch.topk(total, k)
        parent, token = flat // vocab, flat % vocab
        sequences = torch.cat([sequences[parent], token[:, None]], dim=1)
        if position < n_tokens - 1:
            logp, state = model.step(state[:, parent], token)
    return sequences[0].tolist(), float(scores[0])


@dataclass(frozen=True)
class CanaryExposure:
    """The memorisation of one canary.

    Attributes
    ----------
    secret, repetitions
        The planted secret and how often its line was in the training text (0: a control).
    log_perplexity
        ``-log2 p(secret text | prefix)`` in bits.
    rank, exposure
        Exact rank among all ``|R|`` secrets and ``log2 |R| - log2 rank`` (``None`` when only
        extrapolated).
    exposure_extrapolated
        The skew-normal estimate (``None`` when not computed).
    greedy, beam
        The texts greedy and beam decoding write after the prefix.
    greedy_regurgitated, beam_regurgitated
        Whether that text is the secret, verbatim.
    """

    secret: str
    repetitions: int
    log_perplexity: float
    rank: int | None
    exposure: float | None
    exposure_extrapolated: float | None
    greedy: str
    beam: str
    greedy_regurgitated: bool
    beam_regurgitated: bool

    @property
    def best_exposure(self) -> float:
        """The exact exposure when measured, else the extrapolated one."""
        value = self.exposure if self.exposure is not None else self.exposure_extrapolated
        return float("nan") if value is None else float(value)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return asdict(self)


@dataclass(frozen=True)
class MemorizationResult:
    """Exposure and regurgitation of every canary of one model."""

    space: CanarySpace
    canaries: tuple[CanaryExposure, ...]
    method: str
    n_samples: int
    beam_width: int

    @property
    def max_exposure(self) -> float:
        """``log2 |R|``: the exposure of a secret the model ranks first."""
        return self.space.bits

    def exposure_by_repetitions(self) -> dict[int, float]:
        """Mean exposure of the canaries with each repetition count."""
        groups: dict[int, list[float]] = {}
        for c in self.canaries:
            groups.setdefault(c.repetitions, []).append(c.best_exposure)
        return {k: float(np.mean(v)) for k, v in sorted(groups.items())}

    def regurgitated(self) -> list[CanaryExposure]:
        """Canaries written out verbatim by greedy or beam decoding."""
        return [c for c in self.canaries if c.greedy_regurgitated or c.beam_regurgitated]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {
            "attack": "memorization",
            "space": self.space.to_dict(),
            "method": self.method,
            "n_samples": self.n_samples,
            "beam_width": self.beam_width,
            "max_exposure": self.max_exposure,
            "random_baseline_exposure": RANDOM_BASELINE_BITS,
            "exposure_by_repetitions": {
                str(k): v for k, v in self.exposure_by_repetitions().items()
            },
            "canaries": [c.to_dict() for c in self.canaries],
        }


Method = Literal["exact", "extrapolated", "both"]
METHODS: tuple[str, ...] = ("exact", "extrapolated", "both")


class MemorizationAttack:
    """Measure each canary's exposure and whether decoding regurgitates it (Carlini et al. 2019).

    Parameters
    ----------
    method
        ``"exact"`` (rank among every secret, by trie enumeration), ``"extrapolated"`` (the
        skew-normal estimate from ``n_samples`` sampled secrets) or ``"both"``.
    n_samples
        Secrets sampled for the skew-normal fit.
    beam_width
        Width of the beam search.
    max_exact
        Largest space enumerated exactly; above it, ``"exact"`` is refused.
    seed
        Seed of the sampled secrets.
    """

    def __init__(
        self,
        *,
        method: Method = "exact",
        n_samples: int = 5000,
        beam_width: int = 8,
        max_exact: int = 10**7,
        seed: int = 0,
    ) -> None:
        self.method = method
        self.n_samples = n_samples
        self.beam_width = beam_width
        self.max_exact = max_exact
        self.seed = seed

    def _validate(self, space: CanarySpace) -> None:
        if self.method not in METHODS:
            raise AttackError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        for key in ("n_samples", "beam_width", "max_exact"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise AttackError(f"memorization: {key} must be a positive integer, got {value!r}")
        if self.method != "extrapolated" and space.size > self.max_exact:
            raise AttackError(
                f"the canary space has {space.size} secrets, more than max_exact={self.max_exact} "
                "to enumerate; use method='extrapolated' or a smaller space"
            )
        if self.method != "exact" and self.n_samples < 10:
            raise AttackError("the skew-normal extrapolation needs n_samples >= 10")

    def run(
        self, model: LanguageModel, space: CanarySpace, canaries: Sequence[Canary]
    ) -> MemorizationResult:
        """Score every canary of ``canaries`` (all in ``space``) against ``model``.

        Raises
        ------
        AttackError
            Bad parameters, no canaries, or a secret outside ``space``.
        DataError
            The space uses characters outside the model's vocabulary.
        """
        self._validate(space)
        if not canaries:
            raise AttackError("memorization needs at least one canary")
        indices = [space.index(c.secret) for c in canaries]
        texts = [space.secret_text(c.secret) for c in canaries]
        own = -model.continuation_log_prob(space.prefix, texts) / _LOG2
        ranks: list[int | None] = [None] * len(canaries)
        if self.method in ("exact", "both"):
            scores = candidate_log_perplexities(model, space)
            ranks = [rank_of(scores, i) for i in indices]
        extrapolated: list[float | None] = [None] * len(canaries)
        n_samples = 0
        if self.method in ("extrapolated", "both"):
            n_samples = min(self.n_samples, space.size)
            rng = np.random.default_rng(self.seed)
            drawn = rng.choice(space.size, size=n_samples, replace=n_samples > space.size // 2)
            sample = (
                -model.continuation_log_prob(
                    space.prefix, [space.secret_text(space.secret_at(int(i))) for i in drawn]
                )
                / _LOG2
            )
            extrapolated = [float(v) for v in extrapolated_exposure(own, sample, space.size)]
        results = []
        for canary, text, logppx, rank, extra in zip(
            canaries, texts, own, ranks, extrapolated, strict=True
        ):
            target = model.token_ids(text, "the canary")
            greedy = greedy_decode(model, space.prefix, len(target))
            beam, _ = beam_decode(model, space.prefix, len(target), self.beam_width)
            results.append(
                CanaryExposure(
                    secret=canary.secret,
                    repetitions=canary.repetitions,
                    log_perplexity=float(logppx),
                    rank=rank,
                    exposure=None if rank is None else exposure_from_rank(rank, space.size),
                    exposure_extrapolated=extra,
                    greedy=model.decode(greedy),
                    beam=model.decode(beam),
                    greedy_regurgitated=greedy == target,
                    beam_regurgitated=beam == target,
                )
            )
        return MemorizationResult(
            space=space,
            canaries=tuple(results),
            method=self.method,
            n_samples=n_samples,
            beam_width=self.beam_width,
        )
