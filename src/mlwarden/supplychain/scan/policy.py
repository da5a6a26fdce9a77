"""Which globals a pickle may import: an allow-list of rebuild helpers and a deny-list with severities.

A pickle can only run code through the globals it imports (``GLOBAL``, ``STACK_GLOBAL``, ``INST``)
and the opcodes that call them (``REDUCE``, ``NEWOBJ``, ``OBJ``, ``INST``, ``BUILD``), so each
global is judged here:

* **allow-listed** (no finding): the tensor, storage, dtype and container rebuild functions
  PyTorch, NumPy, joblib and the standard library use to serialise data. The PyTorch part mirrors
  the globals ``torch.load(weights_only=True)`` accepts;
* **deny-listed** (critical or high): anything that runs commands or code, imports modules,
  unpickles nested data, touches files or the network, or reaches attributes dynamically;
* **known library types** (low): scikit-learn, SciPy, pandas, XGBoost, ... objects. They do not
  run code by themselves but are only as trustworthy as the library version that loads them;
* **everything else** (medium): reported so that a human decides, never silently passed.
"""

from __future__ import annotations

import _compat_pickle
import re
from dataclasses import dataclass

from mlwarden.report.findings import Severity

__all__ = ["GlobalVerdict", "classify_global", "is_nested_loader"]

_C, _H, _M, _L = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW


def _words(text: str) -> list[str]:
    return text.split()


_TORCH_DTYPES = _words(
    "bfloat16 bits16 bits1x8 bits2x4 bits4x2 bits8 bool complex128 complex32 complex64 "
    "float16 float32 float64 float4_e2m1fn_x2 float8_e4m3fn float8_e4m3fnuz float8_e5m2 "
    "float8_e5m2fnuz float8_e8m0fnu half float double cfloat cdouble long int short "
    "int1 int2 int3 int4 int5 int6 int7 int8 int16 int32 int64 qint32 qint8 quint2x4 quint4x2 "
    "quint8 uint1 uint2 uint3 uint4 uint5 uint6 uint7 uint8 uint16 uint32 uint64 "
    "per_channel_affine per_channel_affine_float_qparams per_channel_symmetric "
    "per_tensor_affine per_tensor_symmetric strided sparse_coo sparse_csr sparse_csc sparse_bsr "
    "sparse_bsc _mkldnn contiguous_format channels_last channels_last_3d preserve_format"
)
_TORCH_TYPES = _words(
    "BFloat16 Bool Byte Char ComplexDouble ComplexFloat Double Float Half Int Long Short "
    "QInt32 QInt8 QUInt2x4 QUInt4x2 QUInt8"
)
_TORCH_REBUILD = _words(
    "_rebuild_device_tensor_from_cpu_tensor _rebuild_device_tensor_from_numpy "
    "_rebuild_meta_tensor_no_storage _rebuild_nested_tensor _rebuild_parameter "
    "_rebuild_parameter_with_state _rebuild_qtensor _rebuild_sparse_tensor _rebuild_tensor "
    "_rebuild_tensor_v2 _rebuild_tensor_v3 _rebuild_wrapper_subclass"
)

