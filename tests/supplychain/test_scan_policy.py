"""The allow-list and deny-list that judge each global a pickle imports."""

from __future__ import annotations

import pytest

from mlwarden.report.findings import Severity
from mlwarden.supplychain.scan import classify_global
from mlwarden.supplychain.scan.policy import is_nested_loader


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch", "FloatStorage"),
        ("torch", "bfloat16"),
        ("torch.storage", "UntypedStorage"),
        ("torch.nn.modules.conv", "Conv2d"),
        ("collections", "OrderedDict"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "dtype"),
        ("numpy.dtypes", "Float64DType"),
        ("joblib.numpy_pickle", "NumpyArrayWrapper"),
        ("_codecs", "encode"),
        ("builtins", "set"),
        ("__builtin__", "set"),
        ("copy_reg", "_reconstructor"),
    ],
)
def test_rebuild_helpers_are_allow_listed(module: str, name: str) -> None:
    assert classify_global(module, name).severity is None


@pytest.mark.parametrize(
    ("module", "name", "severity"),
    [
        ("os", "system", Severity.CRITICAL),
        ("posix", "system", Severity.CRITICAL),
        ("nt", "system", Severity.CRITICAL),
        ("subprocess", "Popen", Severity.CRITICAL),
        ("builtins", "eval", Severity.CRITICAL),
        ("builtins", "exec", Severity.CRITICAL),
        ("builtins", "compile", Severity.CRITICAL),
        ("builtins", "__import__", Severity.CRITICAL),
        ("__builtin__", "eval", Severity.CRITICAL),
        ("builtins", "getattr", Severity.HIGH),
        ("builtins", "open", Severity.HIGH),
        ("runpy", "run_path", Severity.CRITICAL),
        ("importlib", "import_module", Severity.CRITICAL),
        ("pickle", "loads", Severity.CRITICAL),
        ("_pickle", "loads", Severity.CRITICAL),
        ("marshal", "loads", Severity.CRITICAL),
        ("sys", "modules", Severity.CRITICAL),
        ("ctypes", "CDLL", Severity.CRITICAL),
        ("socket", "create_connection", Severity.HIGH),
        ("webbrowser", "open", Severity.HIGH),
        ("shutil", "rmtree", Severity.HIGH),
        ("operator", "attrgetter", Severity.HIGH),
        ("functools", "partial", Severity.HIGH),
        ("torch", "load", Severity.CRITICAL),
        ("torch.storage", "_load_from_bytes", Severity.CRITICAL),
        ("torch.fx.graph_module", "reduce_graph_module", Severity.CRITICAL),
        ("numpy", "load", Severity.CRITICAL),
        ("numpy.testing._private.utils", "runstring", Severity.CRITICAL),
    ],
)
def test_dangerous_globals_are_deny_listed(module: str, name: str, severity: Severity) -> None:
    assert classify_global(module, name).severity is severity


def test_unknown_globals_are_reported_as_medium() -> None:
    verdict = classify_global("mypackage.layers", "CustomBlock")
    assert verdict.severity is Severity.MEDIUM
    assert "allow-list" in verdict.reason


def test_known_ml_library_types_are_low() -> None:
    assert classify_global("sklearn.linear_model._logistic", "LogisticRegression").severity is (
        Severity.LOW
    )


def test_functions_of_known_libraries_stay_medium() -> None:
    assert classify_global("sklearn.datasets", "fetch_openml").severity is Severity.MEDIUM


def test_a_dotted_name_is_judged_by_every_object_it_passes_through() -> None:
    verdict = classify_global("posixpath", "os.system")
    assert verdict.severity is Severity.CRITICAL
    assert verdict.fullname == "posixpath.os.system"


def test_a_dotted_name_through_a_dunder_is_high() -> None:
    verdict = classify_global("torch._utils", "_rebuild_tensor_v2.__globals__")
    assert verdict.severity is not None and verdict.severity.rank >= Severity.HIGH.rank


def test_module_prefixes_match_whole_components_only() -> None:
    assert classify_global("osgeo.gdal", "Open").severity is Severity.MEDIUM
    assert classify_global("os.path", "join").severity is Severity.MEDIUM


def test_nested_loaders_are_known() -> None:
    assert is_nested_loader("_pickle", "loads")
    assert is_nested_loader("torch.storage", "_load_from_bytes")
    assert not is_nested_loader("collections", "OrderedDict")
