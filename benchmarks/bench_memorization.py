"""Canary exposure against repetitions, with and without DP-SGD (issue 19 proof figures).

A character GRU language model (hidden 128) is trained on a seeded sample of lines of
``builtin:convention-speeches`` (train split, cut at 100 characters) into which random
six-digit canaries ``"my account number is d d d d d d"`` (``|R| = 10**6``, 19.9 bits) were
planted: three secrets each at 0 (controls, never inserted), 1, 4 and 16 repetitions, and one
at 64. Models are trained on the same lines: Adam without privacy, and DP-Adam through Opacus
(``DPGRU``) at each ε of ``--epsilons`` (default 8 and 1), δ = 1e-5, for each privacy unit of
``--units``: ``line`` (every copy of a line is one example: a secret on ``k`` lines is
protected only at group level ``k``) and ``distinct-line`` (exact duplicate lines merged before
training: ε covers all copies of a line). For each canary the exact rank among all ``10**6``
secrets (trie enumeration) gives its exposure (Carlini et al. 2019); greedy and beam (width 8)
decoding from the prefix say whether it is written out verbatim. Utility: each model's held-out
loss in bits per character on test-split lines.

Floors (exit 1 when missed): without DP, mean exposure rises from 1 to 16 repetitions and the
64-repetition canary is regurgitated (greedy or beam); with DP, nothing is regurgitated; with DP
at ε ≤ 8 and the ``distinct-line`` unit, every repetition count's mean exposure is within 3
bits of the never-seen baseline (1/ln 2 ≈ 1.44 bits). The ``line`` rows are reported beside
them, not gated: their 64-repetition canary is expected to stay exposed (group level 64ε).

Timing (same run, same model): the trie enumeration of all ``10**6`` secrets against scoring
a uniform sample of 10,000 secrets one full forward pass each, scaled to ``10**6``.

Usage: ``python benchmarks/bench_memorization.py [--lines N] [--epochs E] [--dp-epochs E]
[--epsilons 8,1] [--units line,distinct-line] [--dp-seed S]``
writes ``benchmarks/results/memorization.json`` and ``docs/img/memorization_exposure.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from mlwarden._io import atomic_write_text, atomic_write_with
from mlwarden.attacks.privacy.memorization import (
    RANDOM_BASELINE_BITS,
    CanarySpace,
    MemorizationAttack,
    MemorizationResult,
    candidate_log_perplexities,
    plant_canaries,
)
from mlwarden.data import load_dataset
from mlwarden.defenses.training.dp_lm import (
    PRIVACY_UNITS,
    check_privacy_unit,
    train_language_model_dp,
)
from mlwarden.errors import SecurityWarning
from mlwarden.models.text_lm import (
    CharLanguageModel,
    CharVocabulary,
    fit_language_model,
    split_lines,
)
from mlwarden.report.plots import exposure_png

HERE = Path(__file__).resolve().parent
DELTA = 1e-5


def _lines(split: str, n: int, seed: int) -> list[str]:
    dataset = load_dataset("builtin:convention-speeches", split=split)
    lines = split_lines(dataset.texts, 100)
    keep = np.sort(
        np.random.default_rng(seed).choice(len(lines), min(n, len(lines)), replace=False)
    )
    return [lines[i] for i in keep]


def _bits_per_char(model: CharLanguageModel, lines: list[str]) -> float:
    return model.mean_loss(lines) / math.log(2)


def _report(name: str, result: MemorizationResult) -> None:
    for c in sorted(result.canaries, key=lambda c: c.repetitions):
        print(
            f"  {name:<22} {c.repetitions:>3}x {c.secret}  rank {c.rank:>7,}  exposure "
            f"{c.best_exposure:5.2f}  greedy {c.greedy!r}{'  REGURGITATED' if c.greedy_regurgitated or c.beam_regurgitated else ''}",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--dp-epochs", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dp-seed",
        type=int,
        default=None,
        help="seed of the DP models' initialisation, batches and noise (default: --seed); "
        "another value redraws DP-SGD's randomness on the same lines and canaries",
    )
    parser.add_argument("--epsilons", default="8,1", help="DP budgets, comma-separated (each ≤ 8)")
    parser.add_argument(
        "--units",
        default=",".join(reversed(PRIVACY_UNITS)),
        help="DP privacy units, comma-separated: line, distinct-line (one row per unit and ε)",
    )
    parser.add_argument("--json", type=Path, default=HERE / "results" / "memorization.json")
    parser.add_argument(
        "--png", type=Path, default=HERE.parent / "docs" / "img" / "memorization_exposure.png"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    space = CanarySpace()
    base = _lines("train", args.lines, args.seed)
    held_out = _lines("test", 300, args.seed)
    lines, canaries = plant_canaries(base, space, (0, 1, 4, 16), per_count=3, seed=args.seed)
    lines, top = plant_canaries(lines, space, (64,), seed=args.seed + 100)
    canaries += top
    assert len({c.secret for c in canaries}) == len(canaries), "secrets must be distinct"
    vocab = CharVocabulary.from_texts([*lines, *held_out, space.alphabet])
    print(
        f"{len(lines)} training lines ({len(lines) - len(base)} canary lines), |R| = {space.size:,}"
    )

    started = time.perf_counter()
    plain = fit_language_model(
        lines, vocab=vocab, hidden_size=args.hidden, epochs=args.epochs, seed=args.seed
    )
    plain_s = time.perf_counter() - started
    print(f"no DP: trained in {plain_s:.0f} s", flush=True)
    epsilons = [float(e) for e in args.epsilons.split(",")]
    units = [check_privacy_unit(u.strip(), name="--units") for u in args.units.split(",")]
    dp_seed = args.seed if args.dp_seed is None else args.dp_seed
    attack = MemorizationAttack(method="exact", beam_width=8, seed=args.seed)
    results = {"no DP": attack.run(plain, space, canaries)}
    utility = {"no DP": _bits_per_char(plain, held_out)}
    records, dp_seconds = {}, {}
    rows = {
        (unit, epsilon): f"DP ε={epsilon:g}, {unit.replace('-', ' ')}"
        for unit in units
        for epsilon in epsilons
    }
    for (unit, epsilon), name in rows.items():
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)
            dp = train_language_model_dp(
                lines,
                epsilon=epsilon,
                delta=DELTA,
                vocab=vocab,
                hidden_size=args.hidden,
                epochs=args.dp_epochs,
                batch_size=64,
                lr=1e-2,
                privacy_unit=unit,
                seed=dp_seed,
            )
        dp_seconds[name] = time.perf_counter() - started
        print(
            f"{name}: {dp.model.metadata['training']['n_lines']} lines trained "
            f"({dp.record.duplicates_removed} duplicates removed), {dp_seconds[name]:.0f} s, "
            f"ε spent {dp.record.epsilon_spent:.2f}, σ {dp.record.noise_multiplier:.2f}",
            flush=True,
        )
        results[name] = attack.run(dp.model, space, canaries)
        utility[name] = _bits_per_char(dp.model, held_out)
        records[name] = dp.record.to_dict()
    for name, result in results.items():
        _report(name, result)

    # timing: the trie against one full forward pass per secret, on the same model
    started = time.perf_counter()
    candidate_log_perplexities(plain, space)
    trie_s = time.perf_counter() - started
    sample = np.random.default_rng(args.seed).choice(space.size, 10_000, replace=False)
    texts = [space.secret_text(space.secret_at(int(i))) for i in sample]
    started = time.perf_counter()
    plain.continuation_log_prob(space.prefix, texts)
    brute_s = (time.perf_counter() - started) * space.size / len(texts)

    figures = {
        name: {
            "exposure_by_repetitions": {str(k): v for k, v in r.exposure_by_repetitions().items()},
            "regurgitated": [
                {"secret": c.secret, "repetitions": c.repetitions} for c in r.regurgitated()
            ],
        }
        for name, r in results.items()
    }
    print("\nmean exposure (bits) by repetitions; never-seen baseline 1.44, max 19.93")
    for name, r in results.items():
        row = "  ".join(f"{k:>2}x {v:5.2f}" for k, v in r.exposure_by_repetitions().items())
        print(f"  {name:<22} {row}   held-out {utility[name]:.2f} bits/char")
    print(
        f"\nenumeration of {space.size:,} secrets: trie {trie_s:.1f} s, one forward each "
        f"{brute_s:.0f} s (from 10,000): {brute_s / trie_s:.0f}x"
    )

    plain_curve = results["no DP"].exposure_by_repetitions()
    floors = {
        "no DP: exposure rises 1x < 4x < 16x": plain_curve[1] < plain_curve[4] < plain_curve[16],
        "no DP: the 64x canary is regurgitated": any(
            c.repetitions == 64 for c in results["no DP"].regurgitated()
        ),
    }
    for (unit, epsilon), name in rows.items():
        floors[f"{name}: nothing regurgitated"] = not results[name].regurgitated()
        curve = results[name].exposure_by_repetitions()
        near = {k: abs(v - RANDOM_BASELINE_BITS) <= 3.0 for k, v in curve.items()}
        if unit == "distinct-line" and epsilon <= 8:
            floors[f"{name}: every count within 3 bits of the baseline"] = all(near.values())
            # deduplicated, every planted canary is one training line: pool them, and say how
            # likely the largest exposure is for as many secrets the model never saw
            # (P(exposure >= t) = 2**-t for a uniform rank)
            once = [c.best_exposure for c in results[name].canaries if c.repetitions > 0]
            chance = 1.0 - (1.0 - 2.0 ** -max(once)) ** len(once)
            print(
                f"  info {name}: the {len(once)} planted canaries, each trained once: mean "
                f"exposure {np.mean(once):.2f}, largest {max(once):.2f} (largest of "
                f"{len(once)} never-seen secrets reaches it with probability {chance:.3f})"
            )
        else:  # reported, not gated: a line unit protects a k-times secret at group level k
            far = [f"{k}x" for k, ok in near.items() if not ok]
            print(
                f"  info {name}: counts more than 3 bits from the baseline: "
                f"{', '.join(far) if far else 'none'}"
            )
    for name, ok in floors.items():
        print(f"  {'ok  ' if ok else 'MISS'} {name}")

    payload = {
        "lines": len(lines),
        "hidden_size": args.hidden,
        "epochs": args.epochs,
        "dp_epochs": args.dp_epochs,
        "epsilons": epsilons,
        "privacy_units": units,
        "seed": args.seed,
        "dp_seed": dp_seed,
        "delta": DELTA,
        "privacy_records": records,
        "figures": figures,
        "canaries": {name: r.to_dict()["canaries"] for name, r in results.items()},
        "held_out_bits_per_char": utility,
        "train_seconds": {"no DP": plain_s, **dp_seconds},
        "enumeration_seconds": {"trie": trie_s, "full_forward_scaled": brute_s},
        "floors": floors,
    }
    atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    picture = exposure_png(
        {name: r.exposure_by_repetitions() for name, r in results.items()},
        max_exposure=space.bits,
        baseline=RANDOM_BASELINE_BITS,
    )

    def write(tmp: Path) -> None:
        tmp.write_bytes(picture)

    atomic_write_with(args.png, write)
    print(f"wrote {args.json} and {args.png}")
    return 0 if all(floors.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
