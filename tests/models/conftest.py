"""Fixtures for model tests: tiny models made on the spot, and pickles that leave a trace if run."""

from __future__ import annotations

import os
import shlex
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mlwarden.models.zoo import save_torch_model

N_FEATURES = 4
N_CLASSES = 3


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: two threads on two busy cores make tiny models crawl."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class CanaryPayload:
    """An object whose unpickling runs a shell command that creates ``canary``.

    If the canary file exists after a loader refused a file, the loader executed the pickle.
    """

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return (os.system, (f"touch {shlex.quote(str(self.canary))}",))


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """Where a payload would leave its trace (absent at the start of the test)."""
    return tmp_path / "canary-was-executed"


@pytest.fixture
def canary_payload(canary: Path) -> CanaryPayload:
    return CanaryPayload(canary)


def make_tiny_module() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(N_FEATURES, 8), nn.Tanh(), nn.Linear(8, N_CLASSES)).eval()


@pytest.fixture
def tiny_module() -> nn.Module:
    """A smooth 4 -> 3 classifier with fixed weights."""
    return make_tiny_module()


@pytest.fixture
def inputs() -> np.ndarray:
    return np.random.default_rng(0).random((7, N_FEATURES), dtype=np.float32)


@pytest.fixture(scope="module")
def exported_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_module`` saved with torch.export, with a sidecar giving its input shape.

    Shared by a module's tests (exporting takes a while): copy it before changing it.
    """
    return save_torch_model(
        make_tiny_module(),
        tmp_path_factory.mktemp("exported") / "tiny.pt2",
        input_shape=(N_FEATURES,),
        metadata={"input_shape": [N_FEATURES], "n_classes": N_CLASSES},
    )


@pytest.fixture
def rewrite_archive() -> Callable[..., Path]:
    """Copy a zip archive, replacing or adding members named relative to its root folder."""

    def rewrite(
        source: Path,
        target: Path,
        replace: Callable[[str, bytes], bytes] | None = None,
        add: dict[str, bytes] | None = None,
    ) -> Path:
        with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
            root = src.namelist()[0].split("/", 1)[0]
            for info in src.infolist():
                data = src.read(info.filename)
                rel = info.filename.split("/", 1)[1]
                dst.writestr(info, replace(rel, data) if replace else data)
            for rel, data in (add or {}).items():
                dst.writestr(f"{root}/{rel}", data)
        return target

    return rewrite


@pytest.fixture
def onnx_linear(tmp_path: Path) -> Callable[..., Path]:
    """Build ``x @ weight + bias`` (optionally followed by Softmax) as an ONNX file."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    def build(weight: np.ndarray, bias: np.ndarray, *, softmax: bool, name: str = "linear") -> Path:
        n_in, n_out = weight.shape
        nodes = [helper.make_node("Gemm", ["x", "weight", "bias"], ["logits"])]
        output = "logits"
        if softmax:
            nodes.append(helper.make_node("Softmax", ["logits"], ["proba"], axis=1))
            output = "proba"
        graph = helper.make_graph(
            nodes,
            name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n_in])],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", n_out])],
            initializer=[
                numpy_helper.from_array(weight.astype(np.float32), "weight"),
                numpy_helper.from_array(bias.astype(np.float32), "bias"),
            ],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, str(path))
        return path

    return build
