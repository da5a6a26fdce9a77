"""The ``privacy:`` assessment setting: defaults, validation, and the section it produces."""

from __future__ import annotations

import pytest

from mlwarden.assess.config import AssessConfig, parse_gate
from mlwarden.assess.privacy import PRIVACY_DEFAULTS, check_privacy, run_privacy
from mlwarden.errors import ConfigError

from .conftest import Target


def test_privacy_is_off_by_default_and_true_means_the_defaults() -> None:
    assert AssessConfig().privacy is None
    assert AssessConfig(privacy=True).privacy == PRIVACY_DEFAULTS
    assert AssessConfig(privacy={"lira_shadows": 8}).privacy["lira_shadows"] == 8  # type: ignore[index]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"lira_shadow": 8}, "unknown setting"),
        ({"lira_shadows": 3}, "even integer"),
        ({"membership": "yes"}, "true or false"),
        ({"membership": False, "lira_shadows": 4}, "needs privacy.membership"),
        ({"max_samples": 0}, "positive integer"),
        ("all", "mapping"),
    ],
)
def test_bad_privacy_settings_are_refused(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_privacy(value)


def test_privacy_section_maps_findings_to_the_taxonomies(overfit_target: Target) -> None:
    t = overfit_target
    settings = {**PRIVACY_DEFAULTS, "max_samples": 200, "inversion_steps": 50}
    outcome = run_privacy(t.classifier, t.non_members, settings, train_data=t.members)
    by_id = {f.id: f for f in outcome.findings}
    assert by_id["privacy.membership.loss"].taxonomy.owasp == ("ML04:2023",)
    assert by_id["privacy.inversion"].taxonomy.atlas == ("AML.T0024.001",)
    assert outcome.metrics["membership_auc"] == pytest.approx(
        outcome.section["membership"]["loss-threshold"]["auc"]
    )
    assert outcome.section["inversion"]["inversion_recovery_rate"] >= 0.5
    balanced = outcome.metrics["membership_balanced_accuracy"]
    assert outcome.metrics["membership_resistance"] == pytest.approx(2.0 - 2.0 * balanced)


def test_membership_resistance_is_a_gate_metric() -> None:
    gate = parse_gate("membership_resistance=0.9")
    assert gate.threshold == 0.9 and gate.eps is None and gate.attack is None
    with pytest.raises(ConfigError, match="unknown gate metric"):
        parse_gate("membership_auc=0.6")
