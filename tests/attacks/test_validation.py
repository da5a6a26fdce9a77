"""Bad parameters and inputs raise AttackError naming what is wrong; the registry refuses misuse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlwarden.attacks import (
    FGSM,
    PGD,
    HopSkipJump,
    SquareAttack,
    attack_names,
    get_attack,
    register,
)
from mlwarden.errors import AttackError, ConfigError
from mlwarden.models import TorchClassifier


@pytest.mark.parametrize("name", attack_names())
@pytest.mark.parametrize("eps", [-0.1, float("nan"), float("inf"), "0.1", True, np.float32(-0.1)])
def test_attack_rejects_bad_eps(name, eps, tiny_vector_classifier, make_batch) -> None:
    x, y = make_batch(tiny_vector_classifier)
    with pytest.raises(AttackError, match=r"\beps\b"):
        get_attack(name)(eps=eps).generate(tiny_vector_classifier, x, y)


@pytest.mark.parametrize("name", attack_names())
def test_attack_accepts_numpy_scalar_eps_like_a_float(
    name, tiny_vector_classifier, make_batch
) -> None:
    x, y = make_batch(tiny_vector_classifier)
    from_numpy = get_attack(name)(eps=np.float32(0.25)).generate(tiny_vector_classifier, x, y)
    from_float = get_attack(name)(eps=float(np.float32(0.25))).generate(
        tiny_vector_classifier, x, y
    )
    np.testing.assert_array_equal(from_numpy.x_adv, from_float.x_adv)


@pytest.mark.parametrize("name", attack_names())
def test_attack_rejects_unknown_norm(name, tiny_vector_classifier, make_batch) -> None:
    x, y = make_batch(tiny_vector_classifier)
    with pytest.raises(AttackError, match=r"\bnorm\b.*'l1'"):
        get_attack(name)(eps=0.1, norm="l1").generate(tiny_vector_classifier, x, y)


@pytest.mark.parametrize("name", attack_names())
def test_attack_rejects_zero_batch_size(name, tiny_vector_classifier, make_batch) -> None:
    x, y = make_batch(tiny_vector_classifier)
    with pytest.raises(AttackError, match="batch_size"):
        get_attack(name)(eps=0.1, batch_size=0).generate(tiny_vector_classifier, x, y)


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"restarts": 0}, "restarts"),
        ({"step_size": 0.0}, "step_size"),
        ({"step_size": float("nan")}, "step_size"),
        ({"loss": "hinge"}, "loss"),
    ],
)
def test_pgd_rejects_bad_hyperparameters(params, parameter, tiny_vector_classifier, make_batch):
    x, y = make_batch(tiny_vector_classifier)
    with pytest.raises(AttackError, match=parameter):
        PGD(eps=0.1, **params).generate(tiny_vector_classifier, x, y)


def test_fgsm_rejects_unknown_loss(tiny_vector_classifier, make_batch) -> None:
    x, y = make_batch(tiny_vector_classifier)
    with pytest.raises(AttackError, match="loss"):
        FGSM(eps=0.1, loss="hinge").generate(tiny_vector_classifier, x, y)


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"queries": 0}, "queries"),
        ({"queries": True}, "queries"),
        ({"p_init": 0.0}, "p_init"),
        ({"p_init": 1.5}, "p_init"),
        ({"p_init": True}, "p_init"),
    ],
)
def test_square_rejects_bad_hyperparameters(params, parameter, tiny_vector_classifier, make_batch):
    x, y = make_batch(tiny_vector_classifier)
    with pytest.raises(AttackError, match=parameter):
        SquareAttack(eps=0.1, **params).generate(tiny_vector_classifier, x, y)


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"max_queries": 0}, "max_queries"),
        ({"max_queries": 10.0}, "max_queries"),
        ({"max_iterations": 0}, "max_iterations"),
        ({"initial_evals": 0}, "initial_evals"),
        ({"init_tries": 0}, "init_tries"),
        ({"init_tries": True}, "init_tries"),
        ({"gamma": 0.0}, "gamma"),
        ({"gamma": float("inf")}, "gamma"),
    ],
)
def test_hsj_rejects_bad_hyperparameters(params, parameter, tiny_vector_classifier, make_batch):
    x, y = make_batch(tiny_vector_classifier)
    with pytest.raises(AttackError, match=parameter):
        HopSkipJump(eps=0.1, **params).generate(tiny_vector_classifier, x, y)


@pytest.mark.parametrize("attack", [FGSM(eps=0.1), PGD(eps=0.1)], ids=["fgsm", "pgd"])
def test_gradient_attack_refuses_black_box_classifier(attack, blackbox_classifier, make_batch):
    x, y = make_batch(blackbox_classifier)
    with pytest.raises(AttackError, match=r"needs gradients.*black-box"):
        attack.generate(blackbox_classifier, x, y)


class _Detached(torch.nn.Module):
    """A forward pass that leaves autograd: its logits have no gradient path to the input."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.detach())


