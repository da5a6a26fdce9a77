"""``mlwarden keygen | sign | verify | scan | check-deps`` and ``assess --artifacts``."""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

import mlwarden.cli.app

EXIT_OK, EXIT_FOUND, EXIT_USAGE = 0, 1, 2
EVIL = b"\x80\x02cos\nsystem\n(Vtouch /nonexistent/x\ntR."
UNKNOWN = b"\x80\x02cmypackage.layers\nBlock\n)R."


def write_osv_folder(folder: Path) -> Path:
    """Two OSV advisories for demo-lib: one fixed in 1.2.0, one withdrawn."""
    folder.mkdir(parents=True)
    base = {"schema_version": "1.6.0", "modified": "2024-05-01T00:00:00Z"}
    affected = {"package": {"ecosystem": "PyPI", "name": "demo-lib"}}
    live = {
        **base,
        "id": "PYSEC-2099-1",
        "summary": "demo-lib runs code from crafted files",
        "affected": [
            {
                **affected,
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2.0"}]}
                ],
            }
        ],
        "database_specific": {"severity": "HIGH"},
    }
    withdrawn = {
        **base,
        "id": "PYSEC-2099-2",
        "withdrawn": "2024-06-01T00:00:00Z",
        "affected": [
            {**affected, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}
        ],
    }
    for advisory in (live, withdrawn):
        (folder / f"{advisory['id']}.json").write_text(json.dumps(advisory))
    return folder


