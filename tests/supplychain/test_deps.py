"""Dependency audit against OSV advisories, made here in the real OSV schema."""

from __future__ import annotations

import importlib.metadata
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from mlwarden.errors import ConfigError
from mlwarden.report.findings import Severity
from mlwarden.supplychain.deps import (
    LocalOsvDatabase,
    OsvApi,
    Package,
    audit,
    cvss3_base_score,
    read_requirements,
    version_affected,
)


def advisory(
    vid: str,
    package: str,
    *,
    ranges: list[dict[str, Any]] | None = None,
    versions: list[str] | None = None,
    ecosystem: str = "PyPI",
    **extra: Any,
) -> dict[str, Any]:
    """An OSV 1.6 advisory for one package."""
    affected: dict[str, Any] = {"package": {"ecosystem": ecosystem, "name": package}}
    if ranges is not None:
        affected["ranges"] = ranges
    if versions is not None:
        affected["versions"] = versions
    return {
        "schema_version": "1.6.0",
        "id": vid,
        "modified": "2024-05-01T00:00:00Z",
        "published": "2024-04-01T00:00:00Z",
        "summary": f"{package} is vulnerable",
        "affected": [affected],
        "references": [{"type": "ADVISORY", "url": f"https://osv.dev/vulnerability/{vid}"}],
        **extra,
    }


def eco(*events: dict[str, str]) -> dict[str, Any]:
    return {"type": "ECOSYSTEM", "events": list(events)}


