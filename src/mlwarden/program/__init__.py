"""The ML security programme: threat models, risk-ranked controls, inventory and history.

* :mod:`~mlwarden.program.threat_model`: the YAML a team fills in (strict pydantic schema);
* :mod:`~mlwarden.program.risk`: ATLAS threats, likelihood × impact scores, the control plan;
* :mod:`~mlwarden.program.evidence`: signatures, gateway settings, DP records, passing reports;
* :mod:`~mlwarden.program.inventory`: systems and assessment history in the registry database;
* :mod:`~mlwarden.program.report`: HTML and JSON by NIST AI RMF function;
* :mod:`~mlwarden.program.sweep`: every due system assessed on Dask distributed (``program run``).
"""

from __future__ import annotations

from mlwarden.program.atlas import Atlas, load_atlas
from mlwarden.program.evidence import Evidence, collect_evidence
from mlwarden.program.inventory import AssessmentRun, Inventory, System, SystemStatus
from mlwarden.program.report import write_program_report
from mlwarden.program.risk import Control, RiskAssessment, Threat, assess_risk
from mlwarden.program.sweep import AssessmentTask, SweepResult, dask_client, run_sweep
from mlwarden.program.threat_model import (
    AssessmentPlan,
    ThreatModel,
    load_threat_model,
    template,
)

__all__ = [
    "AssessmentPlan",
    "AssessmentRun",
    "AssessmentTask",
    "Atlas",
    "Control",
    "Evidence",
    "Inventory",
    "RiskAssessment",
    "SweepResult",
    "System",
    "SystemStatus",
    "Threat",
    "ThreatModel",
    "assess_risk",
    "collect_evidence",
    "dask_client",
    "load_atlas",
    "load_threat_model",
    "run_sweep",
    "template",
    "write_program_report",
]
