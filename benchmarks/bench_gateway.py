"""Gateway throughput and added latency on zoo:digits-cnn, batch size 1 (issues 7 and 13).

Figures, all measured in this run:

* ``direct`` = calling ``classifier.predict_proba`` on one sample in-process (the model alone);
* ``bare HTTP`` = the same call behind a minimal Starlette app on the same uvicorn (the cost of
  HTTP + JSON alone, for information);
* ``gateway`` (embedded) = ``POST /v1/models/digits/predict`` through the full gateway with
  API-key auth, role check, rate limit + daily quota (``limits``, memory://), input validation,
  the extraction monitor (observe-only, so it never throttles the load) and the hash-chained
  audit log (SQLite, WAL; every entry committed before its response is sent);
* ``gateway redis+pg`` = the same gateway with its limits and quotas on Redis and its keys and
  audit log on PostgreSQL (group commit): the replica setup. Runs when both servers answer
  (``--redis``, ``--postgres``; ``--no-replica-setup`` skips it).

Latency: one connection sending requests back to back (p50/p99 in ms); ``p50 added`` = gateway
minus direct. Throughput: ``--connections`` (32) keep-alive connections for ``--seconds``
seconds, with the p50 under that load (at 32 connections it is mostly queueing, 32 / req/s, so
it is reported, not floored). Floors (issue 13): embedded ≥ 0.5× bare and ≥ 1,000 req/s,
Redis + PostgreSQL ≥ 0.4× bare, p50 added ≤ 3 ms for both. The server is one uvicorn worker process pinned to
one torch thread; the load generator is a separate process speaking raw HTTP/1.1 over asyncio
sockets, so client overhead stays small. On a shared 2-core machine both compete with whatever
else runs: the figures are noisy.

Figures go to a table on stdout and to ``benchmarks/results/gateway.json``; exit code 1 when a
floor is missed.

Usage: ``python benchmarks/bench_gateway.py [--seconds S] [--connections C] [--json PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results" / "gateway.json"
FLOOR_RPS = 1000.0
FLOOR_RATIO = {"gateway": 0.5, "gateway redis+pg": 0.4}
FLOOR_P50_ADDED_MS = 3.0
EMBEDDED, REPLICA = "gateway", "gateway redis+pg"


# -- load generator (runs in its own process: `bench_gateway.py --loadgen ...`) -------------
async def _one_connection(
    port: int,
    requests: list[bytes],
    count: int | None,
    deadline: float | None,
    latencies: list[float],
    statuses: dict[int, int],
    offset: int,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while (count is None or i < count) and (deadline is None or time.perf_counter() < deadline):
            request = requests[(offset + i) % len(requests)]
            i += 1
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


def _loadgen(args: argparse.Namespace) -> None:
    payloads = json.loads(Path(args.payloads).read_text())
    requests = []
    for body_text in payloads:
        body = body_text.encode()
        head = (
            f"POST {args.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            + (
                f"Authorization: Bearer {os.environ['BENCH_KEY']}\r\n"
                if "BENCH_KEY" in os.environ
                else ""
            )
            + "\r\n"
        )
        requests.append(head.encode() + body)
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def run() -> float:
        deadline = None if args.count else time.perf_counter() + args.seconds
        start = time.perf_counter()
        await asyncio.gather(
            *(
                _one_connection(
                    args.port, requests, args.count or None, deadline, latencies, statuses, 37 * c
                )
                for c in range(args.connections)
            )
        )
        return time.perf_counter() - start

    elapsed = asyncio.run(run())
    print(json.dumps({"latencies": latencies, "statuses": statuses, "elapsed": elapsed}))


# -- orchestration -----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


BARE_APP = """
import os, json, numpy as np
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from mlwarden.models import load_model
clf = load_model("zoo:digits-cnn")
async def predict(request):
    data = json.loads(await request.body())
    x = np.asarray(data["inputs"], dtype=np.float32)
    return JSONResponse({"outputs": {"probabilities": clf.predict_proba(x).round(2).tolist()}})