ADVISORIES = [
    advisory(
        "PYSEC-2099-1",
        "Demo_Lib",
        ranges=[
            eco({"introduced": "0"}, {"fixed": "1.2.0"}),
            eco({"introduced": "2.0.0"}, {"fixed": "2.0.5"}),
        ],
        aliases=["CVE-2099-0001", "GHSA-aaaa-bbbb-cccc"],
        database_specific={"severity": "HIGH"},
    ),
    advisory(  # the same vulnerability under its GHSA id: reported once
        "GHSA-aaaa-bbbb-cccc",
        "demo-lib",
        ranges=[eco({"introduced": "0"}, {"fixed": "1.2.0"})],
        aliases=["CVE-2099-0001", "PYSEC-2099-1"],
    ),
    advisory(
        "PYSEC-2099-2",
        "other-lib",
        ranges=[eco({"introduced": "1.0"}, {"last_affected": "1.4"})],
        severity=[{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
    ),
    advisory(
        "PYSEC-2099-3",
        "demo-lib",
        ranges=[eco({"introduced": "0"})],
        withdrawn="2024-06-01T00:00:00Z",
    ),
    advisory(
        "GHSA-semv-er00-0000",
        "semver-lib",
        ranges=[{"type": "SEMVER", "events": [{"introduced": "1.0.0-alpha"}, {"fixed": "1.0.0"}]}],
        database_specific={"severity": "MODERATE"},
    ),
    advisory("PYSEC-2099-4", "listed-lib", versions=["0.9", "0.9.1"]),
    advisory(
        "PYSEC-2099-5",
        "limited-lib",
        ranges=[eco({"introduced": "0"}, {"limit": "3.0"})],
        database_specific={"severity": "LOW"},
    ),
    advisory("NPM-1", "demo-lib", ecosystem="npm", ranges=[eco({"introduced": "0"})]),
]


@pytest.fixture
def osv_db(tmp_path: Path) -> Path:
    folder = tmp_path / "osv"
    (folder / "PyPI").mkdir(parents=True)
    for entry in ADVISORIES:
        (folder / "PyPI" / f"{entry['id']}.json").write_text(json.dumps(entry))
    return folder


def _by_id(vid: str) -> dict[str, Any]:
    return next(a for a in ADVISORIES if a["id"] == vid)["affected"][0]


@pytest.mark.parametrize(
    ("vid", "version", "affected"),
    [
        ("PYSEC-2099-1", "0.1", True),
        ("PYSEC-2099-1", "1.1.9", True),
        ("PYSEC-2099-1", "1.2.0", False),
        ("PYSEC-2099-1", "1.9", False),
        ("PYSEC-2099-1", "2.0.0", True),
        ("PYSEC-2099-1", "2.0.4.post1", True),
        ("PYSEC-2099-1", "2.0.5", False),
        ("PYSEC-2099-1", "1.2.0rc1", True),
        ("PYSEC-2099-2", "0.9", False),
        ("PYSEC-2099-2", "1.0", True),
        ("PYSEC-2099-2", "1.4", True),
        ("PYSEC-2099-2", "1.4.1", False),
        ("GHSA-semv-er00-0000", "1.0.0rc1", True),
        ("GHSA-semv-er00-0000", "0.9.9", False),
        ("GHSA-semv-er00-0000", "1.0.0", False),
        ("PYSEC-2099-4", "0.9.0", True),
        ("PYSEC-2099-4", "0.9.2", False),
        ("PYSEC-2099-5", "2.9", True),
        ("PYSEC-2099-5", "3.0", False),
    ],
)
def test_osv_ranges_follow_the_schema(vid: str, version: str, affected: bool) -> None:
    assert version_affected(version, _by_id(vid))[0] is affected


def test_the_fix_is_taken_from_the_range_that_affects_the_version() -> None:
    assert version_affected("1.0", _by_id("PYSEC-2099-1"))[1] == ["1.2.0"]
    assert version_affected("2.0.1", _by_id("PYSEC-2099-1"))[1] == ["2.0.5"]


def _audit(db: Path, **versions: str) -> Any:
    packages = [Package(name, version, "test") for name, version in versions.items()]
    return audit(packages, LocalOsvDatabase(db))


def test_a_vulnerable_pin_is_reported_once_with_its_fix_and_aliases(osv_db: Path) -> None:
    report = _audit(osv_db, **{"demo-lib": "1.1"})
    assert [v.id for v in report.vulnerabilities] == ["GHSA-aaaa-bbbb-cccc"]
    vuln = report.vulnerabilities[0]
    assert vuln.fix == ">=1.2.0"
    assert "PYSEC-2099-1" in vuln.aliases
    assert report.withdrawn == 1


def test_withdrawn_and_other_ecosystems_are_ignored(osv_db: Path) -> None:
    report = _audit(osv_db, **{"demo-lib": "1.9"})
    assert report.vulnerabilities == []
    assert report.withdrawn == 1


def test_severity_comes_from_the_database_or_the_cvss_vector(osv_db: Path) -> None:
    report = _audit(osv_db, **{"other-lib": "1.3", "semver-lib": "1.0.0a1", "limited-lib": "1"})
    severities = {v.package.name: v.severity for v in report.vulnerabilities}
    assert severities == {
        "other-lib": Severity.CRITICAL,  # CVSS 9.8
        "semver-lib": Severity.MEDIUM,  # MODERATE
        "limited-lib": Severity.LOW,
    }
    other = next(v for v in report.vulnerabilities if v.package.name == "other-lib")
    assert other.cvss_score == 9.8
    assert other.fix == "none yet (last affected 1.4)"


@pytest.mark.parametrize(
    ("vector", "score"),
    [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
        ("CVSS:3.0/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 5.5),
        ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", 9.9),
        ("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", 1.6),
        ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
    ],
)
def test_cvss3_base_scores_match_the_specification(vector: str, score: float) -> None:
    assert cvss3_base_score(vector) == score


def test_requirements_pins_are_audited_and_the_rest_listed(tmp_path: Path, osv_db: Path) -> None:
    (tmp_path / "base.txt").write_text("other-lib==1.4  # pinned in the base file\n")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        "-r base.txt\n"
        "--index-url https://example.invalid/simple\n"
        "Demo_Lib==2.0.1 \\\n"
        "    --hash=sha256:0000000000000000000000000000000000000000000000000000000000000000\n"
        "numpy>=1.24\n"
        "never-here==1.0; python_version < '3'\n"
        "-e ./local-package\n"
    )
    packages, unpinned = read_requirements(requirements)
    assert [(p.name, p.version) for p in packages] == [("other-lib", "1.4"), ("Demo_Lib", "2.0.1")]
    assert packages[1].source.endswith("requirements.txt:3")
    assert unpinned == ["numpy>=1.24", "-e ./local-package (editable)"]
    report = audit(packages, LocalOsvDatabase(osv_db), unpinned=unpinned)
    assert sorted(v.package.name for v in report.vulnerabilities) == ["Demo_Lib", "other-lib"]


def test_a_bad_requirement_line_names_file_and_line(tmp_path: Path) -> None:
    requirements = tmp_path / "r.txt"
    requirements.write_text("ok==1\nnot a requirement!!\n")
    with pytest.raises(ConfigError, match=r"r\.txt:2"):
        read_requirements(requirements)


def test_the_environment_is_audited(osv_db: Path) -> None:
    from mlwarden.supplychain.deps import installed_packages

    installed = {p.key: p for p in installed_packages()}
    version = importlib.metadata.version("packaging")
    assert installed["packaging"].version == version
    (osv_db / "PyPI" / "env.json").write_text(
        json.dumps(advisory("PYSEC-2099-9", "packaging", versions=[version]))
    )
    report = audit(list(installed.values()), LocalOsvDatabase(osv_db))
    assert [v.package.name for v in report.vulnerabilities] == ["packaging"]


def test_a_zip_export_of_osv_works_like_a_folder(tmp_path: Path) -> None:
    path = tmp_path / "all.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for entry in ADVISORIES:
            archive.writestr(f"{entry['id']}.json", json.dumps(entry))
    assert [v.id for v in _audit(path, **{"listed-lib": "0.9.1"}).vulnerabilities] == [
        "PYSEC-2099-4"
    ]


def test_an_empty_database_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no OSV advisories"):
        LocalOsvDatabase(tmp_path)


class _Response(io.BytesIO):
    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()


def test_the_osv_api_is_queried_in_batch_then_per_advisory() -> None:
    calls: list[tuple[str, Any]] = []

    def opener(request: Any, timeout: float) -> _Response:
        body = json.loads(request.data) if request.data else None
        calls.append((request.full_url, body))
        if request.full_url.endswith("/v1/querybatch"):
            return _Response(
                json.dumps({"results": [{"vulns": [{"id": "PYSEC-2099-4"}]}]}).encode()
            )
        return _Response(
            json.dumps(next(a for a in ADVISORIES if a["id"] == "PYSEC-2099-4")).encode()
        )

    api = OsvApi("https://osv.invalid", opener=opener)
    report = audit([Package("listed-lib", "0.9", "test")], api)
    assert [v.id for v in report.vulnerabilities] == ["PYSEC-2099-4"]
    assert calls[0] == (
        "https://osv.invalid/v1/querybatch",
        {"queries": [{"package": {"name": "listed-lib", "ecosystem": "PyPI"}, "version": "0.9"}]},
    )
    assert calls[1][0] == "https://osv.invalid/v1/vulns/PYSEC-2099-4"


def test_an_unreachable_osv_api_is_a_clear_error() -> None:
    import urllib.error

    def opener(request: Any, timeout: float) -> _Response:
        raise urllib.error.URLError("offline")

    with pytest.raises(ConfigError, match="--db"):
        audit([Package("x", "1", "t")], OsvApi(opener=opener))


@pytest.mark.parametrize(
    ("vector", "named"),
    [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/C:H/I:H/A:H", "S"),
        ("CVSS:3.1/AV:N/AC:L/UI:N/S:U/C:H/I:H/A:H", "PR"),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H", "A"),
    ],
)
def test_a_cvss_vector_missing_a_base_metric_raises_value_error_naming_it(
    vector: str, named: str
) -> None:
    with pytest.raises(ValueError, match=rf"lacks the base metric\(s\) {named}$"):
        cvss3_base_score(vector)


def test_a_cvss_vector_with_an_unknown_value_raises_value_error() -> None:
    with pytest.raises(ValueError, match="unknown value"):
        cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:Q/UI:N/S:U/C:H/I:H/A:H")
    with pytest.raises(ValueError, match="scope S must be U or C"):
        cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:X/C:H/I:H/A:H")
