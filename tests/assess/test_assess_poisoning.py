"""The poisoning section of ``assess``: run when training data is given, mapped to the taxonomies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from mlwarden.assess import AssessConfig, assess
from mlwarden.assess.runner import count_steps
from mlwarden.attacks.poisoning import BadNets
from mlwarden.data import Dataset, load_builtin
from mlwarden.errors import ConfigError
from mlwarden.models import Classifier
from mlwarden.report import write_reports

SMALL = {"attacks": ["fgsm"], "epsilons": [0.1], "max_samples": 20, "examples": 0}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Train on one thread: two threads on two shared, busy cores make small models crawl."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def poisoned_train() -> tuple[Dataset, np.ndarray]:
    result = BadNets(rate=0.05, target_class=0, seed=0).poison(load_builtin("digits").train)
    return result.dataset, result.mask


def test_training_data_adds_a_poisoning_section_with_a_backdoor_finding(
    digits_cnn: Classifier,
    digits_test: Dataset,
    poisoned_train: tuple[Dataset, np.ndarray],
    tmp_path: Path,
) -> None:
    data, truth = poisoned_train
    steps: list[str] = []
    config = AssessConfig(**SMALL)
    report = assess(digits_cnn, digits_test, config, train_data=data, on_step=steps.append)
    assert len(steps) == count_steps(digits_cnn, config, train_data_given=True)
    section = report.sections["poisoning"]
    assert section["n_samples"] == len(data)
    backdoor = next(f for f in report.findings if f.id == "poisoning.backdoor")
    assert backdoor.severity.value == "high"
    assert set(backdoor.taxonomy.atlas) == {"AML.T0020", "AML.T0018"}
    assert set(backdoor.taxonomy.owasp) == {"ML02:2023", "ML10:2023"}
    flagged = np.zeros(len(data), dtype=bool)
    flagged[backdoor.details["indices"]] = True
    assert flagged[truth].mean() >= 0.8  # the listed suspects are the planted samples
    labels = next(f for f in report.findings if f.id == "poisoning.label_errors")
    assert labels.taxonomy.owasp == ("ML02:2023",)
    assert "poisoning.label_noise_rate" in report.metrics
    paths = write_reports(report, tmp_path)
    doc = json.loads(paths["json"].read_text())
    assert doc["sections"]["poisoning"]["n_suspicious"] == section["n_suspicious"]
    assert "poisoning.backdoor" in paths["sarif"].read_text()
    html = paths["html"].read_text()
    assert "<h2>Training-data poisoning</h2>" in html
    assert f"<td>{section['suspicious'][0]['index']}</td>" in html


def test_no_poisoning_section_without_training_data_or_when_disabled(
    digits_cnn: Classifier, digits_test: Dataset, poisoned_train: tuple[Dataset, np.ndarray]
) -> None:
    report = assess(digits_cnn, digits_test, AssessConfig(**SMALL))
    assert "poisoning" not in report.sections
    off = assess(
        digits_cnn,
        digits_test,
        AssessConfig(**SMALL, poisoning=False),
        train_data=poisoned_train[0],
    )
    assert "poisoning" not in off.sections
    assert not any(f.check == "poisoning" for f in off.findings)


def test_poisoning_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError, match="poisoning"):
        AssessConfig(poisoning="yes")  # type: ignore[arg-type]
