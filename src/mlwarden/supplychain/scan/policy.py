"""Which globals a pickle may import: an allow-list of rebuild helpers and a deny-list with severities.

A pickle can only run code through the globals it imports (``GLOBAL``, ``STACK_GLOBAL``, ``INST``)
and the opcodes that call them (``REDUCE``, ``NEWOBJ``, ``OBJ``, ``INST``, ``BUILD``), so each
global is judged here:

* **allow-listed** (no finding), by exact name only: the tensor, storage, dtype and container
  rebuild functions PyTorch, NumPy, joblib and the standard library use to serialise data. The
  PyTorch part mirrors the globals ``torch.load(weights_only=True)`` accepts. A few of them call
  one of their arguments (``_rebuild_from_type_v2(func, ...)`` calls ``func``); those are listed
  in :data:`CALLS_ARGUMENT` and the pickle reader reports a call whose argument is not itself
  allow-listed;
* **deny-listed** (critical or high): anything that runs commands or code, imports modules,
  unpickles nested data, touches files or the network, or reaches attributes dynamically; any
  dunder (``__builtins__``, ``__loader__``, ``__globals__``) anywhere in the path is critical;
* **everything else** (high): a pickle can call any global it imports, so a callable outside the
  allow-list of data-only constructors is enough to fail the default ``--fail-on high`` gate.
  Object types of known ML libraries say so in their reason, but are still high.
"""

from __future__ import annotations

import _compat_pickle
import re
from dataclasses import dataclass

from mlwarden.report.findings import Severity

__all__ = [
    "CALLS_ARGUMENT",
    "CONTEXTS",
    "TORCHSCRIPT_GLOBALS",
    "GlobalVerdict",
    "calls_argument",
    "classify_global",
    "is_nested_loader",
]

_C, _H = Severity.CRITICAL, Severity.HIGH


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
_NUMPY_DTYPE_CLASSES = _words(
    "BoolDType ByteDType BytesDType CLongDoubleDType Complex128DType Complex64DType "
    "DateTime64DType Float16DType Float32DType Float64DType Int16DType Int32DType Int64DType "
    "Int8DType IntDType LongDType LongDoubleDType LongLongDType ShortDType StrDType StringDType "
    "TimeDelta64DType UByteDType UInt16DType UInt32DType UInt64DType UInt8DType UIntDType "
    "ULongDType ULongLongDType UShortDType VoidDType"
)
_SAFE_GLOBALS = _SAFE_GLOBALS | frozenset(f"numpy.dtypes.{n}" for n in _NUMPY_DTYPE_CLASSES)

CALLS_ARGUMENT: dict[str, tuple[int, ...]] = {
    "torch._tensor._rebuild_from_type": (0, 1),
    "torch._tensor._rebuild_from_type_v2": (0, 1),
    "torch._utils._rebuild_wrapper_subclass": (0,),
    "numpy.random._pickle.__randomstate_ctor": (0, 1),
    "numpy.random._pickle.__generator_ctor": (0, 1),
    "numpy.random._pickle.__bit_generator_ctor": (0,),
    "numpy.core.multiarray._reconstruct": (0,),
    "numpy._core.multiarray._reconstruct": (0,),
    "numpy.ma.core._mareconstruct": (0, 1),
    "copyreg._reconstructor": (0, 1),
    "copyreg.__newobj__": (0,),
    "copyreg.__newobj_ex__": (0,),
    "collections.defaultdict": (0,),
}
"""Allow-listed callables that call (or construct) one of their positional arguments.

Calling them is only as safe as that argument: the pickle reader requires it to be an
allow-listed global or a plain value (a string such as ``"MT19937"``), and reports anything else
(``_rebuild_from_type_v2(builtins.eval, ...)``) as critical.
"""

