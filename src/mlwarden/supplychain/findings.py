"""The supply-chain section of an assessment: scan, signature status and dependency findings."""

from __future__ import annotations

import os
from pathlib import Path

from mlwarden.errors import SignatureError
from mlwarden.report.findings import Finding, Severity
from mlwarden.report.taxonomy import Taxonomy
from mlwarden.supplychain.scan import scan_paths

__all__ = ["SUPPLY_CHAIN_TAXONOMY", "supply_chain_findings"]

SUPPLY_CHAIN_TAXONOMY = Taxonomy(atlas=("AML.T0010",), owasp=("ML06:2023",), nist=("MAP 4.1",))
"""MITRE ATLAS AI Supply Chain Compromise, OWASP ML06:2023 AI Supply Chain Attacks."""


def supply_chain_findings(
    artifacts: str | os.PathLike[str],
    *,
    public_key: str | os.PathLike[str] | None = None,
    advisories: str | os.PathLike[str] | None = None,
    requirements: str | os.PathLike[str] | None = None,
) -> list[Finding]:
    """Scan, signature and dependency findings for a folder (or file) of model artifacts.

    Parameters
    ----------
    artifacts
        The folder a model ships in (or one file).
    public_key
        Verify the folder's signature (``model.sig``) with this key; without it the signature is
        only reported as present.
    advisories
        A local OSV advisory folder or zip; without it the dependency audit is skipped.
    requirements
        A pinned requirements file to audit; default ``ARTIFACTS/requirements.txt`` when it
        exists, else the running environment.

    Returns
    -------
    list[Finding]
        Mapped to ATLAS AML.T0010 and OWASP ML06:2023.
    """
    root = Path(artifacts)
    findings = _scan_findings(root)
    findings.append(_signature_finding(root, public_key))
    findings.extend(_dependency_findings(root, advisories, requirements))
    return findings


def _finding(
    check: str,
    title: str,
    summary: str,
    severity: Severity,
    recommendation: str,
    metrics: dict[str, float] | None = None,
    details: dict[str, object] | None = None,
) -> Finding:
    return Finding(
        id=f"supplychain.{check}",
        check="supplychain",
        title=title,
        summary=summary,
        severity=severity,
        metrics=metrics or {},
        taxonomy=SUPPLY_CHAIN_TAXONOMY,
        recommendation=recommendation,
        details=dict(details or {}),
    )


def _scan_findings(root: Path) -> list[Finding]:
    report = scan_paths([root])
    metrics = {"files_scanned": float(len(report.files)), "issues": float(len(report.issues))}
    flagged = [f for f in report.files if f.issues]
    if not flagged:
        safe = sum(f.safe_by_construction for f in report.files)
        return [
            _finding(
                "scan",
                "Serialized artifacts scanned",
                f"{len(report.files)} artifact(s) under {root} scanned; none imports code that "
                f"would run when loaded ({safe} in formats that cannot run code).",
                Severity.INFO,
                "Keep scanning every artifact before it is loaded or deployed.",
                metrics,
            )
        ]
    findings = []
    for record in flagged:
        worst = record.max_severity or Severity.INFO
        top = sorted(record.issues, key=lambda i: -i.severity.rank)[:3]
        summary = "; ".join(f"{i.path}: {i.message}" for i in top)
        more = len(record.issues) - len(top)
        findings.append(
            _finding(
                "scan",
                f"Unsafe serialized artifact: {record.path}",
                summary + (f"; and {more} more" if more > 0 else ""),
                worst,
                "Do not load it; obtain the model in a format that cannot run code (safetensors, "
                "ONNX, torch.export, skops) from a trusted, signed source.",
                {**metrics, "file_issues": float(len(record.issues))},
                {"file": record.to_dict()},
            )
        )
    return findings


def _signature_finding(root: Path, public_key: str | os.PathLike[str] | None) -> Finding:
    from mlwarden.supplychain.signing import default_signature_path, verify_model

    signature = default_signature_path(root)
    sign_hint = f"Sign the artifacts with `mlwarden sign {root} --key KEY` and verify before use."
    if not signature.is_file():
        return _finding(
            "signature",
            "Artifacts are not signed",
            f"No signature at {signature}, so tampering with the model files cannot be detected.",
            Severity.MEDIUM,
            sign_hint,
            {"signed": 0.0},
        )
    if public_key is None:
        return _finding(
            "signature",
            "Signature present but not verified",
            f"{signature} exists but no public key was given to verify it.",
            Severity.LOW,
            "Pass --require-signature PUB to verify the artifacts' signature.",
            {"signed": 1.0, "verified": 0.0},
        )
    try:
        result = verify_model(root, public_key=public_key, signature=signature)
    except SignatureError as exc:
        return _finding(
            "signature",
            "Signature does not verify",
            str(exc),
            Severity.HIGH,
            "Do not deploy these artifacts; get them again from the signer.",
            {"signed": 1.0, "verified": 0.0},
        )
    return _finding(
        "signature",
        "Signature verified",
        f"All {len(result.files)} signed file(s) under {root} match the signature of "
        f"{result.signer}.",
        Severity.INFO,
        "Keep verifying before every load and deployment.",
        {"signed": 1.0, "verified": 1.0, "signed_files": float(len(result.files))},
    )


def _dependency_findings(
    root: Path,
    advisories: str | os.PathLike[str] | None,
    requirements: str | os.PathLike[str] | None,
) -> list[Finding]:
    from mlwarden.supplychain.deps import (
        LocalOsvDatabase,
        audit,
        installed_packages,
        read_requirements,
    )

    if advisories is None:
        return [
            _finding(
                "deps",
                "Dependency audit skipped",
                "No advisory database was given, so dependencies were not checked for known "
                "vulnerabilities.",
                Severity.INFO,
                "Pass --advisories DIR (a local OSV export) to audit dependencies.",
            )
        ]
    candidate = Path(requirements) if requirements else root / "requirements.txt"
    if candidate.is_file():
        packages, unpinned = read_requirements(candidate)
        where = str(candidate)
    else:
        packages, unpinned, where = installed_packages(), [], "the running environment"
    report = audit(packages, LocalOsvDatabase(advisories), unpinned=unpinned)
    metrics = {
        "packages": float(len(report.packages)),
        "vulnerabilities": float(len(report.vulnerabilities)),
    }
    if not report.vulnerabilities:
        return [
            _finding(
                "deps",
                "No known vulnerable dependencies",
                f"{len(report.packages)} package(s) from {where} match no advisory of "
                f"{report.database}."
                + (f" {len(unpinned)} unpinned requirement(s) not audited." if unpinned else ""),
                Severity.INFO,
                "Refresh the advisory database regularly.",
                metrics,
            )
        ]
    findings = []
    by_package: dict[str, list] = {}
    for vuln in report.vulnerabilities:
        by_package.setdefault(vuln.package.key, []).append(vuln)
    for vulns in by_package.values():
        package = vulns[0].package
        worst = max((v.severity for v in vulns), key=lambda s: s.rank)
        fixes = sorted({v.fix for v in vulns})
        findings.append(
            _finding(
                "deps",
                f"Vulnerable dependency: {package.name} {package.version}",
                f"{package.name} {package.version} ({package.source}) is affected by "
                f"{', '.join(v.id for v in vulns)}.",
                worst,
                f"Upgrade {package.name} ({'; '.join(fixes)}).",
                {**metrics, "advisories": float(len(vulns))},
                {"vulnerabilities": [v.to_dict() for v in vulns]},
            )
        )
    return findings
