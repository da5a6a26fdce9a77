"""Two real gateway processes (uvicorn) sharing Redis and PostgreSQL under 32 concurrent clients.

Proof points: exactly the quota is admitted (never more), every request is audited in one chain
that verifies, and ``kill -9`` of a replica under load loses no acknowledged audit entry.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mlwarden.serve.audit import AuditLog
from mlwarden.serve.config import load_gateway_config
from mlwarden.serve.db import Database
from mlwarden.serve.keys import KeyStore
from serve.helpers import POSTGRES_URL, REDIS_URL, ROLES, require_server, sample

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres]

QUOTA = 150
CLIENTS = 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "MLWARDEN_GATEWAY_CONFIG": str(config), "OMP_NUM_THREADS": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "mlwarden.serve.app:app_from_env",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--ws",
                "none",
                "--no-proxy-headers",
                "--log-level",
                "info",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, f"http://127.0.0.1:{port}"


def _wait_ready(procs: list[tuple[subprocess.Popen[bytes], str]], log: Path) -> None:
    deadline = time.time() + 120
    for proc, url in procs:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"gateway exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise AssertionError("gateway did not start")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_file: Path
) -> Iterator[dict[str, Any]]:
    """Two replicas started once for this module (the kill test runs last and kills one)."""
    tmp_path = tmp_path_factory.mktemp("replicas")
    require_server("PostgreSQL", "127.0.0.1", 5432)
    require_server("Redis", "127.0.0.1", 6379)
    prefix = "r" + uuid.uuid4().hex[:10] + "_"
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database": POSTGRES_URL,
                "table_prefix": prefix,
                "models": {"digits": {"source": str(tiny_model_file), "max_batch": 4}},
                "roles": ROLES,
                "rate_limits": {
                    "storage": REDIS_URL,
                    "key_prefix": prefix,
                    "per_key_model": ["100000/second"],
                    "daily_quota": QUOTA,
                },
            }
        )
    )
    cfg = load_gateway_config(config)
    db = Database(cfg.database, prefix=cfg.table_prefix)
    log = tmp_path / "uvicorn.log"
    procs = [_start(config, log), _start(config, tmp_path / "uvicorn-b.log")]
    try:
        _wait_ready(procs, log)
        yield {
            "db": db,
            "config": cfg,
            "procs": procs,
            "logs": [log, tmp_path / "uvicorn-b.log"],
        }
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:  # pragma: no cover
                    proc.kill()
        db.tables.metadata.drop_all(db.writer)
        db.dispose()


class Progress:
    """Answers counted as they arrive, by replica and status; tests wait on its conditions."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.by_url: dict[str, int] = {}
        self.by_status: dict[int, int] = {}
        self.total = 0

    def record(self, url: str, status: int) -> None:
        with self._changed:
            self.by_url[url] = self.by_url.get(url, 0) + 1
            self.by_status[status] = self.by_status.get(status, 0) + 1
            self.total += 1
            self._changed.notify_all()

    def wait_for(self, what: str, condition: Callable[[Progress], bool], timeout_s: float) -> None:
        """Block until ``condition(self)`` holds; fail naming ``what`` after ``timeout_s``."""
        with self._changed:
            if not self._changed.wait_for(lambda: condition(self), timeout=timeout_s):
                raise AssertionError(
                    f"timed out after {timeout_s} s waiting for {what} "
                    f"(by status {self.by_status}, by replica {self.by_url})"
                )


def _hammer(
    urls: list[str],
    key: str,
    per_client: int | None,
    stop: threading.Event | None,
    progress: Progress | None = None,
) -> tuple[list[tuple[int, str]], int]:
    """32 threads; returns (status, request id) of every answered request and the error count.

    ``progress`` (when given) is told of every answer as it arrives.
    """
    answered: list[tuple[int, str]] = []
    errors = [0]
    lock = threading.Lock()
    body = {"inputs": [sample()]}

    def client(i: int) -> None:
        live = list(urls)
        with httpx.Client(timeout=20) as http:
            n = 0
            while (per_client is None or n < per_client) and not (
                stop is not None and stop.is_set()
            ):
                rid = uuid.uuid4().hex
                url = live[(i + n) % len(live)]
                n += 1
                try:
                    r = http.post(
                        f"{url}/v1/models/digits/predict",
                        json=body,
                        headers={"Authorization": f"Bearer {key}", "X-Request-ID": rid},
                    )
                except httpx.HTTPError:
                    with lock:
                        errors[0] += 1
                    if stop is not None:  # a killed replica: send to the survivor
                        live = [u for u in live if u != url] or live
                    continue
                with lock:  # the gateway's own id for the entry (the client's is kept beside it)
                    answered.append((r.status_code, r.headers.get("x-request-id", rid)))
                if progress is not None:
                    progress.record(url, r.status_code)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answered, errors[0]


