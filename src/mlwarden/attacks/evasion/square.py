"""Square Attack, L∞ and L2 (Andriushchenko, Croce, Flammarion and Hein, ECCV 2020).

A score-based black-box attack: it never asks for gradients. Each iteration proposes changing
one randomly placed square window and keeps the change if it lowers the margin loss; the window
shrinks on the paper's schedule (:func:`p_selection`). Every sample has its own windows; queries
are counted per sample and a sample stops as soon as it is adversarial.

* **L∞** (the paper's Algorithm 2): start from vertical stripes of ±ε; a proposal sets one
  window, per channel, to +ε or -ε.
* **L2** (Algorithm 3, the authors' ``square_attack_l2``): start from a grid of
  ``meta_pseudo_gaussian_pert`` bumps with random signs scaled to norm ε; a proposal moves the
  perturbation's mass out of a second window into the first, adds a fresh bump of random sign
  there, and rescales the whole perturbation back to norm ε, so every proposal uses the whole
  budget instead of relying on a projection.

The loss is the margin ``z_goal - max_{j≠goal} z_j`` on the **logits** when the classifier
exposes them (a :class:`~mlwarden.models.base.DifferentiableClassifier`, read under
``torch.no_grad()``: one forward pass, no gradient), so a model whose logits are scaled up (a
saturated softmax) is attacked exactly like the unscaled one. Other models are scored on
``log predict_proba`` in float64 without a floor that hides information, with the probability
margin breaking ties.

Tabular inputs are treated as a 1×d strip with windows of contiguous features.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mlwarden.attacks.base import Attack, Norm
from mlwarden.errors import AttackError
from mlwarden.models.base import Classifier, DifferentiableClassifier

__all__ = ["SquareAttack", "meta_pseudo_gaussian_pert", "p_selection"]

# only exact zeros reach this floor: float32 probabilities are >= 1.4e-45 when positive
_LOG_FLOOR = float(np.finfo(np.float64).tiny)
_DEFAULT_P_INIT = {"linf": 0.05, "l2": 0.1}


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


def _pseudo_gaussian_rectangles(height: int, width: int) -> torch.Tensor:
    """Nested centred rectangles weighted ``1/(k+1)²``: a peaked bump of unit L2 norm."""
    bump = torch.zeros(height, width, dtype=torch.float64)
    if height == 0 or width == 0:
        return bump
    top, left = height // 2, width // 2
    for k in range(max(top, left) + 1):
        bump[max(top - k, 0) : top + k + 1, max(left - k, 0) : left + k + 1] += 1.0 / (k + 1) ** 2
    return bump / bump.norm()


def meta_pseudo_gaussian_pert(height: int, width: int) -> torch.Tensor:
    """The L2 Square Attack's window update: a bump on one half, its negative on the other.

    The window is split across its longer side (rows for a square window; the caller transposes
    at random), so adding it moves mass between the halves. Unit L2 norm. For a 1×1 window it
    is the single value ``-1``.
    """
    pert = torch.zeros(height, width, dtype=torch.float64)
    if height >= width:
        half = height // 2
        pert[:half] = _pseudo_gaussian_rectangles(half, width)
        pert[half:] = -_pseudo_gaussian_rectangles(height - half, width)
    else:
        half = width // 2
        pert[:, :half] = _pseudo_gaussian_rectangles(height, half)
        pert[:, half:] = -_pseudo_gaussian_rectangles(height, width - half)
    return pert / pert.norm()


class SquareAttack(Attack):
    """Square Attack (L∞ and L2), score-based and gradient-free.

    Andriushchenko, Croce, Flammarion and Hein, "Square Attack: a query-efficient black-box
    adversarial attack via random search", ECCV 2020 (Algorithms 2 and 3).

    Parameters
    ----------
    eps, norm, targeted, seed, batch_size
        See :class:`~mlwarden.attacks.base.Attack`.
    queries
        Query budget per sample (including the initial query).
    p_init
        Initial fraction of features in the square window; ``None`` takes the paper's value,
        0.05 for L∞ and 0.1 for L2.
    """

    name = "square"
    needs_gradients = False
    supported_norms = ("linf", "l2")

    def __init__(
        self,
        *,
        eps: float,
        norm: Norm = "linf",
        targeted: bool = False,
        queries: int = 1000,
        p_init: float | None = None,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(eps=eps, norm=norm, targeted=targeted, seed=seed, batch_size=batch_size)
        self.queries = queries
        self.p_init = p_init

    def _validate_params(self) -> None:
        super()._validate_params()
        self._check_counts("queries")
        if self.p_init is not None and (
            isinstance(self.p_init, bool)
            or not isinstance(self.p_init, (int, float))
            or not 0 < self.p_init <= 1
        ):
            raise AttackError(f"square: p_init must be None or in (0, 1], got {self.p_init!r}")

    def _loss(
        self, classifier: Classifier, x: torch.Tensor, goal: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(margin, tie_break)`` per sample, one query each; lower is better for both.

        ``margin`` is positive while the attack has not succeeded and at most zero once it has;
        ``tie_break`` orders candidates whose margins are equal.
        """
        if isinstance(classifier, DifferentiableClassifier):
            with torch.no_grad():
                logits = torch.cat(
                    [classifier.logits(chunk) for chunk in x.split(classifier.batch_size)]
                ).to(torch.float64)
            # predict() is argmax(softmax(logits)) in float32 for a differentiable classifier:
            # read success the same way, so a float32 tie is decided as the final scoring will
            pred = torch.softmax(logits.float(), dim=1).argmax(1)
            scores = logits
            tie_break = torch.zeros(len(x), dtype=torch.float64, device=x.device)
        else:
            proba = torch.from_numpy(classifier.predict_proba(x.cpu().numpy())).to(x.device)
            # a tie (equal probabilities) is decided by argmax, which takes the first index:
            # it counts as success only if that is what the final prediction will say
            pred = proba.argmax(1)
            proba = proba.to(torch.float64)
            scores = proba.clamp_min(_LOG_FLOOR).log()
            tie_break = _goal_margin(proba, goal, self.targeted)
        margin = _goal_margin(scores, goal, self.targeted)
        hit = pred == goal if self.targeted else pred != goal
        margin = torch.where(hit, margin.clamp(max=0.0), margin.clamp(min=1e-12))
        return margin, tie_break

    def _generate(
        self, classifier: Classifier, x: torch.Tensor, goal: torch.Tensor, *, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator(device=x.device).manual_seed(seed)
        shape = x.shape
        view = _as_chw(x)
        p_init = self.p_init if self.p_init is not None else _DEFAULT_P_INIT[self.norm]
        low, high = classifier.clip_range
        if self.norm == "linf":
            x_best = self._init_linf(view, generator, (low, high))
        else:
            x_best = self._init_l2(view, generator, (low, high))
        margin, tie_break = self._loss(classifier, x_best.reshape(shape), goal)
        queries = torch.ones(len(x), dtype=torch.int64, device=x.device)
        if self.eps == 0:
            return x.clone(), queries

        propose = self._propose_linf if self.norm == "linf" else self._propose_l2
        for iteration in range(self.queries - 1):
            active = torch.nonzero(margin > 0).squeeze(1)
            if active.numel() == 0:
                break
            p = p_selection(p_init, iteration, self.queries)
            candidate = propose(view[active], x_best[active], p, generator, (low, high))
            cand_margin, cand_tie = self._loss(
                classifier, candidate.reshape(len(active), *shape[1:]), goal[active]
            )
            queries[active] += 1
            old_margin, old_tie = margin[active], tie_break[active]
            better = (cand_margin < old_margin) | (
                (cand_margin == old_margin) & (cand_tie < old_tie)
            )
            improved = active[better]
            x_best[improved] = candidate[better]
            margin[improved] = cand_margin[better]
            tie_break[improved] = cand_tie[better]
        return x_best.reshape(shape), queries

    # -- L∞ ---------------------------------------------------------------------------------

    def _init_linf(
        self, view: torch.Tensor, generator: torch.Generator, clip: tuple[float, float]
    ) -> torch.Tensor:
        n, channels, _, width = view.shape
        signs = torch.randint(
            0, 2, (n, channels, 1, width), generator=generator, device=view.device
        )
        return (view + float(self.eps) * (2 * signs - 1)).clamp(*clip)

    def _propose_linf(
        self,
        base: torch.Tensor,
        best: torch.Tensor,
        p: float,
        generator: torch.Generator,
        clip: tuple[float, float],
    ) -> torch.Tensor:
        m, channels, height, width = base.shape
        if height > 1:
            side = max(1, min(height - 1, round(math.sqrt(p * height * width))))
            size_h, size_w = side, min(side, width)
        else:
            size_h, size_w = 1, max(1, min(width, round(p * width)))
        window = _window_mask(m, height, width, size_h, size_w, generator, base.device)
        new_signs = torch.randint(
            0, 2, (m, channels, 1, 1), generator=generator, device=base.device
        )
        delta = torch.where(
            window, float(self.eps) * (2 * new_signs - 1).to(base.dtype), best - base
        )
        return (base + delta).clamp(*clip)

    # -- L2 ---------------------------------------------------------------------------------

    def _init_l2(
        self, view: torch.Tensor, generator: torch.Generator, clip: tuple[float, float]
    ) -> torch.Tensor:
        """A grid of ``meta_pseudo_gaussian_pert`` bumps with random signs, scaled to norm ε."""
        n, channels, height, width = view.shape
        if height > 1:
            tile_h = tile_w = max(1, min(height, width) // 5)
        else:
            tile_h, tile_w = 1, max(1, width // 5)
        bump = meta_pseudo_gaussian_pert(tile_h, tile_w).to(view.device, view.dtype)
        rows, cols = height // tile_h, width // tile_w
        top, left = (height - rows * tile_h) // 2, (width - cols * tile_w) // 2
        signs = torch.randint(
            0, 2, (n, channels, rows, 1, cols, 1), generator=generator, device=view.device
        )
        tiles = (2 * signs - 1).to(view.dtype) * bump[:, None, :]  # (n, C, rows, th, cols, tw)
        delta = torch.zeros_like(view)
        delta[:, :, top : top + rows * tile_h, left : left + cols * tile_w] = tiles.reshape(
            n, channels, rows * tile_h, cols * tile_w
        )
        return (view + _rescale(delta, float(self.eps))).clamp(*clip)

    def _propose_l2(
        self,
        base: torch.Tensor,
        best: torch.Tensor,
        p: float,
        generator: torch.Generator,
        clip: tuple[float, float],
    ) -> torch.Tensor:
        """Move the mass of window 2 into window 1, add a fresh bump there, rescale to ε."""
        eps = float(self.eps)
        m, channels, height, width = base.shape
        device, dtype = base.device, base.dtype
        if height > 1:
            side = min(max(3, round(math.sqrt(p * height * width))), height, width)
            if side % 2 == 0 and side + 1 <= min(height, width):
                side += 1
            size_h = size_w = side
        else:
            size_h, size_w = 1, min(max(3, round(p * width)), width)
        delta = best - base
        top1, left1 = _window_corners(m, height, width, size_h, size_w, generator, device)
        top2, left2 = _window_corners(m, height, width, size_h, size_w, generator, device)
        window1 = _corner_mask(top1, left1, height, width, size_h, size_w)
        window2 = _corner_mask(top2, left2, height, width, size_h, size_w)

        norm_window1 = (delta * window1).square().sum(dim=(2, 3), keepdim=True).sqrt()
        norm_image = delta.square().sum(dim=(1, 2, 3), keepdim=True).sqrt()
        norm_both = (delta * (window1 | window2)).square().sum(dim=(2, 3), keepdim=True).sqrt()

        pert = meta_pseudo_gaussian_pert(size_h, size_w).to(device, dtype)
        pert = pert.expand(m, size_h, size_w)
        if size_h == size_w:
            flip = torch.rand(m, generator=generator, device=device) > 0.5
            pert = torch.where(flip[:, None, None], pert.transpose(1, 2), pert)
        signs = torch.randint(0, 2, (m, channels, 1, 1), generator=generator, device=device)
        update = pert[:, None] * (2 * signs - 1).to(dtype)
        update = update + _patch(delta, top1, left1, size_h, size_w) / (1e-10 + norm_window1)
        mass = (
            (eps**2 - norm_image.square()).clamp_min(0.0) / channels + norm_both.square()
        ).sqrt()
        update = update / update.square().sum(dim=(2, 3), keepdim=True).sqrt().clamp_min(1e-12)
        update = update * mass

        delta = delta.masked_fill(window2, 0.0)
        delta = torch.where(window1, _place(update, top1, left1, height, width), delta)
        return (base + _rescale(delta, eps)).clamp(*clip)


def _goal_margin(scores: torch.Tensor, goal: torch.Tensor, targeted: bool) -> torch.Tensor:
    """``s_goal - max_{j≠goal} s_j`` (untargeted) or its negative (targeted)."""
    goal_score = scores.gather(1, goal[:, None]).squeeze(1)
    others = scores.scatter(1, goal[:, None], float("-inf")).amax(dim=1)
    return others - goal_score if targeted else goal_score - others


def _rescale(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """``delta`` scaled to L2 norm ``eps`` per sample (a zero perturbation stays zero)."""
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    return delta * (eps / norms).view(-1, 1, 1, 1)


def _window_corners(
    m: int,
    height: int,
    width: int,
    size_h: int,
    size_w: int,
    generator: torch.Generator,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random top-left corners of ``m`` windows of ``size_h × size_w`` inside the input."""
    top = torch.randint(0, height - size_h + 1, (m,), generator=generator, device=device)
    left = torch.randint(0, width - size_w + 1, (m,), generator=generator, device=device)
    return top, left


def _corner_mask(
    top: torch.Tensor, left: torch.Tensor, height: int, width: int, size_h: int, size_w: int
) -> torch.Tensor:
    """Boolean masks ``(m, 1, H, W)`` of the windows at ``(top, left)``."""
    rows = torch.arange(height, device=top.device)
    cols = torch.arange(width, device=top.device)
    in_rows = (rows[None] >= top[:, None]) & (rows[None] < top[:, None] + size_h)
    in_cols = (cols[None] >= left[:, None]) & (cols[None] < left[:, None] + size_w)
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def _window_mask(
    m: int,
    height: int,
    width: int,
    size_h: int,
    size_w: int,
    generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    top, left = _window_corners(m, height, width, size_h, size_w, generator, device)
    return _corner_mask(top, left, height, width, size_h, size_w)


def _patch(
    values: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size_h: int, size_w: int
) -> torch.Tensor:
    """The ``(m, C, size_h, size_w)`` windows of ``values`` at per-sample corners."""
    rows = top[:, None] + torch.arange(size_h, device=top.device)
    cols = left[:, None] + torch.arange(size_w, device=top.device)
    index = torch.arange(len(values), device=top.device)[:, None, None]
    return values[index, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _place(
    patch: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Full-size ``(m, C, H, W)`` tensor holding ``patch`` at per-sample corners (else any)."""
    size_h, size_w = patch.shape[2:]
    rows = (torch.arange(height, device=top.device)[None] - top[:, None]).clamp(0, size_h - 1)
    cols = (torch.arange(width, device=top.device)[None] - left[:, None]).clamp(0, size_w - 1)
    index = torch.arange(len(patch), device=top.device)[:, None, None]
    return patch[index, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _as_chw(x: torch.Tensor) -> torch.Tensor:
    """View a batch as ``(n, C, H, W)``: images stay, vectors become ``(n, 1, 1, d)``."""
    if x.dim() == 4:
        return x
    if x.dim() == 3:
        return x[:, None]
    return x.reshape(len(x), 1, 1, -1)
