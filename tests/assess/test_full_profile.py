"""``--profile full``: every check that applies, and the reason for each one that does not."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlwarden.assess import AssessConfig, assess
from mlwarden.assess.profiles import (
    FULL_PROFILE_SECTIONS,
    PROFILES,
    FullProfileSection,
    RunFacts,
    plan_full_profile,
)
from mlwarden.assess.runner import count_steps, resolve_profile
from mlwarden.data import Dataset
from mlwarden.data.builtin import load_builtin
from mlwarden.models import Classifier
from mlwarden.models.zoo import zoo_path


def _facts(**changes: Any) -> RunFacts:
    facts = {
        "white_box": True,
        "noise_trained": False,
        "train_data_given": False,
        "builtin_data": False,
        "artifact": None,
        "artifacts_scanned": False,
        "config": dict(AssessConfig(profile="full")),
    }
    return RunFacts(**{**facts, **changes})


def test_full_profile_evasion_suite_is_the_standard_suite() -> None:
    assert PROFILES["full"] == PROFILES["standard"]


def test_bare_model_runs_evasion_and_extraction_and_says_why_not_the_rest() -> None:
    plan = plan_full_profile(_facts())
    assert plan.ran == ["evasion", "extraction"]
    assert set(plan.skipped) == {
        "certification",
        "detection",
        "membership-inference",
        "poisoning",
        "supply-chain-scan",
    }
    assert "--train-data" in plan.skipped["membership-inference"]
    assert "Gaussian noise" in plan.skipped["certification"]
    assert plan.settings == {"extraction": True}


def test_every_section_applies_with_noise_training_data_and_a_model_file(tmp_path: Path) -> None:
    plan = plan_full_profile(
        _facts(noise_trained=True, train_data_given=True, artifact=tmp_path / "m.pt2")
    )
    assert plan.ran == sorted(FULL_PROFILE_SECTIONS.names()) and plan.skipped == {}
    assert plan.settings["detectors"] == ["feature-squeezing", "mahalanobis"]
    assert plan.settings["privacy"] == {"membership": True, "lira_shadows": 0, "inversion": False}


def test_black_box_models_get_detectors_that_need_no_gradients() -> None:
    plan = plan_full_profile(_facts(white_box=False, builtin_data=True))
    assert plan.settings["detectors"] == ["feature-squeezing", "knn"]


def test_settings_the_user_gave_win_over_the_profile() -> None:
    config = AssessConfig(profile="full", detectors=["knn"], extraction={"budget": 50})
    plan = plan_full_profile(_facts(builtin_data=True, config=dict(config)))
    assert "detectors" not in plan.settings and "extraction" not in plan.settings
    assert "detection" in plan.ran and "extraction" in plan.ran


def test_poisoning_false_and_an_artifacts_scan_are_respected(tmp_path: Path) -> None:
    config = dict(AssessConfig(profile="full", poisoning=False))
    plan = plan_full_profile(
        _facts(
            train_data_given=True, artifact=tmp_path / "m", artifacts_scanned=True, config=config
        )
    )
    assert plan.skipped["poisoning"] == "poisoning: false in the configuration"
    assert "--artifacts" in plan.skipped["supply-chain-scan"]


@pytest.fixture
def text_section() -> Iterator[None]:
    """A section another check registers (as the text attacks will); removed afterwards."""
    FULL_PROFILE_SECTIONS.register(
        "text-attacks",
        FullProfileSection(
            "synonym attacks on text models",
            lambda facts: None if facts.config.get("norm") == "l2" else "not a text model",
            lambda facts: {"max_samples": 7},
        ),
    )
    yield
    del FULL_PROFILE_SECTIONS._entries["text-attacks"]


@pytest.mark.usefixtures("text_section")
def test_a_registered_section_joins_the_profile() -> None:
    skipped = plan_full_profile(_facts())
    assert skipped.skipped["text-attacks"] == "not a text model"
    config = dict(AssessConfig(profile="full", norm="l2", max_samples=None))
    ran = plan_full_profile(_facts(config=config))
    assert "text-attacks" in ran.ran and ran.settings["max_samples"] == 7


def test_other_profiles_are_left_alone(digits_cnn: Classifier, digits_test: Dataset) -> None:
    config = AssessConfig(profile="quick")
    assert resolve_profile(digits_cnn, digits_test, config) == (config, None)


def test_a_noise_trained_sidecar_turns_certification_on(
    digits_cnn: Classifier, digits_test: Dataset
) -> None:
    noisy = copy.copy(digits_cnn)
    noisy.info = type(digits_cnn.info)(
        {**digits_cnn.info, "metadata": {"smoothing": {"sigma": 0.25}}}
    )
    _, plan = resolve_profile(noisy, digits_test, AssessConfig(profile="full"))
    assert plan is not None and "certification" in plan.ran
    _, plain = resolve_profile(digits_cnn, digits_test, AssessConfig(profile="full"))
    assert plain is not None and "certification" in plain.skipped


# a full run kept small: every budget comes from the configuration, which wins over the profile
TINY_FULL = {
    "profile": "full",
    "seed": 0,
    "epsilons": [0.1],
    "max_samples": 30,
    "examples": 0,
    "attack_params": {
        "apgd": {"steps": 3},
        "apgd-t": {"steps": 3, "target_classes": 1},
        "fmn": {"steps": 3, "target_classes": 1},
        "square": {"queries": 20},
    },
    "detectors": ["feature-squeezing"],
    "privacy": {"membership": True, "inversion": False, "max_samples": 60},
    "extraction": {"budget": 60, "policies": ["label"]},
}


def test_full_run_has_every_applicable_section_and_counts_its_steps(
    digits_cnn: Classifier, digits_test: Dataset
) -> None:
    config = AssessConfig(**TINY_FULL)
    train = load_builtin("digits").train.sample(200, 0)
    artifact = zoo_path("digits-cnn")
    steps: list[str] = []
    report = assess(
        digits_cnn, digits_test, config, train_data=train, on_step=steps.append, artifact=artifact
    )
    assert set(report.sections) == {
        "evasion",
        "detection",
        "poisoning",
        "privacy",
        "extraction",
        "profile",
    }
    checks = {c["name"]: c for c in report.sections["profile"]["checks"]}
    assert not checks["certification"]["ran"] and checks["supply-chain-scan"]["ran"]
    assert {f.id for f in report.findings} >= {"supplychain.scan", "assess.full_profile"}
    # the count the progress bar is given is the number of steps assess reports
    total = count_steps(
        digits_cnn, config, train_data_given=True, data=digits_test, artifact=artifact
    )
    assert len(steps) == total
