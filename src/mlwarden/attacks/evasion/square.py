"""Square Attack, L∞ (Andriushchenko, Croce, Flammarion and Hein, ECCV 2020).

A score-based black-box attack: it only calls ``predict_proba``. Starting from vertical stripes
of ±ε, each iteration proposes changing one randomly placed square window (per channel, to +ε or
-ε) and keeps the change if it lowers the margin loss. The window shrinks on the paper's
schedule. Every sample has its own window; queries are counted per sample and a sample stops as
soon as it is adversarial. Tabular inputs are treated as a 1×d strip with windows of ``p·d``
contiguous features.
"""

from __future__ import annotations

import math

import torch

from mlwarden.attacks.base import Attack, Norm
from mlwarden.errors import AttackError
from mlwarden.models.base import Classifier

__all__ = ["SquareAttack", "p_selection"]


def p_selection(p_init: float, iteration: int, n_iters: int) -> float:
    """The fraction of features changed at ``iteration`` (the paper's piecewise schedule)."""
    it = int(iteration / max(n_iters, 1) * 10000)
    for bound, divisor in (
        (10, 1),
        (50, 2),
        (200, 4),
        (500, 8),
        (1000, 16),
        (2000, 32),
        (4000, 64),
        (6000, 128),
        (8000, 256),
        (10000, 512),
    ):
        if it <= bound:
            return p_init / divisor
    return p_init / 512


class SquareAttack(Attack):
    """Square Attack (L∞), score-based and gradient-free.

    Parameters
    ----------
    eps, targeted, seed, batch_size
        See :class:`~mlwarden.attacks.base.Attack`; only ``norm="linf"`` is supported.
    queries
        Query budget per sample (including the initial query).
    p_init
        Initial fraction of features in the square window (0.05 in the paper for L∞).
    """

    name = "square"
    needs_gradients = False
    supported_norms = ("linf",)

    def __init__(
        self,
        *,
        eps: float,
        norm: Norm = "linf",
        targeted: bool = False,
        queries: int = 1000,
        p_init: float = 0.05,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(eps=eps, norm=norm, targeted=targeted, seed=seed, batch_size=batch_size)
        self.queries = queries
        self.p_init = p_init

    def _validate_params(self) -> None:
        super()._validate_params()
        if not isinstance(self.queries, int) or self.queries < 1:
            raise AttackError(f"square: queries must be an integer >= 1, got {self.queries!r}")
        if not 0 < self.p_init <= 1:
            raise AttackError(f"square: p_init must be in (0, 1], got {self.p_init!r}")

    def _margin(self, classifier: Classifier, x: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Positive while the attack has not succeeded; negative once it has."""
        proba = torch.from_numpy(classifier.predict_proba(x.cpu().numpy())).to(x.device)
        logp = proba.clamp_min(1e-12).log()
        goal_logp = logp.gather(1, goal[:, None]).squeeze(1)
        others = logp.scatter(1, goal[:, None], float("-inf")).amax(dim=1)
        margin = others - goal_logp if self.targeted else goal_logp - others
        # a tie (equal probabilities, margin 0) is decided by argmax, which takes the first
        # index: it counts as success only if that is what the final prediction will say
        pred = proba.argmax(1)
        hit = pred == goal if self.targeted else pred != goal
        return torch.where(hit, margin.clamp(max=0.0), margin.clamp(min=1e-12))

    def _generate(
        self, classifier: Classifier, x: torch.Tensor, goal: torch.Tensor, *, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        eps = float(self.eps)
        low, high = classifier.clip_range
        generator = torch.Generator(device=x.device).manual_seed(seed)
        shape = x.shape
        view = _as_chw(x)
        n, channels, height, width = view.shape
        queries = torch.zeros(n, dtype=torch.int64, device=x.device)

        signs = torch.randint(0, 2, (n, channels, 1, width), generator=generator, device=x.device)
        x_best = (view + eps * (2 * signs - 1)).clamp(low, high)
        margin = self._margin(classifier, x_best.reshape(shape), goal)
        queries += 1
        if eps == 0:
            return x_best.reshape(shape), queries

        for iteration in range(self.queries - 1):
            active = torch.nonzero(margin > 0).squeeze(1)
            if active.numel() == 0:
                break
            m = active.numel()
            p = p_selection(self.p_init, iteration, self.queries)
            if height > 1:
                side = max(1, min(height - 1, round(math.sqrt(p * height * width))))
                size_h, size_w = side, min(side, width)
            else:
                size_h, size_w = 1, max(1, min(width, round(p * width)))
            top = torch.randint(0, height - size_h + 1, (m,), generator=generator, device=x.device)
            left = torch.randint(0, width - size_w + 1, (m,), generator=generator, device=x.device)
            rows = torch.arange(height, device=x.device)
            cols = torch.arange(width, device=x.device)
            in_rows = (rows[None] >= top[:, None]) & (rows[None] < top[:, None] + size_h)
            in_cols = (cols[None] >= left[:, None]) & (cols[None] < left[:, None] + size_w)
            window = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]
            new_signs = torch.randint(
                0, 2, (m, channels, 1, 1), generator=generator, device=x.device
            )
            base = view[active]
            delta = x_best[active] - base
            delta = torch.where(window, eps * (2 * new_signs - 1).to(delta.dtype), delta)
            candidate = (base + delta).clamp(low, high)
            cand_margin = self._margin(classifier, candidate.reshape(m, *shape[1:]), goal[active])
            queries[active] += 1
            better = cand_margin < margin[active]
            improved = active[better]
            x_best[improved] = candidate[better]
            margin[improved] = cand_margin[better]
        return x_best.reshape(shape), queries


def _as_chw(x: torch.Tensor) -> torch.Tensor:
    """View a batch as ``(n, C, H, W)``: images stay, vectors become ``(n, 1, 1, d)``."""
    if x.dim() == 4:
        return x
    if x.dim() == 3:
        return x[:, None]
    return x.reshape(len(x), 1, 1, -1)
