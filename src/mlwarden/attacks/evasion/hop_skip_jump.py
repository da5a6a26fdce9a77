"""HopSkipJump (Chen, Jordan and Wainwright, IEEE S&P 2020), a decision-based attack.

It sees only the model's labels (``predict``), never scores or gradients. From an adversarial
starting point it walks along the decision boundary towards the input, as a minimum-norm attack:

1. **start**: the input itself if the model already gets it wrong; otherwise uniform noise in
   the valid range (redrawn up to ``init_tries`` times) that is adversarial (misclassified, or
   the target class when targeted), blended towards the input by binary search;
2. **binary search** along the line (L2) or the box (L∞) between the input and the current
   point to the boundary, to precision θ (``gamma / (d·√d)`` for L2, ``gamma / d²`` for L∞);
3. **gradient-direction estimate** at the boundary point from the labels of
   ``initial_evals·√t`` random probes at radius δ_t (``0.1·range`` at the first iteration,
   then ``√d·θ·dist`` for L2 and ``d·θ·dist`` for L∞), with the mean as baseline;
4. **geometric step search**: step ``dist/√t`` along that direction (its sign for L∞), halved
   until the point is adversarial, then back to step 2.

Every label asked for counts as one query of that sample, and no sample spends more than
``max_queries``. The :class:`~mlwarden.attacks.base.Attack` contract returns a point inside the
ε-ball: the attack keeps the closest adversarial point it verified and the caller projects it
onto the ε-ball, so a sample counts as a success exactly when that point lies within ε.
"""

from __future__ import annotations

import math

import torch

from mlwarden.attacks.base import Attack, Norm
from mlwarden.errors import AttackError
from mlwarden.models.base import Classifier

__all__ = ["HopSkipJump"]

_BLEND_TOLERANCE = 1e-3  # the blended start's precision, as in the authors' code
_MAX_HALVINGS = 30  # a step shorter than 2^-30 of the distance moves nothing in float32
_PROBE_ELEMENTS = 1 << 23  # probes held in memory at once (n · evals · d), about 32 MiB


