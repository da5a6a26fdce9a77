"""Evidence that a control is in place, found on disk rather than claimed.

Each kind of evidence is looked for where the mlwarden command that produces it puts it:

* ``signature``: ``mlwarden sign`` wrote the signature at
  :func:`~mlwarden.supplychain.signing.default_signature_path` of every model the threat model
  gives a path for, and, for a model with a ``public_key``, it verifies with that key
  (:func:`~mlwarden.supplychain.signing.verify_model`: a changed file, another signer or a
  damaged signature is not evidence, and the detail says which);
* ``dp-record``: ``mlwarden harden dp`` recorded a :class:`~mlwarden.defenses.training.PrivacyRecord`
  in a model's sidecar (``training.privacy``);
* ``gateway-quota``, ``gateway-rounding``, ``gateway-roles``, ``gateway-monitor``,
  ``gateway-detectors``, ``gateway-scan``: the threat model's ``deployment.gateway_config``
  validates (:func:`~mlwarden.serve.config.load_gateway_config`) and sets a daily quota; rounds
  (or hides) every model's probabilities; defines roles; enables the monitor; runs a detector;
  scans models before loading;
* ``passing-assessment``: the latest ``report.json`` of the system has gates and passes them all;
  ``assessment-poisoning``: that report also inspected the training data.

Without a ``public_key`` in the threat model a signature can only be seen, not verified: it
still counts, and its detail says "not verified" so a reader knows what "done" rests on.
Everything else is checked by presence and validity of the file that records it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlwarden.errors import MlwardenError
from mlwarden.program.threat_model import ThreatModel
from mlwarden.serve.config import load_gateway_config
from mlwarden.supplychain.signing import default_signature_path, verify_model

__all__ = ["EVIDENCE_KINDS", "Evidence", "collect_evidence"]

EVIDENCE_KINDS: tuple[str, ...] = (
    "signature",
    "dp-record",
    "gateway-quota",
    "gateway-rounding",
    "gateway-roles",
    "gateway-monitor",
    "gateway-detectors",
    "gateway-scan",
    "passing-assessment",
    "assessment-poisoning",
)
_SIDECAR_SUFFIX = ".mlwarden.json"  # mlwarden.models.loading.SIDECAR_SUFFIX


@dataclass(frozen=True)
class Evidence:
    """Whether one kind of evidence was found, and what was (or was not) seen."""

    kind: str
    found: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {"kind": self.kind, "found": self.found, "detail": self.detail}


def _models(tm: ThreatModel, base_dir: Path) -> list[tuple[Path, Path | None]]:
    """Each model path with its public key, both resolved against ``base_dir``."""

    def resolve(text: str) -> Path:
        path = Path(text)
        return path if path.is_absolute() else base_dir / path

    return [
        (resolve(m.path), resolve(m.public_key) if m.public_key else None)
        for m in tm.models
        if m.path
    ]


def _signatures(models: list[tuple[Path, Path | None]]) -> Evidence:
    if not models:
        return Evidence("signature", False, "the threat model gives no model path")
    unsigned = [p for p, _ in models if not default_signature_path(p).is_file()]
    if unsigned:
        return Evidence("signature", False, "no signature for " + ", ".join(map(str, unsigned)))
    details = []
    for path, key in models:
        if key is None:
            details.append(f"{default_signature_path(path)} (present, not verified: no public_key)")
            continue
        try:
            verified = verify_model(path, public_key=key)
        except MlwardenError as exc:
            first = str(exc).splitlines()[0]
            return Evidence("signature", False, f"{path.name}: signature does not verify: {first}")
        details.append(f"{path.name} verified, signed by {verified.signer}")
    return Evidence("signature", True, "; ".join(details))


def _dp_record(paths: list[Path]) -> Evidence:
    for path in paths:
        sidecar = Path(str(path) + _SIDECAR_SUFFIX)
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        training = meta.get("training") if isinstance(meta, dict) else None
        privacy = training.get("privacy") if isinstance(training, dict) else None
        if isinstance(privacy, dict) and "epsilon" in privacy and "delta" in privacy:
            return Evidence(
                "dp-record",
                True,
                f"{sidecar.name}: (ε={privacy['epsilon']}, δ={privacy['delta']})-DP",
            )
    return Evidence("dp-record", False, "no model sidecar records a DP privacy guarantee")


def _gateway(tm: ThreatModel, base_dir: Path) -> list[Evidence]:
    kinds = [k for k in EVIDENCE_KINDS if k.startswith("gateway-")]
    if tm.deployment.gateway_config is None:
        return [Evidence(k, False, "the threat model names no gateway config") for k in kinds]
    path = Path(tm.deployment.gateway_config)
    path = path if path.is_absolute() else base_dir / path
    try:
        config = load_gateway_config(path)
    except MlwardenError as exc:
        first = str(exc).splitlines()[0]
        return [Evidence(k, False, f"gateway config unusable: {first}") for k in kinds]
    quota = config.rate_limits.daily_quota
    unrounded = [
        name
        for name, model in config.models.items()
        if model.output.mode != "label" and model.output.decimals is None
    ]
    with_detectors = [name for name, model in config.models.items() if model.detectors]
    return [
        Evidence(
            "gateway-quota",
            quota > 0,
            f"{path.name}: daily_quota {quota}, per key and model "
            + ", ".join(config.rate_limits.per_key_model),
        ),
        Evidence(
            "gateway-rounding",
            not unrounded,
            f"{path.name}: full-precision outputs for " + ", ".join(unrounded)
            if unrounded
            else f"{path.name}: every model's outputs are rounded or reduced to labels",
        ),
        Evidence(
            "gateway-roles",
            bool(config.roles),
            f"{path.name}: roles " + (", ".join(sorted(config.roles)) or "none"),
        ),
        Evidence(
            "gateway-monitor",
            config.monitor.enabled,
            f"{path.name}: audit log on; monitor {'on' if config.monitor.enabled else 'off'}",
        ),
        Evidence(
            "gateway-detectors",
            bool(with_detectors),
            f"{path.name}: detectors on " + (", ".join(with_detectors) or "no model"),
        ),
        Evidence(
            "gateway-scan",
            config.scan_models,
            f"{path.name}: scan_models {str(config.scan_models).lower()}",
        ),
    ]


def _assessment(report: dict[str, Any] | None) -> list[Evidence]:
    if report is None:
        detail = "no assessment recorded"
        return [
            Evidence("passing-assessment", False, detail),
            Evidence("assessment-poisoning", False, detail),
        ]
    gates = report.get("gates") or []
    passed = bool(gates) and bool(report.get("summary", {}).get("passed"))
    when = report.get("created_at", "?")
    if not gates:
        detail = f"assessment of {when} has no gates"
    else:
        failed = [g.get("metric", "?") for g in gates if not g.get("passed")]
        detail = (
            f"assessment of {when}: {len(gates)} gate(s) pass"
            if passed
            else f"assessment of {when} fails " + ", ".join(failed)
        )
    poisoning = "poisoning" in (report.get("sections") or {})
    return [
        Evidence("passing-assessment", passed, detail),
        Evidence(
            "assessment-poisoning",
            passed and poisoning,
            detail
            + ("; training data inspected" if poisoning else "; training data not inspected"),
        ),
    ]


def collect_evidence(
    tm: ThreatModel, *, base_dir: str | Path, report: dict[str, Any] | None = None
) -> dict[str, Evidence]:
    """Look for every kind of evidence for the system ``tm`` describes.

    Parameters
    ----------
    tm
        The threat model; its model paths and gateway config are resolved against ``base_dir``.
    base_dir
        The threat model file's folder.
    report
        The system's latest ``report.json`` (parsed), or ``None`` when it was never assessed.

    Returns
    -------
    dict
        :data:`EVIDENCE_KINDS` → :class:`Evidence`.
    """
    base = Path(base_dir)
    models = _models(tm, base)
    paths = [path for path, _ in models]
    found = [_signatures(models), _dp_record(paths), *_gateway(tm, base), *_assessment(report)]
    return {e.kind: e for e in found}
