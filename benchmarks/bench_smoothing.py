"""Randomized-smoothing certification speed: mlwarden against plain noisy passes and against ART.

Figures (issue 3), measured in this run on zoo:digits-cnn's weights, the same inputs, σ, n0, n
and α:

* ``overhead`` = mlwarden ``SmoothedClassifier.certify`` wall time ÷ the wall time of the same
  number of plain noisy forward passes (``M·(n0 + n)`` samples: Gaussian noise added, logits,
  argmax) in batches of ``BATCH``, through the same inference path ``SmoothedClassifier`` runs
  (on a CPU a traced, frozen copy optimised for inference with oneDNN; see
  ``SmoothedClassifier(fast_inference=...)``). 1 means certification costs exactly its forward
  passes. Floor: ≤ 1.1. The same passes through the eager ``nn.Module`` are timed too, for
  information (``overhead_vs_eager_module``): the inference path is where most of the speed-up
  over ART comes from on a CPU; the rest is batching noisy samples of several inputs together.
* ``speed-up`` = ART ``PyTorchRandomizedSmoothing.certify`` wall time ÷ mlwarden's, with the
  same batch size handed to both, on the digits CNN rebuilt as a plain ``nn.Module``
  (``mlwarden.models.zoo.digits_cnn()`` holding the exported program's weights; the logits are
  checked to be identical). Floor: ≥ 2.5, at the same certified accuracy: at each radius of
  the report's table (0, 0.25, 0.5) the two differ by at most ``ACCURACY_GAP_FLOOR`` (the Monte
  Carlo noise of two independent samplings).

How it is measured: after a warm-up, each round takes the next ``--inputs`` test digits and
times the plain passes (both layouts), mlwarden and ART on them once each, in an order that
rotates from round to round; a round's overhead and speed-up are ratios of its own times, and
the figures checked against the floors are the medians over rounds. Rounds are short (seconds)
because the development machine is shared: pairing within a short round keeps the ratios
honest when the load changes, which it does several-fold within a minute. Certified accuracy is
computed over the inputs of all rounds together. ART draws its noise from NumPy's global
generator, which is seeded before each of its runs.

Figures go to a table on stdout and to ``benchmarks/results/smoothing.json``; the exit code is
1 when a floor is missed.

Usage: ``python benchmarks/bench_smoothing.py [--rounds N] [--inputs M] [--n N] [--json PATH]``
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

from mlwarden import __version__
from mlwarden._io import atomic_write_text
from mlwarden.data import load_dataset
from mlwarden.defenses.smoothing import SmoothedClassifier
from mlwarden.defenses.smoothing.smoothed import CertificationResult
from mlwarden.models import load_model
from mlwarden.models.torch import TorchClassifier
from mlwarden.models.zoo import digits_cnn

MODEL = "zoo:digits-cnn"
DATA = "builtin:digits"
SIGMA = 0.25
N0 = 100
ALPHA = 0.001
BATCH = 2048
SEED = 0
RADII = (0.0, 0.25, 0.5)
OVERHEAD_FLOOR = 1.1  # mlwarden certify ÷ plain noisy passes, at most
SPEEDUP_FLOOR = 2.5  # ART ÷ mlwarden, at least
ACCURACY_GAP_FLOOR = 0.05  # |certified accuracy mlwarden − ART| at each radius, at most
DEFAULT_ROUNDS = 11
DEFAULT_INPUTS = 20
DEFAULT_N = 1000
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "smoothing.json"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of one call of ``fn`` in seconds, and what it returned."""
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def plain_copy(classifier: TorchClassifier) -> nn.Module:
    """The digits CNN as a plain ``nn.Module`` holding the exported program's weights."""
    module = digits_cnn()
    module.load_state_dict({k: p.detach().clone() for k, p in classifier.module.named_parameters()})
    return module.eval()


def plain_noisy_passes(
    labels_of: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, per_input: int
) -> torch.Tensor:
    """``per_input`` noisy copies of every input through ``module`` in batches of ``BATCH``.

    The reference cost: one Gaussian draw, one forward pass and one argmax per sample, and
    nothing else (no per-input seeding, no counting).
    """
    generator = torch.Generator().manual_seed(SEED)
    total = len(x) * per_input
    labels = torch.empty(total, dtype=torch.int64)
    with torch.inference_mode():
        for start in range(0, total, BATCH):
            stop = min(start + BATCH, total)
            owners = torch.arange(start, stop) // per_input
            batch = torch.randn((stop - start, *x.shape[1:]), generator=generator)
            batch.mul_(SIGMA).add_(x[owners])
            labels[start:stop] = labels_of(batch)
    return labels


