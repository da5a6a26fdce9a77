"""Audited access to registered training data: the gateway's keys and roles, the dataset's grants.

:func:`open_dataset` authenticates the key with :class:`mlwarden.serve.keys.KeyStore`, checks the
key's role against the dataset's grant (least privilege: no grant, no access), re-hashes the data
so a reader never gets bytes other than those registered, and appends the decision, allowed or
denied, to the gateway's hash-chained audit log before returning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlwarden.errors import DataError, MlwardenError
from mlwarden.governance.registry import ACCESS_LEVELS, Artifact, Registry, file_sha256
from mlwarden.serve.keys import AuthFailure, KeyStore

__all__ = ["AccessDeniedError", "DatasetHandle", "open_dataset"]


class AccessDeniedError(MlwardenError, PermissionError):
    """A key may not access a dataset (bad key, or its role lacks the grant); the refusal is audited."""


@dataclass(frozen=True)
class DatasetHandle:
    """A dataset a key was allowed to open: its registry record and verified path."""

    artifact: Artifact
    key_id: str
    role: str
    audit_seq: int

    @property
    def path(self) -> Path:
        """Where the data is (its digest was checked when it was opened)."""
        return Path(self.artifact.path)


def open_dataset(
    name: str, *, key: str | None, registry: Registry, level: str = "read"
) -> DatasetHandle:
    """Check ``key``'s grant on dataset ``name``, audit the decision, and return the data's handle.

    Parameters
    ----------
    name
        A registered dataset.
    key
        The gateway API key (``mlw_<id>_<secret>``) of the caller.
    registry
        The registry (whose database holds the keys and the audit log).
    level
        ``read``, ``write`` or ``admin``.

    Raises
    ------
    AccessDeniedError
        The key is missing, unknown, revoked or expired, or its role lacks the grant.
    DataError
        The dataset was deleted or quarantined, or its bytes no longer match the registered
        digest (the refusal is audited too).
    """
    if level not in ACCESS_LEVELS:
        raise DataError(f"level {level!r} must be one of {', '.join(ACCESS_LEVELS)}")
    artifact = registry.get(name)
    action = f"data-{level}"
    try:
        record = KeyStore(registry.db).authenticate(key)
    except AuthFailure as failure:
        registry.audit_event(failure.key_id, name, action, "deny", failure.reason)
        raise AccessDeniedError(f"access to {name!r} refused: {failure.reason}") from None
    if artifact.kind != "dataset" or not registry.allows(name, record.role, level):
        registry.audit_event(record.key_id, name, action, "deny", f"no_grant:{record.role}")
        raise AccessDeniedError(
            f"access to {name!r} refused: role {record.role!r} has no {level} grant on it "
            f"(an admin runs: mlwarden governance grant {name} --role {record.role} --level {level})"
        )
    if artifact.status != "active":
        registry.audit_event(record.key_id, name, action, "deny", artifact.status)
        raise DataError(f"dataset {name!r} is {artifact.status} (retention)")
    try:
        current = file_sha256(artifact.path)
    except DataError:
        current = "missing"
    if current != artifact.file_sha256:
        registry.audit_event(record.key_id, name, action, "deny", "digest_mismatch")
        raise DataError(
            f"dataset {name!r} at {artifact.path} no longer matches its registered digest "
            "(run mlwarden governance lineage verify)"
        )
    seq = registry.audit_event(record.key_id, name, action, "allow", f"role:{record.role}")
    return DatasetHandle(artifact, record.key_id, record.role, seq)