app = Starlette(routes=[Route("/v1/models/digits/predict", predict, methods=["POST"])])
"""


def _serve(target: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                *target,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--ws",
                "none",
                "--no-proxy-headers",
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start")


def _load(
    port: int,
    payloads: Path,
    env: dict[str, str],
    *,
    connections: int,
    count: int | None = None,
    seconds: float = 0.0,
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--loadgen",
        "--port",
        str(port),
        "--payloads",
        str(payloads),
        "--connections",
        str(connections),
        "--path",
        "/v1/models/digits/predict",
    ]
    cmd += ["--count", str(count)] if count else ["--seconds", str(seconds)]
    out = subprocess.run(cmd, env=env, capture_output=True, check=True, text=True).stdout
    return dict(json.loads(out))


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--payloads", default="", help=argparse.SUPPRESS)
    parser.add_argument("--path", default="", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=4.0, help="throughput phase length")
    parser.add_argument("--rounds", type=int, default=3, help="measurement rounds")
    parser.add_argument("--connections", type=int, default=32, help="throughput connections")
    parser.add_argument(
        "--postgres", default="postgresql://postgres@127.0.0.1:5432/test", help="replica setup DB"
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="replica setup limits")
    parser.add_argument(
        "--no-replica-setup", action="store_true", help="skip the Redis + PostgreSQL gateway"
    )
    parser.add_argument("--latency-requests", type=int, default=800, help="sequential requests")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write figures")
    parser.add_argument(
        "--no-monitor", action="store_true", help="leave the extraction monitor off"
    )
    args = parser.parse_args()
    if args.loadgen:
        _loadgen(args)
        return 0

    from rich.console import Console
    from rich.table import Table

    from mlwarden import __version__
    from mlwarden._io import atomic_write_text

    console = Console()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    import torch

    torch.set_num_threads(1)
    from mlwarden.data import load_dataset
    from mlwarden.models import load_model

    clf = load_model("zoo:digits-cnn")  # trains into the cache once if missing
    x = load_dataset("builtin:digits", split="test").x[:200].astype(np.float32)

    # direct: the model alone, one sample at a time
    for i in range(100):
        clf.predict_proba(x[i % len(x)][None])
    direct = []
    for i in range(args.latency_requests):
        start = time.perf_counter()
        clf.predict_proba(x[i % len(x)][None])
        direct.append(time.perf_counter() - start)

    tmp = Path(tempfile.mkdtemp(prefix="mlwarden-bench-gateway-"))
    payloads = tmp / "payloads.json"
    payloads.write_text(json.dumps([json.dumps({"inputs": [s.tolist()]}) for s in x]))
    try:
        import mlwarden.serve.monitor  # noqa: F401

        monitor = not args.no_monitor
    except ImportError:
        monitor = False
    import uuid

    import yaml

    def gateway_config(database: str, storage: str, prefix: str) -> dict[str, Any]:
        return {
            "database": database,
            "table_prefix": prefix,
            "models": {"digits": {"source": "zoo:digits-cnn", "max_batch": 64}},
            "roles": {"client": {"grants": [{"models": ["digits"], "actions": ["predict"]}]}},
            # one key sends everything, so its limits are set out of reach; fixed-window keeps the
            # per-hit cost constant (limits' in-memory moving window stores one entry per hit)
            "rate_limits": {
                "storage": storage,
                "key_prefix": prefix,
                "strategy": "fixed-window",
                "per_key_model": ["100000/second", "1000000/minute"],
                "daily_quota": 100_000_000,
            },
            "monitor": {
                "enabled": monitor,
                "action": "none",
                "reference": "builtin:digits:train",
            },
        }

    from mlwarden.serve.config import load_gateway_config
    from mlwarden.serve.db import Database
    from mlwarden.serve.keys import KeyStore

    setups = {EMBEDDED: (f"sqlite:///{tmp}/gateway.db", "memory://")}
    if not args.no_replica_setup:
        if _reachable(args.postgres) and _reachable(args.redis):
            setups[REPLICA] = (args.postgres, args.redis)
        else:
            console.print(f"[yellow]skipping {REPLICA}: Redis or PostgreSQL does not answer[/]")
    prefix = "bench" + uuid.uuid4().hex[:8] + "_"
    configs, secrets_by_setup = {}, {}
    for name, (database, storage) in setups.items():
        path = tmp / f"{name.replace(' ', '_').replace('+', '_')}.yaml"
        path.write_text(yaml.safe_dump(gateway_config(database, storage, prefix)))
        configs[name] = load_gateway_config(path)
        db = Database(configs[name].database, prefix=prefix)
        secrets_by_setup[name] = (path, KeyStore(db).create("client")[1])
        db.dispose()
    (tmp / "bare.py").write_text(BARE_APP)

    # Both servers run side by side; each round measures bare HTTP then the gateway back to
    # back, so a load spike from other processes hits both; figures are medians over rounds.
    servers: dict[str, tuple[subprocess.Popen[bytes], int, dict[str, str]]] = {}
    targets = [("bare HTTP", ["bare:app", "--app-dir", str(tmp)], {})]
    for name, (path, secret) in secrets_by_setup.items():
        targets.append(
            (
                name,
                ["mlwarden.serve.app:app_from_env", "--factory"],
                {"MLWARDEN_GATEWAY_CONFIG": str(path), "BENCH_KEY": secret},
            )
        )
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in targets}
    sent = dict.fromkeys(setups, 0)
    load_avg = [os.getloadavg()]
    try:
        for name, target, extra_env in targets:
            port = _free_port()
            run_env = {**env, **extra_env}
            proc = _serve(target, run_env, port, tmp / f"{name.replace(' ', '_')}.log")
            servers[name] = (proc, port, run_env)
            _load(port, payloads, run_env, connections=1, count=200)  # warm-up
            if name in sent:
                sent[name] += 200
        for _ in range(args.rounds):
            for name, (_, port, run_env) in servers.items():
                lat = _load(port, payloads, run_env, connections=1, count=args.latency_requests)
                thr = _load(
                    port, payloads, run_env, connections=args.connections, seconds=args.seconds
                )
                if name in sent:
                    sent[name] += sum(lat["statuses"].values()) + sum(thr["statuses"].values())
                rounds[name].append(
                    {
                        "p50_ms": _pct(lat["latencies"], 50),
                        "p99_ms": _pct(lat["latencies"], 99),
                        "load_p50_ms": _pct(thr["latencies"], 50),
                        "load_p99_ms": _pct(thr["latencies"], 99),
                        "rps": thr["statuses"].get("200", 0) / thr["elapsed"],
                        "non_200": sum(
                            v
                            for k, v in {**lat["statuses"], **thr["statuses"]}.items()
                            if k != "200"
                        ),
                    }
                )
            load_avg.append(os.getloadavg())
    finally:
        for proc, _, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
    results: dict[str, dict[str, Any]] = {
        name: {
            "p50_ms": statistics.median(r["p50_ms"] for r in per),
            "p99_ms": statistics.median(r["p99_ms"] for r in per),
            "load_p50_ms": statistics.median(r["load_p50_ms"] for r in per),
            "load_p99_ms": statistics.median(r["load_p99_ms"] for r in per),
            "rps": statistics.median(r["rps"] for r in per),
            "rps_min_max": [min(r["rps"] for r in per), max(r["rps"] for r in per)],
            "non_200": sum(r["non_200"] for r in per),
            "rounds": per,
        }
        for name, per in rounds.items()
    }
    from mlwarden.serve.audit import AuditLog

    bare = results["bare HTTP"]
    audits = {}
    for name, cfg in configs.items():
        db = Database(cfg.database, prefix=prefix)
        log = AuditLog(db)
        verification = log.verify()
        requests = sum(1 for row in log.rows() if row["action"] != "monitor")
        audits[name] = {
            "entries": verification.entries,
            "request_entries": requests,  # the rest are the monitor's alert entries
            "intact": verification.ok,
        }
        if name == REPLICA:
            db.tables.metadata.drop_all(db.writer)
        db.dispose()
    d50, d99 = _pct(direct, 50), _pct(direct, 99)
    table = Table(
        title=f"gateway on zoo:digits-cnn, batch 1, {args.connections} connections "
        f"(monitor {'on' if monitor else 'off'})"
    )
    for column in ("path", "p50 ms", "p99 ms", "req/s", "p50 ms loaded", "× bare", "floor"):
        table.add_column(column, justify="right")
    table.add_row(
        "direct predict_proba",
        f"{d50:.3f}",
        f"{d99:.3f}",
        f"{1000 / statistics.mean([d * 1000 for d in direct]):.0f}",
        "",
        "",
        "",
    )
    for name, r in results.items():
        r["ratio"] = r["rps"] / bare["rps"]
        r["added_p50_ms"] = r["p50_ms"] - d50
        r["added_load_p50_ms"] = r["load_p50_ms"] - bare["load_p50_ms"]
        floor = ""
        if name in FLOOR_RATIO:
            floor = f"≥ {FLOOR_RATIO[name]}×" + (f", ≥ {FLOOR_RPS:.0f}" if name == EMBEDDED else "")
        table.add_row(
            name,
            f"{r['p50_ms']:.3f}",
            f"{r['p99_ms']:.3f}",
            f"{r['rps']:.0f}",
            f"{r['load_p50_ms']:.2f}",
            f"{r['ratio']:.2f}",
            floor,
        )
    console.print(table)
    for name in setups:
        r = results[name]
        console.print(
            f"{name}: p50 added over direct {r['added_p50_ms']:.2f} ms (one connection; floor "
            f"≤ {FLOOR_P50_ADDED_MS}), under load over bare HTTP {r['added_load_p50_ms']:.2f} ms; "
            f"requests sent {sent[name]}; audit {audits[name]['entries']} entries, "
            f"intact={audits[name]['intact']}; non-200 {r['non_200']}"
        )
    console.print(f"load average (1, 5, 15 min) at start and after each round: {load_avg}")
    figures = {
        "benchmark": "gateway",
        "mlwarden": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "monitor": monitor,
        "direct_p50_ms": d50,
        "direct_p99_ms": d99,
        "results": results,
        "audits": audits,
        "requests_sent": sent,
        "rounds": args.rounds,
        "load_average": load_avg,
        "floors": {
            "rps": FLOOR_RPS,
            "ratio": FLOOR_RATIO,
            "added_p50_ms": FLOOR_P50_ADDED_MS,
        },
        "connections": args.connections,
        "seconds": args.seconds,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(figures, indent=2) + "\n")
    console.print(f"figures written to {args.json}")
    missed = []
    for name in setups:
        r = results[name]
        if r["ratio"] < FLOOR_RATIO[name]:
            missed.append(f"{name}: {r['ratio']:.2f}× bare < {FLOOR_RATIO[name]}×")
        if name == EMBEDDED and r["rps"] < FLOOR_RPS:
            missed.append(f"{name}: {r['rps']:.0f} req/s < {FLOOR_RPS:.0f}")
        if r["added_p50_ms"] > FLOOR_P50_ADDED_MS:
            missed.append(f"{name}: p50 added {r['added_p50_ms']:.2f} ms > 3 ms")
        if (
            not audits[name]["intact"]
            or r["non_200"]
            or audits[name]["request_entries"] != sent[name]
        ):
            missed.append(f"{name}: audit chain broken, entries missing or non-200 answers")
    for line in missed:
        console.print(f"[bold red]floor missed:[/] {line}")
    return 1 if missed else 0


def _reachable(url: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 1.0):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
