"""Gradient-masking diagnostics: they fire on masked models, not on honest ones, and gates on
robust accuracy fail closed while they do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlwarden.assess import assess
from mlwarden.assess.config import AssessConfig, parse_gate
from mlwarden.assess.masking import black_box_advantage, probe_eps
from mlwarden.data import Dataset
from mlwarden.models import Classifier, TorchClassifier

# one ε, few samples and a cheap suite: enough for the diagnostics to tell the models apart
SMALL = {
    "epsilons": [0.1],
    "max_samples": 60,
    "profile": "quick",
    "attack_params": {"apgd": {"steps": 10}, "apgd-t": {"steps": 10}, "square": {"queries": 50}},
}


class ScaledLogits(torch.nn.Module):
    """Logits multiplied by a constant: the softmax saturates, cross-entropy gradients vanish."""

    def __init__(self, inner: torch.nn.Module, scale: float) -> None:
        super().__init__()
        self.inner, self.scale = inner, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * self.scale


class NoisyInput(torch.nn.Module):
    """Gaussian noise added to the input on every call: a randomized model."""

    def __init__(self, inner: torch.nn.Module, sigma: float) -> None:
        super().__init__()
        self.inner, self.sigma = inner, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x + self.sigma * torch.randn_like(x))


def _wrap(base: Classifier, module: torch.nn.Module) -> TorchClassifier:
    return TorchClassifier(
        module,
        input_shape=base.input_shape,
        n_classes=base.n_classes,
        clip_range=base.clip_range,
    )


def _masking_ids(classifier: Classifier, data: Dataset, **overrides: object) -> set[str]:
    report = assess(classifier, data, AssessConfig(**{**SMALL, **overrides}))
    return {f.id for f in report.findings if f.check == "masking"}


def test_no_masking_finding_fires_on_the_plain_cnn(digits_cnn, digits_test) -> None:
    assert _masking_ids(digits_cnn, digits_test) == set()


def test_scaled_logits_fire_vanishing_gradients_and_the_suite_still_finds_the_truth(
    digits_cnn, digits_test
) -> None:
    scaled = _wrap(digits_cnn, ScaledLogits(digits_cnn.module, 1000.0))
    config = AssessConfig(**SMALL)
    plain = assess(digits_cnn, digits_test, config)
    masked = assess(scaled, digits_test, config)
    assert "masking.vanishing_gradients" in {f.id for f in masked.findings}
    # APGD-T's DLR loss ignores the logit scale: the worst case is the plain model's
    assert masked.metrics["robust_accuracy@0.1"] <= plain.metrics["robust_accuracy@0.1"] + 0.02
    # while cross-entropy APGD alone is fooled by the saturation
    assert masked.metrics["robust_accuracy[apgd]@0.1"] > plain.metrics["robust_accuracy@0.1"] + 0.3


def test_a_randomized_model_fires_the_randomized_finding(digits_cnn, digits_test) -> None:
    noisy = _wrap(digits_cnn, NoisyInput(digits_cnn.module, 0.05))
    assert "masking.randomized" in _masking_ids(noisy, digits_test)


def test_gates_on_robust_accuracy_fail_closed_while_masking_is_suspected(
    digits_cnn, digits_test
) -> None:
    scaled = _wrap(digits_cnn, ScaledLogits(digits_cnn.module, 1000.0))
    gates = [parse_gate("robust_accuracy@0.1=0.01"), parse_gate("clean_accuracy=0.5")]
    report = assess(scaled, digits_test, AssessConfig(**SMALL).with_gates(gates))
    by_metric = {g.metric: g for g in report.gates}
    robust = by_metric["robust_accuracy@0.1"]
    assert robust.value is not None and robust.value >= 0.01  # the figure meets the threshold
    assert not robust.passed  # but the gate fails closed
    assert robust.reason is not None and "masking" in robust.reason
    assert by_metric["clean_accuracy"].passed  # gates not on robust accuracy are untouched


def test_acknowledging_masking_lets_the_gate_pass(digits_cnn, digits_test) -> None:
    scaled = _wrap(digits_cnn, ScaledLogits(digits_cnn.module, 1000.0))
    config = AssessConfig(**SMALL, acknowledge_masking=True)
    report = assess(
        scaled, digits_test, config.with_gates([parse_gate("robust_accuracy@0.1=0.01")])
    )
    assert report.gates[0].passed and report.gates[0].reason is None
    assert any(f.check == "masking" for f in report.findings)  # still reported


def test_probe_eps_lets_every_input_reach_the_centre_of_the_range() -> None:
    assert probe_eps("linf", np.zeros((3, 4)), (0.0, 1.0)) == 0.5
    x = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]])
    # the farthest point from (0.5, 0.5) is a corner, at distance sqrt(0.5)
    assert probe_eps("l2", x, (0.0, 1.0)) == pytest.approx(np.sqrt(0.5))


def _rows(*values: float) -> list[dict[str, float]]:
    return [{"eps": 0.1, "robust_accuracy": v} for v in values]


def test_black_box_advantage_in_a_suite_is_the_drop_the_black_box_attack_adds() -> None:
    curves = {"apgd": _rows(0.5), "square": _rows(0.42)}
    [row] = black_box_advantage(curves, {"apgd"}, cascade=True)
    assert row["extra_broken_share"] == pytest.approx(0.08)


def test_black_box_advantage_of_independent_attacks_is_the_gap_between_the_best_of_each() -> None:
    curves = {"fgsm": _rows(0.6), "pgd": _rows(0.5), "square": _rows(0.55)}
    [row] = black_box_advantage(curves, {"fgsm", "pgd"}, cascade=False)
    assert row["extra_broken_share"] == 0.0
    curves["square"] = _rows(0.3)
    [row] = black_box_advantage(curves, {"fgsm", "pgd"}, cascade=False)
    assert row["extra_broken_share"] == pytest.approx(0.2)


class Quantized(torch.nn.Module):
    """Inputs rounded to 4 bits before the network."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 15) / 15)


