"""The governance registry: datasets with data cards, models, transformations, grants, lineage.

It lives in the gateway's database (:class:`mlwarden.serve.db.Database`, one URI:
``sqlite:///path`` by default, ``postgresql://...`` for teams) beside the API keys and the
hash-chained audit log, so dataset grants use the gateway's keys and roles and every access is one
more entry in the same chain (``mlwarden audit verify`` covers it).

Lineage is a graph of *digests*: a run (a transformation, a training, a deletion) links input
digests to output digests, and artefacts (datasets and models) are named by their digests. A
dataset has two: ``file_sha256`` (the bytes on disk) and, when mlwarden can load it,
``data_sha256`` (:meth:`mlwarden.data.Dataset.digest`, what model sidecars record). So a model
whose sidecar names the training data's digest is linked to the registered dataset whichever was
registered first.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mlwarden.errors import ConfigError, DataError
from mlwarden.governance.card import DataCard
from mlwarden.serve.audit import AuditEntry, AuditLog
from mlwarden.serve.db import Database

__all__ = [
    "ACCESS_LEVELS",
    "Artifact",
    "Registry",
    "Run",
    "file_sha256",
    "sidecar_data_digests",
]

#: Grant levels, weakest first: a grant includes every level before it.
ACCESS_LEVELS: tuple[str, ...] = ("read", "write", "admin")
#: Sidecar keys whose values are digests of the data a model was trained or validated on.
_SIDECAR_DIGEST_KEYS = frozenset({"dataset_sha256", "validation_sha256"})
_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, or of a directory (every file's relative path and bytes, sorted).

    Raises
    ------
    DataError
        The path does not exist.
    """
    path = Path(path)
    h = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
        return h.hexdigest()
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(child.relative_to(path).as_posix().encode("utf-8") + b"\0")
            h.update(file_sha256(child).encode("ascii"))
        return h.hexdigest()
    raise DataError(f"{path}: no such file or directory")


