"""Gradient leakage: metrics against closed forms, iDLG labels, and the attack on what a server sees."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from mlwarden.attacks.privacy.gradient_leakage import (
    GradientLeakage,
    gradient_from_update,
    infer_labels,
    match_samples,
    psnr,
    ssim,
)
from mlwarden.data.builtin import DatasetSplits, load_builtin
from mlwarden.errors import AttackError, SecurityWarning
from mlwarden.federated import (
    FederatedClient,
    LocalTraining,
    SampleLevelDP,
    SecureAggregation,
    get_weights,
    partition_dataset,
    run_federated,
)
from mlwarden.federated.client import ROUND_KEY
from mlwarden.models.zoo import digits_cnn

FEDSGD = LocalTraining(epochs=1, batch_size=1, lr=0.1, momentum=0.0)  # one SGD step per round


@pytest.fixture(scope="module")
def digits() -> DatasetSplits:
    return load_builtin("digits")


def _model() -> torch.nn.Module:
    torch.manual_seed(0)  # the weights run_federated(seed=0) starts from
    return digits_cnn()


def _update(model: torch.nn.Module, client: FederatedClient) -> list[np.ndarray]:
    before = get_weights(model)
    after, _, _ = client.fit([w.copy() for w in before], {ROUND_KEY: 1})
    return [a - b for a, b in zip(after, before, strict=True)]


# -- metrics -------------------------------------------------------------------------------
def test_psnr_matches_its_closed_form() -> None:
    a = np.zeros((1, 8, 8))
    b = np.full((1, 8, 8), 0.1)  # MSE = 0.01 -> 20 dB at range 1
    assert psnr(a, b) == pytest.approx(20.0)
    assert psnr(a, a) == math.inf


def test_ssim_of_constant_images_is_the_luminance_term() -> None:
    # constant images: zero variance, so SSIM = (2 μa μb + C1) / (μa² + μb² + C1)
    a, b = np.full((8, 8), 0.2), np.full((8, 8), 0.6)
    c1 = 0.01**2
    assert ssim(a, b) == pytest.approx((2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1))
    rng = np.random.default_rng(0)
    x = rng.random((1, 8, 8))
    assert ssim(x, x) == pytest.approx(1.0)
    assert ssim(x, rng.random((1, 8, 8))) < 0.5


def test_match_samples_undoes_a_permutation() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((5, 1, 8, 8))
    order = np.array([3, 0, 4, 1, 2])
    assert (x[order][match_samples(x, x[order])] == x).all()


# -- labels --------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 4])
def test_idlg_reads_the_labels_off_a_true_gradient(digits: DatasetSplits, batch: int) -> None:
    model = _model()
    _, first = np.unique(digits.train.y, return_index=True)  # distinct labels: identifiable
    x = torch.from_numpy(digits.train.x[first[3 : 3 + batch]])
    y = torch.from_numpy(digits.train.y[first[3 : 3 + batch]])
    loss = torch.nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    assert sorted(infer_labels(grads, model, batch).tolist()) == sorted(y.tolist())


# -- the attack on what the server sees ----------------------------------------------------
def test_plain_single_sample_update_is_reconstructed_with_its_label(
    digits: DatasetSplits,
) -> None:
    sample = digits.train.subset(np.array([10]))
    client = FederatedClient(digits_cnn, sample, partition_id=0, training=FEDSGD, seed=0)
    model = _model()
    gradients = gradient_from_update(model, _update(model, client), lr=FEDSGD.lr)
    result = GradientLeakage(iterations=400, restarts=1).reconstruct(
        model, gradients, batch_size=1, input_shape=(1, 8, 8)
    )
    scores = result.scores(sample.x, true_labels=sample.y, blank=digits.train.x.mean(0))
    assert result.labels_inferred and scores["labels_recovered"]
    assert scores["psnr_db"][0] >= 25.0
    assert scores["psnr_db"][0] > scores["blank_psnr_db"][0] + 10


def test_dlg_with_idlg_labels_matches_a_single_sample_gradient_exactly(
    digits: DatasetSplits,
) -> None:
    sample = digits.train.subset(np.array([11]))
    client = FederatedClient(digits_cnn, sample, partition_id=0, training=FEDSGD, seed=0)
    model = _model()
    gradients = gradient_from_update(model, _update(model, client), lr=FEDSGD.lr)
    result = GradientLeakage(method="dlg", iterations=60, lr=1.0, restarts=1).reconstruct(
        model, gradients, batch_size=1, input_shape=(1, 8, 8)
    )
    assert result.scores(sample.x)["psnr_db"][0] >= 25.0


def test_dp_sgd_update_leaks_nothing_beyond_a_blank_guess(digits: DatasetSplits) -> None:
    sample = digits.train.subset(np.array([10]))
    dp = SampleLevelDP(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5)
    client = FederatedClient(digits_cnn, sample, partition_id=0, training=FEDSGD, seed=0, dp=dp)
    model = _model()
    gradients = gradient_from_update(model, _update(model, client), lr=FEDSGD.lr)
    result = GradientLeakage(iterations=400, restarts=1).reconstruct(
        model, gradients, batch_size=1, input_shape=(1, 8, 8)
    )
    scores = result.scores(sample.x, blank=digits.train.x.mean(0))
    assert scores["psnr_db"][0] <= scores["blank_psnr_db"][0]


def _secagg_leakage(digits: DatasetSplits, clients: int) -> float:
    """Best PSNR, over the participating samples, of a batch-1 attack on the SecAgg+ sum."""
    data = digits.train.subset(np.arange(10, 10 + clients))  # one sample per client
    with warnings.catch_warnings():
        warnings.simplefilter("error", SecurityWarning)  # no DP here: no noise warning either
        result = run_federated(
            digits_cnn,
            data,
            digits.test,
            clients=clients,
            rounds=1,
            local=FEDSGD,
            secure_aggregation=SecureAggregation(),
        )
    model = _model()
    gradients = gradient_from_update(model, result.round_updates[0], lr=FEDSGD.lr)
    leak = GradientLeakage(iterations=400, restarts=1).reconstruct(
        model, gradients, batch_size=1, input_shape=(1, 8, 8)
    )
    parts = partition_dataset(data, "iid", clients, seed=0)
    return max(psnr(part.x[0], leak.reconstructions[0]) for part in parts)


def test_secagg_sum_blurs_the_reconstruction_more_as_clients_grow(
    digits: DatasetSplits,
) -> None:
    # The server sees only the sum, but a sum of single-sample FedSGD updates is a batch
    # gradient: the attack still pulls out the most salient sample, less sharply as the sum
    # mixes more clients (plain single update: ≥ 25 dB, see above).
    three, ten = _secagg_leakage(digits, 3), _secagg_leakage(digits, 10)
    assert three < 30.0
    assert ten < three - 3.0


def test_bad_attack_settings_are_refused(digits: DatasetSplits) -> None:
    model = _model()
    grads = [torch.zeros_like(p) for p in model.parameters()]
    with pytest.raises(AttackError, match="method 'svd' is unknown"):
        GradientLeakage(method="svd").reconstruct(  # type: ignore[arg-type]
            model, grads, batch_size=1, input_shape=(1, 8, 8)
        )
    with pytest.raises(AttackError, match="do not match the model"):
        GradientLeakage().reconstruct(model, grads[:-1], batch_size=1, input_shape=(1, 8, 8))
    with pytest.raises(AttackError, match="lr must be > 0"):
        gradient_from_update(model, get_weights(model), lr=0)
