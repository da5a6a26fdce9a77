"""Write a federated run's global model with its training record and run report.

* the global model as a ``torch.export`` program (``.pt2``), never a pickle, with its sidecar
  ``<model>.mlwarden.json`` whose ``training`` is the run's record (partition digests, rounds,
  clients per round, secure aggregation, the privacy record, the per-round curve);
* a run report beside it, as ``mlwarden harden`` writes one: ``<stem>.training.png`` (held-out
  accuracy per round) and ``<stem>.training.html``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from mlwarden._io import atomic_write_bytes, atomic_write_text
from mlwarden.data.dataset import Dataset
from mlwarden.errors import ConfigError
from mlwarden.federated.runner import FederatedResult

__all__ = ["FederatedOutput", "check_out_path", "write_federated_model"]


@dataclass(frozen=True)
class FederatedOutput:
    """Where :func:`write_federated_model` wrote the model, its plot and its report."""

    model_path: Path
    plot_path: Path
    report_path: Path
    metadata: dict[str, Any]


def check_out_path(out: str | Path) -> Path:
    """``out`` as a path, refused unless it names a ``.pt2`` file (checked before training)."""
    path = Path(out)
    if path.suffix != ".pt2":
        raise ConfigError(f"--out {path} must end in .pt2 (a torch.export program)")
    if path.is_dir():
        raise ConfigError(f"--out {path} is a directory; give the model file's path")
    return path


def write_federated_model(
    result: FederatedResult, out: str | Path, *, like: Dataset, name: str
) -> FederatedOutput:
    """Write ``result``'s global model (shaped like ``like``'s inputs), record and run report."""
    from mlwarden.models.zoo import save_torch_model

    path = check_out_path(out)
    metadata: dict[str, Any] = {
        "name": name,
        "input_shape": list(like.input_shape),
        "n_classes": like.n_classes,
        "clip_range": list(like.clip_range),
        "training": result.record,
    }
    model_path = save_torch_model(
        result.module, path, input_shape=like.input_shape, metadata=metadata
    )
    plot_path, report_path = _write_run_report(model_path, metadata)
    return FederatedOutput(model_path, plot_path, report_path, metadata)


_REPORT_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mlwarden federated run · {{ name }}</title>
<style>body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:900px;padding:0 1rem}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #d0d7de;padding:.3rem .5rem;text-align:left}
th{background:#f6f8fa}code{background:#f6f8fa;padding:.1rem .3rem}</style></head><body>
<h1>Federated run: {{ name }}</h1>
<p>{{ r.recipe }} · {{ r.aggregator }} · {{ r.rounds }} rounds · {{ r.clients_per_round }} of {{ r.clients }} clients per round ·
partition <b>{{ r.partition }}</b> · secure aggregation <b>{{ "SecAgg+" if r.secure_aggregation.enabled else "off" }}</b> ·
privacy <b>{{ privacy }}</b> · seed {{ r.seed }} · {{ "%.1f"|format(r.seconds) }} s</p>
<p>Pooled data {{ r.dataset }} (sha256 <code>{{ r.dataset_sha256[:16] }}…</code>); curve on {{ r.validation_dataset }}. Engine: {{ r.engine }}, Flower {{ r.flwr_version }}.</p>
<img alt="held-out accuracy per round" src="data:image/png;base64,{{ plot }}">
<h2>Rounds</h2>
<table><tr><th>round</th><th>held-out accuracy</th><th>loss</th><th>seconds</th>{% if backdoor %}<th>backdoor success</th>{% endif %}</tr>
{% for row in r.curve %}<tr><td>{{ row.round }}</td><td>{{ "%.4f"|format(row.test_accuracy) }}</td><td>{{ "%.4f"|format(row.test_loss) }}</td><td>{{ row.seconds }}</td>{% if backdoor %}<td>{{ "%.4f"|format(row.backdoor_success) }}</td>{% endif %}</tr>{% endfor %}
</table>
<h2>Partitions</h2>
<table><tr><th>client</th><th>samples</th><th>sha256</th><th>samples per class</th></tr>
{% for p in r.partitions %}<tr><td>{{ p.client }}</td><td>{{ p.n_samples }}</td><td><code>{{ p.sha256[:16] }}…</code></td><td>{{ p.class_counts|join(" ") }}</td></tr>{% endfor %}
</table>
<p>Round 0 is the initial global model. The full record is in <code>{{ model }}.mlwarden.json</code>.</p>
</body></html>
"""


def _privacy_summary(record: dict[str, Any]) -> str:
    privacy = record.get("privacy")
    if not privacy:
        return "none"
    if privacy["level"] == "sample":
        return (
            f"sample-level DP-SGD, ε={privacy['epsilon_spent']:.3g} (target {privacy['epsilon']:g}), "
            f"δ={privacy['delta']:g}"
        )
    return (
        f"client-level DP, σ={privacy['noise_multiplier']:g}, C={privacy['clipping_norm']:g}, "
        f"ε={privacy['epsilon_spent']:.3g} at δ={privacy['delta']:g} ({privacy['accountant']})"
    )


def _write_run_report(model_path: Path, metadata: dict[str, Any]) -> tuple[Path, Path]:
    from mlwarden.report.plots import federated_curve_png

    record = metadata["training"]
    png = federated_curve_png(record["curve"], f"{metadata['name']}: global model per round")
    stem = model_path.with_suffix("")
    plot_path = atomic_write_bytes(f"{stem}.training.png", png)
    html = (
        jinja2.Environment(autoescape=True)
        .from_string(_REPORT_TEMPLATE)
        .render(
            name=metadata["name"],
            r=record,
            privacy=_privacy_summary(record),
            backdoor=record.get("backdoor") is not None,
            plot=base64.b64encode(png).decode("ascii"),
            model=model_path.name,
        )
    )
    report_path = atomic_write_text(f"{stem}.training.html", html)
    return plot_path, report_path
