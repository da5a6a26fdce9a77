"""onnx_to_torch: the interpreter computes what ONNX Runtime computes, with the gradients of the
network the file was exported from; unknown operators and unsafe external data are refused."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from mlwarden.errors import UnsafeModelError  # noqa: E402
from mlwarden.models import to_white_box  # noqa: E402
from mlwarden.models.convert import (  # noqa: E402
    NotConvertibleError,
    load_onnx_model,
    onnx_to_torch,
)
from mlwarden.models.onnx import OnnxClassifier  # noqa: E402

INPUTS = np.random.default_rng(0).random((64, 1, 8, 8), dtype=np.float32)


class SmallCnn(nn.Module):
    """Conv, pooling, dropout and dense layers ending in a softmax: outputs are probabilities."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.logits = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=1),
            nn.LeakyReLU(0.1),
            nn.AvgPool2d(2),
            nn.Dropout(0.2),
            nn.Flatten(),
            nn.Linear(32, 16),
            nn.Tanh(),
            nn.Linear(16, 10),
        ).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)


@pytest.fixture(scope="module")
def cnn() -> SmallCnn:
    return SmallCnn().eval()


@pytest.fixture(scope="module", params=[11, 17], ids=lambda v: f"opset{v}")
def cnn_file(
    request: pytest.FixtureRequest, cnn: SmallCnn, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "cnn.onnx"
    with warnings.catch_warnings():  # the TorchScript-based exporter is deprecated but offline
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            cnn,
            (torch.zeros(1, 1, 8, 8),),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["proba"],
            dynamic_axes={"x": {0: "batch"}, "proba": {0: "batch"}},
            opset_version=request.param,
        )
    return path


def test_logits_of_an_exported_cnn_are_its_pre_softmax_outputs(
    cnn: SmallCnn, cnn_file: Path
) -> None:
    module = onnx_to_torch(cnn_file, strict=True)
    assert module is not None
    x = torch.from_numpy(INPUTS)
    with torch.no_grad():
        np.testing.assert_allclose(module(x).numpy(), cnn.logits(x).numpy(), atol=1e-5)


def test_the_input_gradient_is_the_exported_networks(cnn: SmallCnn, cnn_file: Path) -> None:
    module = onnx_to_torch(cnn_file, strict=True)
    assert module is not None
    x = torch.from_numpy(INPUTS[:8])
    y = torch.arange(8)
    grads = []
    for net in (module, cnn.logits):
        xt = x.clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(net(xt), y, reduction="sum")
        grads.append(torch.autograd.grad(loss, xt)[0].numpy())

    np.testing.assert_allclose(grads[0], grads[1], atol=1e-6)
    assert np.abs(grads[1]).max() > 1e-3  # a real gradient, not two zeros


def test_to_white_box_accepts_the_exported_cnn(cnn_file: Path) -> None:
    classifier = OnnxClassifier(cnn_file, input_shape=(1, 8, 8), n_classes=10)

    white_box, record = to_white_box(classifier, INPUTS)

    assert white_box is not None, record
    assert record == {
        "converted": True,
        "reason": "",
        "max_abs_diff": record["max_abs_diff"],
        "n_checked": 64,
    }
    assert record["max_abs_diff"] <= 1e-5
    np.testing.assert_array_equal(white_box.predict_proba(INPUTS), classifier.predict_proba(INPUTS))


