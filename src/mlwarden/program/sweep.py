"""Regular assessments at scale: every due system of the inventory, on Dask distributed.

``mlwarden program run`` turns each system's :class:`~mlwarden.program.threat_model.AssessmentPlan`
into an :class:`AssessmentTask` (plain data, so it travels to any worker), runs the tasks and
records each report in the inventory. The tasks run

* on a :class:`distributed.LocalCluster` by default: worker processes bound to 127.0.0.1, one
  thread each, no dashboard;
* on an existing Dask cluster with ``scheduler="tcp://HOST:8786"`` (workers there need mlwarden
  installed and read the model and data paths the threat models give, so those must be on a
  shared file system; see ``docs/program.md``);
* in this process with ``serial=True`` (the reference a distributed run must match).

Each task pins torch to one thread and takes its randomness only from the assessment's seed, so
a report's findings and metrics are the same whichever worker, or this process, ran it. A task
that fails (bad model file, unknown data, a worker that died) is reported with its error, and
the other systems go on. Recording happens here, in the driver, one report at a time: workers
never write to the inventory.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlwarden.errors import ConfigError, MlwardenError
from mlwarden.program.inventory import AssessmentRun, Inventory, System, key_metrics

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "AssessmentTask",
    "SweepResult",
    "dask_client",
    "due_systems",
    "run_assessment_task",
    "run_sweep",
    "task_for",
]


@dataclass(frozen=True)
class AssessmentTask:
    """One system's assessment, as plain data a worker can run anywhere.

    Paths are absolute (resolved against the threat model's folder); ``out_dir`` is where the
    worker writes ``report.json``, ``report.sarif`` and ``report.html``.
    """

    system: str
    model: str
    data: str
    out_dir: str
    train_data: str | None = None
    config: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    gates: tuple[str, ...] = ()
    public_key: str | None = None


@dataclass(frozen=True)
class SweepResult:
    """The outcome of one system's task: its report, or the error that stopped it."""

    system: str
    ok: bool
    report_path: str | None = None
    passed: bool | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    duration_s: float = 0.0
    run: AssessmentRun | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {
            "system": self.system,
            "ok": self.ok,
            "report_path": self.report_path,
            "passed": self.passed,
            "metrics": self.metrics,
            "error": self.error,
            "duration_s": self.duration_s,
            "report_sha256": self.run.report_sha256 if self.run else None,
        }


def _resolve(base: Path, spec: str) -> str:
    """A path spec against the threat model's folder; ``zoo:``/``builtin:`` specs unchanged."""
    if spec.startswith(("zoo:", "builtin:")):
        return spec
    path = Path(spec)
    return str(path if path.is_absolute() else (base / path).resolve())


def task_for(system: System, out_root: str | Path, *, stamp: str) -> AssessmentTask:
    """The task that assesses ``system``, writing into ``out_root/SYSTEM/STAMP``.

    Raises
    ------
    ConfigError
        The threat model has no ``assessment`` section, or the output folder already holds a
        report (a recorded report is never overwritten).
    """
    plan = system.threat_model.assessment
    if plan is None:
        raise ConfigError(
            f"system {system.name!r}: its threat model has no assessment section (model, data) "
            "saying how to assess it; add one and `mlwarden program add-system --replace`"
        )
    base = system.base_dir
    out = Path(out_root) / system.name / stamp
    if (out / "report.json").exists():
        raise ConfigError(f"{out} already holds a report; pass another --out")
    overrides = {
        k: v
        for k, v in (
            ("profile", plan.profile),
            ("max_samples", plan.max_samples),
            ("seed", plan.seed),
        )
        if v is not None
    }
    return AssessmentTask(
        system=system.name,
        model=_resolve(base, plan.model),
        data=_resolve(base, plan.data),
        out_dir=str(out.resolve()),
        train_data=_resolve(base, plan.train_data) if plan.train_data else None,
        config=_resolve(base, plan.config) if plan.config else None,
        overrides=overrides,
        gates=tuple(f"{metric}={threshold}" for metric, threshold in plan.fail_under.items()),
        public_key=_resolve(base, plan.public_key) if plan.public_key else None,
    )


def run_assessment_task(task: AssessmentTask) -> dict[str, Any]:
    """Run one task where it lands (a Dask worker or this process) and write its reports.

    Torch runs on one thread for the task (restored after), so results do not depend on how
    many cores the worker has. Returns the report path, verdict, metrics and duration.

    Raises
    ------
    MlwardenError
        Whatever stops the assessment (bad model, data or configuration).
    """
    import torch

    from mlwarden.assess import assess, load_config, parse_gate
    from mlwarden.data import load_dataset
    from mlwarden.models import load_model
    from mlwarden.report import write_reports
    from mlwarden.supplychain.signing import signature_verifier

    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        settings = load_config(task.config)
        overrides = dict(task.overrides)
        if "profile" in overrides and settings.attacks is not None:
            overrides["attacks"] = None  # a profile replaces the config's attack list
        if overrides:
            settings = settings.updated(**overrides)
        if task.gates:
            settings = settings.with_gates([parse_gate(g) for g in task.gates])
        clip = tuple(settings.clip_range) if settings.clip_range else None
        dataset = load_dataset(task.data, clip_range=clip)  # type: ignore[arg-type]
        verify = signature_verifier(task.public_key) if task.public_key else None
        classifier = load_model(
            task.model,
            input_shape=dataset.input_shape,
            clip_range=dataset.clip_range,
            verify=verify,
        )
        train = None
        if task.train_data is not None:
            train = load_dataset(
                task.train_data,
                split="train",
                n_classes=dataset.n_classes,
                clip_range=dataset.clip_range,
            )
        artifact = None if task.model.startswith("zoo:") else task.model
        report = assess(classifier, dataset, settings, train_data=train, artifact=artifact)
        paths = write_reports(report, task.out_dir)
    finally:
        torch.set_num_threads(threads)
    return {
        "report_path": str(paths["json"]),
        "passed": report.passed,
        "metrics": key_metrics({"summary": {"metrics": report.metrics}}),
        "duration_s": time.perf_counter() - started,
    }


def _task_outcome(task: AssessmentTask) -> dict[str, Any]:
    """:func:`run_assessment_task`, with a user error returned as ``{"error": message}``.

    An expected failure (a missing model, bad data) is an outcome to report, not a crash for
    the Dask worker to log with its traceback; anything else still raises.
    """
    try:
        return run_assessment_task(task)
    except MlwardenError as exc:
        return {"error": str(exc).strip() or exc.__class__.__name__}


def _failure(system: str, exc: BaseException) -> SweepResult:
    message = str(exc).strip() or exc.__class__.__name__
    if not isinstance(exc, MlwardenError):
        message = f"{exc.__class__.__name__}: {message}"
    return SweepResult(system=system, ok=False, error=message)


def _success(system: str, outcome: dict[str, Any], inventory: Inventory | None) -> SweepResult:
    run = inventory.record(outcome["report_path"], system=system) if inventory else None
    return SweepResult(
        system=system,
        ok=True,
        report_path=outcome["report_path"],
        passed=bool(outcome["passed"]),
        metrics=outcome["metrics"],
        duration_s=float(outcome["duration_s"]),
        run=run,
    )


def run_sweep(
    tasks: Sequence[AssessmentTask],
    *,
    client: Client | None = None,
    inventory: Inventory | None = None,
    on_start: Callable[[str], None] | None = None,
    on_done: Callable[[SweepResult], None] | None = None,
) -> list[SweepResult]:
    """Run ``tasks`` on ``client`` (or serially here) and record each report in ``inventory``.

    Parameters
    ----------
    client
        A Dask distributed client; ``None`` runs the tasks one after the other in this process.
    inventory
        Where each successful report is recorded against its system (``None``: not recorded).
    on_start, on_done
        Progress callbacks: a task submitted (or started, serially); a task finished.

    Returns
    -------
    list[SweepResult]
        One per task, in the order of ``tasks``; a failed task carries its error and does not
        stop the others.
    """
    results: dict[str, SweepResult] = {}

    def finish(system: str, outcome: dict[str, Any] | BaseException) -> None:
        if isinstance(outcome, BaseException):
            result = _failure(system, outcome)
        elif "error" in outcome:
            result = SweepResult(system=system, ok=False, error=str(outcome["error"]))
        else:
            try:
                result = _success(system, outcome, inventory)
            except MlwardenError as exc:  # recording failed: the report is still on disk
                result = _failure(system, exc)
        results[system] = result
        if on_done:
            on_done(result)

    if len({t.system for t in tasks}) != len(tasks):
        raise ConfigError("each system may appear once in a sweep")
    if client is None:
        for task in tasks:
            if on_start:
                on_start(task.system)
            try:
                outcome: dict[str, Any] | BaseException = _task_outcome(task)
            except Exception as exc:
                outcome = exc
            finish(task.system, outcome)
    else:
        from distributed import as_completed

        submitted = {}
        for task in tasks:
            future = client.submit(
                _task_outcome, task, key=f"mlwarden-assess-{task.system}-{time.time_ns()}",
                pure=False, retries=0,
            )  # fmt: skip
            submitted[future] = task.system
            if on_start:
                on_start(task.system)
        for future in as_completed(list(submitted)):
            try:
                outcome = future.result()
            except Exception as exc:
                outcome = exc
            finish(submitted[future], outcome)
            future.release()
    return [results[t.system] for t in tasks]


@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None, *, n_workers: int = 2, timeout_s: float = 60.0
) -> Iterator[Client]:
    """A client of ``scheduler``, or of a local cluster closed on exit.

    The local cluster runs ``n_workers`` worker processes with one thread each, bound to
    127.0.0.1 (nothing listens on another interface) and without the dashboard.

    Raises
    ------
    ConfigError
        ``n_workers`` is not positive, or the scheduler cannot be reached within ``timeout_s``.
    """
    from distributed import Client, LocalCluster

    if scheduler is None and n_workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {n_workers}")
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=timeout_s)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(
                f"--scheduler {scheduler}: no Dask scheduler answered ({exc.__class__.__name__}); "
                "start one with `dask scheduler` and its workers with `dask worker`"
            ) from exc
        try:
            yield client
        finally:
            client.close()
        return
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def due_systems(
    inventory: Inventory, names: Sequence[str] | None = None, *, now: datetime | None = None
) -> list[System]:
    """The systems to assess: those named (each must exist), else every overdue one.

    Raises
    ------
    ConfigError
        A named system is not in the inventory.
    """
    if names:
        return [inventory.get(name) for name in dict.fromkeys(names)]
    now = now or datetime.now(timezone.utc)
    return [s.system for s in inventory.status(now=now) if s.overdue]
