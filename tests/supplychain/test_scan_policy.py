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
        ("numpy.random._pickle", "__randomstate_ctor"),
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


def test_unknown_globals_are_high() -> None:
    verdict = classify_global("mypackage.layers", "CustomBlock")
    assert verdict.severity is Severity.HIGH
    assert "allow-list" in verdict.reason


def test_known_ml_library_callables_are_high_too() -> None:
    # a pickle can call any class or function it imports; only data-only constructors pass
    assert classify_global("sklearn.linear_model._logistic", "LogisticRegression").severity is (
        Severity.HIGH
    )
    assert classify_global("sklearn.datasets", "fetch_openml").severity is Severity.HIGH


@pytest.mark.parametrize(
    ("module", "name"),
    [
        # GHSA samples that run commands through modules a short deny-list misses
        ("aix", "_run_command"),
        ("_aix_support", "_read_cmd_output"),
        ("osx", "run"),
        ("_osx_support", "_read_output"),
        ("pyrepl.pager", "pipe_pager"),
        ("_pyrepl.pager", "pipe_pager"),
        ("test.support.script_helper", "assert_python_ok"),
        ("uuid", "_get_command_stdout"),
        ("logging", "FileHandler"),
        ("pydoc", "pipepager"),
        ("venv", "create"),
        ("nntplib", "NNTP"),
        ("torch", "compile"),
        ("torch.utils._config_module", "ConfigModule"),
        ("platform", "_syscmd_file"),
        ("builtins", "print"),
        ("builtins", "ValueError"),
        ("os.path", "join"),
    ],
)
def test_callables_outside_the_allow_list_fail_the_default_gate(module: str, name: str) -> None:
    severity = classify_global(module, name).severity
    assert severity is not None and severity.rank >= Severity.HIGH.rank


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("numpy.dtypes", "__builtins__.get"),
        ("numpy.dtypes", "__loader__.set_data"),
        ("torch._utils", "_rebuild_tensor_v2.__globals__"),
        ("collections", "OrderedDict.__init__"),
        ("builtins", "__import__"),
        ("numpy.__config__", "show"),
    ],
)
def test_any_dunder_in_the_path_is_critical(module: str, name: str) -> None:
    assert classify_global(module, name).severity is Severity.CRITICAL


def test_the_allow_list_matches_exact_names_only() -> None:
    assert classify_global("numpy.dtypes", "Float64DType").severity is None
    assert classify_global("numpy.dtypes", "SomethingElse").severity is Severity.HIGH
    assert classify_global("numpy.dtypes", "Float64DType.mro").severity is Severity.HIGH


def test_a_dotted_name_through_an_allow_listed_object_is_not_allowed() -> None:
    verdict = classify_global("torch", "_utils._rebuild_tensor_v2")
    assert verdict.severity is None  # the same object by another path
    assert classify_global("torch._utils", "_rebuild_tensor_v2.x").severity is Severity.HIGH


def test_torchscript_helpers_are_allowed_only_where_asked() -> None:
    assert classify_global("torch.jit._pickle", "build_intlist").severity is Severity.HIGH
    assert classify_global("__torch__.Net", "Net").severity is Severity.CRITICAL
    for module, name in [("torch.jit._pickle", "build_intlist"), ("__torch__.m", "Net")]:
        assert classify_global(module, name, context="torchscript").severity is None
    # the TorchScript context allows nothing from Python
    ts_os = classify_global("os", "system", context="torchscript")
    assert ts_os.severity is Severity.CRITICAL
    assert classify_global("__torch__", "__builtins__", context="torchscript").severity is (
        Severity.CRITICAL
    )


def test_a_dotted_name_is_judged_by_every_object_it_passes_through() -> None:
    verdict = classify_global("posixpath", "os.system")
    assert verdict.severity is Severity.CRITICAL
    assert verdict.fullname == "posixpath.os.system"


def test_module_prefixes_match_whole_components_only() -> None:
    osgeo = classify_global("osgeo.gdal", "Open")
    assert osgeo.severity is Severity.HIGH
    assert "system commands" not in osgeo.reason


def test_nested_loaders_are_known() -> None:
    assert is_nested_loader("_pickle", "loads")
    assert is_nested_loader("torch.storage", "_load_from_bytes")
    assert not is_nested_loader("collections", "OrderedDict")
