"""The registry and lineage, specified on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlwarden.errors import ConfigError
from mlwarden.governance import (
    DataCard,
    Registry,
    build_graph,
    file_sha256,
    models_trained_on,
    verify,
)
from mlwarden.governance.card import load_card
from mlwarden.governance.lineage import render_html, render_text
from mlwarden.governance.registry import sidecar_data_digests

from .conftest import make_card


def test_a_registered_dataset_keeps_its_card_and_content_digest(
    registry: Registry, raw_csv: Path
) -> None:
    registry.register_dataset("raw", raw_csv, make_card())
    got = registry.get("raw")
    assert got.file_sha256 == file_sha256(raw_csv)
    assert got.card == make_card()
    assert got.card is not None and got.card.sensitivity.value == "confidential"


def test_a_name_is_registered_once_unless_replaced(registry: Registry, raw_csv: Path) -> None:
    registry.register_dataset("raw", raw_csv, make_card())
    with pytest.raises(ConfigError, match="already registered"):
        registry.register_dataset("raw", raw_csv, make_card())
    registry.register_dataset("raw", raw_csv, make_card(owner="ml-team"), replace=True)
    assert registry.get("raw").card == make_card(owner="ml-team")


def test_a_data_card_names_every_bad_field(tmp_path: Path) -> None:
    path = tmp_path / "card.yaml"
    path.write_text("source: x\nretention: soon\ncolour: blue\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_card(path)
    for name in ("retention", "colour", "licence", "owner", "sensitivity"):
        assert name in str(info.value)


def test_a_card_is_strict_about_types() -> None:
    with pytest.raises(ValueError):
        DataCard.model_validate({**make_card().model_dump(mode="json"), "owner": 5})


def test_sidecar_digests_are_found_at_any_depth() -> None:
    sidecar = {
        "training": {"dataset_sha256": "a" * 64, "validation_sha256": "b" * 64},
        "base_model": {"training": {"dataset_sha256": "c" * 64}},
    }
    assert sidecar_data_digests(sidecar) == ["a" * 64, "b" * 64, "c" * 64]


@pytest.mark.parametrize("model_first", [False, True])
def test_a_model_links_to_its_training_data_through_the_sidecar_digest(
    registry: Registry, raw_csv: Path, tmp_path: Path, model_first: bool
) -> None:
    model = tmp_path / "model.pt2"
    model.write_bytes(b"weights")
    sidecar = {"training": {"recipe": "mlwarden zoo train", "dataset_sha256": "d" * 64}}
    if model_first:
        registry.register_model("churn", model, sidecar)
    registry.register_dataset("raw", raw_csv, make_card(), data_sha256="d" * 64)
    if not model_first:
        registry.register_model("churn", model, sidecar)
    assert [m.name for m in models_trained_on(registry, "raw")] == ["churn"]


def test_models_downstream_of_a_transformation_are_found(
    registry: Registry, raw_csv: Path, tmp_path: Path
) -> None:
    clean = tmp_path / "clean.csv"
    clean.write_text("age,label\n31,0\n", encoding="utf-8")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx")
    registry.register_dataset("raw", raw_csv, make_card())
    registry.register_dataset("clean", clean, make_card(), data_sha256="e" * 64)
    run = registry.record_transform(["raw"], ["clean"], "drop-pii.py --cols name", "1.2.0")
    registry.register_model("m", model, {"dataset_sha256": "e" * 64})
    graph = build_graph(registry)
    assert [a.name for a in graph.descendants(registry.get("raw"))] == ["clean", "m"]
    assert [a.name for a in graph.ancestors(registry.get("m"))] == ["clean", "raw"]
    assert run.version == "1.2.0"
    text = render_text(registry, "clean")
    assert "<- dataset raw" in text and "drop-pii.py --cols name (1.2.0)" in text
    assert "-> model m" in text
    page = render_html(registry, "clean")
    assert page.count("<rect") == 3 and "<script" not in page


def test_lineage_verify_names_the_file_that_changed_and_the_one_that_vanished(
    registry: Registry, raw_csv: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.csv"
    other.write_text("a\n1\n", encoding="utf-8")
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "part-0.jsonl").write_text('{"a": 1}\n', encoding="utf-8")
    registry.register_dataset("raw", raw_csv, make_card())
    registry.register_dataset("other", other, make_card())
    registry.register_dataset("kept", kept, make_card())
    assert verify(registry).passed
    raw_csv.write_text(raw_csv.read_text(encoding="utf-8") + "99,1,1\n", encoding="utf-8")
    other.unlink()
    result = verify(registry)
    assert not result.passed
    assert [c[0] for c in result.changed] == ["raw"]
    assert result.missing == ("other",)
    assert result.ok == ("kept",)


def test_a_directory_digest_covers_names_and_bytes(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "a.txt").write_text("x", encoding="utf-8")
    before = file_sha256(folder)
    (folder / "a.txt").rename(folder / "b.txt")
    assert file_sha256(folder) != before


def test_a_second_registry_on_the_same_database_sees_the_same_lineage(
    registry: Registry, raw_csv: Path, db_url: str, prefix: str
) -> None:
    registry.register_dataset("raw", raw_csv, make_card())
    other = Registry(db_url, prefix=prefix)
    try:
        assert json.loads(other.get("raw").card.to_json())["owner"] == make_card().owner  # type: ignore[union-attr]
    finally:
        other.close()
