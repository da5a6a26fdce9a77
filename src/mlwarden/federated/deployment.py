"""Federated training on Flower's deployment engine: a SuperLink and SuperNodes on 127.0.0.1.

:func:`run_deployment` runs one :class:`~mlwarden.federated.job.FederatedJob` the way a
federation of machines runs it, on this machine: it starts ``flower-superlink`` (its Fleet,
Control and Runtime APIs share one HTTP port in Flower 1.42), one ``flower-supernode`` per
client (each with ``--node-config "partition-id=i num-partitions=n"`` and its own port for its
runtime API), every one bound to 127.0.0.1 on a free port, then submits mlwarden's Flower app
(:data:`~mlwarden.federated.app.APP_DIR`) with ``flwr run``. The SuperLink runs the
``ServerApp`` and each SuperNode the ``ClientApp`` in processes of their own; each SuperNode
loads its own partition. The ``ServerApp`` writes each round's record and the global weights to
a temporary folder; this function follows the rounds as they are written and returns the same
:class:`~mlwarden.federated.runner.FederatedResult` as the in-process engine.

Every wait is bounded, and every process it starts (each in a process group of its own, with
the processes Flower starts under it) is stopped when it returns or fails. A process that exits
early raises :class:`~mlwarden.errors.FederationError` naming it, with the end of its log.
Flower's runtime installation of app dependencies (``uv sync``), its telemetry and its update
check are turned off: nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from mlwarden.errors import ConfigError, FederationError, SecurityWarning
from mlwarden.federated.app import APP_DIR
from mlwarden.federated.app.serverapp import RESULT_FILE, ROUNDS_FILE, WEIGHTS_FILE
from mlwarden.federated.job import FederatedJob
from mlwarden.federated.partition import parse_partition, partition_dataset
from mlwarden.federated.runner import (
    INSECURE_NOISE_WARNING,
    FederatedResult,
    RoundRecord,
    SampleLevelTarget,
    calibrate_sample_dp,
    check_counts,
    client_dp_record,
    client_mods,
    largest_client_weight,
    result_from_weights,
    training_record,
)
from mlwarden.federated.server import ClientLevelDP

__all__ = ["DeploymentEngine", "free_port", "run_deployment"]

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
_CONNECTION = "mlwarden-local"
_LOG_TAIL_CHARS = 2000


@dataclass(frozen=True)
class DeploymentEngine:
    """How :func:`run_deployment` starts Flower's processes and how long it waits for them.

    Attributes
    ----------
    superlink_port
        The SuperLink's port on 127.0.0.1 (``None``: a free one).
    supernode_ports
        Each SuperNode's runtime-API port on 127.0.0.1 (``None``: free ones).
    start_timeout_s
        How long the SuperLink and each SuperNode get to answer on their port.
    run_timeout_s
        How long the whole run (submission to the last round) may take.
    """

    superlink_port: int | None = None
    supernode_ports: Sequence[int] | None = None
    start_timeout_s: float = 60.0
    run_timeout_s: float = 3600.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the kernel's pick for port 0).

    Another process could take it before Flower binds it; the process then fails to start,
    and :func:`run_deployment` says so.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@dataclass
class _Child:
    """One process :func:`run_deployment` started (with its own process group) and its log."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes] = field(repr=False)

    def tail(self) -> str:
        """The last characters of the process's output (stdout and stderr together)."""
        self.log.flush()
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        text = re.sub(r"\x1b\[[0-9;]*m", "", text).strip()  # Flower colours its log lines
        return text[-_LOG_TAIL_CHARS:] or "(empty log)"

    def check_alive(self, stage: str) -> None:
        """Raise :class:`FederationError` if the process has exited (during ``stage``)."""
        code = self.process.poll()
        if code is not None:
            raise FederationError(
                f"{self.name} exited with code {code} {stage}; its log ends:\n{self.tail()}"
            )

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace_s`` seconds, close the log."""
        try:
            if self.process.poll() is None:
                _signal_group(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    logger.warning("%s ignored SIGTERM; killing it", self.name)
            # Flower's helpers (SuperExec, ServerApp, ClientApp processes) share the group
            _signal_group(self.process.pid, signal.SIGKILL)
            if self.process.poll() is None:
                self.process.wait(timeout=grace_s)
        finally:
            self.log.close()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(pgid, sig)


def _flower_env(flwr_home: Path) -> dict[str, str]:
    """This process's environment for Flower's processes: this interpreter's scripts first on
    ``PATH`` (the SuperLink starts ``flower-superexec`` from it), this mlwarden first on
    ``PYTHONPATH``, Flower's home in the run's folder, no telemetry, no update check, no proxy
    for loopback."""
    import mlwarden

    env = dict(os.environ)
    scripts = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([scripts, env.get("PATH", "")])
    source_root = str(Path(mlwarden.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in [source_root, env.get("PYTHONPATH", "")] if p)
    env["FLWR_HOME"] = str(flwr_home)
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env["FLWR_DISABLE_UPDATE_CHECK"] = "1"
    for name in ("NO_PROXY", "no_proxy"):
        env[name] = ",".join(p for p in [LOOPBACK, "localhost", env.get(name, "")] if p)
    return env


def _script(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise ConfigError(
            f"{name} not found beside {sys.executable}; the deployment engine needs Flower's "
            "scripts installed with this interpreter: pip install 'mlwarden[fl]'"
        )
    return str(path)


def _start(name: str, argv: list[str], env: dict[str, str], logs: Path) -> _Child:
    log_path = logs / f"{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}.log"
    log = log_path.open("wb")
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=logs,
            start_new_session=True,  # its own process group, stopped as a whole
        )
    except OSError as err:
        log.close()
        raise FederationError(f"could not start {name} ({argv[0]}): {err}") from err
    logger.info("started %s (pid %d): %s", name, process.pid, " ".join(argv))
    return _Child(name, process, log_path, log)


def _wait_healthy(child: _Child, port: int, timeout_s: float) -> None:
    """Wait until ``child`` answers ``GET /health`` on 127.0.0.1:``port`` (Flower's health
    route, so a stranger on the port does not count)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = f"http://{LOOPBACK}:{port}/health"
    deadline = time.monotonic() + timeout_s
    while True:
        child.check_alive("while starting")
        try:
            with opener.open(url, timeout=1.0) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() >= deadline:
            raise FederationError(
                f"{child.name} did not answer on {LOOPBACK}:{port} within {timeout_s:g} s; its "
                f"log ends:\n{child.tail()}"
            )
        time.sleep(0.2)