def test_a_quantizing_model_is_attacked_with_bpda_and_flagged(digits_cnn, digits_test) -> None:
    quantized = _wrap(digits_cnn, Quantized(digits_cnn.module))
    report = assess(quantized, digits_test, AssessConfig(**SMALL))
    evasion = report.sections["evasion"]
    assert evasion["adaptive"]["bpda_ops"] == ["round"]
    assert "masking.vanishing_gradients" in {f.id for f in report.findings}
    plain = assess(digits_cnn, digits_test, AssessConfig(**SMALL))
    # rounding is no defence against an attack that passes its gradient straight through
    assert report.metrics["robust_accuracy@0.1"] <= plain.metrics["robust_accuracy@0.1"] + 0.1


def test_a_randomized_model_gets_eot_and_a_mean_over_draws(digits_cnn, digits_test) -> None:
    noisy = _wrap(digits_cnn, NoisyInput(digits_cnn.module, 0.05))
    report = assess(noisy, digits_test, AssessConfig(**SMALL))
    evasion = report.sections["evasion"]
    assert evasion["adaptive"]["randomized"] is True
    assert evasion["adaptive"]["eot_samples"] == 5  # the quick profile's
    assert evasion["attacks"] == ["apgd", "apgd-dlr"]  # AutoAttack's randomized suite
    [row] = evasion["randomized_robust_accuracy"]
    low, high = row["interval"]
    assert low <= row["mean"] <= high
    # the figure reported (and gated) is the mean over draws at the suite's points
    assert report.metrics["robust_accuracy@0.1"] == row["mean"]
    assert report.metrics["robust_accuracy_interval_low@0.1"] == low
    assert 0.0 <= report.metrics["robust_accuracy_any_draw@0.1"] <= 1.0


def test_a_noisy_model_is_no_more_robust_than_the_model_under_it(digits_cnn, digits_test) -> None:
    """Gaussian input noise of σ = 0.05 barely smooths a digits CNN: with EOT and the suite's
    highest-loss points the mean over draws lands near the plain model's robust accuracy.
    Before APGD returned those points (it returned the clean input of every sample it did not
    break) the noisy model was reported 15 points more robust than AutoAttack found."""
    noisy = _wrap(digits_cnn, NoisyInput(digits_cnn.module, 0.05))
    config = AssessConfig(**{**SMALL, "max_samples": 100})
    torch.manual_seed(0)
    report = assess(noisy, digits_test, config)
    plain = assess(digits_cnn, digits_test, config)
    assert report.metrics["robust_accuracy@0.1"] <= plain.metrics["robust_accuracy@0.1"] + 0.08


class CoinFlipAtClean(torch.nn.Module):
    """Two classes, decided by ``10 (Σx − 2) + N(0, 1)``: at x = 0.5 everywhere a fair coin."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = 10.0 * (x.sum(1) - 2.0) + torch.randn(len(x))
        return torch.stack([torch.zeros_like(z), z], dim=1)


def test_a_sample_one_clean_draw_misclassifies_is_still_attacked() -> None:
    """Closed form: every sample of class 0 is wrong on half of its clean draws, and an L∞
    step of 0.2 on four inputs moves the decision by 8 standard deviations, so the attacked
    point is wrong on (nearly) every draw: robust accuracy ≈ 0. A suite that skips the samples
    whose one clean draw erred leaves about half of them at the clean input, right on half of
    its draws: about 25% reported."""
    data = Dataset(
        name="coin", x=np.full((60, 4), 0.5, np.float32), y=np.zeros(60, np.int64), n_classes=2
    )
    model = TorchClassifier(CoinFlipAtClean(), input_shape=(4,), n_classes=2)
    torch.manual_seed(0)
    config = AssessConfig(epsilons=[0.2], max_samples=60, profile="quick", attack_params={})
    report = assess(model, data, config)
    assert report.sections["evasion"]["adaptive"]["randomized"] is True
    assert report.metrics["robust_accuracy@0.2"] < 0.05


class NumpyRounding(torch.nn.Module):
    """Preprocessing through NumPy (4-bit rounding): the output has no gradient path at all."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rounded = np.round(x.detach().cpu().numpy() * 15) / 15
        return self.inner(torch.from_numpy(rounded.astype(np.float32)))


class NumpyOnInput(torch.nn.Module):
    """Calls ``.numpy()`` on its input: fails outright once the input requires a gradient."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.from_numpy(np.clip(x.numpy(), 0.0, 1.0)))


@pytest.mark.parametrize("front", [NumpyRounding, NumpyOnInput])
def test_a_model_without_input_gradients_is_attacked_black_box_and_gates_fail_closed(
    digits_cnn, digits_test, front
) -> None:
    """Gradient attacks cannot run on a forward pass that leaves autograd: the model is attacked
    with the gradient-free suite, the masking finding says why, and the gate fails closed."""
    model = _wrap(digits_cnn, front(digits_cnn.module))
    gates = [parse_gate("robust_accuracy@0.1=0.01")]
    report = assess(model, digits_test, AssessConfig(**SMALL).with_gates(gates))
    assert "masking.no_gradient_path" in {f.id for f in report.findings}
    assert report.sections["evasion"]["attacks"] == ["square", "hsj"]  # gradient-free only
    assert not report.gates[0].passed
    assert report.gates[0].reason is not None and "No input gradient" in report.gates[0].reason
