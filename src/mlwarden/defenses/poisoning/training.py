"""Train a small PyTorch classifier on a (possibly poisoned) dataset, reusing the zoo recipe.

Representation-based detectors need a model trained on the suspect data, and retraining after
removal needs the same recipe again: ``1×8×8`` images get the ``zoo:digits-cnn`` architecture,
anything else a one-hidden-layer MLP; both are fitted with :func:`mlwarden.models.zoo.fit_torch`
(Adam, cross-entropy, seeded shuffles).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mlwarden.data.dataset import Dataset
from mlwarden.models.torch import TorchClassifier
from mlwarden.models.zoo import digits_cnn, fit_torch

__all__ = ["DEFAULT_EPOCHS", "architecture_for", "train_classifier"]

DEFAULT_EPOCHS = 30
"""Epochs of the zoo digits recipe."""


def architecture_for(input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """The digits CNN for ``1×8×8`` inputs with 10 classes, else Flatten → 64 ReLU → classes."""
    if tuple(input_shape) == (1, 8, 8) and n_classes == 10:
        return digits_cnn()
    width = int(np.prod(input_shape))
    return nn.Sequential(nn.Flatten(), nn.Linear(width, 64), nn.ReLU(), nn.Linear(64, n_classes))


def train_classifier(
    data: Dataset, *, seed: int = 0, epochs: int = DEFAULT_EPOCHS, lr: float = 1e-3
) -> TorchClassifier:
    """Train :func:`architecture_for` the data's shape on ``data`` and wrap it as a classifier."""
    torch.manual_seed(seed)
    module = architecture_for(data.input_shape, data.n_classes)
    fit_torch(module, data.x, data.y, seed=seed, epochs=epochs, lr=lr)
    classifier = TorchClassifier(
        module, input_shape=data.input_shape, n_classes=data.n_classes, clip_range=data.clip_range
    )
    classifier.info["name"] = f"trained on {data.name}"
    classifier.info["training"] = {"seed": seed, "epochs": epochs, "dataset_sha256": data.digest()}
    return classifier
