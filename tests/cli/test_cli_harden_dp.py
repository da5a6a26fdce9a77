"""``mlwarden harden dp``: a small DP-SGD run end to end, and bad input as exit code 2."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest
from torch import nn

from mlwarden.defenses.training.dp_harden import read_privacy_record
from mlwarden.models import load_model
from mlwarden.models.zoo import save_torch_model

EXIT_USAGE = 2
MLP = ("--model", "zoo:breast-cancer-mlp", "--data", "builtin:breast-cancer")


def test_harden_dp_writes_a_model_with_its_privacy_record(
    run_cli: Callable[..., object], tmp_path: Path
) -> None:
    out = tmp_path / "mlp-dp.pt2"
    result = run_cli(
        "harden",
        "dp",
        *MLP,
        "--epsilon",
        "3",
        "--delta",
        "1e-5",
        "--epochs",
        "2",
        "--max-grad-norm",
        "1.0",
        "--batch-size",
        "100",
        "--lr",
        "0.5",
        "--out",
        out,
    )
    assert result.code == 0, result.err  # type: ignore[attr-defined]
    text = result.out  # type: ignore[attr-defined]
    assert "epoch 2/2" in text and "ε spent" in text
    assert "ε by RDP accountant" in text and "ε by PRV accountant" in text
    record = read_privacy_record(load_model(out))
    assert record is not None
    assert record.epsilon == 3.0 and record.delta == 1e-5 and record.accountant == "rdp"
    assert record.steps == 2 * 4 and record.epsilon_spent <= 3.0
    assert len(record.dataset_sha256) == 64
    assert record.secure_mode is False and "not cryptographically secure" in text


@pytest.mark.skipif(
    importlib.util.find_spec("torchcsprng") is not None, reason="torchcsprng is installed"
)
def test_secure_mode_without_torchcsprng_exits_2_naming_it(
    run_cli: Callable[..., object], tmp_path: Path
) -> None:
    out = tmp_path / "m.pt2"
    result = run_cli(
        "harden", "dp", *MLP, "--epsilon", "2", "--delta", "1e-5", "--epochs", "1",
        "--secure-mode", "--out", out,
    )  # fmt: skip
    assert result.code == EXIT_USAGE  # type: ignore[attr-defined]
    assert "torchcsprng" in result.err and not out.exists()  # type: ignore[attr-defined]


def _exported(tmp: Path) -> str:
    path = save_torch_model(
        nn.Sequential(nn.Linear(30, 2)),
        tmp / "lin.pt2",
        input_shape=(30,),
        metadata={"input_shape": [30], "n_classes": 2},
    )
    return str(path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epsilon", "0"], "--epsilon must be a positive"),
        (["--epsilon", "2", "--delta", "0.01"], "not below 1/n"),
        (["--epsilon", "2", "--accountant", "gdp"], "--accountant 'gdp' is unknown"),
        (["--epsilon", "2", "--batch-size", "100000"], "--batch-size must be an integer"),
        (["--epsilon", "2", "--max-grad-norm", "0"], "--max-grad-norm"),
        (["--epsilon", "2", "--out-suffix", ".onnx"], "must end in .pt2"),
        (["--epsilon", "2", "--model", "zoo:breast-cancer-gbm"], "not a PyTorch network"),
        (["--epsilon", "2", "--model", "EXPORTED"], "exported or scripted graph"),
    ],
)
def test_bad_input_exits_2_with_the_reason(
    run_cli: Callable[..., object], tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "m.pt2"
    if "--out-suffix" in args:
        i = args.index("--out-suffix")
        out = tmp_path / f"m{args[i + 1]}"
        args = args[:i] + args[i + 2 :]
    args = [_exported(tmp_path) if a == "EXPORTED" else a for a in args]
    base = {"--model": "zoo:breast-cancer-mlp", "--delta": "1e-5"}
    for key in list(base):
        if key in args:
            base.pop(key)
    argv = ["harden", "dp", "--data", "builtin:breast-cancer", "--epochs", "1"]
    for key, value in base.items():
        argv += [key, value]
    result = run_cli(*argv, *args, "--out", out)
    assert result.code == EXIT_USAGE, result.out  # type: ignore[attr-defined]
    assert message in " ".join(result.err.split())  # type: ignore[attr-defined]
    assert not out.exists()