class HopSkipJump(Attack):
    """HopSkipJump, label-only, in L2 and L∞, untargeted and targeted.

    Chen, Jordan and Wainwright, "HopSkipJumpAttack: a query-efficient decision-based
    attack", IEEE Symposium on Security and Privacy, 2020.

    Parameters
    ----------
    eps, norm, targeted, seed, batch_size
        See :class:`~mlwarden.attacks.base.Attack`. ``eps`` only decides success: the attack
        minimises the distance and its closest adversarial point is projected onto the ε-ball.
    max_queries
        Label queries per sample, all phases included (the check of the input itself, the
        start, the searches and the probes).
    max_iterations
        Gradient-estimate-and-step iterations per sample.
    initial_evals
        Probes of the first gradient estimate; iteration ``t`` uses ``initial_evals·√t``
        (the paper's schedule), fewer if the budget runs out.
    gamma
        The paper's γ: binary-search precision θ and probe radius δ scale with it.
    init_tries
        Random starts drawn per sample before giving up on it (it is then returned unchanged
        and counts as a failure). For a targeted attack they are the only way to reach the
        target class, since no inputs of that class are given.
    """

    name = "hsj"
    needs_gradients = False
    needs_scores = False
    supported_norms = ("linf", "l2")

    def __init__(
        self,
        *,
        eps: float,
        norm: Norm = "linf",
        targeted: bool = False,
        max_queries: int = 5000,
        max_iterations: int = 40,
        initial_evals: int = 100,
        gamma: float = 1.0,
        init_tries: int = 100,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(eps=eps, norm=norm, targeted=targeted, seed=seed, batch_size=batch_size)
        self.max_queries = max_queries
        self.max_iterations = max_iterations
        self.initial_evals = initial_evals
        self.gamma = gamma
        self.init_tries = init_tries

    def _validate_params(self) -> None:
        super()._validate_params()
        self._check_counts("max_queries", "max_iterations", "initial_evals", "init_tries")
        if (
            isinstance(self.gamma, bool)
            or not isinstance(self.gamma, (int, float))
            or not math.isfinite(self.gamma)
            or self.gamma <= 0
        ):
            raise AttackError(f"hsj: gamma must be a finite number > 0, got {self.gamma!r}")

    def _generate(
        self, classifier: Classifier, x: torch.Tensor, goal: torch.Tensor, *, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return _HopSkipJumpRun(self, classifier, x, goal, seed).run()


class _HopSkipJumpRun:
    """One batch's attack: per-sample state advanced in lockstep, one model call per phase."""

    def __init__(
        self,
        attack: HopSkipJump,
        classifier: Classifier,
        x: torch.Tensor,
        goal: torch.Tensor,
        seed: int,
    ) -> None:
        self.attack = attack
        self.classifier = classifier
        self.x = x
        self.goal = goal
        self.norm = attack.norm
        self.low, self.high = classifier.clip_range
        self.generator = torch.Generator(device=x.device).manual_seed(seed)
        self.features = x[0].numel() if len(x) else 1
        if self.norm == "l2":
            self.theta = attack.gamma / (self.features * math.sqrt(self.features))
        else:
            self.theta = attack.gamma / self.features**2
        self.queries = torch.zeros(len(x), dtype=torch.int64, device=x.device)

    # -- the model, as labels -----------------------------------------------------------------

    def adversarial(self, points: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Whether each point meets the goal of sample ``rows[i]``; one query per point."""
        points = points.clamp(self.low, self.high)
        labels = self.classifier.predict(points.detach().cpu().numpy())
        self.queries.index_add_(0, rows, torch.ones_like(rows))
        labels_t = torch.from_numpy(labels).to(self.x.device)
        goal = self.goal[rows]
        return labels_t == goal if self.attack.targeted else labels_t != goal

    def budget_left(self, rows: torch.Tensor) -> torch.Tensor:
        return self.attack.max_queries - self.queries[rows]

    def distance(self, points: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        delta = (points - self.x[rows]).flatten(1)
        return delta.abs().amax(dim=1) if self.norm == "linf" else delta.norm(dim=1)

    # -- the attack ---------------------------------------------------------------------------

    def run(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.x)
        everyone = torch.arange(n, device=self.x.device)
        x_best = self.x.clone()
        if n == 0:
            return x_best, self.queries
        already = self.adversarial(self.x, everyone)
        if self.attack.eps == 0:
            return x_best, self.queries
        rows = everyone[~already]
        if rows.numel() == 0:
            return x_best, self.queries

        rows, start = self.random_start(rows)
        if rows.numel() == 0:
            return x_best, self.queries
        start = self.blend_towards_input(start, rows)
        current = self.to_boundary(start, rows)
        dist = self.distance(current, rows)
        best_dist = torch.full((n,), math.inf, device=self.x.device)
        x_best[rows] = current
        best_dist[rows] = dist

        for iteration in range(1, self.attack.max_iterations + 1):
            keep = self.budget_left(rows) > 0
            rows, current, dist = rows[keep], current[keep], dist[keep]
            if rows.numel() == 0:
                break
            if iteration == 1:
                delta = torch.full_like(dist, 0.1 * (self.high - self.low))
            else:
                scale = math.sqrt(self.features) if self.norm == "l2" else self.features
                delta = scale * self.theta * dist
            evals = int(self.attack.initial_evals * math.sqrt(iteration))
            direction = self.estimate_direction(current, rows, delta, evals)
            update = direction.sign() if self.norm == "linf" else direction

            stepped, moved = self.step_search(current, rows, update, dist / math.sqrt(iteration))
            if moved.any():
                boundary = self.to_boundary(stepped[moved], rows[moved])
                current[moved] = boundary
                dist[moved] = self.distance(boundary, rows[moved])
            closer = dist < best_dist[rows]
            x_best[rows[closer]] = current[closer]
            best_dist[rows[closer]] = dist[closer]
        return x_best, self.queries

    def random_start(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniform noise in the valid range that meets the goal, per sample; rows that found one."""
        start = torch.empty_like(self.x[rows])
        found = torch.zeros(len(rows), dtype=torch.bool, device=self.x.device)
        for _ in range(self.attack.init_tries):
            pending = torch.nonzero(~found & (self.budget_left(rows) > 0)).squeeze(1)
            if pending.numel() == 0:
                break
            noise = torch.rand(
                (len(pending), *self.x.shape[1:]), generator=self.generator, device=self.x.device
            )
            noise = self.low + (self.high - self.low) * noise.to(self.x.dtype)
            hit = self.adversarial(noise, rows[pending])
            start[pending[hit]] = noise[hit]
            found[pending[hit]] = True
        return rows[found], start[found]

    def blend_towards_input(self, start: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The least blend ``(1-α)·x + α·start`` still adversarial, to precision 0.001."""
        low = torch.zeros(len(rows), device=self.x.device)
        high = torch.ones(len(rows), device=self.x.device)
        x = self.x[rows]
        while True:
            active = torch.nonzero(
                (high - low > _BLEND_TOLERANCE) & (self.budget_left(rows) > 0)
            ).squeeze(1)
            if active.numel() == 0:
                break
            mid = (low[active] + high[active]) / 2
            blended = _blend(x[active], start[active], mid)
            hit = self.adversarial(blended, rows[active])
            high[active] = torch.where(hit, mid, high[active])
            low[active] = torch.where(hit, low[active], mid)
        return _blend(x, start, high)

    def project(self, x: torch.Tensor, points: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """The point at parameter ``alpha`` between ``x`` and ``points`` (blend or box)."""
        if self.norm == "l2":
            return _blend(x, points, alpha)
        radius = alpha.view(-1, *([1] * (x.dim() - 1)))
        return torch.minimum(torch.maximum(points, x - radius), x + radius)

    def to_boundary(self, points: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Binary search from adversarial ``points`` towards the inputs, to precision θ."""
        x = self.x[rows]
        lows = torch.zeros(len(rows), device=self.x.device)
        if self.norm == "l2":
            highs = torch.ones(len(rows), device=self.x.device)
            thresholds = torch.full_like(highs, self.theta)
        else:
            highs = self.distance(points, rows).to(lows.dtype)
            thresholds = (highs * self.theta).clamp(max=self.theta).clamp_min(1e-12)
        while True:
            active = torch.nonzero(
                ((highs - lows) / thresholds > 1) & (self.budget_left(rows) > 0)
            ).squeeze(1)
            if active.numel() == 0:
                break
            mids = (highs[active] + lows[active]) / 2
            hit = self.adversarial(self.project(x[active], points[active], mids), rows[active])
            highs[active] = torch.where(hit, mids, highs[active])
            lows[active] = torch.where(hit, lows[active], mids)
        return self.project(x, points, highs).clamp(self.low, self.high)

    def estimate_direction(
        self, current: torch.Tensor, rows: torch.Tensor, delta: torch.Tensor, evals: int
    ) -> torch.Tensor:
        """Monte Carlo estimate of the boundary's normal at ``current`` (unit L2 norm)."""
        shape = current.shape[1:]
        counts = self.budget_left(rows).clamp(max=evals)
        direction = torch.zeros_like(current)
        chunk = max(1, _PROBE_ELEMENTS // (evals * self.features))
        for start in range(0, len(rows), chunk):
            part = slice(start, start + chunk)
            k = len(rows[part])
            if self.norm == "l2":
                noise = torch.randn(
                    (k, evals, *shape), generator=self.generator, device=self.x.device
                )
            else:
                noise = torch.rand(
                    (k, evals, *shape), generator=self.generator, device=self.x.device
                )
                noise = 2 * noise - 1
            noise = noise.to(current.dtype)
            flat = noise.flatten(2)
            flat = flat / flat.norm(dim=2, keepdim=True).clamp_min(1e-12)
            radius = delta[part].view(-1, 1, 1).to(current.dtype).clamp_min(1e-12)
            centre = current[part].flatten(1)[:, None]
            probes = (centre + radius * flat).clamp(self.low, self.high)
            flat = (probes - centre) / radius
            valid = torch.arange(evals, device=self.x.device)[None] < counts[part][:, None]
            sample_rows = rows[part][:, None].expand(k, evals)[valid]
            hit = self.adversarial(probes[valid].reshape(-1, *shape), sample_rows)
            signs = torch.zeros((k, evals), dtype=current.dtype, device=self.x.device)
            signs[valid] = 2 * hit.to(current.dtype) - 1
            used = valid.sum(dim=1).clamp_min(1).to(current.dtype)
            baseline = signs.sum(dim=1) / used
            # when every probe agrees the baseline would cancel them: keep their common sign
            unanimous = baseline.abs() == 1
            centred = torch.where(unanimous[:, None], signs, signs - baseline[:, None])
            centred = centred * valid
            estimate = (centred[:, :, None] * flat).sum(dim=1) / used[:, None]
            estimate = estimate / estimate.norm(dim=1, keepdim=True).clamp_min(1e-12)
            direction[part] = estimate.reshape(k, *shape)
        return direction

    def step_search(
        self, current: torch.Tensor, rows: torch.Tensor, update: torch.Tensor, step: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Halve ``step`` until ``current + step·update`` is adversarial; which rows moved."""
        stepped = current.clone()
        moved = torch.zeros(len(rows), dtype=torch.bool, device=self.x.device)
        step = step.clone()
        searching = torch.ones_like(moved)
        for _ in range(_MAX_HALVINGS):
            active = torch.nonzero(searching & (self.budget_left(rows) > 0)).squeeze(1)
            if active.numel() == 0:
                break
            size = step[active].view(-1, *([1] * (current.dim() - 1)))
            candidate = (current[active] + size * update[active]).clamp(self.low, self.high)
            hit = self.adversarial(candidate, rows[active])
            stepped[active[hit]] = candidate[hit]
            moved[active[hit]] = True
            searching[active[hit]] = False
            step[active[~hit]] /= 2
        return stepped, moved


def _blend(x: torch.Tensor, other: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    weight = alpha.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
    return (1 - weight) * x + weight * other