_SAFE_GLOBALS: frozenset[str] = frozenset(
    [f"torch.{d}" for d in _TORCH_DTYPES]
    + [f"torch.{t}Storage" for t in _TORCH_TYPES]
    + [f"torch.cuda.{t}Storage" for t in _TORCH_TYPES]
    + [f"torch.{t}Tensor" for t in _TORCH_TYPES]
    + [f"torch.cuda.{t}Tensor" for t in _TORCH_TYPES]
    + [f"torch.sparse.{t}Tensor" for t in _TORCH_TYPES]
    + [f"torch.cuda.sparse.{t}Tensor" for t in _TORCH_TYPES]
    + [f"torch._utils.{f}" for f in _TORCH_REBUILD]
    + [
        "torch.Size",
        "torch.Tensor",
        "torch.device",
        "torch.dtype",
        "torch.layout",
        "torch.memory_format",
        "torch.Storage",
        "torch.storage.TypedStorage",
        "torch.storage.UntypedStorage",
        "torch.storage._LegacyStorage",
        "torch._tensor._rebuild_from_type",
        "torch._tensor._rebuild_from_type_v2",
        "torch._tensor.Tensor",
        "torch.nn.parameter.Parameter",
        "torch.nn.parameter.Buffer",
        "torch.nn.parameter.UninitializedParameter",
        "torch.serialization._get_layout",
        "torch.torch_version.TorchVersion",
        # NumPy arrays, scalars and dtypes (numpy 1.x and 2.x module paths)
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy.core.numeric._frombuffer",
        "numpy._core.multiarray._reconstruct",
        "numpy._core.multiarray.scalar",
        "numpy._core.numeric._frombuffer",
        "numpy.ma.core._mareconstruct",
        "numpy.ma.core.MaskedArray",
        "numpy.matrix",
        "numpy.matrixlib.defmatrix.matrix",
        "numpy.random._pickle.__randomstate_ctor",
        "numpy.random._pickle.__bit_generator_ctor",
        "numpy.random._pickle.__generator_ctor",
        "numpy.random._mt19937.MT19937",
        "numpy.random._pcg64.PCG64",
        "numpy.random._philox.Philox",
        "numpy.random._sfc64.SFC64",
        "numpy.random.mtrand.RandomState",
        "numpy.random._generator.Generator",
        # joblib's placeholders for the arrays it writes after them
        "joblib.numpy_pickle.NumpyArrayWrapper",
        "joblib.numpy_pickle_compat.NDArrayWrapper",
        "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
        # standard containers and value types
        "collections.OrderedDict",
        "collections.defaultdict",
        "collections.Counter",
        "collections.deque",
        "copyreg._reconstructor",
        "copyreg.__newobj__",
        "copyreg.__newobj_ex__",
        "_codecs.encode",
        "datetime.datetime",
        "datetime.date",
        "datetime.time",
        "datetime.timedelta",
        "datetime.timezone",
        "decimal.Decimal",
        "fractions.Fraction",
        "uuid.UUID",
        "argparse.Namespace",
        "types.SimpleNamespace",
        "enum.Enum",
        "re._compile",
        "pathlib.PosixPath",
        "pathlib.WindowsPath",
        "pathlib.PurePosixPath",
        "pathlib.PureWindowsPath",
    ]
    + [
        f"builtins.{n}"
        for n in _words(
            "bool int float complex str bytes bytearray list tuple dict set frozenset slice "
            "range object NoneType Ellipsis NotImplemented reversed enumerate zip"
        )
    ]
)
_SAFE_PREFIXES = ("numpy.dtypes.",)

# builtins by name: every other builtin is unknown (medium)
_BUILTINS: dict[str, tuple[Severity, str]] = {
    **{
        n: (_C, "runs or compiles arbitrary Python code")
        for n in ("eval", "exec", "compile", "__import__", "breakpoint", "__build_class__")
    },
    "open": (_H, "opens, creates or truncates files"),
    **{
        n: (_H, "reads or sets arbitrary attributes, reaching any object")
        for n in ("getattr", "setattr", "delattr", "globals", "locals", "vars", "dir")
    },
    "input": (_H, "reads from the terminal"),
    "help": (_H, "starts the interactive help system and a pager"),
    "exit": (_M, "stops the interpreter"),
    "quit": (_M, "stops the interpreter"),
    "print": (_L, "writes to standard output"),
    "type": (_M, "creates new classes"),
    "memoryview": (_L, "exposes raw memory of another object"),
    "map": (_M, "calls another callable on each item"),
    "filter": (_M, "calls another callable on each item"),
    "staticmethod": (_M, "wraps a callable"),
    "classmethod": (_M, "wraps a callable"),
    "property": (_M, "wraps a callable"),
    "super": (_H, "reaches methods of base classes"),
}