def _save(nodes: list, initializers: dict, path: Path, opset: int = 17, n_in: int = 6) -> Path:
    graph = helper.make_graph(
        nodes,
        "handmade",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", None])],
        initializer=[numpy_helper.from_array(v, k) for k, v in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _many_ops_graph(path: Path) -> Path:
    """Reshape, Transpose, BatchNormalization, Squeeze/Unsqueeze, Concat, Clip, Cast, ... ."""
    rng = np.random.default_rng(3)
    f32 = np.float32
    init = {
        "shape": np.array([0, 2, 3], np.int64),
        "axes": np.array([3], np.int64),
        "scale": rng.uniform(0.5, 2, 2).astype(f32),
        "bias": rng.normal(size=2).astype(f32),
        "mean": rng.normal(size=2).astype(f32),
        "var": rng.uniform(0.5, 2, 2).astype(f32),
        "w": rng.normal(size=(12, 4)).astype(f32),
        "low": np.array(-0.5, f32),
        "high": np.array(1.5, f32),
    }
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["r"]),  # (n, 2, 3)
        helper.make_node("Unsqueeze", ["r", "axes"], ["u"]),  # (n, 2, 3, 1)
        helper.make_node("BatchNormalization", ["u", "scale", "bias", "mean", "var"], ["bn"]),
        helper.make_node("Squeeze", ["bn", "axes"], ["s"]),  # (n, 2, 3)
        helper.make_node("Transpose", ["s"], ["t"], perm=[0, 2, 1]),  # (n, 3, 2)
        helper.make_node("Constant", [], ["two"], value_float=2.0),
        helper.make_node("Mul", ["t", "two"], ["m"]),
        helper.make_node("Sigmoid", ["m"], ["sg"]),
        helper.make_node("Sub", ["m", "sg"], ["d"]),
        helper.make_node("Div", ["d", "two"], ["dv"]),
        helper.make_node("Clip", ["dv", "low", "high"], ["c"]),
        helper.make_node("Concat", ["c", "t"], ["cat"], axis=2),  # (n, 3, 4)
        helper.make_node("Flatten", ["cat"], ["flat"], axis=1),  # (n, 12)
        helper.make_node("Cast", ["flat"], ["fl"], to=TensorProto.FLOAT),
        helper.make_node("Identity", ["fl"], ["id"]),
        helper.make_node("Dropout", ["id"], ["dr"]),
        helper.make_node("MatMul", ["dr", "w"], ["mm"]),
        helper.make_node("Tanh", ["mm"], ["th"]),
        helper.make_node("LogSoftmax", ["th"], ["out"], axis=1),
    ]
    return _save(nodes, init, path)


def test_the_interpreter_computes_what_onnx_runtime_computes(tmp_path: Path) -> None:
    import onnxruntime as ort

    path = _many_ops_graph(tmp_path / "many.onnx")
    x = np.random.default_rng(4).normal(size=(32, 6)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"x": x})
    module = onnx_to_torch(path, strict=True)
    assert module is not None

    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), expected, atol=1e-5)


def test_a_graph_with_an_unsupported_operator_gives_none_and_names_it(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Sin", ["x"], ["s"]),
        helper.make_node("Softmax", ["s"], ["out"], axis=1),
    ]
    path = _save(nodes, {}, tmp_path / "sin.onnx")

    assert onnx_to_torch(path) is None
    with pytest.raises(NotConvertibleError, match="unsupported ONNX operator Sin"):
        onnx_to_torch(path, strict=True)
    classifier = OnnxClassifier(path, input_shape=(6,), n_classes=6)
    white_box, record = to_white_box(classifier, np.zeros((4, 6), np.float32))
    assert white_box is None
    assert record["reason"] == "unsupported ONNX operator Sin"


def test_to_white_box_refuses_a_conversion_that_does_not_match_the_model(tmp_path: Path) -> None:
    # declared "probabilities" but the graph gives logits: the model's scores are not a softmax
    rng = np.random.default_rng(5)
    init = {"w": rng.normal(size=(6, 3)).astype(np.float32), "b": np.zeros(3, np.float32)}
    path = _save([helper.make_node("Gemm", ["x", "w", "b"], ["out"])], init, tmp_path / "l.onnx")
    classifier = OnnxClassifier(path, input_shape=(6,), n_classes=3, output="probabilities")

    white_box, record = to_white_box(classifier, rng.random((40, 6), dtype=np.float32))

    assert white_box is None
    assert record["converted"] is False
    assert record["n_checked"] == 40
    assert record["max_abs_diff"] > 1e-4
    assert "differ from the model's" in record["reason"]


def test_external_data_beside_the_model_is_loaded(tmp_path: Path) -> None:
    path = _many_ops_graph(tmp_path / "model.onnx")
    model = onnx.load(str(path))
    onnx.save(
        model, str(path), save_as_external_data=True, location="weights.bin", size_threshold=0
    )

    module = onnx_to_torch(path, strict=True)

    assert module is not None
    assert (tmp_path / "weights.bin").exists()


def test_external_data_outside_the_models_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    path = _many_ops_graph(folder / "model.onnx")
    onnx.save(
        onnx.load(str(path)),
        str(path),
        save_as_external_data=True,
        location="weights.bin",
        size_threshold=0,
    )
    shutil.move(folder / "weights.bin", tmp_path / "weights.bin")
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../weights.bin"
    onnx.save(model, str(path))

    with pytest.raises(UnsafeModelError, match=r"outside the model's folder"):
        load_onnx_model(path)


def test_the_convert_package_exports_exactly_its_public_names() -> None:
    import mlwarden.models.convert as convert

    submodules = {"errors", "from_onnx", "from_sklearn", "white_box"}
    public = {n for n in vars(convert) if not n.startswith("_")} - submodules
    assert set(convert.__all__) == public
