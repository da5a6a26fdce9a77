"""Randomized smoothing with a certified L2 radius (Cohen, Rosenfeld and Kolter, ICML 2019).

The smoothed classifier ``g(x) = argmax_c P(f(x + δ) = c)``, ``δ ~ N(0, σ²I)``, returns the class
the base classifier ``f`` most often assigns under Gaussian noise. If the top class has
probability at least ``p̲A > 1/2``, then ``g`` is constant within the L2 ball of radius
``σ·Φ⁻¹(p̲A)`` around ``x`` (Cohen et al., Theorem 1). :meth:`SmoothedClassifier.certify` runs the
paper's CERTIFY: it picks the top class with ``n0`` noisy samples, estimates its probability
with ``n`` fresh samples, lower-bounds it with a one-sided Clopper–Pearson interval at level α
and abstains unless ``p̲A > 1/2``. :meth:`SmoothedClassifier.predict` runs PREDICT: it
abstains unless a two-sided binomial test separates the top two classes at level α.

Noise is drawn in blocks of 256 samples per input, each from a generator derived from ``(seed,
phase, input index, block)``, so a result depends on the seed and the input's position only, not
on the batch size or on which other inputs are certified alongside.
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import binomtest, norm

from mlwarden.errors import ConfigError
from mlwarden.models.base import Classifier, DifferentiableClassifier

logger = logging.getLogger(__name__)

__all__ = [
    "ABSTAIN",
    "CertificationResult",
    "SmoothedClassifier",
    "certified_accuracy",
    "clopper_pearson_lower",
]

ABSTAIN = -1
"""The label :class:`SmoothedClassifier` returns when it declines to predict."""

_PHASE_SELECT, _PHASE_ESTIMATE, _PHASE_PREDICT = 0, 1, 2
_BLOCK = 256  # noise samples per seeded block


def clopper_pearson_lower(successes: Any, trials: Any, alpha: float) -> np.ndarray:
    """One-sided Clopper–Pearson lower confidence bound on a binomial proportion.

    The bound ``p̲`` satisfies ``P(p ≥ p̲) ≥ 1 - α``: the ``α`` quantile of
    ``Beta(k, n - k + 1)`` for ``k ≥ 1`` successes in ``n`` trials, and 0 for ``k = 0``
    (Clopper and Pearson, 1934), as Cohen, Rosenfeld and Kolter (2019) use it. Computed by
    :func:`scipy.stats.binomtest` (``alternative="greater"``,
    ``proportion_ci(confidence_level=1 - alpha, method="exact")``); repeated ``(k, n)`` pairs
    are computed once.

    Parameters
    ----------
    successes, trials
        Counts ``k`` and ``n`` (scalars or arrays of the same shape), ``0 ≤ k ≤ n``, ``n ≥ 1``.
    alpha
        Level of the bound, in ``(0, 1)``.
    """
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha!r}")
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if np.any(n < 1) or np.any(k < 0) or np.any(k > n):
        raise ConfigError("Clopper–Pearson needs 0 <= successes <= trials and trials >= 1")
    k, n = np.broadcast_arrays(k, n)
    if k.size == 0:
        return np.zeros(k.shape)
    pairs, inverse = np.unique(
        np.stack([k.ravel(), n.ravel()]).astype(np.int64), axis=1, return_inverse=True
    )
    bounds = np.array(
        [
            binomtest(int(ki), int(ni), alternative="greater")
            .proportion_ci(confidence_level=1.0 - alpha, method="exact")
            .low
            for ki, ni in pairs.T
        ],
        dtype=np.float64,
    )
    return bounds[inverse.ravel()].reshape(k.shape)


@dataclass(frozen=True)
class CertificationResult:
    """What :meth:`SmoothedClassifier.certify` found, one entry per input.

    Attributes
    ----------
    predictions
        The smoothed classifier's label, or :data:`ABSTAIN` (-1).
    radii
        Certified L2 radius ``σ·Φ⁻¹(p̲A)``; 0 where the classifier abstains.
    p_lower
        The Clopper–Pearson lower bound ``p̲A`` on the top class's probability.
    top_counts
        How many of the ``n`` estimation samples the base model assigned to the top class.
    sigma, n0, n, alpha
        The settings the certificates hold for.
    """

    predictions: np.ndarray
    radii: np.ndarray
    p_lower: np.ndarray
    top_counts: np.ndarray
    sigma: float
    n0: int
    n: int
    alpha: float

    @property
    def abstained(self) -> np.ndarray:
        """Per input: whether the classifier abstained."""
        return self.predictions == ABSTAIN

    @property
    def max_radius(self) -> float:
        """The largest radius these settings can certify (every sample in the top class)."""
        p = float(clopper_pearson_lower(self.n, self.n, self.alpha))
        return self.sigma * float(norm.ppf(p))


def certified_accuracy(result: CertificationResult, y: np.ndarray, radii: Any) -> np.ndarray:
    """Share of inputs predicted correctly with a certified radius of at least each radius.

    At radius 0 this is the smoothed classifier's accuracy counting abstentions as errors.
    """
    y = np.asarray(y)
    correct = result.predictions == y
    return np.array(
        [
            float(np.mean(correct & (result.radii >= r))) if len(y) else 0.0
            for r in np.atleast_1d(radii)
        ]
    )


class SmoothedClassifier:
    """A base classifier smoothed by isotropic Gaussian noise (Cohen et al., 2019).

    Parameters
    ----------
    base
        Any :class:`~mlwarden.models.base.Classifier`. White-box (PyTorch) models are run on
        tensors without leaving the device; others through ``predict_proba``.
    sigma
        Standard deviation of the noise, in input units. Noisy inputs are not clipped: the
        guarantee is for the smoothed classifier as defined, and clipping would only change the
        base classifier.
    batch_size
        Noisy samples per forward pass. Samples of several inputs share a batch, so small
        ``n0`` still runs in full batches.
    seed
        Seeds every noise draw; the same seed gives the same predictions and radii.
    fast_inference
        Run the noisy passes of a PyTorch model on the CPU through an inference-optimised copy:
        the model is traced, frozen and handed to ``torch.jit.optimize_for_inference`` (oneDNN
        convolutions with prepacked weights); if tracing fails or the copy's logits differ
        from the model's on the first batch (beyond 1e-4 relative), a channels-last copy is
        used for image models, else the model itself. ``None`` (the default) enables this on
        the CPU; ``False`` always runs the model as given.
    """

    def __init__(
        self,
        base: Classifier,
        *,
        sigma: float,
        batch_size: int = 2048,
        seed: int = 0,
        fast_inference: bool | None = None,
    ) -> None:
        if (
            isinstance(sigma, bool)
            or not isinstance(sigma, (int, float))
            or not (math.isfinite(sigma) and sigma > 0)
        ):
            raise ConfigError(f"sigma must be a finite number > 0, got {sigma!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
        self.base = base
        self.sigma = float(sigma)
        self.batch_size = batch_size
        self.seed = seed
        self.n_classes = base.n_classes
        self.input_shape = base.input_shape
        self.device = getattr(base, "device", torch.device("cpu"))
        self.fast_inference = fast_inference
        self._forward: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.inference_path = "model"
        """How noisy batches are run: ``optimized``, ``channels-last``, ``model`` or ``black-box``."""

    def _build_forward(self, probe: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """Choose how to run noisy batches, checking any copy against the model on ``probe``."""
        base = self.base
        assert isinstance(base, DifferentiableClassifier)
        module = getattr(base, "module", None)
        wanted = self.fast_inference
        if wanted is None:
            wanted = self.device.type == "cpu"
        if not wanted or not isinstance(module, torch.nn.Module):
            self.inference_path = "model"
            return base.logits
        with torch.inference_mode():
            reference = base.logits(probe)
        scale = float(reference.abs().max()) or 1.0

        def agrees(candidate: Callable[[torch.Tensor], torch.Tensor]) -> bool:
            with torch.inference_mode():
                logits = candidate(probe)
            return bool(
                logits.shape == reference.shape
                and float((logits - reference).abs().max()) <= 1e-4 * scale
                and torch.equal(logits.argmax(1), reference.argmax(1))
            )

        with warnings.catch_warnings():  # tracing and deep-copying exported programs warn
            warnings.simplefilter("ignore")
            try:
                with torch.no_grad():
                    traced = torch.jit.trace(module, probe, check_trace=False)
                    optimized = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
                if agrees(optimized):
                    self.inference_path = "optimized"
                    return optimized
            except Exception:  # any tracing failure falls back to eager mode
                logger.debug("tracing for fast inference failed; falling back", exc_info=True)
            if probe.dim() == 4:
                copy_ = copy.deepcopy(module).to(memory_format=torch.channels_last)  # type: ignore[call-overload]

                def channels_last(batch: torch.Tensor) -> torch.Tensor:
                    return copy_(batch.contiguous(memory_format=torch.channels_last))

                if agrees(channels_last):
                    self.inference_path = "channels-last"
                    return channels_last
        self.inference_path = "model"
        return base.logits

    # -- sampling -------------------------------------------------------------------------
    def _fill_noise(self, out: torch.Tensor, start: int, stop: int, n: int, phase: int) -> None:
        """Write standard normal noise for flat sample indices ``[start, stop)`` into ``out``.

        Sample ``k`` of input ``i`` (flat index ``i·n + k``) lies in block ``k // _BLOCK`` of that
        input, whose noise comes from a generator seeded by ``(seed, phase, i, block)``; a block
        cut by a batch boundary is regenerated and sliced. The noise of a sample therefore never
        depends on the batch size.
        """
        shape = tuple(out.shape[1:])
        row, pos = 0, start
        while pos < stop:
            i, k = divmod(pos, n)
            block, offset = divmod(k, _BLOCK)
            length = min(_BLOCK, n - block * _BLOCK)
            take = min(length - offset, stop - pos)
            state = np.random.SeedSequence([self.seed, phase, i, block]).generate_state(
                1, np.uint64
            )
            gen = torch.Generator(device=self.device).manual_seed(int(state[0] >> 1))
            if offset == 0 and take == length:
                torch.randn((take, *shape), generator=gen, out=out[row : row + take])
            else:
                full = torch.randn(
                    (length, *shape), generator=gen, device=self.device, dtype=out.dtype
                )
                out[row : row + take] = full[offset : offset + take]
            row += take
            pos += take

    def _labels(self, batch: torch.Tensor) -> torch.Tensor:
        if isinstance(self.base, DifferentiableClassifier):
            if self._forward is None:
                self._forward = self._build_forward(batch[:256].clone())
            return self._forward(batch).argmax(1)
        self.inference_path = "black-box"
        proba = self.base.predict_proba(batch.cpu().numpy())
        return torch.from_numpy(proba.argmax(1)).to(batch.device)

    def sample_counts(self, x: np.ndarray, n: int, *, phase: int = _PHASE_ESTIMATE) -> np.ndarray:
        """Per input, how often the base model picks each class on ``n`` noisy copies.

        Returns an integer array of shape ``(len(x), n_classes)`` whose rows sum to ``n``.
        Noise is generated in batches of :attr:`batch_size` samples, mixing inputs.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"the number of noise samples must be an integer >= 1, got {n!r}")
        xs = torch.from_numpy(np.ascontiguousarray(self.base.check_inputs(x))).to(self.device)
        m = len(xs)
        counts = torch.zeros(m * self.n_classes, dtype=torch.int64, device=self.device)
        if m == 0:
            return counts.view(0, self.n_classes).cpu().numpy()
        total = m * n
        shape = tuple(xs.shape[1:])
        buffer = torch.empty(
            (min(self.batch_size, total), *shape), dtype=xs.dtype, device=self.device
        )
        with torch.inference_mode():
            for start in range(0, total, self.batch_size):
                stop = min(start + self.batch_size, total)
                batch = buffer[: stop - start]
                owners = torch.arange(start, stop, device=self.device) // n
                self._fill_noise(batch, start, stop, n, phase)
                batch.mul_(self.sigma).add_(xs[owners])
                labels = self._labels(batch)
                counts += torch.bincount(
                    owners * self.n_classes + labels, minlength=m * self.n_classes
                )
        return counts.view(m, self.n_classes).cpu().numpy()

    # -- the paper's procedures ------------------------------------------------------------
    def predict(self, x: np.ndarray, *, n: int = 100, alpha: float = 0.001) -> np.ndarray:
        """The smoothed prediction, or :data:`ABSTAIN` (Cohen et al.'s PREDICT).

        The top class is returned only when a two-sided binomial test of its count against the
        runner-up's rejects equality at level ``alpha``; the probability of returning a class
        other than ``g(x)`` is then at most ``alpha``.
        """
        if not 0 < alpha < 1:
            raise ConfigError(f"alpha must be in (0, 1), got {alpha!r}")
        counts = self.sample_counts(x, n, phase=_PHASE_PREDICT)
        order = np.argsort(-counts, axis=1, kind="stable")
        top = order[:, 0]
        rows = np.arange(len(counts))
        n_a, n_b = counts[rows, top], counts[rows, order[:, 1]]
        out = np.full(len(counts), ABSTAIN, dtype=np.int64)
        for i in range(len(counts)):
            if binomtest(int(n_a[i]), int(n_a[i] + n_b[i]), 0.5).pvalue <= alpha:
                out[i] = top[i]
        return out

    def certify(
        self, x: np.ndarray, *, n0: int = 100, n: int = 100_000, alpha: float = 0.001
    ) -> CertificationResult:
        """Certify each input (Cohen et al.'s CERTIFY).

        Parameters
        ----------
        x
            Inputs, ``(m, *input_shape)``.
        n0
            Noisy samples used to select the top class.
        n
            Fresh noisy samples used to estimate its probability.
        alpha
            The certificate fails with probability at most ``alpha`` per input.

        Returns
        -------
        CertificationResult
            Predictions (or abstentions) and radii ``σ·Φ⁻¹(p̲A)``.
        """
        if not 0 < alpha < 1:
            raise ConfigError(f"alpha must be in (0, 1), got {alpha!r}")
        selection = self.sample_counts(x, n0, phase=_PHASE_SELECT)
        top = selection.argmax(axis=1)
        estimate = self.sample_counts(x, n, phase=_PHASE_ESTIMATE)
        top_counts = estimate[np.arange(len(top)), top]
        p_lower = clopper_pearson_lower(top_counts, n, alpha)
        certified = p_lower > 0.5
        radii = np.where(certified, self.sigma * norm.ppf(np.clip(p_lower, 0.5, 1.0)), 0.0)
        return CertificationResult(
            predictions=np.where(certified, top, ABSTAIN).astype(np.int64),
            radii=radii.astype(np.float64),
            p_lower=p_lower.astype(np.float64),
            top_counts=top_counts.astype(np.int64),
            sigma=self.sigma,
            n0=n0,
            n=n,
            alpha=alpha,
        )