# module (or package) -> severity and reason; the longest matching prefix wins
_MODULES: dict[str, tuple[Severity, str]] = {
    **{
        m: (_C, "runs system commands or changes the operating system")
        for m in (
            "os",
            "posix",
            "nt",
            "subprocess",
            "pty",
            "commands",
            "popen2",
            "_posixsubprocess",
        )
    },
    **{
        m: (_M, "path helpers (harmless alone, unusual in a model)")
        for m in ("os.path", "posixpath", "ntpath", "genericpath")
    },
    **{
        m: (_C, "runs Python code or imports arbitrary modules")
        for m in _words(
            "runpy code codeop importlib imp pkgutil zipimport types sys ctypes _ctypes cffi "
            "marshal pdb bdb timeit trace profile cProfile doctest distutils setuptools pip "
            "ensurepip multiprocessing _multiprocessing _xxsubinterpreters _interpreters "
            "torch.utils.cpp_extension numpy.f2py numpy.distutils "
            "numpy.testing IPython"
        )
    },
    **{
        m: (_C, "unpickles nested data, which can run code")
        for m in _words("pickle _pickle cPickle dill cloudpickle shelve")
    },
    **{
        m: (_H, "opens network connections or URLs")
        for m in _words(
            "socket _socket ssl http urllib urllib2 urllib3 requests httpx aiohttp ftplib smtplib "
            "poplib imaplib telnetlib xmlrpc socketserver webbrowser paramiko asyncio "
            "torch.hub torch.distributed"
        )
    },
    **{
        m: (_H, "reads, writes, moves or deletes files")
        for m in _words(
            "shutil io _io fileinput tempfile glob zipfile tarfile gzip bz2 lzma sqlite3"
        )
    },
    **{
        m: (_H, "calls or reaches arbitrary attributes and methods dynamically")
        for m in _words(
            "operator _operator functools inspect gc threading _thread signal weakref copyreg"
        )
    },
    "joblib": (_H, "joblib internals other than its array placeholders"),
    "logging.config": (_H, "logging configuration can instantiate arbitrary classes"),
    "torch.package": (_H, "torch.package archives import and run packaged code"),
    "torch.jit": (_H, "compiles and runs TorchScript code"),
    "torch._dynamo": (_H, "compiles Python code"),
    "torch._inductor": (_H, "compiles and loads native code"),
    "torch.fx": (_H, "rebuilds modules from Python source"),
    "pandas.io": (_H, "reads files, URLs and nested pickles"),
}

_NAMES: dict[str, tuple[Severity, str]] = {
    **{
        n: (_C, "loads a nested pickle, which can run code")
        for n in (
            "torch.load",
            "torch.serialization.load",
            "torch.storage._load_from_bytes",
            "numpy.load",
            "numpy.lib.npyio.load",
            "numpy.loads",
            "numpy.core.numeric.loads",
            "pandas.read_pickle",
            "joblib.load",
        )
    },
    **{
        n: (_C, "executes Python source stored in the pickle")
        for n in (
            "torch.fx.graph_module.reduce_graph_module",
            "torch.fx.graph_module.reduce_package_graph_module",
            "torch.fx.graph_module._deserialize_graph_module",
            "torch.fx.graph_module._forward_from_src",
            "torch.fx.graph_module._exec_with_source",
            "torch._export.serde.serialize.deserialize",
        )
    },
    "torch.save": (_H, "writes files"),
    "numpy.save": (_H, "writes files"),
    "numpy.savez": (_H, "writes files"),
    "numpy.fromfile": (_H, "reads files"),
    "numpy.tofile": (_H, "writes files"),
    "numpy.memmap": (_H, "maps files into memory"),
    "numpy.core.memmap.memmap": (_H, "maps files into memory"),
    "torch.from_file": (_H, "reads files"),
    "torch.classes.load_library": (_C, "loads native code"),
    "torch.ops.load_library": (_C, "loads native code"),
    "torch._ops.load_library": (_C, "loads native code"),
}

