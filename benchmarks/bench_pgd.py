"""PGD speed: mlwarden against one forward+backward pass, and against ART, on zoo:digits-cnn.

Figures (issue 2), all measured in this run on the same module and the same batch:

* ``ratio`` = mlwarden PGD wall time ÷ (``steps`` × one forward+backward pass), with
  ``early_stop=True`` (the default) and ``early_stop=False``. A ratio of 1 means the attack
  costs exactly its gradient passes and nothing else. Floor: ≤ 1.05 for the default attack
  (issue 2); the ``early_stop=False`` ratio is reported for information: it also pays the one
  forward pass that scores the final iterate (about 1/20 of a forward+backward pass per step
  here, since this CNN's forward is more than half of a pass) and the per-step projection.
* ``speed-up`` = ART ``ProjectedGradientDescentPyTorch`` wall time ÷ mlwarden PGD wall time
  (default settings), at equal robust accuracy (the two differ by ≤ 2 points). Floor: ≥ 1.5.

How it is measured: after a warm-up, each of ``--rounds`` ratio rounds times
``2 * BASELINE_PASSES`` single forward+backward passes, half just before and half just after one
mlwarden run per ``early_stop`` setting. A round's ratio is its mlwarden time ÷ (``steps`` × the
mean of its own passes): one attack run is ``steps`` passes in a row, so it is compared with as
many passes timed beside it, load spikes included, rather than with their median, which leaves
the spikes out. Each of ``--art-rounds`` ART rounds then times one default mlwarden run and one
ART run per parameter setting; a round's speed-up is its ART time ÷ its mlwarden time. The
figures checked against the floors are the medians of these per-round values. Pairing within a
round keeps the figures honest on a shared machine, where the load can change the absolute
times several-fold within a minute. The "pooled" column is the plain definition over the whole
run: median attack time ÷ (``steps`` × median single pass), and median ART time ÷ median
mlwarden time; on an idle machine the two agree.

The baseline runs on the batch exactly as the attack's loop holds it (a standard contiguous
float32 tensor); the loader's own array has channels-last strides, on which oneDNN can pick a
faster path for this CNN, so a pass on it is timed as well, for information.

Figures go to a table on stdout and to ``benchmarks/results/pgd.json``; the exit code is 1 when
a floor is missed.

Usage: ``python benchmarks/bench_pgd.py [--rounds N] [--art-rounds N] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.nn import functional as F

from mlwarden import __version__
from mlwarden._io import atomic_write_text
from mlwarden.attacks.evasion.pgd import PGD
from mlwarden.data import load_dataset
from mlwarden.models import load_model
from mlwarden.models.torch import TorchClassifier
from mlwarden.models.zoo import digits_cnn

MODEL = "zoo:digits-cnn"
DATA = "builtin:digits"
EPS = 0.1
STEPS = 20
STEP_SIZE = 2.5 * EPS / STEPS
SEED = 0
RATIO_FLOOR = 1.05  # mlwarden PGD ÷ (STEPS × one forward+backward), at most
SPEEDUP_FLOOR = 1.5  # ART ÷ mlwarden, at least
ACCURACY_GAP_FLOOR = 0.02  # |robust accuracy mlwarden − ART|, at most
BASELINE_PASSES = 10  # per side of the mlwarden runs, in each round
NOISY_IQR = 0.10  # above this spread of per-round ratios, say the machine was noisy
DEFAULT_ROUNDS = 30  # ratio rounds (about 1.5 s each on an idle machine)
DEFAULT_ART_ROUNDS = 5  # ART rounds (about 2.5 s each)
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "pgd.json"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of one call of ``fn`` in seconds, and what it returned."""
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def forward_backward(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One forward+backward pass: cross-entropy, gradient with respect to the input only."""
    x_in = x.detach().requires_grad_(True)
    loss = F.cross_entropy(module(x_in), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x_in)
    return grad


def plain_copy(classifier: TorchClassifier, *, frozen: bool) -> nn.Module:
    """The digits CNN as a plain ``nn.Module`` holding the exported program's weights."""
    module = digits_cnn()
    weights = {name: p.detach().clone() for name, p in classifier.module.named_parameters()}
    module.load_state_dict(weights)
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(not frozen)
    return module


def art_attack(module: nn.Module, input_shape: tuple[int, ...], n_classes: int, batch: int) -> Any:
    """ART's PyTorch PGD with the same hyperparameters as the mlwarden attack."""
    from art.attacks.evasion import ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    estimator = PyTorchClassifier(
        model=module,
        loss=nn.CrossEntropyLoss(),
        input_shape=input_shape,
        nb_classes=n_classes,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )
    return ProjectedGradientDescentPyTorch(
        estimator,
        norm=np.inf,
        eps=EPS,
        eps_step=STEP_SIZE,
        max_iter=STEPS,
        num_random_init=1,
        batch_size=batch,
        verbose=False,
    )


def run_art(attack: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One ART attack run, seeded (ART draws its random start from NumPy's global state)."""
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    return np.asarray(attack.generate(x, y))


def median_ms(seconds: list[float]) -> float:
    """Median of ``seconds``, in milliseconds."""
    return 1e3 * statistics.median(seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="ratio rounds")
    parser.add_argument("--art-rounds", type=int, default=DEFAULT_ART_ROUNDS, help="ART rounds")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write figures")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.art_rounds < 1:
        parser.error(
            f"--rounds and --art-rounds must be >= 1, got {args.rounds}, {args.art_rounds}"
        )

    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    console = Console()
    if not console.is_terminal:  # logs and pipes: wide enough that the table does not wrap
        console = Console(width=120)

    classifier = load_model(MODEL)
    if not isinstance(classifier, TorchClassifier):
        raise TypeError(f"{MODEL} loaded as {type(classifier).__name__}, not a TorchClassifier")
    module = classifier.module
    if any(p.requires_grad for p in module.parameters()):
        raise RuntimeError("the loaded module's parameters must be frozen")
    data = load_dataset(DATA)
    x_np, y_np = data.x, data.y
    n = len(x_np)
    low, high = classifier.clip_range
    # The batch as Attack.generate hands it to PGD (np.clip makes a standard C-order copy).
    x = torch.from_numpy(np.clip(x_np, low, high))
    x_loader = torch.from_numpy(x_np)  # the loader's array as is: channels-last strides
    y = torch.from_numpy(y_np)

    # The ART side runs the same weights in a plain nn.Module: same logits, bit for bit.
    art_modules = {
        "art": plain_copy(classifier, frozen=False),
        "art_frozen": plain_copy(classifier, frozen=True),
    }
    with torch.no_grad():
        reference = classifier.logits(x)
        for name, copy in art_modules.items():
            logits = copy(x)
            if not torch.equal(logits, reference):
                raise RuntimeError(
                    f"{name}: logits differ from mlwarden's by up to "
                    f"{(logits - reference).abs().max().item():.3g}"
                )
    clean_accuracy = float((reference.argmax(1).numpy() == y_np).mean())
    art_attacks = {
        name: art_attack(copy, classifier.input_shape, classifier.n_classes, n)
        for name, copy in art_modules.items()
    }
    pgd = {
        early_stop: PGD(
            eps=EPS,
            norm="linf",
            steps=STEPS,
            step_size=STEP_SIZE,
            restarts=1,
            random_start=True,
            early_stop=early_stop,
            seed=SEED,
            batch_size=n,
        )
        for early_stop in (True, False)
    }
    mlwarden_keys = {True: "mlwarden_early_stop", False: "mlwarden_no_early_stop"}

    def baseline() -> torch.Tensor:
        return forward_backward(module, x, y)

    def baseline_loader() -> torch.Tensor:
        return forward_backward(module, x_loader, y)

    def mlwarden(early_stop: bool) -> Callable[[], Any]:
        return lambda: pgd[early_stop].generate(classifier, x_np, y_np)

    def art(name: str) -> Callable[[], np.ndarray]:
        return lambda: run_art(art_attacks[name], x_np, y_np)

    # Warm-up: every measured call (allocator, oneDNN primitives, lazy imports).
    for _ in range(3):
        baseline()
        baseline_loader()
    for early_stop in pgd:
        mlwarden(early_stop)()
    for name in art_attacks:
        art(name)()

    times: dict[str, list[float]] = {
        "baseline": [],
        "baseline_loader_layout": [],
        "mlwarden_early_stop": [],
        "mlwarden_no_early_stop": [],
        "mlwarden_early_stop_beside_art": [],
        "art": [],
        "art_frozen": [],
    }
    robust: dict[str, list[float]] = {
        key: [] for key in ("mlwarden_early_stop", "mlwarden_no_early_stop", "art", "art_frozen")
    }
    per_round: dict[str, list[float]] = {
        "ratio_early_stop": [],
        "ratio_no_early_stop": [],
        "ratio_no_early_stop_vs_loader_layout": [],
        "speedup_vs_art": [],
        "speedup_vs_art_frozen": [],
    }
    queries: dict[str, float] = {}
    # Phase 1, the ratios: many short rounds, each pairing the two mlwarden runs with the
    # single passes timed just before and just after them.
    for round_index in range(args.rounds):
        console.log(f"ratio round {round_index + 1}/{args.rounds}")
        passes = [timed(baseline)[0] for _ in range(BASELINE_PASSES)]
        round_times: dict[str, float] = {}
        for early_stop, key in mlwarden_keys.items():
            seconds, result = timed(mlwarden(early_stop))
            round_times[key] = seconds
            robust[key].append(result.robust_accuracy(y_np))
            queries[key] = float(result.queries.mean())
        passes += [timed(baseline)[0] for _ in range(BASELINE_PASSES)]
        loader_passes = [timed(baseline_loader)[0] for _ in range(BASELINE_PASSES)]
        times["baseline"] += passes
        times["baseline_loader_layout"] += loader_passes
        for key, seconds in round_times.items():
            times[key].append(seconds)
        one_pass = statistics.fmean(passes)  # mean: see the module docstring
        per_round["ratio_early_stop"].append(
            round_times["mlwarden_early_stop"] / (STEPS * one_pass)
        )
        per_round["ratio_no_early_stop"].append(
            round_times["mlwarden_no_early_stop"] / (STEPS * one_pass)
        )
        per_round["ratio_no_early_stop_vs_loader_layout"].append(
            round_times["mlwarden_no_early_stop"] / (STEPS * statistics.fmean(loader_passes))
        )

    # Phase 2, ART: each round pairs one default mlwarden run with one run of each ART setup.
    for round_index in range(args.art_rounds):
        console.log(f"ART round {round_index + 1}/{args.art_rounds}")
        mlwarden_seconds, result = timed(mlwarden(True))
        times["mlwarden_early_stop_beside_art"].append(mlwarden_seconds)
        robust["mlwarden_early_stop"].append(result.robust_accuracy(y_np))
        for name in art_attacks:
            seconds, x_adv = timed(art(name))
            times[name].append(seconds)
            # Score ART's output with mlwarden's classifier: the same model, the same rule.
            robust[name].append(float((classifier.predict(x_adv) == y_np).mean()))
            key = "speedup_vs_art" if name == "art" else "speedup_vs_art_frozen"
            per_round[key].append(seconds / mlwarden_seconds)

    ms = {key: median_ms(values) for key, values in times.items()}
    figures_by_round = {key: statistics.median(values) for key, values in per_round.items()}
    pooled = {
        "ratio_early_stop": ms["mlwarden_early_stop"] / (STEPS * ms["baseline"]),
        "ratio_no_early_stop": ms["mlwarden_no_early_stop"] / (STEPS * ms["baseline"]),
        "ratio_no_early_stop_vs_loader_layout": ms["mlwarden_no_early_stop"]
        / (STEPS * ms["baseline_loader_layout"]),
        "speedup_vs_art": ms["art"] / ms["mlwarden_early_stop_beside_art"],
        "speedup_vs_art_frozen": ms["art_frozen"] / ms["mlwarden_early_stop_beside_art"],
    }
    accuracy = {key: statistics.median(values) for key, values in robust.items()}
    noise = None  # interquartile range of the per-round ratios without early stopping
    if args.rounds >= 4:
        quartiles = statistics.quantiles(per_round["ratio_no_early_stop"], n=4)
        noise = quartiles[2] - quartiles[0]
    gap = abs(accuracy["mlwarden_early_stop"] - accuracy["art"])
    checks = {
        "ratio_early_stop": figures_by_round["ratio_early_stop"] <= RATIO_FLOOR,
        "speedup_vs_art": figures_by_round["speedup_vs_art"] >= SPEEDUP_FLOOR,
        "equal_robust_accuracy": gap <= ACCURACY_GAP_FLOOR,
    }

    table = Table(
        title=f"PGD L∞ ε={EPS}, {STEPS} steps, {n} samples in one batch, {MODEL}, "
        f"{args.rounds} + {args.art_rounds} rounds"
    )
    table.add_column("figure")
    table.add_column("median", justify="right")
    table.add_column("rounds min–max", justify="right")
    table.add_column("pooled", justify="right")
    table.add_column("floor", justify="right")
    table.add_column("ok", justify="center")

    def verdict(ok: bool) -> str:
        return "[green]yes[/]" if ok else "[red]NO[/]"

    def spread(values: list[float], fmt: str) -> str:
        return f"{format(min(values), fmt)}–{format(max(values), fmt)}"

    for label, key, fmt in (
        ("one forward+backward (baseline), ms", "baseline", ".1f"),
        ("  same, on the loader's channels-last array, ms", "baseline_loader_layout", ".1f"),
        ("mlwarden PGD, early_stop=True, ms", "mlwarden_early_stop", ".0f"),
        ("mlwarden PGD, early_stop=False, ms", "mlwarden_no_early_stop", ".0f"),
        ("  same, in the ART rounds, ms", "mlwarden_early_stop_beside_art", ".0f"),
        ("ART PGD (trainable parameters), ms", "art", ".0f"),
        ("ART PGD (frozen parameters), ms", "art_frozen", ".0f"),
    ):
        seconds = [1e3 * t for t in times[key]]
        table.add_row(label, format(ms[key], fmt), spread(seconds, fmt), "", "", "")
    table.add_section()
    for label, key, floor in (
        ("ratio, early_stop=True", "ratio_early_stop", f"≤ {RATIO_FLOOR}"),
        ("ratio, early_stop=False (info)", "ratio_no_early_stop", ""),
        ("  same, vs the loader-layout pass (info)", "ratio_no_early_stop_vs_loader_layout", ""),
        ("speed-up vs ART", "speedup_vs_art", f"≥ {SPEEDUP_FLOOR}"),
        ("  same, ART with frozen parameters (info)", "speedup_vs_art_frozen", ""),
    ):
        table.add_row(
            label,
            f"{figures_by_round[key]:.3f}",
            spread(per_round[key], ".3f"),
            f"{pooled[key]:.3f}",
            floor,
            verdict(checks[key]) if key in checks else "",
        )
    table.add_section()
    table.add_row("clean accuracy", f"{100 * clean_accuracy:.1f}%", "", "", "", "")
    for label, key in (
        ("robust accuracy, mlwarden early_stop=True", "mlwarden_early_stop"),
        ("robust accuracy, mlwarden early_stop=False", "mlwarden_no_early_stop"),
        ("robust accuracy, ART", "art"),
        ("robust accuracy, ART frozen", "art_frozen"),
    ):
        values = [100 * a for a in robust[key]]
        table.add_row(label, f"{100 * accuracy[key]:.1f}%", spread(values, ".1f"), "", "", "")
    table.add_row(
        "robust accuracy gap, mlwarden vs ART, points",
        f"{100 * gap:.1f}",
        "",
        "",
        f"≤ {100 * ACCURACY_GAP_FLOOR:.0f}",
        verdict(checks["equal_robust_accuracy"]),
    )
    for label, key in (
        ("mean queries per sample, early_stop=True", "mlwarden_early_stop"),
        ("mean queries per sample, early_stop=False", "mlwarden_no_early_stop"),
    ):
        table.add_row(label, f"{queries[key]:.2f}", "", "", "", "")
    console.print(table)

    import art as art_package

    figures = {
        "benchmark": "pgd",
        "issue": 2,
        "created_unix": time.time(),
        "setup": {
            "model": MODEL,
            "data": DATA,
            "n_samples": n,
            "norm": "linf",
            "eps": EPS,
            "steps": STEPS,
            "step_size": STEP_SIZE,
            "restarts": 1,
            "random_start": True,
            "batch_size": n,
            "seed": SEED,
            "ratio_rounds": args.rounds,
            "art_rounds": args.art_rounds,
            "baseline_passes_per_round": 2 * BASELINE_PASSES,
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "art": art_package.__version__,
            "mlwarden": __version__,
        },
        "median_ms": ms,
        "figures": figures_by_round,
        "figures_per_round": per_round,
        "figures_pooled": pooled,
        "ratio_no_early_stop_interquartile_range": noise,
        "clean_accuracy": clean_accuracy,
        "robust_accuracy": accuracy,
        "robust_accuracy_per_round": robust,
        "robust_accuracy_gap": gap,
        "mean_queries": queries,
        "times_s": times,
        "floors": {
            "ratio_max": RATIO_FLOOR,
            "speedup_min": SPEEDUP_FLOOR,
            "robust_accuracy_gap_max": ACCURACY_GAP_FLOOR,
        },
        "checks": checks,
        "passed": all(checks.values()),
    }
    atomic_write_text(args.json, json.dumps(figures, indent=2) + "\n")
    console.print(f"figures written to {args.json}")
    if noise is not None and noise > NOISY_IQR:
        console.print(
            f"[yellow]the machine was noisy: per-round ratios (early_stop=False, the steadiest) have an "
            f"interquartile range of {noise:.3f}; re-run on an idle machine before trusting "
            f"a ratio this close to {RATIO_FLOOR}[/]"
        )
    missed = [name for name, ok in checks.items() if not ok]
    if missed:
        console.print(f"[red]floor missed: {', '.join(missed)}[/]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
