"""Figures for reports, rendered to PNG bytes with matplotlib's Agg backend."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

__all__ = [
    "accuracy_vs_eps_png",
    "adversarial_examples_png",
    "certified_accuracy_png",
    "exposure_png",
    "extraction_png",
    "federated_curve_png",
    "gradient_leakage_png",
    "inversion_grid_png",
    "membership_roc_png",
    "training_curve_png",
]

_PNG_META = {"Software": None}


def _to_png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata=_PNG_META)
    plt.close(fig)
    return buffer.getvalue()


def accuracy_vs_eps_png(section: dict[str, Any]) -> bytes:
    """Accuracy against ε for each attack and the worst case, from the evasion section."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    clean = section["clean_accuracy"]
    for name, rows in section["curves"].items():
        eps = [0.0] + [r["eps"] for r in rows]
        acc = [clean] + [r["robust_accuracy"] for r in rows]
        ax.plot(eps, acc, marker="o", label=name.upper())
    worst = section["worst_case_robust_accuracy"]
    ax.plot(
        [0.0] + [w["eps"] for w in worst],
        [clean] + [w["robust_accuracy"] for w in worst],
        color="black",
        linestyle="--",
        marker="x",
        label="worst case",
    )
    ax.set_xlabel(f"ε ({section['norm']})")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Accuracy under attack")
    return _to_png(fig)


def adversarial_examples_png(examples: dict[str, Any]) -> bytes:
    """Clean input, adversarial input and amplified perturbation for a few fooled samples."""
    clean = np.asarray(examples["clean"], dtype=np.float32)
    adv = np.asarray(examples["adversarial"], dtype=np.float32)
    count = len(clean)
    fig, axes = plt.subplots(3, count, figsize=(1.3 * count + 0.6, 4.2), squeeze=False)

    def image(a: np.ndarray) -> np.ndarray:
        return a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))

    for i in range(count):
        delta = adv[i] - clean[i]
        scale = float(np.abs(delta).max()) or 1.0
        panels = (
            (image(clean[i]), "gray", f"y={examples['labels'][i]}"),
            (image(adv[i]), "gray", f"→ {examples['adversarial_predictions'][i]}"),
            (image(delta / scale * 0.5 + 0.5), "RdBu", "δ"),
        )
        for row, (picture, cmap, title) in enumerate(panels):
            ax = axes[row][i]
            ax.imshow(np.clip(picture, 0, 1), cmap=cmap, vmin=0, vmax=1)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.suptitle(
        f"{examples['attack'].upper()} at ε={examples['eps']:g}: clean / adversarial / perturbation"
    )
    return _to_png(fig)


def certified_accuracy_png(section: dict[str, Any]) -> bytes:
    """Certified accuracy against the L2 radius, from the certification section."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    radii = [row["radius"] for row in section["curve"]]
    accuracy = [row["certified_accuracy"] for row in section["curve"]]
    ax.step(radii, accuracy, where="post", label=f"σ={section['sigma']:g}")
    ax.axvline(
        section["max_certifiable_radius"],
        color="gray",
        linestyle=":",
        label="largest certifiable radius",
    )
    ax.set_xlabel("L2 radius")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"Certified accuracy (n={section['n']}, α={section['alpha']:g})")
    return _to_png(fig)


def training_curve_png(history: list[dict[str, Any]], title: str) -> bytes:
    """Held-out clean, robust and noisy accuracy per epoch of a hardening run."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    epochs = [row["epoch"] for row in history]
    for key, label in (
        ("clean_accuracy", "clean"),
        ("robust_accuracy", "PGD robust"),
        ("noisy_accuracy", "under noise σ"),
    ):
        values = [row.get(key) for row in history]
        if any(v is not None for v in values):
            points = [float("nan") if v is None else float(v) for v in values]
            ax.plot(epochs, points, marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    return _to_png(fig)


def membership_roc_png(
    curves: dict[str, dict[str, Any]], title: str = "Membership inference ROC"
) -> bytes:
    """Log-log ROC curves of membership attacks (``{name: {"fpr": [...], "tpr": [...]}}``).

    Low false-positive rates are where membership leakage matters (Carlini et al., 2022), so
    both axes are logarithmic; the diagonal is a random guess.
    """
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    floor = 1e-4
    for name, curve in curves.items():
        fpr = np.maximum(np.asarray(curve["fpr"], dtype=np.float64), floor)
        tpr = np.maximum(np.asarray(curve["tpr"], dtype=np.float64), floor)
        label = name if "auc" not in curve else f"{name} (AUC {curve['auc']:.3f})"
        ax.plot(fpr, tpr, label=label, drawstyle="steps-post")
    ax.plot([floor, 1], [floor, 1], color="gray", linestyle=":", label="random guess")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1.05)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    return _to_png(fig)


