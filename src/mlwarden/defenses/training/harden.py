"""Harden a saved model end to end: load it safely, train it, write it back with its record.

:func:`harden_model` is what ``mlwarden harden adversarial|smoothing`` runs: it loads a
PyTorch model (``zoo:NAME`` or a ``.pt2``/``.pt`` file), trains it with a robust trainer on the
given data, measures the held-out curve before and after every epoch, and writes

* the hardened model as a ``torch.export`` program (``.pt2``), never a pickle;
* its sidecar ``<model>.mlwarden.json`` recording how it was made (method, ε or σ, epochs,
  seed, the data's digest, the per-epoch curve, the base model's digest), plus
  ``smoothing.sigma`` for a noise-trained model so ``mlwarden assess`` certifies it;
* a run report beside it: ``<stem>.training.png`` (held-out accuracy per epoch) and
  ``<stem>.training.html``.
"""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import torch

from mlwarden import __version__
from mlwarden._io import atomic_write_bytes, atomic_write_text
from mlwarden.data.dataset import Dataset
from mlwarden.defenses.training.adversarial import AdversarialTrainer
from mlwarden.defenses.training.base import EpochRecord, RobustTrainer
from mlwarden.defenses.training.noise import GaussianNoiseTrainer
from mlwarden.errors import ConfigError, ModelError

__all__ = ["HardeningResult", "harden_model", "load_training_data"]

_VALIDATION_FRACTION = 0.1


@dataclass(frozen=True)
class HardeningResult:
    """Where :func:`harden_model` wrote its outputs, and the record it stored."""

    model_path: Path
    plot_path: Path
    report_path: Path
    record: dict[str, Any]


def load_training_data(
    spec: str, *, val_spec: str | None = None, label_column: str = "label", seed: int = 0
) -> tuple[Dataset, Dataset]:
    """Training and held-out data for hardening.

    ``builtin:NAME`` trains on its train split and validates on its test split. A file trains
    on its samples; held-out data comes from ``val_spec`` or, without it, a seeded 10% split.
    """
    import numpy as np

    from mlwarden.data import load_dataset

    if spec.startswith("builtin:") and spec.count(":") == 1:
        train = load_dataset(spec, split="train")
        val = load_dataset(val_spec) if val_spec else load_dataset(spec, split="test")
        return train, val
    data = load_dataset(spec, label_column=label_column)
    if val_spec:
        val = load_dataset(
            val_spec,
            label_column=label_column,
            n_classes=data.n_classes,
            clip_range=data.clip_range,
        )
        return data, val
    if len(data) < 20:
        raise ConfigError(f"{spec}: needs at least 20 samples to hold some out, got {len(data)}")
    order = np.random.default_rng(seed).permutation(len(data))
    cut = max(1, round(_VALIDATION_FRACTION * len(data)))
    return (
        data.subset(np.sort(order[cut:]), name=f"{data.name}:train"),
        data.subset(np.sort(order[:cut]), name=f"{data.name}:held-out"),
    )


def _trainable_module(spec: str, train: Dataset) -> tuple[torch.nn.Module, dict[str, Any], int]:
    from mlwarden.models import load_model
    from mlwarden.models.torch import TorchClassifier

    classifier = load_model(spec, input_shape=train.input_shape, clip_range=train.clip_range)
    if not isinstance(classifier, TorchClassifier):
        raise ModelError(
            f"{spec} is a {type(classifier).__name__}; hardening trains PyTorch models only "
            "(zoo:NAME, .pt2 or .pt)"
        )
    if isinstance(classifier.module, torch.jit.ScriptModule):
        raise ModelError(
            f"{spec} is TorchScript, which cannot be re-exported after training; export the "
            "model with torch.export.save (.pt2) and harden that"
        )
    if classifier.input_shape != train.input_shape:
        raise ConfigError(
            f"the data's samples have shape {train.input_shape} but the model expects "
            f"{classifier.input_shape}"
        )
    if int(train.y.max()) >= classifier.n_classes:
        raise ConfigError(
            f"the data has label {int(train.y.max())} but the model has only "
            f"{classifier.n_classes} classes"
        )
    return classifier.module, dict(classifier.info), classifier.n_classes


