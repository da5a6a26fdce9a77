"""Retention: find datasets past their data card's retention period; delete or quarantine them.

Every deletion is a ``delete`` run in the lineage (the dataset's digests → nothing), an entry in
the hash-chained audit log, and a list of the models trained on the deleted data (their owners
decide whether to retrain: a model is not deleted with its data) and of the registered datasets
derived from it (a derived copy keeps its own card and retention clock: its owner decides whether
it goes too).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from mlwarden.errors import ConfigError
from mlwarden.governance.lineage import build_graph
from mlwarden.governance.registry import Artifact, Registry

__all__ = ["Expired", "apply_retention", "expired_datasets"]


@dataclass(frozen=True)
class Expired:
    """One expired dataset, what happened to it, the models trained on it and its derived data."""

    dataset: Artifact
    expired_at: float
    models: tuple[str, ...]
    action: str  # "would delete", "deleted", "quarantined"
    where: str = ""
    derived: tuple[str, ...] = ()  # active registered datasets derived from it


def expired_datasets(registry: Registry, *, now: float | None = None) -> list[Expired]:
    """Active datasets whose retention period has ended (nothing is changed)."""
    now = time.time() if now is None else now
    found = []
    graph = None
    for artifact in registry.list("dataset"):
        end = artifact.expires_at()
        if artifact.status == "active" and end is not None and end <= now:
            graph = graph or build_graph(registry)
            downstream = graph.descendants(artifact)
            models = tuple(a.name for a in downstream if a.kind == "model")
            derived = tuple(
                a.name for a in downstream if a.kind == "dataset" and a.status == "active"
            )
            found.append(Expired(artifact, end, models, "would delete", derived=derived))
    return found


def apply_retention(
    registry: Registry, *, now: float | None = None, quarantine: str | Path | None = None
) -> list[Expired]:
    """Delete (or move into ``quarantine``) every expired dataset and record it.

    Raises
    ------
    ConfigError
        ``quarantine`` is inside a dataset being removed.
    """
    done = []
    for item in expired_datasets(registry, now=now):
        artifact = item.dataset
        path = Path(artifact.path)
        where = ""
        if quarantine is not None:
            target_dir = Path(quarantine).resolve()
            if target_dir.is_relative_to(path):
                raise ConfigError(f"--quarantine {quarantine} lies inside {path}")
            target_dir.mkdir(parents=True, exist_ok=True)
            target = target_dir / f"{artifact.name}-{artifact.file_sha256[:12]}{path.suffix}"
            if path.exists():
                shutil.move(str(path), str(target))
            where, status = str(target), "quarantined"
        else:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            status = "deleted"
        registry.record_run(
            "delete", artifact.digests, [], f"mlwarden governance retention --apply ({status})"
        )
        registry.set_status(artifact.name, status, where or None)
        registry.audit_event(
            "operator", artifact.name, "retention", "allow", f"{status}:{len(item.models)}models"
        )
        done.append(
            Expired(artifact, item.expired_at, item.models, status, where, derived=item.derived)
        )
    return done
