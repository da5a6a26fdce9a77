"""SARIF 2.1.0 logs for the artifact scan and the dependency audit.

Same conventions as the assessment report (:mod:`mlwarden.report.writers`): one rule per rule
id with ``security-severity`` and taxonomy tags, ``level`` from the finding's severity, and
every rule tagged with MITRE ATLAS AML.T0010 and OWASP ML06:2023 (supply chain).
"""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any

from mlwarden import __version__
from mlwarden.report.findings import Severity
from mlwarden.report.sarif import SARIF_LEVEL, SECURITY_SEVERITY, sarif_log, write_sarif_document
from mlwarden.report.taxonomy import ATLAS, OWASP_ML
from mlwarden.supplychain.deps import AuditReport
from mlwarden.supplychain.scan.results import ScanReport

__all__ = ["RULES", "audit_to_sarif", "scan_to_sarif", "write_sarif"]

_TAGS = ["security", "machine-learning", "supply-chain", "AML.T0010", "ML06:2023"]
_HELP_URI = ATLAS["AML.T0010"].url
_DO_NOT_LOAD = (
    "Do not load this file. Get the model from a trusted source in a format that cannot run code "
    "(safetensors, ONNX, torch.export .pt2, skops), or load tensors only with "
    "torch.load(weights_only=True)."
)

RULES: dict[str, tuple[str, str]] = {
    "pickle.dangerous-global": ("Pickle imports a dangerous callable", _DO_NOT_LOAD),
    "pickle.unlisted-global": (
        "Pickle imports a callable outside the allow-list",
        "Check what the named callable does before loading; prefer a data-only format.",
    ),
    "pickle.computed-global": ("Pickle computes the name of what it imports", _DO_NOT_LOAD),
    "pickle.extension-global": ("Pickle imports through the copyreg registry", _DO_NOT_LOAD),
    "pickle.indirect-call": ("Pickle calls the result of another call", _DO_NOT_LOAD),
    "pickle.global-mutation": ("Pickle patches an imported object", _DO_NOT_LOAD),
    "pickle.malformed": (
        "Pickle cannot be fully analysed",
        "A loader runs the opcodes before the damage; treat the file as untrusted.",
    ),
    "pickle.nesting-too-deep": ("Pickles nested too deeply to scan", _DO_NOT_LOAD),
    "archive.malformed": (
        "Archive cannot be read",
        "Re-download the artifact; a loader may read what the scanner could not.",
    ),
    "numpy.malformed": ("Invalid NumPy array header", "Re-export the array with numpy.save."),
    "safetensors.malformed": (
        "Invalid safetensors header",
        "Re-export with safetensors; a lying header can crash or confuse loaders.",
    ),
    "onnx.malformed": ("Invalid ONNX model", "Re-export the model with onnx.save."),
    "onnx.external-data-path": (
        "ONNX external data outside the model folder",
        "Refuse the model: its external-data paths traverse out of its folder.",
    ),
    "onnx.custom-domain": (
        "ONNX model needs custom operators",
        "Load only custom-operator libraries you trust.",
    ),
    "keras.lambda-layer": (
        "Keras Lambda layer with serialized bytecode",
        "Rebuild Lambda layers from source code; load with safe_mode=True.",
    ),
    "keras.custom-object": (
        "Keras model imports a custom class",
        "Review the custom class's module before loading.",
    ),
    "keras.malformed": ("Invalid Keras configuration", "Re-export the model."),
    "skops.untrusted-type": (
        "skops file needs untrusted types",
        "Trust only types you have reviewed (skops.io.load(trusted=[...])).",
    ),
    "skops.malformed": ("Invalid skops file", "Re-export with skops.io.dump."),
    "torch-export.unsafe-content": ("torch.export archive holds code", _DO_NOT_LOAD),
    "torch-export.malformed": ("Invalid torch.export archive", "Re-export with torch.export."),
}


def _uri(path: str) -> str:
    pure = PurePath(path)
    if pure.is_absolute():
        return Path(path).as_uri()
    return pure.as_posix()


