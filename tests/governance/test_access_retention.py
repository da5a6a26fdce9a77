"""Audited access to training data with the gateway's keys and roles, and retention."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlwarden.errors import ConfigError, DataError
from mlwarden.governance import (
    AccessDeniedError,
    Registry,
    apply_retention,
    expired_datasets,
    open_dataset,
)
from mlwarden.serve.keys import KeyStore

from .conftest import make_card

DAY = 86400.0


def _key(registry: Registry, role: str) -> str:
    return KeyStore(registry.db).create(role, name=f"{role} test")[1]


def _last(registry: Registry) -> dict[str, object]:
    return registry.audit.tail(1)[0]


def test_a_role_without_a_grant_is_refused_and_the_refusal_is_audited(
    registry: Registry, raw_csv: Path
) -> None:
    registry.register_dataset("raw", raw_csv, make_card())
    key = _key(registry, "analyst")
    with pytest.raises(AccessDeniedError, match="role 'analyst' has no read grant"):
        open_dataset("raw", key=key, registry=registry)
    entry = _last(registry)
    assert (entry["model"], entry["action"], entry["decision"]) == (
        "dataset:raw",
        "data-read",
        "deny",
    )
    assert entry["key_id"] == key.split("_")[1]
    assert registry.audit.verify().ok


def test_a_granted_role_reads_and_the_read_is_audited(registry: Registry, raw_csv: Path) -> None:
    registry.register_dataset("raw", raw_csv, make_card())
    registry.grant("raw", "trainer", "read")
    handle = open_dataset("raw", key=_key(registry, "trainer"), registry=registry)
    assert handle.path.read_bytes() == raw_csv.read_bytes()
    entry = _last(registry)
    assert (entry["decision"], entry["reason"], entry["seq"]) == (
        "allow",
        "role:trainer",
        handle.audit_seq,
    )
    assert registry.audit.verify().ok


def test_a_read_grant_does_not_allow_writing_but_admin_does(
    registry: Registry, raw_csv: Path
) -> None:
    registry.register_dataset("raw", raw_csv, make_card())
    registry.grant("raw", "trainer", "read")
    registry.grant("raw", "owner", "admin")
    with pytest.raises(AccessDeniedError):
        open_dataset("raw", key=_key(registry, "trainer"), registry=registry, level="write")
    assert open_dataset("raw", key=_key(registry, "owner"), registry=registry, level="write")


@pytest.mark.parametrize("key", [None, "not-a-key", "mlw_0123456789ab_" + "A" * 43])
def test_a_bad_key_is_refused_with_its_reason_audited(
    registry: Registry, raw_csv: Path, key: str | None
) -> None:
    registry.register_dataset("raw", raw_csv, make_card())
    registry.grant("raw", "trainer", "read")
    with pytest.raises(AccessDeniedError):
        open_dataset("raw", key=key, registry=registry)
    entry = _last(registry)
    assert entry["decision"] == "deny"
    assert entry["reason"] in {"missing_key", "malformed_key", "unknown_key"}


def test_a_revoked_key_loses_access_at_once(registry: Registry, raw_csv: Path) -> None:
    registry.register_dataset("raw", raw_csv, make_card())
    registry.grant("raw", "trainer", "read")
    store = KeyStore(registry.db)
    record, key = store.create("trainer")
    open_dataset("raw", key=key, registry=registry)
    store.revoke(record.key_id)
    with pytest.raises(AccessDeniedError, match="revoked_key"):
        open_dataset("raw", key=key, registry=registry)


def test_changed_bytes_are_never_handed_out(registry: Registry, raw_csv: Path) -> None:
    registry.register_dataset("raw", raw_csv, make_card())
    registry.grant("raw", "trainer", "read")
    raw_csv.write_text("tampered\n", encoding="utf-8")
    with pytest.raises(DataError, match="no longer matches"):
        open_dataset("raw", key=_key(registry, "trainer"), registry=registry)
    assert _last(registry)["reason"] == "digest_mismatch"


def test_an_edited_access_record_breaks_the_chain(registry: Registry, raw_csv: Path) -> None:
    registry.register_dataset("raw", raw_csv, make_card())
    with pytest.raises(AccessDeniedError):
        open_dataset("raw", key=_key(registry, "analyst"), registry=registry)
    table = registry.db.tables.audit
    with registry.db.writer.begin() as conn:
        conn.execute(table.update().where(table.c.decision == "deny").values(decision="allow"))
    assert not registry.audit.verify().ok


def test_retention_dry_run_lists_expired_data_and_changes_nothing(
    registry: Registry, raw_csv: Path, tmp_path: Path
) -> None:
    registry.register_dataset("raw", raw_csv, make_card(retention="30d"))
    registry.register_dataset("keep", raw_csv, make_card(retention="forever"))
    now = registry.get("raw").registered_at
    assert expired_datasets(registry, now=now + 29 * DAY) == []
    expired = expired_datasets(registry, now=now + 31 * DAY)
    assert [e.dataset.name for e in expired] == ["raw"]
    assert raw_csv.exists() and registry.get("raw").status == "active"


def test_retention_deletes_records_and_names_the_models_trained_on_it(
    registry: Registry, raw_csv: Path, tmp_path: Path
) -> None:
    model = tmp_path / "m.pt2"
    model.write_bytes(b"w")
    registry.register_dataset("raw", raw_csv, make_card(retention="7d"), data_sha256="f" * 64)
    registry.register_model("m", model, {"training": {"dataset_sha256": "f" * 64}})
    before = registry.audit.count()
    done = apply_retention(registry, now=registry.get("raw").registered_at + 8 * DAY)
    assert [(d.dataset.name, d.action, d.models) for d in done] == [("raw", "deleted", ("m",))]
    assert not raw_csv.exists()
    assert registry.get("raw").status == "deleted"
    assert [r.kind for r in registry.all_runs()][-1] == "delete"
    assert registry.audit.count() == before + 1 and registry.audit.verify().ok
    assert apply_retention(registry, now=registry.get("raw").registered_at + 9 * DAY) == []


def test_retention_can_quarantine_instead_of_deleting(
    registry: Registry, raw_csv: Path, tmp_path: Path
) -> None:
    registry.register_dataset("raw", raw_csv, make_card(retention="1d"))
    content = raw_csv.read_bytes()
    done = apply_retention(
        registry, now=registry.get("raw").registered_at + 2 * DAY, quarantine=tmp_path / "q"
    )
    assert done[0].action == "quarantined"
    assert Path(done[0].where).read_bytes() == content and not raw_csv.exists()
    with pytest.raises(DataError, match="quarantined"):
        registry.grant("raw", "trainer", "read")
        open_dataset("raw", key=_key(registry, "trainer"), registry=registry)


def test_grant_levels_are_checked(registry: Registry, raw_csv: Path) -> None:
    registry.register_dataset("raw", raw_csv, make_card())
    with pytest.raises(ConfigError, match="level 'owner'"):
        registry.grant("raw", "x", "owner")


def test_retention_names_the_registered_copies_derived_from_expired_data(
    registry: Registry, raw_csv: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy.csv"
    copy.write_text("age,label\n31,0\n", encoding="utf-8")
    registry.register_dataset("raw", raw_csv, make_card(retention="7d"))
    registry.register_dataset("copy", copy, make_card(retention="2y"))
    registry.record_transform(["raw"], ["copy"], "cp", "9.4")
    later = registry.get("raw").registered_at + 8 * DAY
    (planned,) = expired_datasets(registry, now=later)
    assert (planned.dataset.name, planned.derived, planned.models) == ("raw", ("copy",), ())
    (done,) = apply_retention(registry, now=later)
    assert done.derived == ("copy",) and copy.exists()
