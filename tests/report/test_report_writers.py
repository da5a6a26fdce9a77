"""The JSON, SARIF and HTML writers: they render the report, atomically, and nothing else."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from mlwarden.errors import ReportError
from mlwarden.report import (
    Finding,
    GateResult,
    Report,
    Severity,
    write_html,
    write_json,
    write_reports,
    write_sarif,
)
from mlwarden.report.writers import render_html, to_sarif


def test_write_reports_writes_exactly_three_files(
    make_report: Callable[..., Report], tmp_path: Path
) -> None:
    paths = write_reports(make_report(), tmp_path / "out")
    assert paths == {
        "json": tmp_path / "out" / "report.json",
        "sarif": tmp_path / "out" / "report.sarif",
        "html": tmp_path / "out" / "report.html",
    }
    assert sorted(os.listdir(tmp_path / "out")) == ["report.html", "report.json", "report.sarif"]


def test_rewriting_reports_leaves_no_temporary_files(
    make_report: Callable[..., Report], tmp_path: Path
) -> None:
    for _ in range(2):
        write_reports(make_report(examples=2), tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["report.html", "report.json", "report.sarif"]


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary_file(
    make_report: Callable[..., Report], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "report.json"
    target.write_text("previous", encoding="utf-8")

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        write_json(make_report(), target)
    assert target.read_text(encoding="utf-8") == "previous"
    assert os.listdir(tmp_path) == ["report.json"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_write_reports_into_a_read_only_folder_is_a_report_error(
    make_report: Callable[..., Report], tmp_path: Path
) -> None:
    tmp_path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(ReportError, match="cannot write the reports"):
            write_reports(make_report(), tmp_path)
    finally:
        tmp_path.chmod(stat.S_IRWXU)


def test_write_reports_below_a_file_is_a_report_error(
    make_report: Callable[..., Report], tmp_path: Path
) -> None:
    (tmp_path / "blocker").write_text("", encoding="utf-8")
    with pytest.raises(ReportError, match="cannot write the reports"):
        write_reports(make_report(), tmp_path / "blocker" / "out")


def test_written_files_follow_the_umask(make_report: Callable[..., Report], tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        path = write_sarif(make_report(), tmp_path / "report.sarif")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_json_writer_writes_the_report_dict(
    make_report: Callable[..., Report], tmp_path: Path
) -> None:
    report = make_report()
    path = write_json(report, tmp_path / "report.json")
    assert json.loads(path.read_text(encoding="utf-8")) == report.to_dict()


def test_sarif_maps_each_finding_to_a_result_and_each_id_to_one_rule(
    make_report: Callable[..., Report], make_finding: Callable[..., Finding]
) -> None:
    findings = [
        make_finding("evasion.pgd", Severity.CRITICAL),
        make_finding("evasion.skipped", Severity.INFO),
        make_finding("evasion.skipped", Severity.INFO),
        make_finding("evasion.fgsm", Severity.LOW),
        make_finding("evasion.square", Severity.MEDIUM),
    ]
    log = to_sarif(make_report(findings=findings))
    [run] = log["runs"]
    assert log["version"] == "2.1.0"
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == [
        "evasion.pgd",
        "evasion.skipped",
        "evasion.fgsm",
        "evasion.square",
    ]
    assert [(r["ruleId"], r["level"]) for r in run["results"]] == [
        ("evasion.pgd", "error"),
        ("evasion.skipped", "none"),
        ("evasion.skipped", "none"),
        ("evasion.fgsm", "note"),
        ("evasion.square", "warning"),
    ]
    rule = run["tool"]["driver"]["rules"][0]
    assert rule["properties"]["security-severity"] == "9.5"
    assert {"AML.T0043", "ML01:2023"} <= set(rule["properties"]["tags"])
    assert rule["helpUri"] == "https://atlas.mitre.org/techniques/AML.T0043"
    uri = run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "models/toy.pt2"


def test_sarif_run_records_the_gate_verdict(make_report: Callable[..., Report]) -> None:
    gate = GateResult("robust_accuracy@0.1", 0.5, 0.3, False, "--fail-under")
    properties = to_sarif(make_report(gates=[gate]))["runs"][0]["properties"]
    assert properties["passed"] is False
    assert properties["gates"] == [gate.to_dict()]


def test_sarif_written_file_is_the_sarif_dict(
    make_report: Callable[..., Report], tmp_path: Path
) -> None:
    report = make_report()
    path = write_sarif(report, tmp_path / "report.sarif")
    assert json.loads(path.read_text(encoding="utf-8")) == to_sarif(report)


def _images(html: str) -> list[str]:
    return re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,[A-Za-z0-9+/=]+"', html)


def test_html_inlines_the_accuracy_plot_and_no_examples_without_examples(
    make_report: Callable[..., Report],
) -> None:
    html = render_html(make_report())
    assert _images(html) == ["accuracy versus epsilon"]
    assert "<link" not in html and "<script" not in html


def test_html_inlines_the_examples_when_the_report_has_them(
    make_report: Callable[..., Report],
) -> None:
    assert _images(render_html(make_report(examples=3))) == [
        "accuracy versus epsilon",
        "adversarial examples",
    ]


def test_html_gate_table_lists_each_gate_with_its_verdict(
    make_report: Callable[..., Report],
) -> None:
    gates = [
        GateResult("clean_accuracy", 0.9, 0.95, True, "ci.yaml: policy.fail_under"),
        GateResult("robust_accuracy@0.3", 0.5, None, False, "--fail-under"),
    ]
    html = render_html(make_report(gates=gates))
    assert "Policy gates" in html
    assert "<code>clean_accuracy</code>" in html and "0.950" in html
    assert "<code>robust_accuracy@0.3</code>" in html and "—" in html  # not measured
    assert "Policy gate failed" in html


def test_html_has_no_gate_table_without_gates(make_report: Callable[..., Report]) -> None:
    html = render_html(make_report())
    assert "Policy gates" not in html
    assert "All policy gates pass" in html


def test_html_lists_findings_most_severe_first_with_taxonomy_links(
    make_report: Callable[..., Report], make_finding: Callable[..., Finding]
) -> None:
    findings = [
        make_finding("evasion.fgsm", Severity.LOW),
        make_finding("evasion.pgd", Severity.CRITICAL),
    ]
    html = render_html(make_report(findings=findings))
    assert html.index("Evasion by evasion.pgd") < html.index("Evasion by evasion.fgsm")
    assert 'href="https://atlas.mitre.org/techniques/AML.T0043"' in html
    assert ">ML01:2023<" in html


def test_html_escapes_text_from_the_report(make_report: Callable[..., Report]) -> None:
    report = make_report()
    report.model["name"] = "<script>alert(1)</script>"
    html = render_html(report)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html


def test_write_html_writes_the_rendered_page(
    make_report: Callable[..., Report], tmp_path: Path
) -> None:
    report = make_report()
    path = write_html(report, tmp_path / "report.html")
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>")
    assert "toy-model" in html
