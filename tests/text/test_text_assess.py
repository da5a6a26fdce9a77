"""``assess`` on text models: the synonym check as findings, the report and its escaping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mlwarden.assess import assess
from mlwarden.assess.config import AssessConfig
from mlwarden.cli.app import main
from mlwarden.data.text import TextDataset
from mlwarden.errors import ConfigError
from mlwarden.models.text import SklearnTextClassifier, save_text_model
from mlwarden.report.writers import render_html

from .toy import TOY_TEXT, WordWeights

HOSTILE = "<script>alert(1)</script> " + TOY_TEXT


def toy_report(**config: object) -> tuple[str, dict[str, object]]:
    model = WordWeights({"fight": 2.0, "struggle": -3.0, "script": 0.5})
    data = TextDataset.from_texts(
        [HOSTILE, TOY_TEXT, "no signal here at all"], [1, 1, 0], name="toy"
    )
    settings = AssessConfig(epsilons=[0.05, 0.1], max_samples=None, **config)  # type: ignore[arg-type]
    report = assess(model, data, settings)
    return render_html(report), report.to_dict()


def test_text_assessment_reports_both_variants_at_every_budget() -> None:
    _, doc = toy_report()
    findings = {f["id"]: f for f in doc["findings"]}  # type: ignore[union-attr]

    assert {"evasion.text-synonym-score", "evasion.text-synonym-label"} <= set(findings)
    score = findings["evasion.text-synonym-score"]
    assert score["taxonomy"]["atlas"] == ["AML.T0043", "AML.T0043.001", "AML.T0015"]
    assert score["taxonomy"]["owasp"] == ["ML01:2023"]
    metrics = doc["summary"]["metrics"]  # type: ignore[index]
    # the toy model is flipped by swapping the verb "fight" for "struggle" (WordNet) in both
    # fighting texts; the third is classified 0 correctly and has no word to swap
    assert metrics["clean_accuracy"] == 1.0  # type: ignore[index]
    assert metrics["attack_success_rate@0.05[score]"] == pytest.approx(2 / 3)  # type: ignore[index]
    assert metrics["robust_accuracy@0.05"] == pytest.approx(1 / 3)  # type: ignore[index]


def test_html_highlights_substitutions_and_escapes_the_text() -> None:
    html, _ = toy_report()

    assert "<del>fight</del> <ins>struggle</ins>" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert" not in html


def test_tensor_checks_in_a_text_config_are_named() -> None:
    with pytest.raises(ConfigError, match="do not apply to text models"):
        toy_report(attacks=["pgd"])


def test_cli_assesses_a_saved_text_model(
    tfidf_model: SklearnTextClassifier, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = save_text_model(tfidf_model, tmp_path / "speeches.skops")
    config = tmp_path / "assess.yaml"
    config.write_text(yaml.safe_dump({"epsilons": [0.05], "max_samples": 6, "examples": 2}))
    out = tmp_path / "report"

    code = main(
        [
            "assess",
            "--model",
            str(model),
            "--data",
            "builtin:convention-speeches",
            "--config",
            str(config),
            "--out",
            str(out),
        ]
    )
    capsys.readouterr()

    assert code == 0
    doc = json.loads((out / "report.json").read_text())
    assert doc["model"]["modality"] == "text"
    assert doc["data"]["kind"] == "text"
    assert doc["sections"]["evasion"]["norm"] == "word-share"
    assert (out / "report.html").exists() and (out / "report.sarif").exists()