TORCHSCRIPT_GLOBALS: frozenset[str] = frozenset(
    f"torch.jit._pickle.{n}"
    for n in _words(
        "build_intlist build_tensorlist build_doublelist build_boollist build_complexlist "
        "build_tensor_from_id restore_type_tag"
    )
)
"""What ``torch.jit.save`` writes into the pickles of a TorchScript archive besides the
tensor rebuild helpers: list builders and the type tags its C++ unpickler reads. They return
their argument and are allowed only inside a recognised TorchScript archive."""

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
    "exit": (_H, "stops the interpreter"),
    "quit": (_H, "stops the interpreter"),
    "print": (_H, "writes to standard output"),
    "type": (_H, "creates new classes"),
    "memoryview": (_H, "exposes raw memory of another object"),
    "map": (_H, "calls another callable on each item"),
    "filter": (_H, "calls another callable on each item"),
    "staticmethod": (_H, "wraps a callable"),
    "classmethod": (_H, "wraps a callable"),
    "property": (_H, "wraps a callable"),
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
            "aix",
            "_aix_support",
            "osx",
            "_osx_support",
            "pydoc",
            "venv",
            "platform",
            "mailcap",
            "pyrepl",
            "_pyrepl",
            "idlelib",
            "test",
            "lib2to3",
            "cgitb",
            "uuid",
            "ctypes",
        )
    },
    **{
        m: (_H, "path helpers (harmless alone, unusual in a model)")
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
    "logging": (_H, "logging handlers open files, sockets and subprocess pipes"),
    "nntplib": (_H, "opens network connections or URLs"),
    "torch.utils._config_module": (_H, "configuration modules patch settings and import code"),
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
    "torch.compile": (_C, "compiles and runs Python code"),
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

_LIBRARIES = frozenset(
    _words(
        "sklearn scipy pandas xgboost lightgbm catboost transformers tokenizers sentencepiece "
        "numpy torch torchvision timm keras tensorflow statsmodels skops onnx"
    )
)
# torch.nn layer classes (``torch.nn.modules.conv.Conv2d``) rebuild whole-module checkpoints:
# one module level below torch.nn.modules, a capitalised identifier, never a dunder
_TORCH_MODULE_CLASS = re.compile(r"^torch\.nn\.modules\.[a-z_][a-z0-9_]*$")
_TORCH_LAYER_NAME = re.compile(r"^[A-Z][A-Za-z0-9_]*$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


_TORCHSCRIPT_CLASS = re.compile(r"^__torch__(\.[A-Za-z_][A-Za-z0-9_]*)*$")
CONTEXTS = frozenset({"pickle", "torchscript"})


def _is_dunder(part: str) -> bool:
    return len(part) > 4 and part.startswith("__") and part.endswith("__")


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
    full = f"{module}.{name}" if name else module
    if full in _SAFE_GLOBALS:
        return None, "allow-listed rebuild helper"
    if full in _NAMES:
        return _NAMES[full]
    if module == "builtins":
        if name in _BUILTINS:
            return _BUILTINS[name]
        return _H, "a builtin outside the allow-list of data-only constructors"
    rule = _module_rule(module)
    if rule is not None:
        return rule
    if _TORCH_MODULE_CLASS.match(module) and _TORCH_LAYER_NAME.match(name):
        return None, "a torch.nn layer class"
    root = module.split(".")[0]
    if root in _LIBRARIES and _IDENT.match(name):
        return _H, (
            f"a {root} callable outside the allow-list of data-only constructors; a pickle can "
            "call it with any arguments (for scikit-learn models prefer skops)"
        )
    return _H, "a callable outside the allow-list of data-only constructors"


def classify_global(module: str, name: str, *, context: str = "pickle") -> GlobalVerdict:
    """Judge the global ``module.name`` that a pickle imports.

    Only exact names are allow-listed. Dotted names (``STACK_GLOBAL`` since protocol 4 resolves
    ``a.b.c`` attribute by attribute) are judged by every object they pass through, so
    ``posixpath`` + ``os.system`` is caught as ``os.system``; a dunder anywhere in the module or
    the name (``numpy.dtypes`` + ``__builtins__.get``) is critical, since it reaches the
    interpreter's internals from any allow-listed starting point.

    Parameters
    ----------
    module, name
        As the pickle spells them (Python 2 names are mapped as ``fix_imports`` does).
    context
        ``pickle`` (read by Python's unpickler) or ``torchscript`` (a pickle inside a TorchScript
        archive, which only torch's C++ unpickler reads: it resolves the archive's own compiled
        classes under ``__torch__`` and :data:`TORCHSCRIPT_GLOBALS`, and nothing from Python).

    Returns
    -------
    GlobalVerdict
        ``severity`` None means allow-listed.
    """
    if context not in CONTEXTS:
        raise ValueError(f"context {context!r} is not one of {sorted(CONTEXTS)}")
    module, name = _normalise(module, name)
    if context == "torchscript":
        if f"{module}.{name}" in TORCHSCRIPT_GLOBALS:
            return GlobalVerdict(module, name, None, "a TorchScript list builder or type tag")
        if _TORCHSCRIPT_CLASS.match(module) and _IDENT.match(name) and not _is_dunder(name):
            return GlobalVerdict(module, name, None, "a class compiled from the archive's code/")
    severity, reason = _judge(module, name)
    if severity is None:
        return GlobalVerdict(module, name, None, reason)
    parts = [*module.split("."), *name.split(".")]
    if any(_is_dunder(p) for p in parts[1:]) or (_is_dunder(parts[0]) and parts[0] != "__main__"):
        return GlobalVerdict(
            module,
            name,
            _C,
            "walks through a dunder attribute (such as __builtins__ or __loader__), which "
            "reaches eval, the import system or file writers from any starting point",
        )
    if not all(_IDENT.match(p) for p in parts):
        severity, reason = max(
            (severity, reason),
            (_H, "a name that is not a Python identifier (crafted to confuse scanners)"),
            key=lambda c: c[0].rank,
        )
    if "." in name:
        parts = name.split(".")
        candidates = [_judge(".".join([module, *parts[:i]]), parts[i]) for i in range(len(parts))]
        candidates += [_judge(part, "") for part in parts if _module_rule(part)]
        worst = max(candidates, key=lambda c: -1 if c[0] is None else c[0].rank)
        if worst[0] is not None and worst[0].rank > severity.rank:
            severity, reason = worst
    return GlobalVerdict(module, name, severity, reason)


def calls_argument(fullname: str) -> tuple[int, ...]:
    """Positions of the arguments an allow-listed callable calls (empty for most)."""
    return CALLS_ARGUMENT.get(fullname, ())


def is_nested_loader(module: str, name: str) -> bool:
    """Whether calling ``module.name`` on bytes unpickles them (they are then scanned too)."""
    module, name = _normalise(module, name)
    return f"{module}.{name}" in _NESTED_LOADERS
