"""``mlwarden program run``: every due system assessed on Dask distributed, as a serial run would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from distributed import Client

from mlwarden.cli.app import main
from mlwarden.errors import ConfigError
from mlwarden.program.inventory import Inventory
from mlwarden.program.sweep import dask_client, due_systems, run_sweep, task_for
from mlwarden.program.threat_model import threat_model_from_dict

from .conftest import threat_model_dict, write_yaml

SMALL = {
    "epsilons": [0.05, 0.1],
    "attacks": ["fgsm", "pgd"],
    "attack_params": {"pgd": {"steps": 3}},
    "max_samples": 30,
    "examples": 0,
    # 3 PGD steps are deliberately cheap, so whether the convergence diagnostic fires (and the
    # gates then fail closed) depends on float rounding and thread count: these tests are about
    # the sweep, so the gates read the figures as they are
    "acknowledge_masking": True,
}


def _system(folder: Path, name: str, **assessment: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_yaml(folder / "assess.yaml", SMALL)
    plan = {"model": "zoo:digits-cnn", "data": "builtin:digits", "config": "assess.yaml"}
    data = threat_model_dict(name, assessment={**plan, **assessment})
    return write_yaml(folder / f"{name}.threat-model.yaml", data)


@pytest.fixture(scope="module")
def local_client() -> Iterator[Client]:
    """One local cluster for the module (starting one takes seconds): 2 processes, 1 thread each."""
    with dask_client(n_workers=2) as client:
        yield client


@pytest.fixture
def inventory(tmp_path: Path) -> Iterator[Inventory]:
    """Three systems: two assessable with different seeds, one whose model file is missing."""
    inv = Inventory(f"sqlite:///{tmp_path}/programme.db")
    for name, plan in {
        "alpha": {"seed": 0, "fail_under": {"robust_accuracy@0.05": 0.5}},
        "beta": {"seed": 1, "fail_under": {"robust_accuracy@0.1": 0.99}},
        "broken": {"model": "missing.pt2"},
    }.items():
        path = _system(tmp_path / name, name, **plan)
        inv.add_system(threat_model_from_dict(json.loads(json.dumps(_load(path)))), path=path)
    yield inv
    inv.close()


def _load(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


TIMINGS = frozenset({"created_at", "duration_s", "seconds"})


def _without_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def _comparable(report_path: str) -> dict[str, Any]:
    """A report without what differs between two runs of the same assessment (wall times)."""
    doc = _without_timings(json.loads(Path(report_path).read_text(encoding="utf-8")))
    assert "robust_accuracy@0.1" in doc["summary"]["metrics"]  # a real report, not an empty one
    return doc  # type: ignore[no-any-return]


def test_distributed_sweep_matches_a_serial_run_and_isolates_failures(
    inventory: Inventory, tmp_path: Path, local_client: Client
) -> None:
    systems = due_systems(inventory)
    assert [s.name for s in systems] == ["alpha", "beta", "broken"]  # never assessed: all due
    serial_tasks = [task_for(s, tmp_path / "serial", stamp="t0") for s in systems]
    serial = run_sweep(serial_tasks)
    done: list[str] = []
    workers = local_client.scheduler_info()["workers"]
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers)
    assert {w["nthreads"] for w in workers.values()} == {1}
    assert local_client.scheduler.address.startswith("tcp://127.0.0.1:")
    distributed = run_sweep(
        [task_for(s, tmp_path / "dask", stamp="t0") for s in systems],
        client=local_client,
        inventory=inventory,
        on_done=lambda r: done.append(r.system),
    )
    assert sorted(done) == ["alpha", "beta", "broken"]
    assert [r.system for r in distributed] == ["alpha", "beta", "broken"]
    for one, other in zip(serial[:2], distributed[:2], strict=True):
        assert one.ok and other.ok
        assert _comparable(one.report_path or "") == _comparable(other.report_path or "")
    # the seeds differ between alpha and beta, so their evaluation samples do too
    assert (
        _comparable(serial[0].report_path or "")["data"]["sha256"]
        != (_comparable(serial[1].report_path or "")["data"]["sha256"])
    )
    assert serial[0].passed and not serial[1].passed
    for result in (serial[2], distributed[2]):
        assert not result.ok and "missing.pt2" in (result.error or "")
    # only the distributed sweep recorded (serial ran without an inventory)
    assert [len(inventory.history(n)) for n in ("alpha", "beta", "broken")] == [1, 1, 0]
    assert inventory.history("alpha")[0].report_sha256 == distributed[0].run.report_sha256  # type: ignore[union-attr]
    assert [s.name for s in due_systems(inventory)] == ["broken"]  # the others are assessed now


def test_a_system_without_an_assessment_plan_is_refused(tmp_path: Path) -> None:
    inv = Inventory(f"sqlite:///{tmp_path}/p.db")
    try:
        system = inv.add_system(threat_model_from_dict(threat_model_dict("bare")))
        with pytest.raises(ConfigError, match="no assessment section"):
            task_for(system, tmp_path, stamp="t")
        with pytest.raises(ConfigError, match="no system 'ghost'"):
            due_systems(inv, ["ghost"])
    finally:
        inv.close()


def test_an_unknown_plan_profile_or_gate_is_a_threat_model_error() -> None:
    plan = {"model": "m.pt2", "data": "builtin:digits", "profile": "fulll"}
    with pytest.raises(ConfigError, match=r"assessment\.profile"):
        threat_model_from_dict(threat_model_dict("x", assessment=plan))
    plan = {"model": "m.pt2", "data": "builtin:digits", "fail_under": {"robust@0.1": 0.5}}
    with pytest.raises(ConfigError, match=r"assessment\.fail_under"):
        threat_model_from_dict(threat_model_dict("x", assessment=plan))


def test_cli_runs_on_a_scheduler_address_and_reports_the_failed_system(
    inventory: Inventory, tmp_path: Path, capsys: pytest.CaptureFixture[str], local_client: Client
) -> None:
    db = f"sqlite:///{tmp_path}/programme.db"
    code = main(
        [
            "program", "run", "--systems", "alpha,broken",
            "--scheduler", local_client.scheduler.address,
            "--db", db, "--out", str(tmp_path / "runs"), "--json",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 3  # broken failed; alpha ran and was recorded all the same
    results = {r["system"]: r for r in json.loads(out[out.index("[") :])}
    assert results["alpha"]["ok"] and results["alpha"]["passed"]
    assert not results["broken"]["ok"] and "missing.pt2" in results["broken"]["error"]
    assert Path(results["alpha"]["report_path"]).parent.parent == tmp_path / "runs" / "alpha"
    assert [len(inventory.history(n)) for n in ("alpha", "beta", "broken")] == [1, 0, 0]


def test_cli_serial_and_scheduler_exclude_each_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["program", "run", "--serial", "--scheduler", "tcp://127.0.0.1:1",
                 "--db", f"sqlite:///{tmp_path}/p.db"])  # fmt: skip
    assert code == 2 and "exclude each other" in capsys.readouterr().err


def test_cli_serial_run_shows_each_system_and_records_it(
    inventory: Inventory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path}/programme.db"
    runs = tmp_path / "runs"
    code = main(
        ["program", "run", "--serial", "--systems", "alpha", "--db", db, "--out", str(runs)]
    )
    out = capsys.readouterr().out
    assert code == 0 and "alpha" in out and "passed" in out and "beta" not in out
    (run,) = inventory.history("alpha")
    (stamp,) = (runs / "alpha").iterdir()
    assert run.report_path == str(stamp / "report.json")


def test_a_folder_holding_a_report_is_never_overwritten(
    inventory: Inventory, tmp_path: Path
) -> None:
    system = inventory.get("alpha")
    target = tmp_path / "out" / "alpha" / "t1"
    target.mkdir(parents=True)
    (target / "report.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match="already holds a report"):
        task_for(system, tmp_path / "out", stamp="t1")
