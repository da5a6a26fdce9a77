"""Robust training: adversarial examples stay in the ball, the loop is seeded, the API composes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mlwarden.defenses.training import AdversarialTrainer, GaussianNoiseTrainer
from mlwarden.errors import ConfigError, DataError


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


def _data(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 6)).astype(np.float32)
    y = (x[:, 0] * 3).astype(np.int64).clip(0, 2)
    return x, y


@pytest.mark.parametrize("method", ["pgd", "trades"])
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 0.3)])
def test_perturb_stays_inside_the_eps_ball_and_the_valid_range(
    method: str, norm: str, eps: float
) -> None:
    x, y = _data()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    trainer = AdversarialTrainer(eps=eps, norm=norm, method=method, steps=5)
    x_adv = trainer.perturb(_mlp(), xt, yt)
    delta = (x_adv - xt).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert float(size.max()) <= eps + 1e-5
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert not x_adv.requires_grad


def test_perturb_increases_the_loss() -> None:
    x, y = _data()
    model = _mlp()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    x_adv = AdversarialTrainer(eps=0.2, steps=10).perturb(model, xt, yt)
    with torch.no_grad():
        clean = nn.functional.cross_entropy(model(xt), yt)
        adversarial = nn.functional.cross_entropy(model(x_adv), yt)
    assert float(adversarial) > float(clean)


def test_perturb_leaves_parameter_gradients_and_mode_alone() -> None:
    x, y = _data()
    model = _mlp().train()
    AdversarialTrainer(eps=0.1).perturb(model, torch.from_numpy(x), torch.from_numpy(y))
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_the_trainer_drops_into_a_custom_training_loop() -> None:
    x, y = _data()
    model = _mlp()
    trainer = AdversarialTrainer(eps=0.1, steps=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(2):
        loss = trainer.batch_loss(model, xt, yt)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_eps_warms_up_linearly_then_stays_at_the_target() -> None:
    trainer = AdversarialTrainer(eps=0.2, warmup_epochs=4)
    assert trainer.eps_at(0) == 0.0
    assert trainer.eps_at(1) == pytest.approx(0.05)
    assert trainer.eps_at(2.5) == pytest.approx(0.125)
    assert trainer.eps_at(4) == trainer.eps_at(40) == 0.2
    assert AdversarialTrainer(eps=0.2).eps_at(0) == 0.2


def test_fit_records_one_held_out_point_per_epoch() -> None:
    x, y = _data()
    trainer = AdversarialTrainer(eps=0.1, epochs=3, warmup_epochs=2, steps=2, eval_steps=3)
    seen = []
    result = trainer.fit(_mlp(), x[:90], y[:90], x_val=x[90:], y_val=y[90:], on_epoch=seen.append)
    assert result is trainer
    assert [r.epoch for r in trainer.history_] == [1, 2, 3]
    assert seen == trainer.history_
    assert [r.eps for r in trainer.history_] == pytest.approx([0.05, 0.1, 0.1])
    for record in trainer.history_:
        assert 0 <= record.robust_accuracy <= record.clean_accuracy <= 1  # type: ignore[operator]
        assert np.isfinite(record.train_loss)


def test_fit_without_held_out_data_records_the_loss_only() -> None:
    x, y = _data()
    trainer = GaussianNoiseTrainer(sigma=0.2, epochs=2).fit(_mlp(), x, y)
    assert [set(r.to_dict()) for r in trainer.history_] == [{"epoch", "train_loss", "seconds"}] * 2


def test_the_same_seed_trains_identical_weights_and_another_seed_does_not() -> None:
    x, y = _data()

    def train(seed: int) -> list[torch.Tensor]:
        model = _mlp(0)
        AdversarialTrainer(eps=0.1, epochs=2, steps=2, seed=seed).fit(model, x, y)
        return [p.detach().clone() for p in model.parameters()]

    first, again, other = train(1), train(1), train(2)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_fit_restores_the_parameters_requires_grad_flags() -> None:
    x, y = _data()
    model = _mlp()
    for p in model.parameters():
        p.requires_grad_(False)
    GaussianNoiseTrainer(sigma=0.1, epochs=1).fit(model, x, y)
    assert not any(p.requires_grad for p in model.parameters())


def test_noise_training_records_accuracy_under_noise() -> None:
    x, y = _data()
    trainer = GaussianNoiseTrainer(sigma=0.3, epochs=2).fit(
        _mlp(), x[:90], y[:90], x_val=x[90:], y_val=y[90:]
    )
    assert all(r.noisy_accuracy is not None and r.robust_accuracy is None for r in trainer.history_)


def test_trades_trains_too() -> None:
    x, y = _data()
    trainer = AdversarialTrainer(eps=0.1, method="trades", epochs=1, steps=2).fit(_mlp(), x, y)
    assert np.isfinite(trainer.history_[0].train_loss)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"eps": 0},
        {"eps": -0.1},
        {"eps": 0.1, "norm": "l1"},
        {"eps": 0.1, "method": "fgsm"},
        {"eps": 0.1, "steps": 0},
        {"eps": 0.1, "epochs": 0},
        {"eps": 0.1, "lr": 0},
        {"eps": 0.1, "warmup_epochs": -1},
        {"eps": 0.1, "clip_range": (1.0, 0.0)},
    ],
)
def test_invalid_hyperparameters_are_refused_by_fit(kwargs: dict[str, object]) -> None:
    x, y = _data()
    with pytest.raises(ConfigError):
        AdversarialTrainer(**kwargs).fit(_mlp(), x, y)  # type: ignore[arg-type]


def test_malformed_data_is_refused() -> None:
    x, y = _data()
    with pytest.raises(DataError, match="one label per sample"):
        AdversarialTrainer(eps=0.1).fit(_mlp(), x, y[:-1])
    with pytest.raises(DataError, match="integers"):
        AdversarialTrainer(eps=0.1).fit(_mlp(), x, y.astype(np.float32))