def harden_model(
    model: str,
    train: Dataset,
    val: Dataset,
    trainer: RobustTrainer,
    *,
    out: str | Path,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> HardeningResult:
    """Train ``model`` with ``trainer`` and write the hardened model, record and run report.

    Parameters
    ----------
    model
        ``zoo:NAME`` or a path to a PyTorch model (``.pt2``).
    train, val
        Training data and held-out data for the curve.
    trainer
        An :class:`AdversarialTrainer` or :class:`GaussianNoiseTrainer`.
    out
        Path of the hardened model; must end in ``.pt2``.

    Raises
    ------
    ConfigError
        ``out`` is not a ``.pt2`` path, or the data do not fit the model.
    ModelError
        The model is not a re-exportable PyTorch model.
    """
    from mlwarden.models.zoo import save_torch_model

    out_path = Path(out)
    if out_path.suffix != ".pt2":
        raise ConfigError(f"--out {out_path} must end in .pt2 (a torch.export program)")
    if out_path.exists() and out_path.is_dir():
        raise ConfigError(f"--out {out_path} is a directory; give the model file's path")
    trainer._validate_params()
    if tuple(trainer.clip_range) != tuple(train.clip_range):
        trainer.clip_range = train.clip_range
    module, info, n_classes = _trainable_module(model, train)
    started = time.perf_counter()
    xv, yv = trainer.held_out(val.x, val.y)
    baseline = EpochRecord(
        epoch=0,
        train_loss=float("nan"),
        **trainer.evaluate(module, xv, yv, torch.Generator().manual_seed(trainer.seed + 3)),
    )
    trainer.fit(module, train.x, train.y, x_val=val.x, y_val=val.y, on_epoch=on_epoch)
    curve = [baseline.to_dict(), *(r.to_dict() for r in trainer.history_)]
    curve[0].pop("train_loss")
    metadata = info.get("metadata", {})
    base_name = str(info.get("name", Path(model).stem))
    if isinstance(trainer, AdversarialTrainer):
        kind = "adversarial"
        hardening: dict[str, Any] = {
            "method": trainer.method,
            "eps": float(trainer.eps),
            "norm": trainer.norm,
            "steps": trainer.steps,
            "step_size": trainer.step_size,
            "warmup_epochs": trainer.warmup_epochs,
            "eval_steps": trainer.eval_steps,
            **({"trades_beta": trainer.trades_beta} if trainer.method == "trades" else {}),
        }
        suffix = f"adv-{trainer.method}-{trainer.norm}-eps{trainer.eps:g}"
    elif isinstance(trainer, GaussianNoiseTrainer):
        kind = "smoothing"
        hardening = {"method": "gaussian-noise", "sigma": float(trainer.sigma)}
        suffix = f"noise-sigma{trainer.sigma:g}"
    else:
        raise ConfigError(f"unsupported trainer {type(trainer).__name__}")
    final = curve[-1]
    record: dict[str, Any] = {
        "recipe": f"mlwarden harden {kind}",
        **hardening,
        "epochs": trainer.epochs,
        "batch_size": trainer.batch_size,
        "lr": trainer.lr,
        "weight_decay": trainer.weight_decay,
        "seed": trainer.seed,
        "dataset": train.name,
        "dataset_sha256": train.digest(),
        "validation_dataset": val.name,
        "validation_sha256": val.digest(),
        "eval_samples": len(xv),
        "curve": curve,
        "test_accuracy": final.get("clean_accuracy"),
        **({"robust_accuracy": final["robust_accuracy"]} if "robust_accuracy" in final else {}),
        **({"noisy_accuracy": final["noisy_accuracy"]} if "noisy_accuracy" in final else {}),
        "base_model": {
            "name": base_name,
            "sha256": info.get("sha256"),
            "training": metadata.get("training"),
        },
        "created_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "seconds": round(time.perf_counter() - started, 3),
        "mlwarden_version": __version__,
        "torch_version": torch.__version__,
    }
    sidecar: dict[str, Any] = {
        "name": f"{base_name}+{suffix}",
        "input_shape": list(train.input_shape),
        "n_classes": n_classes,
        "clip_range": list(train.clip_range),
        "training": record,
    }
    if isinstance(trainer, GaussianNoiseTrainer):
        sidecar["smoothing"] = {"sigma": float(trainer.sigma)}
    model_path = save_torch_model(module, out_path, input_shape=train.input_shape, metadata=sidecar)
    plot_path, report_path = _write_run_report(model_path, sidecar)
    return HardeningResult(model_path, plot_path, report_path, record)


_REPORT_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mlwarden hardening · {{ name }}</title>
<style>body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:900px;padding:0 1rem}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #d0d7de;padding:.3rem .5rem;text-align:left}
th{background:#f6f8fa}code{background:#f6f8fa;padding:.1rem .3rem}</style></head><body>
<h1>Hardening run: {{ name }}</h1>
<p>{{ r.recipe }} · method <b>{{ r.method }}</b>{% if r.eps is defined %} · ε={{ r.eps }} ({{ r.norm }}){% endif %}{% if r.sigma is defined %} · σ={{ r.sigma }}{% endif %}
 · {{ r.epochs }} epochs · seed {{ r.seed }} · {{ "%.1f"|format(r.seconds) }} s</p>
<p>Trained on {{ r.dataset }} (sha256 <code>{{ r.dataset_sha256[:16] }}…</code>); curve on {{ r.eval_samples }} samples of {{ r.validation_dataset }}. Base model {{ r.base_model.name }}{% if r.base_model.sha256 %} (sha256 <code>{{ r.base_model.sha256[:16] }}…</code>){% endif %}.</p>
<img alt="held-out accuracy per epoch" src="data:image/png;base64,{{ plot }}">
<table><tr><th>epoch</th>{% for k in columns %}<th>{{ k }}</th>{% endfor %}</tr>
{% for row in r.curve %}<tr><td>{{ row.epoch }}</td>{% for k in columns %}<td>{{ fmt(row.get(k)) }}</td>{% endfor %}</tr>{% endfor %}
</table>
<p>Epoch 0 is the model before hardening. Assess the result with <code>mlwarden assess --model {{ model }}</code>.</p>
</body></html>
"""


def _write_run_report(model_path: Path, sidecar: dict[str, Any]) -> tuple[Path, Path]:
    from mlwarden.report.plots import training_curve_png

    record = sidecar["training"]
    what = (
        f"PGD-{record['eval_steps']} at ε={record['eps']:g}"
        if "eps" in record
        else f"Gaussian noise σ={record['sigma']:g}"
    )
    png = training_curve_png(record["curve"], f"{sidecar['name']}: held-out accuracy ({what})")
    stem = model_path.with_suffix("")
    plot_path = atomic_write_bytes(f"{stem}.training.png", png)
    columns = [
        k
        for k in (
            "train_loss",
            "eps",
            "clean_accuracy",
            "robust_accuracy",
            "noisy_accuracy",
            "seconds",
        )
        if any(k in row for row in record["curve"])
    ]

    def fmt(value: Any) -> str:
        if value is None:
            return "—"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    html = (
        jinja2.Environment(autoescape=True)
        .from_string(_REPORT_TEMPLATE)
        .render(
            name=sidecar["name"],
            r=record,
            plot=base64.b64encode(png).decode("ascii"),
            columns=columns,
            fmt=fmt,
            model=model_path.name,
        )
    )
    report_path = atomic_write_text(f"{stem}.training.html", html)
    return plot_path, report_path