def write_onnx_classifier(path: Path, *, n_features: int, n_classes: int) -> Path:
    """A linear softmax classifier as an ONNX file, with a sidecar giving its input shape."""
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(n_features, n_classes)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["proba"], axis=1),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n_features])],
        [helper.make_tensor_value_info("proba", TensorProto.FLOAT, ["batch", n_classes])],
        initializer=[
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(np.zeros(n_classes, np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    sidecar = {"input_shape": [n_features], "n_classes": n_classes}
    Path(str(path) + ".mlwarden.json").write_text(json.dumps(sidecar))
    return path


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    root.mkdir()
    np.save(root / "weights.npy", np.arange(4.0))
    (root / "config.json").write_text("{}")
    return root


def test_keygen_sign_verify_and_tamper(run_cli: Callable, tmp_path: Path, model_dir: Path) -> None:
    keys = tmp_path / "keys"
    assert run_cli("keygen", "--out", keys).code == EXIT_OK
    assert run_cli("sign", model_dir, "--key", keys / "private.pem").code == EXIT_OK
    result = run_cli("verify", model_dir, "--pub", keys / "public.pem")
    assert result.code == EXIT_OK
    assert "verified" in result.out
    (model_dir / "config.json").write_text('{"x": 1}')
    result = run_cli("verify", model_dir, "--pub", keys / "public.pem")
    assert result.code == EXIT_USAGE
    assert "changed: config.json" in result.err
    assert "Traceback" not in result.err


def test_keygen_reads_the_key_password_from_the_environment(
    run_cli: Callable, tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_KEY_PASSWORD", "correct horse")
    keys = tmp_path / "keys"
    args = ("--password-env", "MODEL_KEY_PASSWORD")
    assert run_cli("keygen", "--out", keys, *args).code == EXIT_OK
    assert run_cli("sign", model_dir, "--key", keys / "private.pem").code == EXIT_USAGE
    assert run_cli("sign", model_dir, "--key", keys / "private.pem", *args).code == EXIT_OK


def test_verify_needs_a_key_or_a_chain(run_cli: Callable, model_dir: Path) -> None:
    result = run_cli("verify", model_dir)
    assert result.code == EXIT_USAGE
    assert "--pub" in result.err


def test_scan_exits_1_on_a_dangerous_artifact_and_shows_it(
    run_cli: Callable, model_dir: Path
) -> None:
    (model_dir / "model.pkl").write_bytes(EVIL)
    result = run_cli("scan", model_dir)
    assert result.code == EXIT_FOUND
    assert "os.system" in result.out
    assert "critical" in result.out
    assert "FAIL" in result.out


def test_scan_passes_a_clean_folder(run_cli: Callable, model_dir: Path) -> None:
    result = run_cli("scan", model_dir)
    assert result.code == EXIT_OK
    assert "safe by construction" in result.out


def test_fail_on_sets_the_severity_that_fails(run_cli: Callable, model_dir: Path) -> None:
    (model_dir / "custom.pkl").write_bytes(UNKNOWN)
    assert run_cli("scan", model_dir).code == EXIT_FOUND  # any unlisted callable is high
    assert run_cli("scan", model_dir, "--fail-on", "critical").code == EXIT_OK
    assert run_cli("scan", model_dir, "--fail-on", "severe").code == EXIT_USAGE


_HEAVY = ("torch", "numpy", "sklearn", "scipy", "matplotlib", "onnx", "pandas", "h5py")


def _modules_after(code: str, heavy: tuple[str, ...] = _HEAVY) -> set[str]:
    import subprocess
    import sys

    probe = (
        f"import sys\n{code}\n"
        f"print('MODULES:' + ','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("MODULES:"))
    return {m for m in line.removeprefix("MODULES:").split(",") if m}


def test_scan_imports_no_ml_library(tmp_path: Path) -> None:
    import io
    import zipfile

    np.save(tmp_path / "w.npy", np.zeros(3))
    with zipfile.ZipFile(tmp_path / "m.pt", "w") as archive:
        archive.writestr("m/data.pkl", UNKNOWN)
        archive.writestr("m/version", b"3\n")
    buffer = io.BytesIO()
    np.save(buffer, np.array([1, None], dtype=object), allow_pickle=True)
    (tmp_path / "o.npy").write_bytes(buffer.getvalue())
    (tmp_path / "x.onnx").write_bytes(b"\x08\x07")
    code = f"from mlwarden.cli.app import main\nmain(['scan', {str(tmp_path)!r}])"
    assert _modules_after(code) == set()


def test_the_cli_starts_without_importing_command_modules() -> None:
    code = "from mlwarden.cli.app import main\nmain(['--help'])"
    assert _modules_after(code) == set()


def test_scan_json_lists_every_file_and_issue(run_cli: Callable, model_dir: Path) -> None:
    (model_dir / "model.pkl").write_bytes(EVIL)
    result = run_cli("scan", model_dir, "--format", "json")
    assert result.code == EXIT_FOUND
    document = json.loads(result.out)
    assert document["schema"] == "mlwarden.scan"
    assert document["summary"]["max_severity"] == "critical"
    by_name = {Path(f["path"]).name: f for f in document["files"]}
    assert by_name["weights.npy"]["safe_by_construction"] is True
    assert by_name["model.pkl"]["issues"][0]["details"]["global"] == "os.system"


def test_scan_sarif_is_a_sarif_2_1_0_log(
    run_cli: Callable, tmp_path: Path, model_dir: Path
) -> None:
    (model_dir / "model.pkl").write_bytes(EVIL)
    out = tmp_path / "scan.sarif"
    assert run_cli("scan", model_dir, "--format", "sarif", "--out", out).code == EXIT_FOUND
    log = json.loads(out.read_text())
    assert log["version"] == "2.1.0"
    run = log["runs"][0]
    assert run["tool"]["driver"]["name"] == "mlwarden"
    rule = run["tool"]["driver"]["rules"][0]
    assert rule["id"] == "pickle.dangerous-global"
    assert {"AML.T0010", "ML06:2023"} <= set(rule["properties"]["tags"])
    assert float(rule["properties"]["security-severity"]) >= 9.0
    result = run["results"][0]
    assert result["level"] == "error"
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"].endswith("model/model.pkl")
    assert location["region"]["byteOffset"] >= 0


def test_scan_rejects_out_with_a_table_and_missing_paths(
    run_cli: Callable, tmp_path: Path, model_dir: Path
) -> None:
    assert run_cli("scan", model_dir, "--out", tmp_path / "x.json").code == EXIT_USAGE
    assert run_cli("scan", tmp_path / "nope").code == EXIT_USAGE


def test_check_deps_reports_vulnerable_pins_with_fixes(run_cli: Callable, tmp_path: Path) -> None:
    db = write_osv_folder(tmp_path / "osv")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("demo-lib==1.1\nsafe-lib==2.0\n")
    result = run_cli("check-deps", "--requirements", requirements, "--db", db)
    assert result.code == EXIT_FOUND
    assert "PYSEC-2099-1" in result.out
    assert ">=1.2.0" in result.out
    result = run_cli("check-deps", "-r", requirements, "--db", db, "--format", "json")
    document = json.loads(result.out)
    assert document["vulnerabilities"][0]["fixed_versions"] == ["1.2.0"]
    assert document["summary"]["withdrawn_ignored"] == 1


def test_check_deps_sarif_points_at_the_requirement_line(run_cli: Callable, tmp_path: Path) -> None:
    db = write_osv_folder(tmp_path / "osv")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# pins\ndemo-lib==1.1\n")
    out = tmp_path / "audit.sarif"
    args = ("check-deps", "-r", requirements, "--db", db, "--format", "sarif", "--out", out)
    assert run_cli(*args).code == EXIT_FOUND
    result = json.loads(out.read_text())["runs"][0]["results"][0]
    assert result["ruleId"] == "PYSEC-2099-1"
    assert result["locations"][0]["physicalLocation"]["region"]["startLine"] == 2


def test_check_deps_passes_clean_pins_and_needs_its_inputs(
    run_cli: Callable, tmp_path: Path
) -> None:
    db = write_osv_folder(tmp_path / "osv")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("demo-lib==1.2.0\n")
    assert run_cli("check-deps", "-r", requirements, "--db", db).code == EXIT_OK
    assert run_cli("check-deps", "--db", db).code == EXIT_USAGE
    assert run_cli("check-deps", "-r", requirements).code == EXIT_USAGE


def _assess_args(tmp_path: Path, model: Path) -> list[str | Path]:
    config = tmp_path / "assess.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "seed": 0,
                "epsilons": [0.05],
                "attacks": ["square"],
                "max_samples": 20,
                "attack_params": {"square": {"queries": 10}},
            }
        )
    )
    return ["assess", "--model", model, "--data", "builtin:breast-cancer", "--config", config]


def test_assess_with_artifacts_adds_a_supply_chain_section(
    run_cli: Callable, tmp_path: Path
) -> None:
    artifacts = tmp_path / "release"
    artifacts.mkdir()
    model = write_onnx_classifier(artifacts / "model.onnx", n_features=30, n_classes=2)
    (artifacts / "legacy.pkl").write_bytes(EVIL)
    (artifacts / "requirements.txt").write_text("demo-lib==1.1\n")
    db = write_osv_folder(tmp_path / "osv")
    keys = tmp_path / "keys"
    assert run_cli("keygen", "--out", keys).code == EXIT_OK
    assert run_cli("sign", artifacts, "--key", keys / "private.pem").code == EXIT_OK
    out = tmp_path / "report"
    result = run_cli(
        *_assess_args(tmp_path, model),
        "--out", out,
        "--artifacts", artifacts,
        "--advisories", db,
        "--require-signature", keys / "public.pem",
    )  # fmt: skip
    assert result.code == EXIT_OK, result.err
    report = json.loads((out / "report.json").read_text())
    supply = {f["title"]: f for f in report["findings"] if f["check"] == "supplychain"}
    assert supply["Signature verified"]["severity"] == "info"
    scan = next(f for t, f in supply.items() if t.startswith("Unsafe serialized artifact"))
    assert scan["severity"] == "critical"
    assert scan["taxonomy"]["atlas"] == ["AML.T0010"]
    assert scan["taxonomy"]["owasp"] == ["ML06:2023"]
    assert supply["Vulnerable dependency: demo-lib 1.1"]["severity"] == "high"
    sarif = json.loads((out / "report.sarif").read_text())
    assert "supplychain.scan" in {r["ruleId"] for r in sarif["runs"][0]["results"]}


def test_assess_refuses_a_model_whose_signature_does_not_verify(
    run_cli: Callable, tmp_path: Path
) -> None:
    folder = tmp_path / "release"
    folder.mkdir()
    model = write_onnx_classifier(folder / "model.onnx", n_features=30, n_classes=2)
    keys = tmp_path / "keys"
    run_cli("keygen", "--out", keys)
    run_cli("sign", model, "--key", keys / "private.pem")
    model.write_bytes(model.read_bytes() + b"\x00")
    out = tmp_path / "report"
    args = (
        *_assess_args(tmp_path, model),
        "--out",
        out,
        "--require-signature",
        keys / "public.pem",
    )
    result = run_cli(*args)
    assert result.code == EXIT_USAGE
    assert "changed" in result.err
    assert not out.exists()


@pytest.mark.parametrize("command", ["check-deps", "audit-deps"])
def test_check_deps_and_its_hidden_old_name_audit_deps_both_work(
    run_cli: Callable, tmp_path: Path, command: str
) -> None:
    db = write_osv_folder(tmp_path / "osv")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("demo-lib==1.1\n")
    result = run_cli(command, "-r", requirements, "--db", db, "--format", "json")
    assert result.code == EXIT_FOUND
    assert json.loads(result.out)["vulnerabilities"][0]["id"] == "PYSEC-2099-1"


def test_the_old_name_audit_deps_is_hidden_from_help(run_cli: Callable) -> None:
    result = run_cli("--help")
    assert "check-deps" in result.out
    assert "audit-deps" not in result.out


# -- the scan fast path (issue 14) ------------------------------------------------------------


def _same_run(run: tuple[int, str, str]) -> tuple[int, str, str]:
    """Exit code and output with the scan's own duration blanked (it differs run to run)."""
    blank = re.compile(r"in \d+\.\d\d s;|\"duration_s\": [0-9.e-]+")
    code, out, err = run
    return code, blank.sub("<t>", out), blank.sub("<t>", err)


@pytest.fixture
def both_paths(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[tuple[int, str, str], tuple[int, str, str]]]:
    """Run ``mlwarden ARGV`` through the fast path, then through typer; (code, out, err) each."""

    def run(*argv: str | Path) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
        args = [str(a) for a in argv]
        assert mlwarden.cli.app._scan_options(args) is not None, "not a fast-path command line"
        fast_code = mlwarden.cli.app.main(args)
        fast = (fast_code, *capsys.readouterr())
        with monkeypatch.context() as patch:
            patch.setattr(mlwarden.cli.app, "_scan_options", lambda _: None)
            typer_code = mlwarden.cli.app.main(args)
        return fast, (typer_code, *capsys.readouterr())

    return run


def test_a_plain_scan_command_line_skips_typer() -> None:
    options = mlwarden.cli.app._scan_options(
        ["scan", "a.pt", "-f", "json", "--out=x.json", "--fail-on", "low"]
    )
    assert options == {
        "paths": [Path("a.pt")],
        "fmt": "json",
        "out": Path("x.json"),
        "fail_on": "low",
    }
    for argv in (
        ["scan"],
        ["scan", "--help"],
        ["scan", "a.pt", "--bogus"],
        ["scan", "a.pt", "-fjson"],
        ["scan", "a.pt", "--format"],
        ["scan", "--", "-a.pt"],
        ["-v", "scan", "a.pt"],
        ["verify", "a.pt"],
    ):
        assert mlwarden.cli.app._scan_options(argv) is None, (
            argv
        )  # typer parses these and words any error


@pytest.mark.parametrize(
    "case",
    ["clean-file", "malicious-file", "folder", "json", "sarif-out", "bad-severity", "bad-format"],
)
def test_the_fast_path_and_typer_give_the_same_output_and_exit_code(
    case: str, both_paths: Callable, model_dir: Path, tmp_path: Path
) -> None:
    (model_dir / "model.pkl").write_bytes(EVIL)  # a payload built here, never loaded
    clean = tmp_path / "clean.pkl"
    clean.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=4))
    argv: tuple[str | Path, ...] = {
        "clean-file": ("scan", clean),
        "malicious-file": ("scan", model_dir / "model.pkl"),
        "folder": ("scan", model_dir, "--fail-on", "critical"),
        "json": ("scan", model_dir, "--format", "json"),
        "sarif-out": ("scan", model_dir, "-f", "sarif", "-o", tmp_path / "scan.sarif"),
        "bad-severity": ("scan", clean, "--fail-on", "severe"),
        "bad-format": ("scan", clean, "--format=xml"),
    }[case]
    fast, through_typer = both_paths(*argv)
    assert _same_run(fast) == _same_run(through_typer)
    expected = {
        "clean-file": EXIT_OK,
        "malicious-file": EXIT_FOUND,
        "folder": EXIT_FOUND,
        "json": EXIT_FOUND,
        "sarif-out": EXIT_FOUND,
        "bad-severity": EXIT_USAGE,
        "bad-format": EXIT_USAGE,
    }[case]
    assert fast[0] == expected
    assert "Traceback" not in fast[2]


def test_a_bad_option_is_answered_by_typer(run_cli: Callable, model_dir: Path) -> None:
    result = run_cli("scan", model_dir, "--bogus")
    assert result.code == EXIT_USAGE
    assert "No such option" in result.err
    assert "--bogus" in result.err


def test_a_plain_scan_imports_neither_typer_nor_pydantic(tmp_path: Path) -> None:
    (tmp_path / "m.pkl").write_bytes(pickle.dumps([1, 2], protocol=4))
    code = f"from mlwarden.cli.app import main\nmain(['scan', {str(tmp_path)!r}, '-f', 'json'])"
    assert _modules_after(code, ("typer", "click", "pydantic", "rich")) == set()
    code = f"from mlwarden.cli.app import main\nmain(['scan', {str(tmp_path)!r}])"
    assert _modules_after(code, ("typer", "click", "pydantic")) == set()
