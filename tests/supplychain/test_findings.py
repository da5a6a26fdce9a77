"""The supply-chain section of an assessment: findings mapped to ATLAS and OWASP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlwarden.report.findings import Severity
from mlwarden.supplychain.findings import supply_chain_findings
from mlwarden.supplychain.signing import generate_keypair, sign_model

EVIL = b"\x80\x02cos\nsystem\n(Vtouch /nonexistent/x\ntR."


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    root = tmp_path / "release"
    root.mkdir()
    np.save(root / "weights.npy", np.arange(3.0))
    return root


def _by_id(findings: list) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for finding in findings:
        grouped.setdefault(finding.id, []).append(finding)
    return grouped


def test_every_finding_maps_to_supply_chain_compromise(artifacts: Path) -> None:
    for finding in supply_chain_findings(artifacts):
        assert finding.taxonomy.atlas == ("AML.T0010",)
        assert finding.taxonomy.owasp == ("ML06:2023",)
        assert finding.check == "supplychain"


def test_clean_unsigned_artifacts_without_advisories(artifacts: Path) -> None:
    found = _by_id(supply_chain_findings(artifacts))
    assert [f.severity for f in found["supplychain.scan"]] == [Severity.INFO]
    assert found["supplychain.signature"][0].title == "Artifacts are not signed"
    assert found["supplychain.signature"][0].severity is Severity.MEDIUM
    assert found["supplychain.deps"][0].title == "Dependency audit skipped"


def test_a_dangerous_file_becomes_a_finding_of_its_severity(artifacts: Path) -> None:
    (artifacts / "old.pkl").write_bytes(EVIL)
    scan = _by_id(supply_chain_findings(artifacts))["supplychain.scan"]
    assert [f.severity for f in scan] == [Severity.CRITICAL]
    assert "os.system" in scan[0].summary


def test_signature_status_is_verified_unverified_or_failed(tmp_path: Path, artifacts: Path) -> None:
    keys = generate_keypair(tmp_path / "keys")
    sign_model(artifacts, private_key=keys.private_key)

    def status(**kwargs: object) -> tuple[str, Severity]:
        finding = _by_id(supply_chain_findings(artifacts, **kwargs))["supplychain.signature"][0]
        return finding.title, finding.severity

    assert status() == ("Signature present but not verified", Severity.LOW)
    assert status(public_key=keys.public_key) == ("Signature verified", Severity.INFO)
    (artifacts / "extra.txt").write_text("x")
    assert status(public_key=keys.public_key) == ("Signature does not verify", Severity.HIGH)


def test_pinned_requirements_beside_the_artifacts_are_audited(
    tmp_path: Path, artifacts: Path
) -> None:
    db = tmp_path / "osv"
    db.mkdir()
    advisory = {
        "id": "PYSEC-2099-7",
        "modified": "2024-01-01T00:00:00Z",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "demo-lib"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2"}]}],
            }
        ],
        "database_specific": {"severity": "CRITICAL"},
    }
    (db / "a.json").write_text(json.dumps(advisory))
    (artifacts / "requirements.txt").write_text("demo-lib==1.0\n")
    deps = _by_id(supply_chain_findings(artifacts, advisories=db))["supplychain.deps"]
    assert [(f.title, f.severity) for f in deps] == [
        ("Vulnerable dependency: demo-lib 1.0", Severity.CRITICAL)
    ]
    assert "Upgrade demo-lib (>=2)" in deps[0].recommendation