def test_two_replicas_admit_exactly_the_quota_and_audit_every_request(
    replicas: dict[str, Any],
) -> None:
    db: Database = replicas["db"]
    _, key = KeyStore(db).create("analyst")
    urls = [url for _, url in replicas["procs"]]
    answered, errors = _hammer(urls, key, per_client=8, stop=None)
    statuses = [s for s, _ in answered]
    assert errors == 0 and len(answered) == CLIENTS * 8
    assert statuses.count(200) == QUOTA  # exactly the quota, never more
    assert statuses.count(429) == CLIENTS * 8 - QUOTA
    log = AuditLog(db)
    result = log.verify()
    assert result.ok, result.problems
    assert log.count() == CLIENTS * 8 == result.entries
    secret = key.split("_", 2)[2]
    for path in replicas["logs"]:
        assert secret not in path.read_text(errors="replace")


def test_kill_9_of_a_replica_under_load_loses_no_acknowledged_entry(
    replicas: dict[str, Any],
) -> None:
    """Both replicas spend the quota, then one is killed while 32 clients keep sending.

    The kill waits until every admitted query has been answered (so the test knows the exact
    count of 200s: the quota), and the test ends once the survivor has answered a further
    round of requests from every client after the kill.
    """
    db: Database = replicas["db"]
    _, key = KeyStore(db).create("analyst")
    (victim, victim_url), (_, survivor_url) = replicas["procs"]
    urls = [victim_url, survivor_url]
    stop = threading.Event()
    progress = Progress()
    result: dict[str, Any] = {}

    def run() -> None:
        result["answered"], result["errors"] = _hammer(
            urls, key, per_client=None, stop=stop, progress=progress
        )

    runner = threading.Thread(target=run)
    runner.start()
    try:
        progress.wait_for(
            "the quota to be spent on both replicas",
            lambda p: p.by_status.get(200, 0) >= QUOTA and all(p.by_url.get(u) for u in urls),
            timeout_s=120,
        )
        os.kill(victim.pid, signal.SIGKILL)
        assert victim.wait(timeout=10) == -signal.SIGKILL
        after_kill = progress.by_url.get(survivor_url, 0)
        progress.wait_for(
            "two more rounds of answers from the survivor after the kill",
            lambda p: p.by_url.get(survivor_url, 0) >= after_kill + 2 * CLIENTS,
            timeout_s=120,
        )
    finally:
        stop.set()
        runner.join()
    answered: list[tuple[int, str]] = result["answered"]
    statuses = [status for status, _ in answered]
    assert statuses.count(200) == QUOTA  # exactly the quota across both replicas and the kill
    assert statuses.count(429) == len(answered) - QUOTA
    audited = {row["request_id"]: row["status"] for row in AuditLog(db).rows()}
    missing = [rid for status, rid in answered if audited.get(rid) != status]
    assert not missing, f"{len(missing)} acknowledged request(s) have no audit entry"
    chain = AuditLog(db).verify()
    assert chain.ok, chain.problems
    # charged only what is audited: every charged query has a committed 200 entry of this key
    from mlwarden.serve.quotas import RateLimits

    limits = RateLimits(replicas["config"].rate_limits)
    key_id = key.split("_")[1]
    _, quota_key, _ = limits._quota_keys(key_id, "digits")
    audited_ok = sum(
        1 for row in AuditLog(db).rows() if row["key_id"] == key_id and row["status"] == 200
    )
    assert limits.storage.get(quota_key) <= audited_ok