_NESTED_LOADERS = frozenset(
    n for n, (_, reason) in _NAMES.items() if reason.startswith("loads a nested pickle")
) | frozenset(
    f"{m}.{f}" for m in ("pickle", "_pickle", "cPickle", "dill", "cloudpickle") for f in ("loads",)
)

_LIBRARIES = (
    "sklearn",
    "scipy",
    "pandas",
    "xgboost",
    "lightgbm",
    "catboost",
    "transformers",
    "tokenizers",
    "sentencepiece",
    "numpy",
    "torch",
    "torchvision",
    "timm",
    "keras",
    "tensorflow",
    "statsmodels",
    "skops",
    "onnx",
)
# low: object types of known ML libraries; anything of those libraries that is a function or an
# unusual class stays at medium so that it is looked at
_TORCH_MODULE_CLASS = re.compile(r"^torch\.nn\.modules\.[A-Za-z0-9_.]+$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class GlobalVerdict:
    """How a global is judged: ``severity`` is None for an allow-listed global."""

    module: str
    name: str
    severity: Severity | None
    reason: str

    @property
    def fullname(self) -> str:
        """``module.name`` after Python 2 names were mapped to Python 3 ones."""
        return f"{self.module}.{self.name}"


def _normalise(module: str, name: str) -> tuple[str, str]:
    """Map Python 2 names the way ``pickle.Unpickler(fix_imports=True)`` does."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _module_rule(module: str) -> tuple[Severity, str] | None:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        rule = _MODULES.get(".".join(parts[:i]))
        if rule is not None:
            return rule
    return None


def _judge(module: str, name: str) -> tuple[Severity | None, str]:
    full = f"{module}.{name}"
    if full in _SAFE_GLOBALS or full.startswith(_SAFE_PREFIXES):
        return None, "allow-listed rebuild helper"
    if full in _NAMES:
        return _NAMES[full]
    if module == "builtins":
        if name in _BUILTINS:
            return _BUILTINS[name]
        if name.endswith(("Error", "Exception", "Warning")) and _IDENT.match(name):
            return _L, "an exception type"
        return _M, "a builtin outside the allow-list"
    rule = _module_rule(module)
    if rule is not None:
        return rule
    if _TORCH_MODULE_CLASS.match(module) and _IDENT.match(name) and name[:1].isupper():
        return None, "a torch.nn layer class"
    root = module.split(".")[0]
    if root in _LIBRARIES and _IDENT.match(name) and name[:1].isupper():
        return _L, f"a {root} object type: safe only as far as the installed {root} is"
    return _M, "not on the allow-list: review what it does before loading"


def classify_global(module: str, name: str) -> GlobalVerdict:
    """Judge the global ``module.name`` that a pickle imports.

    Dotted names (``STACK_GLOBAL`` since protocol 4 resolves ``a.b.c`` attribute by attribute)
    are judged by every object they pass through, so ``posixpath`` + ``os.system`` is caught
    as ``os.system``; any dunder attribute on the way is high severity.

    Returns
    -------
    GlobalVerdict
        ``severity`` None means allow-listed.
    """
    module, name = _normalise(module, name)
    severity, reason = _judge(module, name)
    if "." in name and severity is not None:
        parts = name.split(".")
        candidates = [_judge(".".join([module, *parts[:i]]), parts[i]) for i in range(len(parts))]
        candidates += [_judge(part, "") for part in parts if _module_rule(part)]
        if any(p.startswith("__") for p in parts):
            candidates.append((_H, "walks through a dunder attribute to reach other objects"))
        worst = max(candidates, key=lambda c: -1 if c[0] is None else c[0].rank)
        if worst[0] is not None and worst[0].rank > severity.rank:
            severity, reason = worst
    return GlobalVerdict(module, name, severity, reason)


def is_nested_loader(module: str, name: str) -> bool:
    """Whether calling ``module.name`` on bytes unpickles them (they are then scanned too)."""
    module, name = _normalise(module, name)
    return f"{module}.{name}" in _NESTED_LOADERS