@pytest.mark.parametrize("name", [n for n in attack_names() if get_attack(n).needs_gradients])
def test_gradient_attack_refuses_a_model_whose_forward_leaves_autograd(
    name, tiny_vector_classifier, make_batch
) -> None:
    detached = TorchClassifier(
        _Detached(tiny_vector_classifier.module), input_shape=(6,), n_classes=3
    )
    x, y = make_batch(detached)
    with pytest.raises(AttackError, match=r"needs input gradients.*no gradient path"):
        get_attack(name)(eps=0.1).generate(detached, x, y)


@pytest.mark.parametrize("name", attack_names())
@pytest.mark.parametrize(
    "labels",
    [
        pytest.param(lambda y: np.where(y == 0, -1, y), id="negative"),
        pytest.param(lambda y: np.where(y == 0, 3, y), id="too-large"),
        pytest.param(lambda y: y[:-1], id="too-few"),
        pytest.param(lambda y: y[:, None], id="2-d"),
        pytest.param(lambda y: y.astype(np.float32), id="float"),
    ],
)
def test_attack_rejects_bad_labels(name, labels, tiny_vector_classifier, make_batch) -> None:
    x, y = make_batch(tiny_vector_classifier)
    y[0] = 0
    with pytest.raises(AttackError, match=r"^y\b"):
        get_attack(name)(eps=0.1).generate(tiny_vector_classifier, x, labels(y))


@pytest.mark.parametrize("name", attack_names())
def test_targeted_attack_rejects_target_out_of_range(name, tiny_vector_classifier, make_batch):
    x, y = make_batch(tiny_vector_classifier)
    target = np.full_like(y, tiny_vector_classifier.n_classes)
    with pytest.raises(AttackError, match=r"^target\b"):
        get_attack(name)(eps=0.1, targeted=True).generate(
            tiny_vector_classifier, x, y, target=target
        )


@pytest.mark.parametrize("name", attack_names())
def test_targeted_attack_without_target_raises(name, tiny_vector_classifier, make_batch) -> None:
    x, y = make_batch(tiny_vector_classifier)
    with pytest.raises(AttackError, match="target"):
        get_attack(name)(eps=0.1, targeted=True).generate(tiny_vector_classifier, x, y)


@pytest.mark.parametrize("name", attack_names())
def test_untargeted_attack_with_target_raises(name, tiny_vector_classifier, make_batch) -> None:
    x, y = make_batch(tiny_vector_classifier)
    with pytest.raises(AttackError, match="target"):
        get_attack(name)(eps=0.1).generate(tiny_vector_classifier, x, y, target=y)


@pytest.mark.parametrize("name", attack_names())
@pytest.mark.parametrize("value", [-0.5, 1.5])
def test_attack_rejects_inputs_outside_clip_range(
    name, value, tiny_vector_classifier, make_batch
) -> None:
    x, y = make_batch(tiny_vector_classifier)
    x[3, 2] = value
    with pytest.raises(AttackError, match="range"):
        get_attack(name)(eps=0.1).generate(tiny_vector_classifier, x, y)


@pytest.mark.parametrize("name", attack_names())
def test_attack_rejects_nan_inputs(name, tiny_vector_classifier, make_batch) -> None:
    x, y = make_batch(tiny_vector_classifier)
    x[3, 2] = np.nan
    with pytest.raises(AttackError, match="inputs"):
        get_attack(name)(eps=0.1).generate(tiny_vector_classifier, x, y)


def test_registering_a_taken_name_raises() -> None:
    with pytest.raises(ValueError, match="'pgd' is already registered"):
        register("pgd", FGSM)
    assert get_attack("pgd") is PGD


def test_unknown_attack_name_raises_config_error_listing_choices() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown attack 'deepfool'.*fgsm, fmn, hsj, pgd, square"
    ):
        get_attack("deepfool")
