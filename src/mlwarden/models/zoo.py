"""Reference models trained deterministically on the built-in data in well under a minute.

* ``digits-cnn``: a small CNN on ``builtin:digits`` (PyTorch, saved with ``torch.export``);
* ``breast-cancer-mlp``: a two-layer MLP on ``builtin:breast-cancer`` (PyTorch);
* ``breast-cancer-gbm``: gradient-boosted trees on ``builtin:breast-cancer`` (scikit-learn,
  saved with skops): a black-box, non-differentiable target.

``zoo:NAME`` anywhere a model is expected trains the model once and caches it under
``$MLWARDEN_CACHE_DIR`` (default ``~/.cache/mlwarden``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mlwarden import __version__
from mlwarden._io import atomic_write_text, atomic_write_with
from mlwarden.data.builtin import DatasetSplits, load_builtin
from mlwarden.errors import ConfigError
from mlwarden.models.base import Classifier
from mlwarden.models.loading import MODEL_SCHEMES, SIDECAR_SUFFIX, load_model
from mlwarden.models.torch import frozen_view

__all__ = ["ZOO", "ZooEntry", "cache_dir", "load_zoo_model", "save_torch_model", "train_zoo_model"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ZooEntry:
    """One reference model: its dataset, file format and training recipe."""

    name: str
    dataset: str
    suffix: str
    recipe_version: int
    description: str
    train: Callable[[DatasetSplits, int], Any]


def cache_dir() -> Path:
    """Where ``zoo:`` models are cached."""
    root = os.environ.get("MLWARDEN_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "mlwarden"


def digits_cnn() -> nn.Module:
    """The digits CNN architecture (1x8x8 -> 10 logits)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def digits_dp_cnn() -> nn.Module:
    """A DP-friendly CNN for ``1x8x8`` digits: GroupNorm instead of BatchNorm, tanh activations.

    The architecture ``mlwarden harden dp --model zoo:digits-dp-cnn`` trains. Bounded
    activations keep the gradient norm from exploding when clipped noise is added (Papernot,
    Thakurta, Song, Chien and Erlingsson, 2021, "Tempered Sigmoid Activations for Deep Learning
    with Differential Privacy"); GroupNorm normalises per sample, so per-sample gradients exist.
    """
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1),
        nn.GroupNorm(4, 16),
        nn.Tanh(),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        nn.GroupNorm(4, 32),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


def breast_cancer_mlp() -> nn.Module:
    """The breast-cancer MLP architecture (30 features -> 2 logits)."""
    return nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 2))


def fit_torch(
    module: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    epochs: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
) -> nn.Module:
    """Train ``module`` with Adam and cross-entropy, shuffling with a seeded generator."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    module.train()
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), batch_size):
            idx = order[start : start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(module(xt[idx]), yt[idx])
            loss.backward()
            optimizer.step()
    return module.eval()


def _train_digits_cnn(splits: DatasetSplits, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return fit_torch(digits_cnn(), splits.train.x, splits.train.y, seed=seed, epochs=30)


def _train_breast_cancer_mlp(splits: DatasetSplits, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return fit_torch(
        breast_cancer_mlp(), splits.train.x, splits.train.y, seed=seed, epochs=60, lr=3e-3
    )


def _train_breast_cancer_gbm(splits: DatasetSplits, seed: int) -> Any:
    from sklearn.ensemble import GradientBoostingClassifier

    model = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=seed)
    return model.fit(splits.train.x, splits.train.y)


ZOO: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in (
        ZooEntry("digits-cnn", "digits", ".pt2", 1, "2-conv CNN on 8x8 digits", _train_digits_cnn),
        ZooEntry(
            "breast-cancer-mlp", "breast-cancer", ".pt2", 1, "64-unit MLP", _train_breast_cancer_mlp
        ),
        ZooEntry(
            "breast-cancer-gbm",
            "breast-cancer",
            ".skops",
            1,
            "100 gradient-boosted trees (black-box)",
            _train_breast_cancer_gbm,
        ),
    )
}


def _entry(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except KeyError:
        raise ConfigError(f"unknown zoo model {name!r}; choose one of: {', '.join(ZOO)}") from None


def save_torch_model(
    module: nn.Module, path: str | Path, *, input_shape: tuple[int, ...], metadata: dict[str, Any]
) -> Path:
    """Export ``module`` with ``torch.export`` (dynamic batch) and write it and its sidecar."""
    module = frozen_view(module)  # evaluation mode, without changing the caller's module
    example = torch.zeros((2, *input_shape), dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    target = atomic_write_with(path, lambda tmp: torch.export.save(program, str(tmp)))
    atomic_write_text(str(target) + SIDECAR_SUFFIX, json.dumps(metadata, indent=2, sort_keys=True))
    return target


def train_zoo_model(name: str, out: str | Path, *, seed: int = 0) -> Path:
    """Train zoo model ``name`` and write it (plus its ``.mlwarden.json`` record) to ``out``.

    ``out`` is a file path ending in the model's suffix, or a directory to write ``NAME<suffix>``
    into. Returns the model path.
    """
    entry = _entry(name)
    out = Path(out)
    if out.suffix:
        if out.suffix != entry.suffix:
            raise ConfigError(
                f"--out {out} has suffix {out.suffix!r} but {name} is saved as {entry.suffix}"
            )
        path = out
    else:
        path = out / f"{name}{entry.suffix}"
    splits = load_builtin(entry.dataset)
    model = entry.train(splits, seed)
    metadata: dict[str, Any] = {
        "name": name,
        "input_shape": list(splits.train.input_shape),
        "n_classes": splits.train.n_classes,
        "clip_range": list(splits.train.clip_range),
        "training": {
            "recipe": f"zoo:{name}@v{entry.recipe_version}",
            "description": entry.description,
            "seed": seed,
            "dataset": splits.train.name,
            "dataset_sha256": splits.train.digest(),
            "mlwarden_version": __version__,
            "torch_version": torch.__version__,
        },
    }
    if entry.suffix == ".pt2":
        metadata["training"]["test_accuracy"] = _accuracy_torch(model, splits)
        return save_torch_model(
            model, path, input_shape=splits.train.input_shape, metadata=metadata
        )
    import skops.io as sio

    metadata["training"]["test_accuracy"] = float(model.score(splits.test.x, splits.test.y))
    target = atomic_write_with(path, lambda tmp: sio.dump(model, tmp))
    atomic_write_text(str(target) + SIDECAR_SUFFIX, json.dumps(metadata, indent=2, sort_keys=True))
    return target


def _accuracy_torch(model: nn.Module, splits: DatasetSplits) -> float:
    with torch.no_grad():
        pred = model(torch.from_numpy(splits.test.x)).argmax(1).numpy()
    return float((pred == splits.test.y).mean())


def zoo_path(name: str) -> Path:
    """The cache path of zoo model ``name`` (versioned by recipe)."""
    entry = _entry(name)
    return cache_dir() / "zoo" / f"{name}-v{entry.recipe_version}{entry.suffix}"


def load_zoo_model(name: str, *, device: str = "cpu") -> Classifier:
    """Load zoo model ``name`` from the cache, training it first if needed."""
    path = zoo_path(name)
    if not path.exists():
        logger.info("training zoo model %s into %s", name, path)
        train_zoo_model(name, path)
    classifier = load_model(path, device=device)
    classifier.info["name"] = f"zoo:{name}"
    return classifier


MODEL_SCHEMES.register("zoo", load_zoo_model)
