"""The extraction figure: surrogate fidelity and accuracy against the query budget."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

__all__ = ["extraction_png"]


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
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