def inversion_grid_png(reconstructions: Any, class_means: Any, recovered: Any = None) -> bytes:
    """Model-inversion reconstructions (top row) above each class's mean training input."""
    recon = np.asarray(reconstructions, dtype=np.float32)
    means = np.asarray(class_means, dtype=np.float32)
    count = len(recon)
    fig, axes = plt.subplots(2, count, figsize=(1.1 * count + 0.6, 2.9), squeeze=False)

    def image(a: np.ndarray) -> np.ndarray:
        if a.ndim == 1:  # tabular: show the feature vector as a strip
            return a[None, :]
        return a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))

    for c in range(count):
        mark = "" if recovered is None else (" ✓" if recovered[c] else " ✗")
        for row, (picture, title) in enumerate(
            ((recon[c], f"class {c}{mark}"), (means[c], "mean"))
        ):
            ax = axes[row][c]
            ax.imshow(np.clip(image(picture), 0, 1), cmap="gray", vmin=0, vmax=1, aspect="auto")
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.suptitle("Model inversion: reconstruction / class mean of the training data", y=1.04)
    return _to_png(fig)


def extraction_png(runs: dict[str, dict[str, Any]], *, title: str | None = None) -> bytes:
    """Fidelity (solid) and accuracy (dashed) against queries, log x, one colour per run.

    Parameters
    ----------
    runs
        Label (e.g. the output policy) to an :meth:`ExtractionResult.to_dict` document.
    title
        Figure title.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for index, (label, run) in enumerate(runs.items()):
        colour = f"C{index}"
        points = run["points"]
        queries = [p["queries"] for p in points]
        fidelity = [p["fidelity"] for p in points]
        accuracy = [p["accuracy"] for p in points]
        if any(f is not None for f in fidelity):
            ax.plot(queries, fidelity, marker="o", color=colour, label=f"{label}: fidelity")
        if any(a is not None for a in accuracy):
            ax.plot(
                queries,
                accuracy,
                marker="x",
                linestyle="--",
                color=colour,
                label=f"{label}: accuracy",
            )
        if run.get("first_alert_at"):
            ax.axvline(run["first_alert_at"], color=colour, linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("queries to the victim")
    ax.set_ylabel("agreement on held-out data")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or "Model extraction: surrogate vs queries")
    return _to_png(fig)


def exposure_png(
    series: dict[str, dict[int, float]], *, max_exposure: float, baseline: float
) -> bytes:
    """Canary exposure (bits) against repetitions, one line per model, with the two bounds.

    ``series`` maps a label (``"no DP"``, ``"DP-SGD ε=8"``) to ``{repetitions: exposure}``;
    ``max_exposure`` is ``log2 |R|`` and ``baseline`` the exposure of a never-seen secret.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, points in series.items():
        counts = sorted(points)
        ax.plot(counts, [points[c] for c in counts], marker="o", label=label)
    ax.axhline(max_exposure, color="black", linestyle="--", linewidth=1, label="log2 |R| (rank 1)")
    ax.axhline(baseline, color="grey", linestyle=":", linewidth=1, label="never-seen secret")
    ax.set_xscale("symlog", linthresh=1)
    counts = sorted({c for points in series.values() for c in points})
    ax.set_xticks(counts)
    ax.set_xticklabels([str(c) for c in counts])
    ax.set_xlim(-0.2, max(counts) * 1.3 if counts else 1)
    ax.set_xlabel("repetitions of the canary in the training text")
    ax.set_ylabel("exposure (bits)")
    ax.set_ylim(-0.5, max_exposure + 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Canary exposure (Carlini et al. 2019)")
    return _to_png(fig)


def gradient_leakage_png(
    originals: Any, reconstructions: Any, psnr_db: Sequence[float], *, title: str
) -> bytes:
    """Gradient-leakage picture grid: each true input (top) above its reconstruction and PSNR."""
    truth = np.asarray(originals, dtype=np.float32)
    recon = np.asarray(reconstructions, dtype=np.float32)
    count = len(truth)
    fig, axes = plt.subplots(2, count, figsize=(1.2 * count + 0.8, 2.9), squeeze=False)

    def image(a: np.ndarray) -> np.ndarray:
        if a.ndim == 1:
            return a[None, :]
        return a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))

    for i in range(count):
        for row, (picture, label) in enumerate(
            ((truth[i], "original"), (recon[i], f"{psnr_db[i]:.1f} dB"))
        ):
            ax = axes[row][i]
            ax.imshow(np.clip(image(picture), 0, 1), cmap="gray", vmin=0, vmax=1, aspect="auto")
            ax.set_title(label, fontsize=8)
            ax.axis("off")
    fig.suptitle(title, y=1.04)
    return _to_png(fig)


def federated_curve_png(curve: Sequence[dict[str, Any]], title: str) -> bytes:
    """Held-out accuracy of a federated run's global model per round (and backdoor success)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    rounds = [int(row["round"]) for row in curve]
    ax.plot(rounds, [row["test_accuracy"] for row in curve], marker="o", label="held-out accuracy")
    if any(row.get("backdoor_success") is not None for row in curve):
        ax.plot(
            rounds,
            [row.get("backdoor_success", float("nan")) for row in curve],
            marker="s",
            linestyle="--",
            label="backdoor success",
        )
    skipped = [row["round"] for row in curve if row.get("aggregated") is False]
    for r in skipped:
        ax.axvline(r, color="gray", alpha=0.3)
    ax.set_xlabel("round" + (" (grey: not aggregated)" if skipped else ""))
    ax.set_ylabel("share")
    ax.set_xticks(rounds if len(rounds) <= 20 else rounds[:: max(1, len(rounds) // 10)])
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    return _to_png(fig)
