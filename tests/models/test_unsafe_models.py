"""Formats that can run code are refused, and refusing never runs the code.

Every payload here is a pickle (or a string PyTorch evaluates) that creates a canary file when it
runs; each test asserts that the canary is still absent after ``load_model`` gave up.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shlex
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import joblib
import pytest
import torch
from torch import nn

from mlwarden.errors import ModelError, UnsafeModelError
from mlwarden.models import load_model

ALTERNATIVES = r"torch\.export\.save \(\.pt2\).*skops\.io\.dump \(\.skops\).*ONNX \(\.onnx\)"


def torch_save_bytes(obj: object, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)  # type: ignore[arg-type]
    return buffer.getvalue()


def test_the_canary_payload_does_run_when_unpickled(canary: Path, canary_payload: object) -> None:
    # Guards the tests below: they would pass vacuously if the payload could not run.
    pickle.loads(pickle.dumps(canary_payload))

    assert canary.exists()


# Pickle files --------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pkl", ".pickle", ".sav", ".pth", ".ckpt", ".bin"])
def test_pickle_files_are_refused_without_being_unpickled(
    tmp_path: Path, canary: Path, canary_payload: object, suffix: str
) -> None:
    path = tmp_path / f"model{suffix}"
    path.write_bytes(pickle.dumps(canary_payload))

    with pytest.raises(UnsafeModelError, match=rf"refusing to load model\{suffix}.*arbitrary code"):
        load_model(path, input_shape=(4,))
    assert not canary.exists()


def test_joblib_file_is_refused_without_being_unpickled(
    tmp_path: Path, canary: Path, canary_payload: object
) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(canary_payload, path)

    with pytest.raises(UnsafeModelError, match=ALTERNATIVES):
        load_model(path, input_shape=(4,))
    assert not canary.exists()


def test_a_pickle_is_refused_as_unsafe_even_when_its_input_shape_is_unknown(
    tmp_path: Path,
) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))

    with pytest.raises(UnsafeModelError, match="can run arbitrary code"):
        load_model(path)


# torch.save checkpoints ----------------------------------------------------------------------


def test_state_dict_checkpoint_named_pt_is_refused_naming_the_alternatives(
    tmp_path: Path, tiny_module: nn.Module
) -> None:
    path = tmp_path / "model.pt"
    torch.save(tiny_module.state_dict(), path)
    assert "model/data.pkl" in zipfile.ZipFile(path).namelist()

    with pytest.raises(UnsafeModelError, match=rf"torch\.save checkpoint.*{ALTERNATIVES}"):
        load_model(path)


def test_torch_save_checkpoint_is_refused_without_being_unpickled(
    tmp_path: Path, canary: Path, canary_payload: object
) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(torch_save_bytes(canary_payload))

    with pytest.raises(UnsafeModelError, match=r"torch\.save checkpoint"):
        load_model(path, input_shape=(4,))
    assert not canary.exists()


@pytest.mark.parametrize("suffix", [".pt", ".pt2"])
def test_legacy_non_zip_torch_save_file_is_refused_without_being_unpickled(
    tmp_path: Path, canary: Path, canary_payload: object, suffix: str
) -> None:
    path = tmp_path / f"model{suffix}"
    path.write_bytes(torch_save_bytes(canary_payload, _use_new_zipfile_serialization=False))
    assert not zipfile.is_zipfile(path)

    with pytest.raises(UnsafeModelError, match=rf"legacy torch\.save file.*{ALTERNATIVES}"):
        load_model(path)
    assert not canary.exists()


def test_legacy_state_dict_checkpoint_is_refused(tmp_path: Path, tiny_module: nn.Module) -> None:
    path = tmp_path / "model.pt"
    torch.save(tiny_module.state_dict(), path, _use_new_zipfile_serialization=False)

    with pytest.raises(UnsafeModelError, match=r"legacy torch\.save file"):
        load_model(path, input_shape=(4,))


def test_checkpoint_disguised_as_torchscript_never_runs_its_pickle(
    tmp_path: Path, canary: Path, canary_payload: object
) -> None:
    # A "code/" member makes the archive look like TorchScript; torch.jit.load must still not
    # hand data.pkl to Python's unpickler.
    path = tmp_path / "model.pt"
    checkpoint = io.BytesIO(torch_save_bytes(canary_payload))
    with zipfile.ZipFile(checkpoint) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info.filename))
        root = src.namelist()[0].split("/", 1)[0]
        dst.writestr(f"{root}/code/__torch__.py", "")

    with pytest.raises(ModelError):
        load_model(path, input_shape=(4,))
    assert not canary.exists()


# torch.export archives ------------------------------------------------------------------------
# torch.export.load is not a safe loader; each craft below runs code in it (checked first), and
# load_model must refuse the archive before torch reads it.


def shell_touch(canary: Path) -> str:
    return f"touch {shlex.quote(str(canary))}"


def pickled_sample_inputs(canary: Path, payload: object) -> Callable[[str, bytes], bytes]:
    def replace(rel: str, data: bytes) -> bytes:
        return torch_save_bytes((payload,)) if rel == "data/sample_inputs/model.pt" else data

    return replace


def evaluated_shape(canary: Path, payload: object) -> Callable[[str, bytes], bytes]:
    code = f"__import__('os').system({shell_touch(canary)!r}) + "

    def replace(rel: str, data: bytes) -> bytes:
        if rel != "models/model.json":
            return data
        text = data.decode()
        assert '"expr_str": "' in text
        return text.replace('"expr_str": "', '"expr_str": "' + code.replace('"', '\\"'), 1).encode()

    return replace


def executed_guard(canary: Path, payload: object) -> Callable[[str, bytes], bytes]:
    def replace(rel: str, data: bytes) -> bytes:
        if rel != "models/model.json":
            return data
        program = json.loads(data)
        program["guards_code"] = [f"__import__('os').system({shell_touch(canary)!r}) == 0"]
        return json.dumps(program).encode()

    return replace


CRAFTS = {
    "pickle-in-sample-inputs": (
        pickled_sample_inputs,
        r"sample_inputs/model\.pt.*(posix|nt)\.system",
    ),
    "eval-in-symbolic-shape": (evaluated_shape, "symbolic shape .* is not a plain expression"),
    "exec-in-guard-code": (executed_guard, "carries guard code"),
}


@pytest.fixture(params=list(CRAFTS))
def crafted_archive(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    exported_model: Path,
    canary: Path,
    canary_payload: object,
    rewrite_archive: Callable[..., Path],
) -> tuple[Path, str]:
    """An exported program altered to run a shell command that creates the canary."""
    craft, message = CRAFTS[request.param]
    path = rewrite_archive(
        exported_model, tmp_path / "crafted.pt2", replace=craft(canary, canary_payload)
    )
    return path, message


def test_crafted_export_archives_do_run_code_in_torch_export_load(
    crafted_archive: tuple[Path, str], canary: Path
) -> None:
    # Guards the next test: the crafts are real exploits against torch.export.load alone.
    # If one stops working after a PyTorch upgrade, PyTorch closed that hole; drop the craft.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            module = torch.export.load(str(crafted_archive[0])).module()
            module(torch.zeros(2, 4))  # guard code runs on the first call
        except Exception:  # some crafts break the load after the payload ran
            pass

    assert canary.exists()


def test_crafted_export_archives_are_refused_before_torch_reads_them(
    crafted_archive: tuple[Path, str], canary: Path
) -> None:
    path, message = crafted_archive

    with pytest.raises(UnsafeModelError, match=rf"refusing to load crafted\.pt2: .*{message}"):
        load_model(path)
    assert not canary.exists()


@pytest.mark.parametrize(
    "expression",
    [
        "eval('1')",
        "Max('__import__(\\'os\\').getcwd()', 1)",
        "Symbol('s').__class__",
        "Integer(1) + _hidden",
        "(lambda: 1)()",
        "[Integer(1)][0]",
        "Symbol('s', positive='yes')",
    ],
    ids=[
        "unknown-call",
        "string-for-sympify",
        "attribute",
        "private-name",
        "lambda",
        "subscript",
        "string-keyword",
    ],
)
def test_symbolic_shapes_beyond_plain_expressions_are_refused(
    tmp_path: Path, exported_model: Path, rewrite_archive: Callable[..., Path], expression: str
) -> None:
    def replace_shapes(rel: str, data: bytes) -> bytes:
        if rel != "models/model.json":
            return data
        field = json.dumps({"expr_str": expression})[1:-1].encode()
        return re.sub(rb'"expr_str": "[^"]*"', lambda _: field, data)

    path = rewrite_archive(exported_model, tmp_path / "m.pt2", replace=replace_shapes)

    with pytest.raises(UnsafeModelError, match="is not a plain expression"):
        load_model(path)


def test_export_archive_with_pickled_weights_is_refused(
    tmp_path: Path, exported_model: Path, rewrite_archive: Callable[..., Path]
) -> None:
    def pickle_weights(rel: str, data: bytes) -> bytes:
        if rel != "data/weights/model_weights_config.json":
            return data
        config = json.loads(data)
        for entry in config["config"].values():
            entry["use_pickle"] = True
        return json.dumps(config).encode()

    path = rewrite_archive(exported_model, tmp_path / "m.pt2", replace=pickle_weights)

    with pytest.raises(UnsafeModelError, match="stored as a pickled object"):
        load_model(path)


def test_export_archive_with_compiled_code_is_refused(
    tmp_path: Path, exported_model: Path, rewrite_archive: Callable[..., Path]
) -> None:
    path = rewrite_archive(
        exported_model,
        tmp_path / "m.pt2",
        add={"data/aotinductor/model/model.so": b"\x7fELF"},
    )

    with pytest.raises(UnsafeModelError, match=r"data/aotinductor/model/model\.so"):
        load_model(path)


def test_export_archive_whose_inputs_name_a_module_to_import_is_refused(
    tmp_path: Path, exported_model: Path, rewrite_archive: Callable[..., Path]
) -> None:
    def defaultdict_spec(rel: str, data: bytes) -> bytes:
        if rel != "models/model.json":
            return data
        program = json.loads(data)
        signature = program["graph_module"]["module_call_graph"][0]["signature"]
        signature["in_spec"] = signature["in_spec"].replace(
            "builtins.dict", "collections.defaultdict"
        )
        return json.dumps(program).encode()

    path = rewrite_archive(exported_model, tmp_path / "m.pt2", replace=defaultdict_spec)

    with pytest.raises(UnsafeModelError, match=r"collections\.defaultdict"):
        load_model(path)


# skops files ---------------------------------------------------------------------------------


class Marker:
    """A class outside scikit-learn, NumPy and SciPy."""


def test_skops_file_with_a_foreign_type_is_refused_naming_it(tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    estimator = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    estimator.note_ = Marker()
    path = tmp_path / "model.skops"
    sio.dump(estimator, path)

    with pytest.raises(UnsafeModelError, match=r"refusing to load model\.skops.*Marker"):
        load_model(path, input_shape=(1,))


def test_skops_file_holding_a_shell_function_is_refused(tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    path = tmp_path / "model.skops"
    sio.dump(FunctionTransformer(func=os.system), path)

    with pytest.raises(UnsafeModelError, match=r"(posix|os)\.system"):
        load_model(path, input_shape=(1,))
