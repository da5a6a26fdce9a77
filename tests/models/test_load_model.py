"""load_model: safe formats round-trip; bad paths and damaged files fail with clear messages."""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from mlwarden.errors import ModelError, UnsafeModelError
from mlwarden.models import SklearnClassifier, TorchClassifier, load_model
from mlwarden.models.loading import SIDECAR_SUFFIX
from mlwarden.models.zoo import save_torch_model


def softmax_of(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(module(torch.from_numpy(x)), dim=1).numpy()


@contextmanager
def raises_plain_model_error(match: str) -> Iterator[None]:
    """Expect a ModelError that is not an UnsafeModelError: the file is bad, not dangerous."""
    with pytest.raises(ModelError, match=match) as excinfo:
        yield
    assert not isinstance(excinfo.value, UnsafeModelError)


# Round trips ---------------------------------------------------------------------------------


def test_torch_export_file_gives_the_probabilities_of_the_original_module(
    exported_model: Path, tiny_module: nn.Module, inputs: np.ndarray
) -> None:
    classifier = load_model(exported_model)

    assert isinstance(classifier, TorchClassifier)
    np.testing.assert_allclose(
        classifier.predict_proba(inputs), softmax_of(tiny_module, inputs), rtol=1e-6
    )


def test_torchscript_file_gives_the_probabilities_of_the_original_module(
    tmp_path: Path, tiny_module: nn.Module, inputs: np.ndarray
) -> None:
    path = tmp_path / "tiny.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(tiny_module, torch.zeros(2, 4)), str(path))

    classifier = load_model(path, input_shape=(4,))

    assert classifier.n_classes == 3
    np.testing.assert_allclose(
        classifier.predict_proba(inputs), softmax_of(tiny_module, inputs), rtol=1e-6
    )


def test_skops_file_gives_the_probabilities_of_the_original_estimator(
    tmp_path: Path, inputs: np.ndarray
) -> None:
    import skops.io as sio

    rng = np.random.default_rng(0)
    estimator = LogisticRegression().fit(rng.random((30, 4)), np.arange(30) % 3)
    path = tmp_path / "logreg.skops"
    sio.dump(estimator, path)

    classifier = load_model(path, input_shape=(4,))

    assert isinstance(classifier, SklearnClassifier)
    assert classifier.n_classes == 3
    np.testing.assert_allclose(
        classifier.predict_proba(inputs), estimator.predict_proba(inputs), rtol=1e-6
    )


def test_onnx_file_loads_with_n_classes_read_from_its_output(
    onnx_linear: Callable[..., Path], inputs: np.ndarray
) -> None:
    pytest.importorskip("onnxruntime")
    path = onnx_linear(np.ones((4, 5)), np.zeros(5), softmax=True)

    classifier = load_model(path, input_shape=(4,))

    assert classifier.n_classes == 5
    assert classifier.predict_proba(inputs).shape == (len(inputs), 5)


class ReshapesTheBatch(nn.Module):
    """Gives the exported program shapes such as ``Mul(Integer(4), Symbol('s0'))``."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pairs = x.reshape(-1).reshape(-1, 2)
        return self.linear(x) + 0.0 * pairs.sum()


def test_export_with_compound_symbolic_shapes_loads(tmp_path: Path, inputs: np.ndarray) -> None:
    module = ReshapesTheBatch().eval()
    path = save_torch_model(module, tmp_path / "reshape.pt2", input_shape=(4,), metadata={})
    with zipfile.ZipFile(path) as archive:
        program = next(n for n in archive.namelist() if n.endswith("/models/model.json"))
        assert b"Mul(Integer(" in archive.read(program)

    classifier = load_model(path, input_shape=(4,))

    np.testing.assert_allclose(
        classifier.predict_proba(inputs), softmax_of(module, inputs), rtol=1e-6
    )


def test_loaded_model_records_its_format_and_file_digest(exported_model: Path) -> None:
    info = load_model(exported_model).info

    assert info["format"] == "pt2"
    assert info["sha256"] == hashlib.sha256(exported_model.read_bytes()).hexdigest()
    assert info["metadata"]["input_shape"] == [4]


# Sidecar metadata ----------------------------------------------------------------------------


def test_sidecar_supplies_the_input_shape(exported_model: Path) -> None:
    assert load_model(exported_model).input_shape == (4,)


def test_arguments_win_over_the_sidecar(exported_model: Path) -> None:
    classifier = load_model(exported_model, clip_range=(-1.0, 2.0))

    assert classifier.clip_range == (-1.0, 2.0)


def test_n_classes_is_inferred_from_the_output_when_nothing_gives_it(
    tmp_path: Path, exported_model: Path
) -> None:
    copy = Path(shutil.copy(exported_model, tmp_path / "bare.pt2"))

    assert load_model(copy, input_shape=(4,)).n_classes == 3


def test_missing_input_shape_is_an_error_naming_the_sidecar_to_write(
    tmp_path: Path, exported_model: Path
) -> None:
    copy = Path(shutil.copy(exported_model, tmp_path / "bare.pt2"))

    with raises_plain_model_error(r"input shape is unknown.*bare\.pt2\.mlwarden\.json"):
        load_model(copy)


def test_unreadable_sidecar_is_an_error_naming_it(tmp_path: Path, exported_model: Path) -> None:
    copy = Path(shutil.copy(exported_model, tmp_path / "model.pt2"))
    Path(str(copy) + SIDECAR_SUFFIX).write_text("{not json")

    with raises_plain_model_error(r"model\.pt2\.mlwarden\.json: unreadable model metadata"):
        load_model(copy)


def test_sidecar_that_is_not_an_object_is_an_error(tmp_path: Path, exported_model: Path) -> None:
    copy = Path(shutil.copy(exported_model, tmp_path / "model.pt2"))
    Path(str(copy) + SIDECAR_SUFFIX).write_text(json.dumps([1, 2]))

    with raises_plain_model_error("must be a JSON object"):
        load_model(copy)


# Bad paths and damaged files -----------------------------------------------------------------


def test_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with raises_plain_model_error(r"'.*nowhere\.pt2' does not exist"):
        load_model(tmp_path / "nowhere.pt2")


def test_directory_is_an_error_asking_for_the_file(tmp_path: Path) -> None:
    with raises_plain_model_error("is a directory; give the model file itself"):
        load_model(tmp_path)


@pytest.mark.parametrize("name", ["model.h5", "model"])
def test_unknown_extension_is_an_error_listing_the_supported_formats(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x00" * 16)

    with raises_plain_model_error(r"unsupported model format.*\.pt2.*\.pt.*\.skops.*\.onnx"):
        load_model(path, input_shape=(4,))


def test_zip_of_random_bytes_named_pt2_is_not_a_pytorch_program(tmp_path: Path) -> None:
    path = tmp_path / "random.pt2"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("random/blob", np.random.default_rng(0).bytes(256))

    with raises_plain_model_error(r"random\.pt2: a zip archive but not a PyTorch program"):
        load_model(path, input_shape=(4,))


def test_truncated_pt2_is_not_a_pytorch_program(tmp_path: Path, exported_model: Path) -> None:
    path = tmp_path / "truncated.pt2"
    path.write_bytes(exported_model.read_bytes()[:200])

    with raises_plain_model_error(r"truncated\.pt2: not a PyTorch program"):
        load_model(path, input_shape=(4,))


def test_pt2_with_a_damaged_program_is_a_model_error(
    tmp_path: Path, exported_model: Path, rewrite_archive: Callable[..., Path]
) -> None:
    def damage(rel: str, data: bytes) -> bytes:
        return data[: len(data) // 2] if rel == "models/model.json" else data

    path = rewrite_archive(exported_model, tmp_path / "damaged.pt2", replace=damage)

    with raises_plain_model_error(r"damaged\.pt2: damaged archive member"):
        load_model(path, input_shape=(4,))


def test_pt2_that_torch_cannot_load_is_a_model_error(
    tmp_path: Path, exported_model: Path, rewrite_archive: Callable[..., Path]
) -> None:
    def wrong_version(rel: str, data: bytes) -> bytes:
        return b"999" if rel == "archive_version" else data

    path = rewrite_archive(exported_model, tmp_path / "future.pt2", replace=wrong_version)

    with raises_plain_model_error(r"future\.pt2: cannot load the PyTorch program"):
        load_model(path, input_shape=(4,))


def test_skops_file_that_is_not_skops_is_a_model_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.skops"
    path.write_bytes(b"not a zip")

    with raises_plain_model_error(r"broken\.skops: not a valid skops file"):
        load_model(path, input_shape=(4,))


def test_onnx_file_that_is_not_onnx_is_a_model_error(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a protobuf")

    with raises_plain_model_error(r"broken\.onnx: not a valid ONNX model"):
        load_model(path, input_shape=(4,), n_classes=3)
