"""OpenLineage export: the events a catalogue would ingest, checked against the registry they came
from and against the ``openlineage-python`` client's own event and facet classes."""

from __future__ import annotations

import importlib
import json
import pkgutil
import uuid
from pathlib import Path
from typing import Any

import attr
import pytest

from mlwarden.cli.app import main
from mlwarden.governance import Registry, apply_retention
from mlwarden.governance.openlineage_export import export_openlineage

from .conftest import make_card

DAY = 86400.0


def _facet_classes() -> dict[str, type]:
    """Every facet class the client ships, by the schema URL it writes into ``_schemaURL``."""
    import openlineage.client.generated as generated

    classes: dict[str, type] = {}
    for info in pkgutil.iter_modules(generated.__path__):
        module = importlib.import_module(f"openlineage.client.generated.{info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and attr.has(value)
                and hasattr(value, "_get_schema")
                and any(f.name == "_schemaURL" for f in attr.fields(value))
            ):
                classes.setdefault(value._get_schema(), value)
    return classes


def _check_against_class(doc: dict[str, Any], cls: type, where: str) -> None:
    names = {f.name for f in attr.fields(cls)}
    required = {f.name for f in attr.fields(cls) if f.default is attr.NOTHING and f.init}
    assert set(doc) <= names, (where, set(doc) - names)
    assert required <= set(doc), (where, required - set(doc))


def _validate(event: dict[str, Any], facet_classes: dict[str, type]) -> None:
    from openlineage.client.event_v2 import DatasetEvent, RunEvent

    cls = RunEvent if "run" in event else DatasetEvent
    assert event["schemaURL"] == cls._get_schema()
    _check_against_class(event, cls, cls.__name__)
    facets: list[tuple[str, dict[str, Any]]] = []
    if "run" in event:
        uuid.UUID(event["run"]["runId"])
        facets += list(event["run"].get("facets", {}).items())
        facets += list(event["job"].get("facets", {}).items())
        for ds in event["inputs"] + event["outputs"]:
            facets += list(ds.get("facets", {}).items())
    else:
        facets += list(event["dataset"].get("facets", {}).items())
    for key, facet in facets:
        facet_cls = facet_classes.get(facet["_schemaURL"])
        assert facet_cls is not None, f"facet {key}: {facet['_schemaURL']} is not a spec facet"
        _check_against_class(facet, facet_cls, key)
        assert facet["_producer"].startswith("https://")


@pytest.fixture
def lineage(registry: Registry, raw_csv: Path, tmp_path: Path) -> Registry:
    clean = tmp_path / "clean.csv"
    clean.write_text("age,label\n31,0\n", encoding="utf-8")
    model = tmp_path / "m.pt2"
    model.write_bytes(b"weights")
    registry.register_dataset("raw", raw_csv, make_card(retention="7d"))
    registry.register_dataset(
        "clean", clean, make_card(description="PII columns dropped"), data_sha256="e" * 64
    )
    registry.record_transform(["raw"], ["clean"], "drop-pii.py", "1.2.0")
    registry.register_model("m", model, {"training": {"recipe": "zoo", "dataset_sha256": "e" * 64}})
    registry.record_run("train", ["f" * 64], [registry.get("m").file_sha256], "external", "0.1")
    apply_retention(registry, now=registry.get("raw").registered_at + 8 * DAY)
    return registry


def test_every_artefact_and_run_becomes_a_valid_openlineage_event(
    lineage: Registry, tmp_path: Path
) -> None:
    out = tmp_path / "events.jsonl"
    count = export_openlineage(lineage, out)
    events = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert count == len(events) == 3 + 2 * len(lineage.all_runs())
    classes = _facet_classes()
    for event in events:
        _validate(event, classes)

    static = {e["dataset"]["name"]: e["dataset"] for e in events if "dataset" in e}
    raw, clean, model = (lineage.get(n) for n in ("raw", "clean", "m"))
    assert set(static) == {raw.path, clean.path, model.path}
    facets = static[clean.path]["facets"]
    assert static[clean.path]["namespace"] == "file"
    assert facets["version"]["datasetVersion"] == f"sha256:{clean.file_sha256}"
    assert facets["datasetType"]["datasetType"] == "FILE"
    assert facets["documentation"]["description"] == "PII columns dropped"
    assert facets["ownership"]["owners"] == [{"name": make_card().owner, "type": "OWNER"}]
    tags = {t["key"]: t["value"] for t in facets["tags"]["tags"]}
    assert tags["sensitivity"] == "confidential" and tags["retention"] == "30d"
    assert tags["mlwarden.data_sha256"] == "e" * 64
    assert static[model.path]["facets"]["datasetType"]["datasetType"] == "MODEL"
    assert {t["key"]: t["value"] for t in static[raw.path]["facets"]["tags"]["tags"]}[
        "mlwarden.status"
    ] == "deleted"

    runs: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if "run" in e:
            runs.setdefault(e["run"]["runId"], []).append(e)
    assert set(runs) == {r.run_id for r in lineage.all_runs()}
    for run in lineage.all_runs():
        pair = runs[run.run_id]
        assert [e["eventType"] for e in pair] == ["START", "COMPLETE"]
        ins = [d["name"] for d in pair[1]["inputs"]]
        outs = [d["name"] for d in pair[1]["outputs"]]
        if run.kind == "transform":
            assert (ins, outs) == ([raw.path], [clean.path])
            assert pair[1]["run"]["facets"]["processing_engine"]["version"] == "1.2.0"
        elif run.kind == "train" and run.command == "external":
            assert (ins, outs) == ([f"sha256:{'f' * 64}"], [model.path])
            assert pair[1]["inputs"][0]["namespace"] == "mlwarden"
        elif run.kind == "train":
            assert (ins, outs) == ([clean.path], [model.path])  # found by the data digest
        else:
            assert run.kind == "delete"
            assert (ins, outs) == ([], [raw.path])
            drop = pair[1]["outputs"][0]["facets"]["lifecycleStateChange"]
            assert drop["lifecycleStateChange"] == "DROP"


def test_the_cli_prints_the_same_events_it_writes(
    lineage: Registry, db_url: str, prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ol.jsonl"
    args = ["governance", "lineage", "export", "--db", db_url, "--table-prefix", prefix]
    assert main([*args, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(args) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert printed == written and len(written) == 3 + 2 * len(lineage.all_runs())


def test_an_export_that_fails_midway_leaves_no_partial_file(
    lineage: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "events.jsonl"
    out.write_text("previous export\n", encoding="utf-8")

    def broken(*args: object, **kwargs: object) -> Any:
        yield from ()
        raise OSError("disk full")

    monkeypatch.setattr("mlwarden.governance.openlineage_export.openlineage_events", broken)
    with pytest.raises(OSError):
        export_openlineage(lineage, out)
    assert out.read_text(encoding="utf-8") == "previous export\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".events")] == []
