"""``mlwarden attack memorization``: canary exposure and regurgitation of a text generator.

Two ways to run it:

* ``--model lm.pt --canaries canaries.json``: measure a character language model that mlwarden
  saved, against the canaries that were planted in its training text;
* add ``--corpus builtin:NAME`` (or a ``.txt`` file, one example a line): plant fresh canaries
  in the corpus, train the model (with DP-SGD when ``--epsilon`` is given), write both files,
  then measure.

With DP-SGD, ``--privacy-unit`` says what ε protects: ``distinct-line`` (the default: exact
duplicate lines are merged before training, so a repeated secret is covered by ε) or ``line``
(each copy is one example: a secret on ``k`` lines gets group privacy ``k·ε``). The output and
the privacy record saved with the model state the unit and the duplicates removed.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import typer

from mlwarden.cli._console import console
from mlwarden.errors import ConfigError, DataError, SecurityWarning

__all__ = ["memorization"]


def _corpus_lines(spec: str, max_chars: int, max_lines: int | None, seed: int) -> list[str]:
    import numpy as np

    from mlwarden.models.text_lm import split_lines

    if spec.startswith("builtin:"):
        from mlwarden.data import load_dataset

        dataset = load_dataset(spec, split="train")
        texts = getattr(dataset, "texts", None)
        if dataset.kind != "text" or texts is None:
            raise DataError(f"--corpus {spec} is not a text dataset")
    else:
        path = Path(spec)
        if path.suffix != ".txt" or not path.is_file():
            raise DataError(f"--corpus must be builtin:NAME or an existing .txt file, got {spec!r}")
        texts = path.read_text(encoding="utf-8").splitlines()
    lines = split_lines(texts, max_chars)
    if max_lines is not None and len(lines) > max_lines:
        keep = np.sort(np.random.default_rng(seed).choice(len(lines), max_lines, replace=False))
        lines = [lines[i] for i in keep]
    if not lines:
        raise DataError(f"--corpus {spec} has no text")
    return lines


def _parse_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(
            f"--repetitions must be integers separated by commas, got {text!r}"
        ) from None
    if not counts or any(c < 0 for c in counts):
        raise ConfigError(f"--repetitions must be integers >= 0, got {text!r}")
    return counts


def memorization(
    model: Path = typer.Option(
        ...,
        "--model",
        "-m",
        help="Language model file (.pt) mlwarden saved; written with --corpus.",
    ),
    canaries: Path = typer.Option(
        ...,
        "--canaries",
        help="Canary file (JSON: the space and the secrets); written with --corpus.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for memorization.json and .png."),
    corpus: str | None = typer.Option(
        None,
        "--corpus",
        help="Plant canaries in this corpus and train the model first: builtin:NAME or a .txt file.",
    ),
    repetitions: str = typer.Option(
        "0,1,4,16,64", "--repetitions", help="With --corpus: how often each canary is inserted."
    ),
    digits: int = typer.Option(
        6, "--digits", help="With --corpus: secret length (10**digits secrets)."
    ),
    epsilon: float | None = typer.Option(
        None, "--epsilon", help="With --corpus: train with DP-SGD at this ε (omit: no privacy)."
    ),
    privacy_unit: str | None = typer.Option(
        None,
        "--privacy-unit",
        help="With --epsilon: what ε protects: distinct-line (default: exact duplicate lines "
        "merged before DP-SGD) or line (each copy; a line repeated k times gets k·ε).",
    ),
    delta: float = typer.Option(1e-5, "--delta", help="DP δ."),
    epochs: int = typer.Option(10, "--epochs", help="With --corpus: training epochs."),
    hidden_size: int = typer.Option(256, "--hidden-size", help="With --corpus: GRU width."),
    max_lines: int | None = typer.Option(
        None, "--max-lines", help="With --corpus: train on a seeded sample of this many lines."
    ),
    method: str = typer.Option(
        "exact", "--method", help="exact (enumerate every secret), extrapolated or both."
    ),
    samples: int = typer.Option(5000, "--samples", help="Secrets sampled for the extrapolation."),
    beam_width: int = typer.Option(8, "--beam-width", help="Beam search width."),
    seed: int = typer.Option(0, "--seed", help="Seed of the canaries, the sample and training."),
) -> None:
    """Canary exposure and verbatim regurgitation (Carlini et al. 2019, "The Secret Sharer")."""
    from mlwarden._io import atomic_write_text, atomic_write_with
    from mlwarden.attacks.privacy.memorization import (
        METHODS,
        RANDOM_BASELINE_BITS,
        CanarySpace,
        MemorizationAttack,
        canaries_from_dict,
        canaries_to_dict,
        plant_canaries,
    )
    from mlwarden.models.text_lm import CharLanguageModel, CharVocabulary, fit_language_model
    from mlwarden.report.plots import exposure_png

    if method not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if privacy_unit is not None:
        from mlwarden.defenses.training.dp_lm import check_privacy_unit

        check_privacy_unit(privacy_unit, name="--privacy-unit")
        if epsilon is None or corpus is None:
            raise ConfigError(
                "--privacy-unit applies to DP-SGD training: give it with --corpus and --epsilon"
            )
    if corpus is not None:
        space = CanarySpace(length=digits)
        lines = _corpus_lines(corpus, 100, max_lines, seed)
        planted, canary_list = plant_canaries(lines, space, _parse_counts(repetitions), seed=seed)
        vocab = CharVocabulary.from_texts([*planted, space.prefix, space.alphabet])
        console.print(
            f"training a character GRU on {len(planted)} lines "
            f"({len(planted) - len(lines)} canary lines)"
            + ("" if epsilon is None else f" with DP-SGD at ε={epsilon:g}, δ={delta:g}"),
            highlight=False,
        )
        if epsilon is None:
            lm = fit_language_model(
                planted, vocab=vocab, hidden_size=hidden_size, epochs=epochs, seed=seed
            )
        else:
            from mlwarden.defenses.training.dp_lm import (
                DEFAULT_PRIVACY_UNIT,
                train_language_model_dp,
            )

            unit = privacy_unit or DEFAULT_PRIVACY_UNIT
            with warnings.catch_warnings():
                # the secure-mode and line-unit warnings are printed below as notes
                warnings.simplefilter("ignore", SecurityWarning)
                trained = train_language_model_dp(
                    planted,
                    epsilon=epsilon,
                    delta=delta,
                    vocab=vocab,
                    hidden_size=hidden_size,
                    epochs=epochs,
                    privacy_unit=unit,  # type: ignore[arg-type]
                    seed=seed,
                )
            lm = trained.model
            console.print(
                f"privacy unit: {unit}"
                + (
                    " (the default; --privacy-unit line counts each copy)"
                    if privacy_unit is None
                    else ""
                ),
                highlight=False,
            )
            for i, note in enumerate(trained.record.notes):
                # the first note states the unit (a warning for the weaker line unit), the
                # rest say what deduplication leaves uncovered
                label = "warning" if i == 0 and unit == "line" else "note" if i else ""
                console.print((f"[yellow]{label}:[/] " if label else "") + note, highlight=False)
            console.print(
                "[yellow]note:[/] DP-SGD ran seeded, with Opacus's secure_mode off: right for "
                "a measurement, not for a released model",
                highlight=False,
            )
        lm.save(model)
        atomic_write_text(
            canaries, json.dumps(canaries_to_dict(space, canary_list), indent=2) + "\n"
        )
        console.print(f"wrote [bold]{model}[/] and [bold]{canaries}[/]")
    else:
        lm = CharLanguageModel.load(model)
        if not canaries.is_file():
            raise DataError(f"--canaries {str(canaries)!r} does not exist")
        try:
            content: Any = json.loads(canaries.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"--canaries {str(canaries)!r} is not JSON: {exc}") from None
        space, canary_list = canaries_from_dict(content)

    result = MemorizationAttack(
        method=method,  # type: ignore[arg-type]
        n_samples=samples,
        beam_width=beam_width,
        seed=seed,
    ).run(lm, space, canary_list)
    for c in result.canaries:
        console.print(
            f"{c.repetitions:>3}x {c.secret}: exposure {c.best_exposure:5.2f} of "
            f"{space.bits:.2f} bits"
            + ("" if c.rank is None else f" (rank {c.rank:,} of {space.size:,})")
            + ("; REGURGITATED" if c.greedy_regurgitated or c.beam_regurgitated else ""),
            highlight=False,
        )
    payload = {"model": str(model), "privacy": lm.metadata.get("privacy"), **result.to_dict()}
    path = atomic_write_text(out / "memorization.json", json.dumps(payload, indent=2) + "\n")
    picture = exposure_png(
        {"exposure": result.exposure_by_repetitions()},
        max_exposure=space.bits,
        baseline=RANDOM_BASELINE_BITS,
    )

    def write(tmp: Path) -> None:
        tmp.write_bytes(picture)

    atomic_write_with(out / "memorization.png", write)
    console.print(f"wrote [bold]{path}[/] and memorization.png")