def art_certify(module: nn.Module, x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """ART's certification of ``x`` with the same σ, n0 (``sample_size``), n, α and batch."""
    from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

    estimator = PyTorchRandomizedSmoothing(
        model=module,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=10,
        clip_values=(0.0, 1.0),
        sample_size=N0,
        scale=SIGMA,
        alpha=ALPHA,
        device_type="cpu",
    )
    np.random.seed(SEED)
    prediction, radius = estimator.certify(x, n=n, batch_size=BATCH)
    return np.asarray(prediction), np.asarray(radius)


def accuracy_at_radii(
    prediction: np.ndarray, radius: np.ndarray, y: np.ndarray, radii: tuple[float, ...]
) -> list[float]:
    """Certified accuracy: predicted correctly with a radius of at least each radius."""
    return [float(np.mean((prediction == y) & (radius >= r))) for r in radii]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="timed rounds")
    parser.add_argument("--inputs", type=int, default=DEFAULT_INPUTS, help="inputs per round")
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="estimation samples per input")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write figures")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.inputs < 1 or args.n < 1:
        parser.error("--rounds, --inputs and --n must be >= 1")
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)

    classifier = load_model(MODEL)
    if not isinstance(classifier, TorchClassifier):
        raise TypeError(f"{MODEL} loaded as {type(classifier).__name__}, not a TorchClassifier")
    data = load_dataset(DATA)
    total_inputs = args.inputs * args.rounds
    if total_inputs > len(data):
        parser.error(f"--inputs × --rounds must be at most {len(data)}, got {total_inputs}")
    x_all = np.ascontiguousarray(data.x[:total_inputs])
    y_all = data.y[:total_inputs]
    module = plain_copy(classifier)
    for p in module.parameters():
        p.requires_grad_(False)
    # mlwarden and ART run the same nn.Module; check it matches the exported program.
    with torch.no_grad():
        x_check = torch.from_numpy(x_all)
        if not torch.equal(module(x_check), classifier.logits(x_check)):
            raise RuntimeError("the rebuilt nn.Module's logits differ from the exported model's")
    ours = TorchClassifier(module, input_shape=classifier.input_shape, n_classes=10)
    smoothed = SmoothedClassifier(ours, sigma=SIGMA, batch_size=BATCH, seed=SEED)
    art_module = plain_copy(classifier)  # ART trains nothing here but keeps its own copy

    def runners(x_np: np.ndarray) -> dict[str, Callable[[], Any]]:
        x = torch.from_numpy(x_np)
        return {
            "plain": lambda: plain_noisy_passes(smoothed._labels, x, N0 + args.n),
            "plain_standard": lambda: plain_noisy_passes(
                lambda b: module(b).argmax(1), x, N0 + args.n
            ),
            "mlwarden": lambda: smoothed.certify(x_np, n0=N0, n=args.n, alpha=ALPHA),
            "art": lambda: art_certify(art_module, x_np, args.n),
        }

    # Warm-up (allocator, oneDNN primitives, lazy imports; certify builds its inference path
    # here, and the plain passes then run through the very same one).
    smoothed.certify(x_all[:4], n0=N0, n=args.n, alpha=ALPHA)
    for warm in runners(x_all[:4]).values():
        warm()

    times: dict[str, list[float]] = {"plain": [], "plain_standard": [], "mlwarden": [], "art": []}
    overhead, overhead_standard, speedup = [], [], []
    ours_results: list[CertificationResult] = []
    art_predictions: list[np.ndarray] = []
    art_radii: list[np.ndarray] = []
    order = list(times)
    for round_index in range(args.rounds):
        console.log(f"round {round_index + 1}/{args.rounds}")
        chunk = slice(round_index * args.inputs, (round_index + 1) * args.inputs)
        run = runners(np.ascontiguousarray(x_all[chunk]))
        shift = round_index % len(order)
        seconds: dict[str, float] = {}
        for key in order[shift:] + order[:shift]:
            seconds[key], value = timed(run[key])
            if key == "mlwarden":
                ours_results.append(value)
            elif key == "art":
                art_predictions.append(value[0])
                art_radii.append(value[1])
        for key, value in seconds.items():
            times[key].append(value)
        overhead.append(seconds["mlwarden"] / seconds["plain"])
        overhead_standard.append(seconds["mlwarden"] / seconds["plain_standard"])
        speedup.append(seconds["art"] / seconds["mlwarden"])

    median_overhead = statistics.median(overhead)
    median_speedup = statistics.median(speedup)
    ours_predictions = np.concatenate([r.predictions for r in ours_results])
    ours_radii = np.concatenate([r.radii for r in ours_results])
    ours_final = accuracy_at_radii(ours_predictions, ours_radii, y_all, RADII)
    art_final = accuracy_at_radii(
        np.concatenate(art_predictions), np.concatenate(art_radii), y_all, RADII
    )
    gaps = [abs(a - b) for a, b in zip(ours_final, art_final, strict=True)]
    checks = {
        "overhead": median_overhead <= OVERHEAD_FLOOR,
        "speedup_vs_art": median_speedup >= SPEEDUP_FLOOR,
        "same_certified_accuracy": max(gaps) <= ACCURACY_GAP_FLOOR,
    }
    samples = args.inputs * (N0 + args.n)
    table = Table(
        title=f"Certification, σ={SIGMA}, n0={N0}, n={args.n}, α={ALPHA}, {args.rounds} rounds "
        f"of {args.inputs} inputs ({samples:,} noisy passes each), batch {BATCH}"
    )
    table.add_column("figure")
    table.add_column("median", justify="right")
    table.add_column("rounds min–max", justify="right")
    table.add_column("floor", justify="right")
    table.add_column("ok", justify="center")

    def verdict(ok: bool) -> str:
        return "[green]yes[/]" if ok else "[red]NO[/]"

    for label, key in (
        ("plain noisy passes (certify's inference path), s", "plain"),
        ("plain noisy passes (eager nn.Module), s", "plain_standard"),
        ("mlwarden certify, s", "mlwarden"),
        ("ART certify, s", "art"),
    ):
        values = times[key]
        table.add_row(
            label,
            f"{statistics.median(values):.2f}",
            f"{min(values):.2f}–{max(values):.2f}",
            "",
            "",
        )
    table.add_row(
        "overhead (mlwarden ÷ plain)",
        f"{median_overhead:.3f}",
        f"{min(overhead):.3f}–{max(overhead):.3f}",
        f"≤ {OVERHEAD_FLOOR}",
        verdict(checks["overhead"]),
    )
    table.add_row(
        "  mlwarden ÷ plain through the eager module (info)",
        f"{statistics.median(overhead_standard):.3f}",
        f"{min(overhead_standard):.3f}–{max(overhead_standard):.3f}",
        "",
        "",
    )
    table.add_row(
        "speed-up (ART ÷ mlwarden)",
        f"{median_speedup:.2f}×",
        f"{min(speedup):.2f}–{max(speedup):.2f}",
        f"≥ {SPEEDUP_FLOOR}",
        verdict(checks["speedup_vs_art"]),
    )
    for radius, a, b in zip(RADII, ours_final, art_final, strict=True):
        table.add_row(
            f"certified accuracy r={radius:g}: mlwarden / ART", f"{a:.1%} / {b:.1%}", "", "", ""
        )
    table.add_row(
        "largest certified-accuracy gap",
        f"{max(gaps):.3f}",
        "",
        f"≤ {ACCURACY_GAP_FLOOR}",
        verdict(checks["same_certified_accuracy"]),
    )
    console.print(table)

    figures = {
        "benchmark": "smoothing",
        "mlwarden_version": __version__,
        "torch_version": torch.__version__,
        "art_version": _art_version(),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "settings": {
            "model": MODEL,
            "data": DATA,
            "inputs_per_round": args.inputs,
            "inputs_total": total_inputs,
            "sigma": SIGMA,
            "n0": N0,
            "n": args.n,
            "alpha": ALPHA,
            "batch": BATCH,
            "rounds": args.rounds,
            "noisy_passes_per_round": samples,
        },
        "seconds": times,
        "overhead": {"median": median_overhead, "rounds": overhead, "floor": OVERHEAD_FLOOR},
        "inference_path": smoothed.inference_path,
        "overhead_vs_eager_module": {
            "median": statistics.median(overhead_standard),
            "rounds": overhead_standard,
        },
        "speedup_vs_art": {"median": median_speedup, "rounds": speedup, "floor": SPEEDUP_FLOOR},
        "certified_accuracy": {
            "radii": list(RADII),
            "mlwarden": ours_final,
            "art": art_final,
            "max_gap": max(gaps),
            "floor": ACCURACY_GAP_FLOOR,
        },
        "checks": checks,
        "passed": all(checks.values()),
    }
    atomic_write_text(args.json, json.dumps(figures, indent=2) + "\n")
    console.print(f"wrote {args.json}")
    if not figures["passed"]:
        failed = ", ".join(k for k, ok in checks.items() if not ok)
        console.print(f"[red]floor missed: {failed}[/]")
        return 1
    return 0


def _art_version() -> str | None:
    try:
        import art
    except ImportError:  # pragma: no cover - the bench extra installs it
        return None
    return str(art.__version__)


if __name__ == "__main__":
    sys.exit(main())
