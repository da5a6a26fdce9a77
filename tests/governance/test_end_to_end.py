"""The issue's proof, through the command line: register raw data, transform it, train a model,
scan for PII (the planted records are found), deny and allow reads by role (both audited), expire
the raw data, show the lineage and the models affected, export it as OpenLineage events; every
artefact's digest verifies and the audit chain stays intact. (The same lineage recorded by
mlwarden's own commands, without registry calls: test_provenance.py.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from mlwarden.cli.app import main
from mlwarden.data import load_dataset
from mlwarden.governance import Registry
from mlwarden.serve.keys import KeyStore

CARD = """source: CRM export
collection_method: sign-up form
licence: proprietary
owner: data-platform
purpose: churn model
sensitivity: restricted
retention: {retention}
"""


def _cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_register_transform_train_control_access_expire_and_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = f"sqlite:///{tmp_path}/mlwarden.db"
    rng = np.random.default_rng(0)
    # raw data: features, a label, and personal data that must not reach training
    raw = tmp_path / "raw.csv"
    lines = ["name,email,nric,f1,f2,label"]
    for i in range(60):
        f1, f2 = rng.normal(size=2)
        lines.append(f"Person {i},p{i}@example.com,S1234567D,{f1:.4f},{f2:.4f},{int(f1 + f2 > 0)}")
    raw.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "raw.yaml").write_text(CARD.format(retention="30d"), encoding="utf-8")
    (tmp_path / "clean.yaml").write_text(CARD.format(retention="2y"), encoding="utf-8")

    code, out = _cli(
        capsys,
        "governance",
        "register",
        raw,
        "--name",
        "raw",
        "--card",
        tmp_path / "raw.yaml",
        "--db",
        db,
    )
    assert code == 0, out

    # transform: drop the personal columns
    clean = tmp_path / "clean.csv"
    clean.write_text(
        "\n".join(",".join(row.split(",")[3:]) for row in lines) + "\n", encoding="utf-8"
    )
    code, out = _cli(
        capsys,
        "governance",
        "register",
        clean,
        "--name",
        "clean",
        "--card",
        tmp_path / "clean.yaml",
        "--db",
        db,
    )
    assert code == 0 and "data digest" in out, out
    code, out = _cli(
        capsys,
        "governance",
        "transform",
        "-i",
        "raw",
        "-o",
        "clean",
        "--command",
        "cut -d, -f4-",
        "--version",
        "coreutils 9.4",
        "--db",
        db,
    )
    assert code == 0, out

    # train: the sidecar records the training data's digest, as every mlwarden trainer does
    train = load_dataset(str(clean), label_column="label")
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression().fit(train.x, train.y)
    model = tmp_path / "churn.npz"
    np.savez(model, coef=clf.coef_, intercept=clf.intercept_)
    Path(str(model) + ".mlwarden.json").write_text(
        json.dumps({"training": {"recipe": "logreg", "dataset_sha256": train.digest()}}),
        encoding="utf-8",
    )
    code, out = _cli(capsys, "governance", "register-model", model, "--name", "churn", "--db", db)
    assert code == 0 and "clean" in out, out

    # scan the raw data: the planted records are found
    code, out = _cli(capsys, "data", "scan-pii", raw, "--format", "json")
    report = json.loads(out)
    entities = {(f["field"], f["entity"]) for f in report["findings"]}
    assert {("email", "EMAIL_ADDRESS"), ("nric", "SG_NRIC_FIN")} <= entities
    assert code == 0

    # access: an analyst is refused, a trainer reads; both decisions are in the audit chain
    reg = Registry(db)
    store = KeyStore(reg.db)
    analyst, trainer = store.create("analyst")[1], store.create("trainer")[1]
    code, out = _cli(capsys, "governance", "grant", "clean", "--role", "trainer", "--db", db)
    assert code == 0, out
    monkeypatch.setenv("MLWARDEN_API_KEY", analyst)
    code, out = _cli(capsys, "governance", "open", "clean", "--db", db)
    assert code == 2 and "no read grant" in out
    monkeypatch.setenv("MLWARDEN_API_KEY", trainer)
    code, out = _cli(capsys, "governance", "open", "clean", "--db", db)
    assert code == 0 and out.strip() == str(clean.resolve())
    decisions = [(e["model"], e["decision"]) for e in reg.audit.tail(2)]
    assert decisions == [("dataset:clean", "deny"), ("dataset:clean", "allow")]

    # retention: 31 days later the raw data has expired; the model trained on its derivative
    # is named
    later = time.time() + 31 * 86400
    monkeypatch.setattr("mlwarden.governance.retention.time.time", lambda: later)
    code, out = _cli(capsys, "governance", "retention", "--dry-run", "--json", "--db", db)
    planned = json.loads(out)
    assert [(p["dataset"], p["models_trained_on_it"]) for p in planned] == [("raw", ["churn"])]
    assert raw.exists()
    code, out = _cli(capsys, "governance", "retention", "--apply", "--db", db)
    assert code == 0 and "deleted: raw" in out and "churn" in out
    assert not raw.exists()

    # lineage of the model: clean <- raw (deleted), drawn in HTML too
    code, out = _cli(
        capsys,
        "governance",
        "lineage",
        "show",
        "churn",
        "--html",
        tmp_path / "lineage.html",
        "--db",
        db,
    )
    assert code == 0
    assert "<- dataset clean" in out and "raw" in out and "[deleted]" in out
    assert "via train: logreg" in out and "via transform: cut -d, -f4- (coreutils 9.4)" in out
    assert (tmp_path / "lineage.html").read_text(encoding="utf-8").count("<rect") == 3

    # every remaining artefact verifies, and so does the audit chain
    code, out = _cli(capsys, "governance", "lineage", "verify", "--db", db)
    assert code == 0 and "ok clean" in out and "ok churn" in out and "skipped raw" in out
    code, out = _cli(capsys, "audit", "verify", "--db", db)
    assert code == 0 and "intact" in out
    # the same story as OpenLineage events for a catalogue: the deletion is a DROP
    events_path = tmp_path / "openlineage.jsonl"
    code, out = _cli(capsys, "governance", "lineage", "export", "-o", events_path, "--db", db)
    assert code == 0, out
    events = [json.loads(line) for line in events_path.read_text(encoding="utf-8").splitlines()]
    jobs = {(e["job"]["name"], e["eventType"]) for e in events if "job" in e}
    assert ("train:logreg", "COMPLETE") in jobs and ("transform:cut -d, -f4-", "START") in jobs
    (drop,) = [
        o
        for e in events
        if e.get("eventType") == "COMPLETE" and e["job"]["name"].startswith("delete:")
        for o in e["outputs"]
    ]
    assert drop["name"] == str(raw.resolve())
    assert drop["facets"]["lifecycleStateChange"]["lifecycleStateChange"] == "DROP"

    # ... and a tampered model is named
    model.write_bytes(model.read_bytes() + b"\0")
    code, out = _cli(capsys, "governance", "lineage", "verify", "--db", db)
    assert code == 3 and "changed churn" in out