def _toml_value(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's


def _write_flwr_config(flwr_home: Path, port: int) -> None:
    flwr_home.mkdir(parents=True, exist_ok=True)
    (flwr_home / "config.toml").write_text(
        f'[superlink]\ndefault = "{_CONNECTION}"\n\n[superlink.{_CONNECTION}]\n'
        f'address = "{LOOPBACK}:{port}"\ninsecure = true\n',
        encoding="utf-8",
    )


def _read_rounds(path: Path, seen: int) -> list[RoundRecord]:
    """The complete lines of ``path`` after the first ``seen``, as round records."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except FileNotFoundError:
        return []
    complete = [line for line in lines if line.endswith("\n")]
    return [RoundRecord(**json.loads(line)) for line in complete[seen:]]


def _ports(engine: DeploymentEngine, clients: int) -> tuple[int, list[int]]:
    superlink = engine.superlink_port if engine.superlink_port is not None else free_port()
    if engine.supernode_ports is None:
        nodes: list[int] = []
        while len(nodes) < clients:
            port = free_port()
            if port != superlink and port not in nodes:
                nodes.append(port)
    else:
        nodes = list(engine.supernode_ports)
        if len(nodes) != clients:
            raise ConfigError(
                f"supernode_ports gives {len(nodes)} ports for {clients} SuperNodes (one each)"
            )
    if len({superlink, *nodes}) != clients + 1:
        raise ConfigError(
            f"the SuperLink and SuperNode ports must differ, got {superlink}, {nodes}"
        )
    return superlink, nodes


def run_deployment(
    job: FederatedJob,
    *,
    engine: DeploymentEngine | None = None,
    on_round: Callable[[RoundRecord], None] | None = None,
) -> FederatedResult:
    """Train ``job`` on Flower's deployment engine (SuperLink + ``job.clients`` SuperNodes).

    Parameters
    ----------
    job
        The run (``result_dir`` is set here to a temporary folder).
    engine
        Ports and timeouts (default :class:`DeploymentEngine`).
    on_round
        Called with each round's record as the ``ServerApp`` writes it.

    Returns
    -------
    FederatedResult
        The global model, curve, per-round updates and training record, as the in-process
        engine returns them; the record's ``engine`` names the deployment engine.

    Raises
    ------
    ConfigError
        Bad counts, partition or DP setting (checked before anything starts).
    FederationError
        A Flower process failed to start or exited early, the run failed, or it took longer
        than ``engine.run_timeout_s``.
    """
    import flwr

    engine = engine or DeploymentEngine()
    secure_aggregation = job.secure_aggregation()
    per_round = check_counts(job.clients, job.rounds, job.per_round, secure_aggregation)
    parsed_partition = parse_partition(job.partition)
    privacy = job.privacy()
    client_dp = privacy if isinstance(privacy, ClientLevelDP) else None
    architecture = job.architecture()
    train, test = job.load_data()
    # The same partitions the SuperNodes build (same data, partitioner and seed): for the record.
    parts = partition_dataset(train, parsed_partition, job.clients, seed=job.seed)
    local = job.local_training()
    privacy_record: dict[str, Any] | None = None
    if isinstance(privacy, SampleLevelTarget):
        _, privacy_record = calibrate_sample_dp(privacy, parts, local, job.rounds)
    if client_dp is not None:
        _, clip_on_clients = client_mods(secure_aggregation, client_dp)
        privacy_record = client_dp_record(
            client_dp, job.clients, per_round, job.rounds, clip_on_clients
        )
    superlink_port, node_ports = _ports(engine, job.clients)
    if privacy is not None:
        warnings.warn(INSECURE_NOISE_WARNING, SecurityWarning, stacklevel=2)

    children: list[_Child] = []
    with tempfile.TemporaryDirectory(prefix="mlwarden-fl-") as tmp:
        work = Path(tmp)
        logs, results, flwr_home = work / "logs", work / "result", work / "flwr-home"
        logs.mkdir()
        # flwr run builds the FAB from a folder holding only the app's pyproject.toml: the
        # code is the installed mlwarden, on every machine.
        app_dir = work / "app"
        app_dir.mkdir()
        shutil.copyfile(APP_DIR / "pyproject.toml", app_dir / "pyproject.toml")
        _write_flwr_config(flwr_home, superlink_port)
        env = _flower_env(flwr_home)
        run_job = job.model_copy(
            update={
                "result_dir": str(results),
                "max_weight": job.max_weight or largest_client_weight(parts, client_dp),
            }
        )
        run_config = work / "run-config.toml"
        run_config.write_text(
            "".join(f"{k} = {_toml_value(v)}\n" for k, v in run_job.run_config().items()),
            encoding="utf-8",
        )
        try:
            superlink = _start(
                "SuperLink",
                [
                    _script("flower-superlink"),
                    "--insecure",
                    "--host",
                    LOOPBACK,
                    "--port",
                    str(superlink_port),
                    "--isolation",
                    "subprocess",
                    "--disable-runtime-dependency-installation",
                ],
                env,
                logs,
            )
            children.append(superlink)
            _wait_healthy(superlink, superlink_port, engine.start_timeout_s)
            nodes = []
            for i, port in enumerate(node_ports):
                node = _start(
                    f"SuperNode {i}",
                    [
                        _script("flower-supernode"),
                        "--insecure",
                        "--superlink",
                        f"{LOOPBACK}:{superlink_port}",
                        "--host",
                        LOOPBACK,
                        "--port",
                        str(port),
                        "--isolation",
                        "subprocess",
                        "--node-config",
                        f"partition-id={i} num-partitions={job.clients}",
                        "--max-wait-time",
                        str(engine.start_timeout_s),
                    ],
                    env,
                    logs,
                )
                children.append(node)
                nodes.append(node)
            for node, port in zip(nodes, node_ports, strict=True):
                _wait_healthy(node, port, engine.start_timeout_s)
            started = time.perf_counter()
            submit = _start(
                "flwr run",
                [
                    _script("flwr"),
                    "run",
                    str(app_dir),
                    _CONNECTION,
                    "--stream",
                    "--run-config",
                    str(run_config),
                ],
                env,
                logs,
            )
            children.append(submit)
            curve, weights = _follow_run(
                submit,
                [superlink, *nodes],
                results,
                job.rounds,
                timeout_s=engine.run_timeout_s,
                on_round=on_round,
            )
            seconds = time.perf_counter() - started
        finally:
            for child in reversed(children):
                child.stop()

    record = training_record(
        engine=f"deployment (SuperLink + {job.clients} SuperNodes, Flower {flwr.__version__})",
        train=train,
        test=test,
        parts=parts,
        curve=curve,
        seconds=seconds,
        architecture=architecture,
        aggregator=job.aggregator,
        rounds=job.rounds,
        clients=job.clients,
        clients_per_round=per_round,
        local=local,
        partition=str(parsed_partition),
        secure_aggregation=secure_aggregation,
        privacy_record=privacy_record,
        seed=job.seed,
        extra={"dropouts": [], "backdoor": None},
    )
    return result_from_weights(job.make_module, curve, weights, record, rounds=job.rounds)


def _follow_run(
    submit: _Child,
    servers: Sequence[_Child],
    results: Path,
    rounds: int,
    *,
    timeout_s: float,
    on_round: Callable[[RoundRecord], None] | None,
) -> tuple[list[RoundRecord], list[list[np.ndarray]]]:
    """Wait for ``flwr run --stream`` to end (it ends with the run), reporting rounds as the
    ``ServerApp`` writes them; then read its result."""
    deadline = time.monotonic() + timeout_s
    reported = 0

    def report() -> None:
        nonlocal reported
        for record in _read_rounds(results / ROUNDS_FILE, reported):
            reported += 1
            if on_round is not None:
                on_round(record)

    while submit.process.poll() is None:
        for server in servers:
            server.check_alive("during the run")
        report()
        if time.monotonic() >= deadline:
            raise FederationError(
                f"the federated run did not finish within {timeout_s:g} s "
                f"({max(reported - 1, 0)} of {rounds} rounds done); flwr run's log ends:\n"
                f"{submit.tail()}"
            )
        time.sleep(0.2)
    report()
    result_path = results / RESULT_FILE
    if not result_path.exists():
        raise FederationError(
            f"the federated run ended without a result (flwr run exited with code "
            f"{submit.process.returncode}); flwr run's log (the ServerApp's included) ends:\n"
            f"{submit.tail()}"
        )
    result = json.loads(result_path.read_text(encoding="utf-8"))
    curve = [RoundRecord(**r) for r in result["curve"]]
    with np.load(results / WEIGHTS_FILE) as arrays:
        weights = [
            [arrays[f"r{r}_{i}"] for i in range(result["arrays_per_round"])]
            for r in range(len(curve))
        ]
    return curve, weights
