"""``mlwarden harden dp`` end to end: pick an architecture, DP-train it, write it with its record.

DP training starts from fresh, seeded weights: a saved model's weights may have seen the private
data without differential privacy, and fine-tuning them with DP-SGD would bound nothing about
that. ``zoo:NAME`` therefore names an *architecture* here (``digits-cnn``,
``breast-cancer-mlp``, or the DP-friendly ``digits-dp-cnn``); an exported ``.pt2`` or
TorchScript file has no layers Opacus can hook and is refused with the reason.

The model is written as a ``torch.export`` program (``.pt2``, never a pickle) with a sidecar
``<model>.mlwarden.json`` whose ``training.privacy`` holds the :class:`PrivacyRecord` (its
per-epoch curve keeps the ε spent and the held-out accuracy, not the training loss, which is a
noiseless statistic of the private data), so
``load_model(path).info["metadata"]["training"]["privacy"]`` (or :func:`read_privacy_record`)
gives it back.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlwarden import __version__
from mlwarden.data.dataset import Dataset
from mlwarden.defenses.training.dp import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_GRAD_SAMPLE_MODE,
    DEFAULT_LR,
    DEFAULT_MOMENTUM,
    DPEpoch,
    DPTrainingResult,
    make_dp_compatible,
    train_dp,
)
from mlwarden.defenses.training.dp_record import PrivacyRecord
from mlwarden.errors import ConfigError, ModelError
from mlwarden.models.base import Classifier

__all__ = [
    "DP_ARCHITECTURES",
    "DPHardeningResult",
    "dp_architecture",
    "harden_dp",
    "read_privacy_record",
]


def _zoo_architectures() -> dict[str, Callable[[], nn.Module]]:
    from mlwarden.models.zoo import breast_cancer_mlp, digits_cnn, digits_dp_cnn

    return {
        "digits-cnn": digits_cnn,
        "digits-dp-cnn": digits_dp_cnn,
        "breast-cancer-mlp": breast_cancer_mlp,
    }


DP_ARCHITECTURES: tuple[str, ...] = ("digits-cnn", "digits-dp-cnn", "breast-cancer-mlp")


@dataclass(frozen=True)
class DPHardeningResult:
    """Where :func:`harden_dp` wrote the model, and what training produced."""

    model_path: Path
    training: DPTrainingResult
    metadata: dict[str, Any]


def dp_architecture(spec: str, *, seed: int = 0) -> tuple[str, nn.Module]:
    """The freshly initialised (seeded) architecture ``spec`` names, made Opacus-compatible.

    Parameters
    ----------
    spec
        ``zoo:NAME`` with NAME in :data:`DP_ARCHITECTURES`, or a model file (refused unless
        Opacus can train it; exported and scripted graphs cannot be).

    Raises
    ------
    ConfigError
        An unknown zoo name.
    ModelError
        The zoo model is not a PyTorch network, or the file cannot be DP-trained.
    """
    if spec.startswith("zoo:"):
        name = spec[4:]
        architectures = _zoo_architectures()
        if name not in architectures:
            from mlwarden.models.zoo import ZOO

            if name in ZOO:
                raise ModelError(
                    f"zoo:{name} is not a PyTorch network; DP-SGD trains one of: "
                    f"{', '.join('zoo:' + a for a in DP_ARCHITECTURES)}"
                )
            raise ConfigError(
                f"unknown model {spec!r} for DP training; choose one of: "
                f"{', '.join('zoo:' + a for a in DP_ARCHITECTURES)}"
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = architectures[name]()
        return name, module
    from mlwarden.models import load_model
    from mlwarden.models.torch import TorchClassifier

    classifier = load_model(spec)
    if not isinstance(classifier, TorchClassifier):
        raise ModelError(
            f"{spec} is a {type(classifier).__name__}; DP-SGD trains PyTorch networks only"
        )
    module, _ = make_dp_compatible(classifier.module)  # refuses exported/scripted graphs
    return Path(spec).stem, module  # pragma: no cover - loaders return graphs today


def read_privacy_record(model: Classifier | dict[str, Any]) -> PrivacyRecord | None:
    """The :class:`PrivacyRecord` a DP-trained model carries, or ``None`` for another model.

    ``model`` is a classifier from :func:`mlwarden.models.load_model` or its sidecar dict.
    """
    meta = model if isinstance(model, dict) else dict(model.info or {}).get("metadata", {})
    privacy = (meta or {}).get("training", {}).get("privacy")
    return PrivacyRecord.from_dict(privacy) if isinstance(privacy, dict) else None


def harden_dp(
    model: str,
    train: Dataset,
    val: Dataset | None,
    *,
    out: str | Path,
    epsilon: float,
    delta: float,
    epochs: int,
    max_grad_norm: float,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lr: float = DEFAULT_LR,
    momentum: float = DEFAULT_MOMENTUM,
    accountant: str = "rdp",
    seed: int = 0,
    grad_sample_mode: str = DEFAULT_GRAD_SAMPLE_MODE,
    on_epoch: Callable[[DPEpoch], None] | None = None,
    secure_mode: bool = False,
) -> DPHardeningResult:
    """DP-train the architecture ``model`` names on ``train`` and write it with its record.

    Parameters are those of :func:`~mlwarden.defenses.training.dp.train_dp`; ``out`` is the
    ``.pt2`` path; ``val`` (optional) gives the per-epoch held-out accuracy.

    Raises
    ------
    ConfigError
        A bad ``out`` path, budget or hyperparameter, or data that do not fit the model.
    ModelError
        A model Opacus cannot train.
    """
    from mlwarden.models.zoo import save_torch_model

    out_path = Path(out)
    if out_path.suffix != ".pt2":
        raise ConfigError(f"--out {out_path} must end in .pt2 (a torch.export program)")
    if out_path.exists() and out_path.is_dir():
        raise ConfigError(f"--out {out_path} is a directory; give the model file's path")
    name, module = dp_architecture(model, seed=seed)
    _check_fits(module, train, model)
    started = time.perf_counter()
    result = train_dp(
        module,
        train,
        epsilon=epsilon,
        delta=delta,
        epochs=epochs,
        max_grad_norm=max_grad_norm,
        batch_size=batch_size,
        lr=lr,
        momentum=momentum,
        accountant=accountant,
        seed=seed,
        on_epoch=on_epoch,
        val=val,
        grad_sample_mode=grad_sample_mode,
        secure_mode=secure_mode,
    )
    record = result.record
    # Training loss and accuracy are statistics of the private batches without noise: they are
    # shown to the operator (on_epoch) but not published with the model.
    curve = [
        {k: v for k, v in h.to_dict().items() if k not in ("train_loss", "train_accuracy")}
        for h in result.history
    ]
    training: dict[str, Any] = {
        "recipe": "mlwarden harden dp",
        "method": "dp-sgd",
        "architecture": name,
        "privacy": record.to_dict(),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "momentum": momentum,
        "seed": seed,
        "dataset": train.name,
        "dataset_sha256": record.dataset_sha256,
        **(
            {"validation_dataset": val.name, "validation_sha256": val.digest()}
            if val is not None
            else {}
        ),
        "curve": curve,
        "test_accuracy": curve[-1].get("test_accuracy"),
        "created_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "seconds": round(time.perf_counter() - started, 3),
        "mlwarden_version": __version__,
        "torch_version": torch.__version__,
    }
    import opacus

    training["opacus_version"] = opacus.__version__
    metadata: dict[str, Any] = {
        "name": f"{name}+dp-eps{epsilon:g}",
        "input_shape": list(train.input_shape),
        "n_classes": train.n_classes,
        "clip_range": list(train.clip_range),
        "training": training,
    }
    path = save_torch_model(
        result.module, out_path, input_shape=train.input_shape, metadata=metadata
    )
    return DPHardeningResult(model_path=path, training=result, metadata=metadata)


def _check_fits(module: nn.Module, train: Dataset, spec: str) -> None:
    example = torch.zeros((2, *train.input_shape), dtype=torch.float32)
    try:
        with torch.no_grad():
            logits = module.eval()(example)
    except RuntimeError as exc:
        raise ConfigError(
            f"{spec} does not accept inputs of shape {train.input_shape} from {train.name}: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    finally:
        module.train()
    if logits.dim() != 2 or logits.shape[1] < train.n_classes:
        raise ConfigError(
            f"{spec} outputs {tuple(logits.shape[1:])} logits but {train.name} has "
            f"{train.n_classes} classes"
        )