def sidecar_data_digests(sidecar: dict[str, Any]) -> list[str]:
    """Every training/validation data digest a model sidecar records, nested ones included."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in _SIDECAR_DIGEST_KEYS and isinstance(value, str) and len(value) == 64:
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(sidecar)
    return list(dict.fromkeys(found))


@dataclass(frozen=True)
class Artifact:
    """A registered dataset or model."""

    name: str
    kind: str  # "dataset" or "model"
    path: str
    file_sha256: str
    data_sha256: str | None
    card: DataCard | None
    registered_at: float
    status: str  # "active", "deleted" or "quarantined"

    @property
    def digests(self) -> tuple[str, ...]:
        """The digests that name this artefact in the lineage graph."""
        return tuple(d for d in (self.file_sha256, self.data_sha256) if d)

    def expires_at(self) -> float | None:
        """When its retention period ends (``None``: never, or not a dataset)."""
        if self.card is None or self.card.retention_s is None:
            return None
        return self.registered_at + self.card.retention_s


@dataclass(frozen=True)
class Run:
    """One recorded step: inputs → outputs by digest, the command and its version."""

    run_id: str
    kind: str  # "transform", "train", "delete"
    command: str
    version: str
    started_at: float
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def _tables(prefix: str) -> tuple[sa.MetaData, sa.Table, sa.Table, sa.Table, sa.Table]:
    md = sa.MetaData()
    artifacts = sa.Table(
        f"{prefix}gov_artifacts",
        md,
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=False, index=True),
        sa.Column("data_sha256", sa.String(64), nullable=True, index=True),
        sa.Column("card", sa.Text, nullable=True),
        sa.Column("registered_at", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
    )
    runs = sa.Table(
        f"{prefix}gov_runs",
        md,
        sa.Column("run_id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
    )
    edges = sa.Table(
        f"{prefix}gov_edges",
        md,
        sa.Column("run_id", sa.String(36), nullable=False, index=True),
        sa.Column("direction", sa.String(8), nullable=False),  # "input" or "output"
        sa.Column("digest", sa.String(64), nullable=False, index=True),
        sa.PrimaryKeyConstraint("run_id", "direction", "digest"),
    )
    grants = sa.Table(
        f"{prefix}gov_grants",
        md,
        sa.Column("dataset", sa.String(128), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.PrimaryKeyConstraint("dataset", "role"),
    )
    return md, artifacts, runs, edges, grants


class Registry:
    """Register datasets, models and transformations; grant access; read the lineage graph.

    Parameters
    ----------
    url
        ``sqlite:///path`` or ``postgresql://...``: the gateway's database (its keys and audit
        log are the ones used for grants and access records).
    prefix
        The gateway's table prefix (``mlw_``); governance tables add ``gov_`` to it.
    """

    def __init__(self, url: str, *, prefix: str = "mlw_") -> None:
        self.db = Database(url, prefix=prefix)
        self.metadata, self.artifacts, self.runs, self.edges, self.grants = _tables(prefix)
        try:
            with self.db.writer.begin() as conn:
                if not self.db.is_sqlite:
                    conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(hashtext(:n))"),
                        {"n": self.artifacts.name},
                    )
                self.metadata.create_all(conn, checkfirst=True)
        except sa.exc.SQLAlchemyError as exc:
            raise ConfigError(f"database {self.db.safe_url}: {exc.__class__.__name__}") from exc
        self.audit = AuditLog(self.db, mode="inline")

    def close(self) -> None:
        """Release the database connections."""
        self.db.dispose()

    def drop(self) -> None:
        """Drop the governance tables (tests on a shared PostgreSQL clean up with it)."""
        self.metadata.drop_all(self.db.writer)

    # -- artefacts ------------------------------------------------------------------------
    def register_dataset(
        self,
        name: str,
        path: str | Path,
        card: DataCard,
        *,
        data_sha256: str | None = None,
        replace: bool = False,
    ) -> Artifact:
        """Register the file or directory ``path`` as dataset ``name`` with its data card.

        ``data_sha256`` is the :meth:`~mlwarden.data.Dataset.digest` of its loaded arrays, when
        known (it is what model sidecars record).

        Raises
        ------
        ConfigError
            The name is taken (and ``replace`` is false) or malformed.
        DataError
            The path does not exist.
        """
        return self._register(
            name, "dataset", path, card=card, data_sha256=data_sha256, replace=replace
        )

    def register_model(
        self,
        name: str,
        path: str | Path,
        sidecar: dict[str, Any],
        *,
        replace: bool = False,
        extra_inputs: Iterable[str] = (),
    ) -> tuple[Artifact, Run | None]:
        """Register a model and a ``train`` run from its sidecar's data digests to the model.

        ``extra_inputs`` are more digests it came from (the files a command read, a base model).
        """
        artifact = self._register(name, "model", path, card=None, data_sha256=None, replace=replace)
        digests = list(dict.fromkeys([*sidecar_data_digests(sidecar), *extra_inputs]))
        digests = [d for d in digests if d != artifact.file_sha256]
        run = None
        if digests:
            raw_training = sidecar.get("training")
            training: dict[str, Any] = raw_training if isinstance(raw_training, dict) else {}
            recipe = str(training.get("recipe") or sidecar.get("recipe") or "train")
            version = str(training.get("mlwarden_version") or sidecar.get("mlwarden_version") or "")
            run = self.record_run("train", digests, [artifact.file_sha256], recipe, version)
        return artifact, run

    def _register(
        self,
        name: str,
        kind: str,
        path: str | Path,
        *,
        card: DataCard | None,
        data_sha256: str | None,
        replace: bool,
    ) -> Artifact:
        if not name or len(name) > 128 or any(ord(c) < 33 for c in name):
            raise ConfigError(f"name {name!r} must be 1-128 printable characters without spaces")
        resolved = Path(path).resolve()
        artifact = Artifact(
            name=name,
            kind=kind,
            path=str(resolved),
            file_sha256=file_sha256(resolved),
            data_sha256=data_sha256,
            card=card,
            registered_at=time.time(),
            status="active",
        )
        row = {
            "name": name,
            "kind": kind,
            "path": artifact.path,
            "file_sha256": artifact.file_sha256,
            "data_sha256": data_sha256,
            "card": card.to_json() if card else None,
            "registered_at": artifact.registered_at,
            "status": "active",
        }
        with self.db.writer.begin() as conn:
            exists = conn.execute(
                sa.select(self.artifacts.c.name).where(self.artifacts.c.name == name)
            ).first()
            if exists and not replace:
                raise ConfigError(f"{name!r} is already registered (pass replace to re-register)")
            if exists:
                conn.execute(
                    self.artifacts.update().where(self.artifacts.c.name == name).values(row)
                )
            else:
                conn.execute(self.artifacts.insert().values(row))
        return artifact

    def get(self, name: str) -> Artifact:
        """The artefact named ``name``.

        Raises
        ------
        ConfigError
            Nothing is registered under that name.
        """
        with self.db.reader.connect() as conn:
            row = (
                conn.execute(sa.select(self.artifacts).where(self.artifacts.c.name == name))
                .mappings()
                .first()
            )
        if row is None:
            raise ConfigError(f"nothing is registered as {name!r} (see mlwarden governance list)")
        return _artifact(row)

    def list(self, kind: str | None = None) -> builtins.list[Artifact]:
        """Every artefact (of ``kind`` if given), oldest first."""
        query = sa.select(self.artifacts).order_by(self.artifacts.c.registered_at)
        if kind is not None:
            query = query.where(self.artifacts.c.kind == kind)
        with self.db.reader.connect() as conn:
            return [_artifact(r) for r in conn.execute(query).mappings().all()]

    def by_digest(self, digest: str) -> builtins.list[Artifact]:
        """Artefacts one of whose digests is ``digest``."""
        a = self.artifacts.c
        with self.db.reader.connect() as conn:
            rows = (
                conn.execute(
                    sa.select(self.artifacts).where(
                        sa.or_(a.file_sha256 == digest, a.data_sha256 == digest)
                    )
                )
                .mappings()
                .all()
            )
        return [_artifact(r) for r in rows]

    def set_status(self, name: str, status: str, path: str | None = None) -> None:
        """Mark an artefact ``deleted`` or ``quarantined`` (and where it now is)."""
        values: dict[str, Any] = {"status": status}
        if path is not None:
            values["path"] = path
        with self.db.writer.begin() as conn:
            conn.execute(
                self.artifacts.update().where(self.artifacts.c.name == name).values(values)
            )

    # -- runs and lineage -----------------------------------------------------------------
    def record_run(
        self,
        kind: str,
        inputs: Iterable[str],
        outputs: Iterable[str],
        command: str,
        version: str = "",
    ) -> Run:
        """Record one step from input digests to output digests."""
        run = Run(
            run_id=str(uuid.uuid4()),
            kind=kind,
            command=command,
            version=version[:64],
            started_at=time.time(),
            inputs=tuple(dict.fromkeys(inputs)),
            outputs=tuple(dict.fromkeys(outputs)),
        )
        with self.db.writer.begin() as conn:
            conn.execute(
                self.runs.insert().values(
                    run_id=run.run_id,
                    kind=kind,
                    command=command,
                    version=run.version,
                    started_at=run.started_at,
                )
            )
            edges = [{"run_id": run.run_id, "direction": "input", "digest": d} for d in run.inputs]
            edges += [
                {"run_id": run.run_id, "direction": "output", "digest": d} for d in run.outputs
            ]
            if edges:
                conn.execute(self.edges.insert(), edges)
        return run

    def record_transform(
        self, inputs: Iterable[str], outputs: Iterable[str], command: str, version: str
    ) -> Run:
        """Record a transformation between registered datasets (by name)."""
        ins = [self.get(n).file_sha256 for n in inputs]
        outs = [self.get(n).file_sha256 for n in outputs]
        if not ins or not outs:
            raise ConfigError("a transformation needs at least one input and one output dataset")
        return self.record_run("transform", ins, outs, command, version)

    def all_runs(self) -> builtins.list[Run]:
        """Every run, oldest first."""
        with self.db.reader.connect() as conn:
            runs = conn.execute(sa.select(self.runs).order_by(self.runs.c.started_at)).all()
            edges = conn.execute(sa.select(self.edges)).all()
        by_run: dict[str, dict[str, list[str]]] = {}
        for run_id, direction, digest in edges:
            by_run.setdefault(run_id, {"input": [], "output": []})[direction].append(digest)
        return [
            Run(
                r.run_id,
                r.kind,
                r.command,
                r.version,
                r.started_at,
                tuple(sorted(by_run.get(r.run_id, {}).get("input", []))),
                tuple(sorted(by_run.get(r.run_id, {}).get("output", []))),
            )
            for r in runs
        ]

    # -- grants ---------------------------------------------------------------------------
    def grant(self, dataset: str, role: str, level: str) -> None:
        """Give ``role`` ``read``, ``write`` or ``admin`` access to ``dataset`` (replacing any)."""
        if level not in ACCESS_LEVELS:
            raise ConfigError(f"level {level!r} must be one of {', '.join(ACCESS_LEVELS)}")
        if self.get(dataset).kind != "dataset":
            raise ConfigError(f"{dataset!r} is not a dataset")
        with self.db.writer.begin() as conn:
            conn.execute(
                self.grants.delete().where(
                    self.grants.c.dataset == dataset, self.grants.c.role == role
                )
            )
            conn.execute(self.grants.insert().values(dataset=dataset, role=role, level=level))
        self.audit_event("operator", dataset, "grant", "allow", f"{role}:{level}")

    def revoke_grant(self, dataset: str, role: str) -> None:
        """Remove ``role``'s grant on ``dataset``."""
        with self.db.writer.begin() as conn:
            conn.execute(
                self.grants.delete().where(
                    self.grants.c.dataset == dataset, self.grants.c.role == role
                )
            )
        self.audit_event("operator", dataset, "ungrant", "allow", role)

    def grants_of(self, dataset: str) -> dict[str, str]:
        """``role -> level`` for ``dataset``."""
        g = self.grants.c
        with self.db.reader.connect() as conn:
            rows = conn.execute(sa.select(g.role, g.level).where(g.dataset == dataset)).all()
        return {r[0]: r[1] for r in rows}

    def allows(self, dataset: str, role: str, level: str) -> bool:
        """Whether ``role``'s grant on ``dataset`` includes ``level`` (least privilege)."""
        held = self.grants_of(dataset).get(role)
        return held is not None and ACCESS_LEVELS.index(held) >= ACCESS_LEVELS.index(level)

    def audit_event(
        self, key_id: str, dataset: str, action: str, decision: str, reason: str
    ) -> int:
        """Append one governance event to the gateway's hash-chained audit log; its seq."""
        return self.audit.append(
            AuditEntry(
                request_id=f"gov-{uuid.uuid4().hex[:24]}",
                key_id=key_id,
                model=f"dataset:{dataset}",
                action=action,
                decision=decision,
                reason=reason,
                client_ip=f"pid:{os.getpid()}",
            )
        )


def _artifact(row: Any) -> Artifact:
    card = DataCard.model_validate(json.loads(row["card"])) if row["card"] else None
    return Artifact(
        name=row["name"],
        kind=row["kind"],
        path=row["path"],
        file_sha256=row["file_sha256"],
        data_sha256=row["data_sha256"],
        card=card,
        registered_at=float(row["registered_at"]),
        status=row["status"],
    )
