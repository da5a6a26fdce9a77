"""Loss-threshold and LiRA membership inference: leaks found on an overfit model, none beyond
the DP bound on a DP-SGD model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu, norm

from mlwarden.attacks.privacy import LiRA, LossThresholdAttack, MembershipResult, roc_curve
from mlwarden.attacks.privacy.dp_audit import clopper_pearson, roc_epsilon_bound
from mlwarden.attacks.privacy.lira import complementary_keep
from mlwarden.errors import AttackError

from .conftest import DP_DELTA, DP_EPSILON, DP_WARNINGS, Target


def test_overfit_target_memorises_its_members(overfit_target: Target) -> None:
    t = overfit_target
    assert (t.classifier.predict(t.members.x) == t.members.y).mean() == 1.0
    assert (t.classifier.predict(t.non_members.x) == t.non_members.y).mean() < 1.0


def test_loss_scores_are_the_negative_cross_entropy(overfit_target: Target) -> None:
    t = overfit_target
    result = LossThresholdAttack().run(t.classifier, t.members, t.non_members)
    with torch.no_grad():
        logits = t.classifier.module(torch.from_numpy(t.members.x[:20]))
        loss = torch.nn.functional.cross_entropy(
            logits, torch.from_numpy(t.members.y[:20]), reduction="none"
        )
    np.testing.assert_allclose(-result.scores[:20], loss.numpy(), rtol=1e-4, atol=1e-6)


def test_loss_attack_finds_members_of_an_overfit_model(overfit_target: Target) -> None:
    t = overfit_target
    result = LossThresholdAttack().run(t.classifier, t.members, t.non_members)
    # AUC is the Mann-Whitney statistic: test it against "no leak" at p < 1e-3
    test = mannwhitneyu(
        result.scores[result.is_member], result.scores[~result.is_member], alternative="greater"
    )
    assert test.pvalue < 1e-3
    assert result.metrics.auc > 0.55
    assert result.params["yeom_balanced_accuracy"] > 0.5


def test_lira_beats_the_loss_attack_at_low_fpr(
    overfit_target: Target, overfit_lira: MembershipResult
) -> None:
    t = overfit_target
    loss = LossThresholdAttack().run(t.classifier, t.members, t.non_members)
    lira = overfit_lira
    assert lira.metrics.tpr_at_fpr[0.01] > max(loss.metrics.tpr_at_fpr[0.01], 0.05)
    assert lira.metrics.auc > loss.metrics.auc


def test_lira_is_deterministic_per_seed(overfit_target: Target) -> None:
    t = overfit_target
    members, non_members = t.members.subset(np.arange(40)), t.non_members.subset(np.arange(40))

    def run(seed: int) -> np.ndarray:
        attack = LiRA(make_model=t.make_model, n_shadows=2, epochs=3, batch_size=20, seed=seed)
        return attack.run(t.classifier, members, non_members).scores

    first = run(0)
    np.testing.assert_array_equal(first, run(0))
    assert not np.array_equal(first, run(1))


def test_complementary_shadows_split_every_sample_in_half() -> None:
    keep = complementary_keep(6, 10, seed=0)
    assert (keep.sum(axis=1) == 5).all() and (keep.sum(axis=0) == 3).all()
    np.testing.assert_array_equal(keep[0], ~keep[1])
    odd = complementary_keep(6, 11, seed=0)  # one sample per pair sits out of both shadows
    assert (odd.sum(axis=1) == 5).all() and (odd.sum(axis=0) <= 3).all()
    with pytest.raises(AttackError, match="even"):
        complementary_keep(3, 10, seed=0)


@pytest.mark.filterwarnings(*DP_WARNINGS)
def test_dp_model_respects_the_dp_bound_at_every_fpr(dp_target: Target) -> None:
    t = dp_target
    result = LossThresholdAttack().run(t.classifier, t.members, t.non_members)
    # every threshold: CP-lower TPR <= e^ε · CP-upper FPR + δ
    fpr, tpr, _ = roc_curve(result.scores, result.is_member)
    n_in, n_out = result.metrics.n_members, result.metrics.n_non_members
    tpr_lo, _ = clopper_pearson(np.round(tpr * n_in), n_in, 0.05)
    _, fpr_hi = clopper_pearson(np.round(fpr * n_out), n_out, 0.05)
    assert (tpr_lo <= math.exp(DP_EPSILON) * fpr_hi + DP_DELTA).all()
    assert roc_epsilon_bound(result.scores, result.is_member, delta=DP_DELTA) <= DP_EPSILON
    assert abs(result.metrics.auc - 0.5) < 0.05


def test_the_dp_bound_check_catches_the_overfit_model(overfit_lira: MembershipResult) -> None:
    lira = overfit_lira
    assert roc_epsilon_bound(lira.scores, lira.is_member, delta=DP_DELTA) > 0.5


def test_lira_scores_are_the_gaussian_likelihood_ratio() -> None:
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(8, 5))
    keep = complementary_keep(8, 5, seed=0)
    phi_target = rng.normal(size=5)

    def attack(online: bool) -> LiRA:
        return LiRA(make_model=torch.nn.Identity, online=online, global_variance=False)

    online, offline = (
        attack(True).score(phi_target, phi, keep),
        attack(False).score(phi_target, phi, keep),
    )
    for i in range(5):
        ins, outs = phi[keep[:, i], i], phi[~keep[:, i], i]
        expected = norm.logpdf(phi_target[i], ins.mean(), ins.std(ddof=1)) - norm.logpdf(
            phi_target[i], outs.mean(), outs.std(ddof=1)
        )
        assert online[i] == pytest.approx(expected)
        assert offline[i] == pytest.approx((phi_target[i] - outs.mean()) / outs.std(ddof=1))
