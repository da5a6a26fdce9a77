"""Data governance: a registry of datasets (with data cards) and models, lineage between them,
audited access to training data, and retention.

One concept per module: :mod:`~mlwarden.governance.card` (data cards),
:mod:`~mlwarden.governance.registry` (artefacts, runs and grants in the gateway's database),
:mod:`~mlwarden.governance.lineage` (the graph, its drawing and ``verify``),
:mod:`~mlwarden.governance.openlineage_export` (the graph as OpenLineage events),
:mod:`~mlwarden.governance.access` (:func:`open_dataset`), :mod:`~mlwarden.governance.retention`.
Keys, roles and the hash-chained audit log are the gateway's own (:mod:`mlwarden.serve.keys`,
:mod:`mlwarden.serve.audit`): governance adds tables beside them, not a second copy.
"""

from __future__ import annotations

from mlwarden.governance.access import AccessDeniedError, DatasetHandle, open_dataset
from mlwarden.governance.card import DataCard, Sensitivity, load_card
from mlwarden.governance.lineage import build_graph, models_trained_on, verify
from mlwarden.governance.openlineage_export import export_openlineage
from mlwarden.governance.registry import Artifact, Registry, Run, file_sha256
from mlwarden.governance.retention import apply_retention, expired_datasets

__all__ = [
    "AccessDeniedError",
    "Artifact",
    "DataCard",
    "DatasetHandle",
    "Registry",
    "Run",
    "Sensitivity",
    "apply_retention",
    "build_graph",
    "expired_datasets",
    "export_openlineage",
    "file_sha256",
    "load_card",
    "models_trained_on",
    "open_dataset",
    "verify",
]