def _rule(rule_id: str, title: str, help_text: str, severity: Severity) -> dict[str, Any]:
    return {
        "id": rule_id,
        "name": title,
        "shortDescription": {"text": title},
        "help": {"text": help_text},
        "helpUri": _HELP_URI,
        "properties": {"tags": _TAGS, "security-severity": SECURITY_SEVERITY[severity]},
    }


def _log(rules: dict[str, dict[str, Any]], results: list[dict[str, Any]], **props: Any) -> dict:
    taxonomy = {"atlas": [ATLAS["AML.T0010"].id], "owasp": [OWASP_ML["ML06:2023"].id]}
    return sarif_log(
        rules, results, version=__version__, properties={"taxonomy": taxonomy, **props}
    )


def scan_to_sarif(report: ScanReport) -> dict[str, Any]:
    """The scan as a SARIF 2.1.0 log: one result per issue, located in the outer file."""
    rules: dict[str, dict[str, Any]] = {}
    results = []
    for issue in report.issues:
        title, help_text = RULES.get(issue.rule, (issue.rule, _DO_NOT_LOAD))
        rule = rules.setdefault(issue.rule, _rule(issue.rule, title, help_text, issue.severity))
        # a rule's security-severity is its most severe result's
        if float(rule["properties"]["security-severity"]) < float(
            SECURITY_SEVERITY[issue.severity]
        ):
            rule["properties"]["security-severity"] = SECURITY_SEVERITY[issue.severity]
        outer = issue.path.split("!", 1)[0].split("#", 1)[0]
        location: dict[str, Any] = {
            "physicalLocation": {"artifactLocation": {"uri": _uri(outer)}},
        }
        if issue.path != outer:
            location["logicalLocations"] = [{"fullyQualifiedName": issue.path, "kind": "member"}]
        elif issue.offset is not None:
            location["physicalLocation"]["region"] = {"byteOffset": issue.offset, "byteLength": 1}
        results.append(
            {
                "ruleId": issue.rule,
                "level": SARIF_LEVEL[issue.severity],
                "message": {"text": f"{issue.path}: {issue.message}"},
                "locations": [location],
                "properties": {
                    "severity": issue.severity.value,
                    "offset": issue.offset,
                    "details": issue.details,
                },
            }
        )
    return _log(
        rules,
        results,
        files_scanned=len(report.files),
        bytes_scanned=report.bytes_scanned,
        unscanned=[f.path for f in report.files if not f.scanned],
    )


def audit_to_sarif(report: AuditReport) -> dict[str, Any]:
    """The dependency audit as a SARIF 2.1.0 log: one rule per advisory."""
    rules: dict[str, dict[str, Any]] = {}
    results = []
    for vuln in report.vulnerabilities:
        title = vuln.summary or vuln.id
        rule = _rule(
            vuln.id,
            title,
            f"Upgrade {vuln.package.name} to {vuln.fix}.",
            vuln.severity,
        )
        rule["helpUri"] = f"https://osv.dev/vulnerability/{vuln.id}"
        rules.setdefault(vuln.id, rule)
        source = vuln.package.source
        location: dict[str, Any] = {
            "logicalLocations": [{"name": vuln.package.name, "kind": "package"}]
        }
        file, _, line = source.rpartition(":")
        if file and line.isdigit():
            location["physicalLocation"] = {
                "artifactLocation": {"uri": _uri(file)},
                "region": {"startLine": int(line)},
            }
        results.append(
            {
                "ruleId": vuln.id,
                "level": SARIF_LEVEL[vuln.severity],
                "message": {
                    "text": f"{vuln.package.name} {vuln.package.version} is affected by {vuln.id}"
                    f" ({title}); fixed in: {vuln.fix}"
                },
                "locations": [location],
                "properties": vuln.to_dict(),
            }
        )
    return _log(rules, results, database=report.database, packages=len(report.packages))


write_sarif = write_sarif_document
"""Write a SARIF document atomically."""
