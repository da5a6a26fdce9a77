"""Wrapping a module never changes it: its mode, its flags and its gradients stay the caller's."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mlwarden.models import TorchClassifier


def _module() -> nn.Module:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 3))
    module.train()
    module[0].weight.requires_grad_(False)  # a caller's own mix of frozen and trainable
    return module


def _state(module: nn.Module) -> tuple[list[bool], list[bool]]:
    return (
        [p.requires_grad for p in module.parameters()],
        [m.training for m in module.modules()],
    )


def test_wrapping_and_using_a_module_leaves_its_flags_and_mode_unchanged() -> None:
    module = _module()
    before = _state(module)
    classifier = TorchClassifier(module, input_shape=(4,), n_classes=3)
    x = np.random.default_rng(0).random((5, 4), dtype=np.float32)
    classifier.predict_proba(x)
    classifier.loss_gradient(torch.from_numpy(x), torch.zeros(5, dtype=torch.long))
    assert _state(module) == before
    assert all(p.grad is None for p in module.parameters())


def test_the_classifier_runs_in_evaluation_mode_and_sees_the_callers_weights() -> None:
    module = _module()
    classifier = TorchClassifier(module, input_shape=(4,), n_classes=3)
    x = np.random.default_rng(1).random((5, 4), dtype=np.float32)
    first = classifier.predict_proba(x)
    assert np.array_equal(first, classifier.predict_proba(x))  # no dropout: deterministic
    with torch.no_grad():
        module[3].bias.add_(1.0)  # an in-place update, as an optimizer step makes
        expected = torch.softmax(module.eval()(torch.from_numpy(x)), dim=1).numpy()
    np.testing.assert_allclose(classifier.predict_proba(x), expected, rtol=1e-6)
