"""ONNX graphs as PyTorch modules: a small interpreter that evaluates the graph with torch ops.

``onnx2torch`` would do this, but it imports torchvision; this interpreter needs only torch and
``onnx`` (``mlwarden[onnx]``). It runs the graph's nodes in order on torch tensors, so autograd
gives input gradients of the very computation the file describes. Supported operators (default
ONNX domain, opsets 7 to 21):

``Abs``, ``Add``, ``AveragePool``, ``BatchNormalization`` (inference), ``Cast`` (to float,
double, int32, int64, bool), ``Clip``, ``Concat``, ``Constant``, ``Conv``, ``Div``, ``Dropout``
(inference), ``Erf``, ``Exp``, ``Flatten``, ``Gather``, ``Gemm``, ``GlobalAveragePool``,
``GlobalMaxPool``, ``Identity``, ``LeakyRelu``, ``Log``, ``LogSoftmax``, ``MatMul``,
``MaxPool``, ``Mul``, ``Neg``, ``Relu``, ``Reshape``, ``Shape``, ``Sigmoid``, ``Slice``,
``Softmax``, ``Sqrt``, ``Squeeze``, ``Sub``, ``Tanh``, ``Transpose``, ``Unsqueeze``.

Any other operator (or operator domain, such as ``ai.onnx.ml``) makes the conversion fail with
the operator's name as the reason. ``Gemm`` and ``MatMul`` with constant weights run as
``nn.Linear`` layers, so representation-based checks can read the activations before them.

The module returns the graph output :class:`~mlwarden.models.onnx.OnnxClassifier` reads (the
last two-dimensional one). When that output is made by a ``Softmax`` over classes, the module
returns the softmax's input instead: logits, whose softmax is the graph's output.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlwarden.errors import ModelError, UnsafeModelError
from mlwarden.models.convert.errors import NotConvertibleError

if TYPE_CHECKING:
    import onnx

__all__ = ["SUPPORTED_ONNX_OPS", "OnnxGraphModule", "load_onnx_model", "onnx_to_torch"]

logger = logging.getLogger(__name__)

_DEFAULT_DOMAINS = ("", "ai.onnx")
_CAST_TYPES = {1: torch.float32, 11: torch.float64, 6: torch.int32, 7: torch.int64, 9: torch.bool}


def load_onnx_model(path: str | Path) -> onnx.ModelProto:
    """Read an ONNX file, loading external tensor data only from files inside its folder.

    Raises
    ------
    UnsafeModelError
        A tensor's external data lies outside the model's folder (an absolute path, ``..``,
        or a link that leads out).
    ModelError
        The file is missing, not ONNX, or an external data file is missing.
    """
    try:
        import onnx
        from onnx import external_data_helper
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ModelError("ONNX models need onnx: pip install 'mlwarden[onnx]'") from exc
    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises protobuf's untyped errors for damaged files
        raise ModelError(f"{path}: not a valid ONNX model ({exc})") from exc
    folder = path.resolve().parent
    for tensor in _main_graph_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        location = external_data_helper.ExternalDataInfo(tensor).location
        target = (folder / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(folder):
            raise UnsafeModelError(
                f"{path.name}: tensor {tensor.name!r} reads external data from {location!r}, "
                "outside the model's folder; keep external data files beside the model"
            )
        if not target.is_file():
            raise ModelError(f"{path.name}: external data file {location!r} is missing")
        external_data_helper.load_external_data_for_tensor(tensor, str(folder))
        tensor.data_location = onnx.TensorProto.DEFAULT
        del tensor.external_data[:]
    return model


def _main_graph_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    """The initializers and ``Constant`` values of the top-level graph (subgraphs are refused)."""
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        tensors.extend(a.t for a in node.attribute if a.HasField("t"))
    return tensors


def onnx_to_torch(
    model: onnx.ModelProto | str | Path, *, strict: bool = False
) -> OnnxGraphModule | None:
    """A PyTorch module that evaluates an ONNX classifier's graph, returning logits.

    Parameters
    ----------
    model
        A loaded ``onnx.ModelProto`` (external data already loaded), or the path of an
        ``.onnx`` file, read with :func:`load_onnx_model`.
    strict
        Raise :class:`NotConvertibleError` naming the reason instead of returning ``None``.

    Returns
    -------
    OnnxGraphModule or None
        The module, or ``None`` when the graph uses an operator, attribute or layout outside the
        supported subset (see the module docstring).

    Raises
    ------
    NotConvertibleError
        Only with ``strict=True``: the graph cannot be converted; the message says why.
    UnsafeModelError, ModelError
        ``model`` is a path that cannot be read safely (see :func:`load_onnx_model`).
    """
    proto = load_onnx_model(model) if isinstance(model, (str, Path)) else model
    try:
        return OnnxGraphModule(proto)
    except NotConvertibleError as exc:
        if strict:
            raise
        logger.info("no torch form for the ONNX graph %r: %s", proto.graph.name, exc)
        return None


@dataclass
class _Node:
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    linear: int | None = None  # index into OnnxGraphModule.linears for constant-weight products


class OnnxGraphModule(nn.Module):
    """Evaluates an ONNX graph with torch operations (see :func:`onnx_to_torch`).

    Constant tensors are buffers, so ``.to(device)`` moves the whole graph; the module is in
    evaluation mode and its parameters take no gradients.

    Parameters
    ----------
    model
        The graph, with its external data loaded.
    logits_before_softmax
        Return the input of a final ``Softmax`` over classes instead of its output (logits whose
        softmax is the graph's output); ``False`` returns the graph's output as it is.

    Raises
    ------
    NotConvertibleError
        On construction, for an operator or setting outside the supported subset.
    """

    def __init__(self, model: onnx.ModelProto, *, logits_before_softmax: bool = True) -> None:
        super().__init__()
        self.logits_before_softmax = logits_before_softmax
        from onnx import external_data_helper, helper, numpy_helper

        graph = model.graph
        opsets = {o.domain: o.version for o in model.opset_import}
        self.opset = next((opsets[d] for d in _DEFAULT_DOMAINS if d in opsets), 0)
        if not 7 <= self.opset <= 21:
            raise NotConvertibleError(f"ONNX opset {self.opset} is outside the supported 7-21")
        self._const_names: list[str] = []
        constants: dict[str, torch.Tensor] = {}
        for tensor in graph.initializer:
            if external_data_helper.uses_external_data(tensor):
                raise NotConvertibleError(
                    f"initializer {tensor.name!r} has external data that is not loaded; read the "
                    "file with load_onnx_model"
                )
            constants[tensor.name] = _to_tensor(numpy_helper.to_array(tensor))
        inputs = [i.name for i in graph.input if i.name not in constants]
        if len(inputs) != 1:
            raise NotConvertibleError(f"the graph has {len(inputs)} data inputs; expected one")
        self.input_name = inputs[0]
        self.output_names = [o.name for o in graph.output]
        self.linears = nn.ModuleList()
        self.nodes: list[_Node] = []
        for proto in graph.node:
            op = proto.op_type
            if proto.domain not in _DEFAULT_DOMAINS:
                raise NotConvertibleError(f"unsupported ONNX operator {proto.domain}.{op}")
            if op not in _OPS and op != "Constant":
                raise NotConvertibleError(f"unsupported ONNX operator {op}")
            attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}
            if op == "Constant":
                constants[proto.output[0]] = _constant_value(attrs)
                continue
            node = _Node(op, tuple(proto.input), tuple(proto.output), attrs)
            _check_node(node, self.opset)
            self._maybe_linear(node, constants)
            self.nodes.append(node)
        for name, value in constants.items():
            self.register_buffer(f"const_{len(self._const_names)}", value)
            self._const_names.append(name)
        self.eval()
        self.requires_grad_(False)

    def _maybe_linear(self, node: _Node, constants: dict[str, torch.Tensor]) -> None:
        """Run a product with a constant 2-D float weight as an ``nn.Linear`` layer."""
        if node.op not in ("Gemm", "MatMul"):
            return
        weight = constants.get(node.inputs[1])
        if weight is None or weight.ndim != 2 or not weight.is_floating_point():
            return
        bias = constants.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        if node.op == "Gemm":
            a = node.attrs
            if a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0 or a.get("transA", 0):
                return
            if len(node.inputs) > 2 and node.inputs[2] and bias is None:
                return  # a bias computed in the graph
            weight = weight if a.get("transB", 0) else weight.T
        else:
            weight = weight.T
        out_features, in_features = weight.shape
        if bias is not None:
            if bias.numel() not in (1, out_features) or bias.dtype != weight.dtype:
                return
            bias = bias.reshape(-1).expand(out_features)
        layer = nn.Linear(in_features, out_features, bias=bias is not None, dtype=weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(weight)
            if bias is not None:
                layer.bias.copy_(bias)
        node.linear = len(self.linears)
        self.linears.append(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch: the graph's classifier output, before a final ``Softmax``."""
        env: dict[str, torch.Tensor | None] = {"": None}
        env.update((name, getattr(self, f"const_{i}")) for i, name in enumerate(self._const_names))
        env[self.input_name] = x
        before_softmax: dict[str, torch.Tensor] = {}
        for node in self.nodes:
            args: list[Any] = [env[name] for name in node.inputs]
            if node.linear is not None:
                outputs: Sequence[torch.Tensor | None] = (self.linears[node.linear](args[0]),)
            else:
                outputs = _OPS[node.op](node, args, self.opset)
            for name, value in zip(node.outputs, outputs, strict=False):
                env[name] = value
            if node.op == "Softmax" and self.logits_before_softmax:
                if _softmax_over_classes(node, args[0], self.opset):
                    before_softmax[node.outputs[0]] = args[0]
            elif node.op in ("Identity", "Dropout") and node.inputs[0] in before_softmax:
                before_softmax[node.outputs[0]] = before_softmax[node.inputs[0]]
        chosen = [n for n in self.output_names if (v := env.get(n)) is not None and v.ndim == 2]
        if not chosen:
            raise NotConvertibleError("the ONNX graph has no 2-D output of class scores")
        name = chosen[-1]
        result = before_softmax.get(name, env[name])
        assert result is not None
        return result.float() if result.dtype != torch.float32 else result


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    if array.dtype == np.float16 or array.dtype.kind not in "fiub":
        raise NotConvertibleError(f"constant tensors of type {array.dtype} are not supported")
    return torch.tensor(np.array(array))


def _constant_value(attrs: dict[str, Any]) -> torch.Tensor:
    from onnx import numpy_helper

    if "value" in attrs:
        return _to_tensor(numpy_helper.to_array(attrs["value"]))
    if "value_float" in attrs:
        return torch.tensor(attrs["value_float"], dtype=torch.float32)
    if "value_floats" in attrs:
        return torch.tensor(list(attrs["value_floats"]), dtype=torch.float32)
    if "value_int" in attrs:
        return torch.tensor(attrs["value_int"], dtype=torch.int64)
    if "value_ints" in attrs:
        return torch.tensor(list(attrs["value_ints"]), dtype=torch.int64)
    raise NotConvertibleError(f"Constant with {sorted(attrs)} is not supported")


def _check_node(node: _Node, opset: int) -> None:
    """Refuse settings the interpreter does not implement, before anything runs."""
    a = node.attrs
    if node.op in ("Conv", "MaxPool", "AveragePool"):
        pad = a.get("auto_pad", b"NOTSET")
        pad = pad.decode() if isinstance(pad, bytes) else pad
        if pad not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
            raise NotConvertibleError(f"{node.op} auto_pad={pad!r} is not supported")
    if node.op == "MaxPool" and len(node.outputs) > 1 and node.outputs[1]:
        raise NotConvertibleError("MaxPool with an Indices output is not supported")
    if node.op == "AveragePool" and any(d != 1 for d in a.get("dilations", [])):
        raise NotConvertibleError("AveragePool with dilations is not supported")
    training = a.get("training_mode", 0) or any(node.outputs[1:])
    if node.op == "BatchNormalization" and training:
        raise NotConvertibleError("BatchNormalization in training mode is not supported")
    if node.op == "Cast" and a["to"] not in _CAST_TYPES:
        raise NotConvertibleError(f"Cast to ONNX type {a['to']} is not supported")
    if node.op == "Slice" and opset < 10 and any(s != 1 for s in a.get("steps", [])):
        raise NotConvertibleError("Slice with steps is not supported")


def _softmax_over_classes(node: _Node, x: torch.Tensor, opset: int) -> bool:
    """Whether a Softmax node normalises a ``(n, classes)`` input over its classes."""
    axis = node.attrs.get("axis", -1 if opset >= 13 else 1)
    return x.ndim == 2 and axis in (1, -1)


Args = list[Any]
Op = Callable[[_Node, Args, int], Sequence[Any]]


def _elementwise(fn: Callable[..., torch.Tensor]) -> Op:
    return lambda node, args, opset: (fn(*args),)


def _div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if not a.is_floating_point() and not b.is_floating_point():
        return torch.div(a, b, rounding_mode="trunc")
    return a / b


def _gemm(node: _Node, args: Args, opset: int) -> Sequence[Any]:
    a, b = args[0], args[1]
    c = args[2] if len(args) > 2 else None
    if node.attrs.get("transA", 0):
        a = a.T
    if node.attrs.get("transB", 0):
        b = b.T
    y = node.attrs.get("alpha", 1.0) * (a @ b)
    if c is not None:
        y = y + node.attrs.get("beta", 1.0) * c
    return (y,)


def _softmax(fn: Callable[..., torch.Tensor]) -> Op:
    def run(node: _Node, args: Args, opset: int) -> Sequence[Any]:
        x = args[0]
        if opset >= 13:
            return (fn(x, dim=node.attrs.get("axis", -1)),)
        axis = node.attrs.get("axis", 1) % x.ndim  # before opset 13: over the flattened tail
        flat = x.reshape(math.prod(x.shape[:axis]), -1)
        return (fn(flat, dim=1).reshape(x.shape),)

    return run


def _spatial_pads(
    node: _Node,
    x: torch.Tensor,
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
) -> list[int]:
    """ONNX pads ``[b1, b2, ..., e1, e2, ...]`` with ``auto_pad`` resolved for this input."""
    n = len(kernel)
    mode = node.attrs.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode == "NOTSET":
        return list(node.attrs.get("pads", [0] * (2 * n)))
    if mode == "VALID":
        return [0] * (2 * n)
    begins, ends = [], []
    for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations, strict=True):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begins.append(small if mode == "SAME_UPPER" else large)
        ends.append(large if mode == "SAME_UPPER" else small)
    return begins + ends


def _pad_input(
    x: torch.Tensor, pads: list[int], kernel: Sequence[int], value: float
) -> tuple[torch.Tensor, list[int] | int]:
    """Symmetric pads (at most half a kernel) as torch's ``padding``; others applied first."""
    n = len(kernel)
    begins, ends = pads[:n], pads[n:]
    if begins == ends and all(p <= k // 2 for p, k in zip(begins, kernel, strict=True)):
        return x, begins
    torch_pads: list[int] = []
    for b, e in zip(reversed(begins), reversed(ends), strict=True):
        torch_pads += [b, e]
    return F.pad(x, torch_pads, value=value), 0


def _conv(node: _Node, args: Args, opset: int) -> Sequence[Any]:
    x, w = args[0], args[1]
    b = args[2] if len(args) > 2 else None
    n = w.ndim - 2
    if n not in (1, 2, 3):
        raise NotConvertibleError(f"Conv over {n} spatial dimensions is not supported")
    strides = node.attrs.get("strides", [1] * n)
    dilations = node.attrs.get("dilations", [1] * n)
    kernel = list(w.shape[2:])
    pads = _spatial_pads(node, x, kernel, strides, dilations)
    x, padding = _pad_input(x, pads, kernel, 0.0)
    conv = (F.conv1d, F.conv2d, F.conv3d)[n - 1]
    return (conv(x, w, b, strides, padding, dilations, node.attrs.get("group", 1)),)


def _pool(kind: str) -> Op:
    def run(node: _Node, args: Args, opset: int) -> Sequence[Any]:
        x = args[0]
        kernel = list(node.attrs["kernel_shape"])
        n = len(kernel)
        if n not in (1, 2, 3):
            raise NotConvertibleError(f"{node.op} over {n} spatial dimensions is not supported")
        strides = node.attrs.get("strides", [1] * n)
        dilations = node.attrs.get("dilations", [1] * n)
        ceil = bool(node.attrs.get("ceil_mode", 0))
        pads = _spatial_pads(node, x, kernel, strides, dilations)
        if kind == "max":
            x, padding = _pad_input(x, pads, kernel, -math.inf)
            if ceil and padding == 0 and any(pads):
                raise NotConvertibleError("MaxPool with ceil_mode and uneven pads is not supported")
            pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[n - 1]
            return (pool(x, kernel, strides, padding, dilations, ceil_mode=ceil),)
        include = bool(node.attrs.get("count_include_pad", 0))
        x_padded, padding = _pad_input(x, pads, kernel, 0.0)
        if padding == 0 and any(pads) and not include:
            raise NotConvertibleError(
                "AveragePool with uneven pads that are not counted is not supported"
            )
        avg = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[n - 1]
        return (avg(x_padded, kernel, strides, padding, ceil_mode=ceil, count_include_pad=include),)

    return run


def _batch_norm(node: _Node, args: Args, opset: int) -> Sequence[Any]:
    x, scale, bias, mean, var = args[:5]
    eps = node.attrs.get("epsilon", 1e-5)
    return (F.batch_norm(x, mean, var, scale, bias, training=False, eps=eps),)


def _flatten(node: _Node, args: Args, opset: int) -> Sequence[Any]:
    x = args[0]
    axis = node.attrs.get("axis", 1) % (x.ndim + 1) if x.ndim else 0
    return (x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:])),)


def _reshape(node: _Node, args: Args, opset: int) -> Sequence[Any]:
    x, shape = args[0], [int(d) for d in args[1].tolist()]
    if not node.attrs.get("allowzero", 0):
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return (x.reshape(shape),)


def _transpose(node: _Node, args: Args, opset: int) -> Sequence[Any]:
    x = args[0]
    perm = node.attrs.get("perm", list(reversed(range(x.ndim))))
    return (x.permute(*perm),)


def _axes(node: _Node, args: Args, opset: int) -> list[int] | None:
    if opset >= 13:
        return None if len(args) < 2 or args[1] is None else [int(a) for a in args[1].tolist()]
    axes = node.attrs.get("axes")
    return None if axes is None else list(axes)


def _squeeze(node: _Node, args: Args, opset: int) -> Sequence[Any]:
    x, axes = args[0], _axes(node, args, opset)
    if axes is None:
        return (x.squeeze(),)
    return (x.squeeze(tuple(a % x.ndim for a in axes)),)


def _unsqueeze(node: _Node, args: Args, opset: int) -> Sequence[Any]:
    x, axes = args[0], _axes(node, args, opset)
    if axes is None:
        raise NotConvertibleError("Unsqueeze without axes")
    rank = x.ndim + len(axes)
    for axis in sorted(a % rank for a in axes):
        x = x.unsqueeze(axis)
    return (x,)


def _concat(node: _Node, args: Args, opset: int) -> Sequence[Any]:
    return (torch.cat([a for a in args if a is not None], dim=node.attrs["axis"]),)


def _dropout(node: _Node, args: Args, opset: int) -> Sequence[Any]:
    if len(args) > 2 and args[2] is not None and bool(args[2]):
        raise NotConvertibleError("Dropout in training mode is not supported")
    return (args[0], torch.ones_like(args[0], dtype=torch.bool))


def _cast(node: _Node, args: Args, opset: int) -> Sequence[Any]:
    return (args[0].to(_CAST_TYPES[node.attrs["to"]]),)


def _clip(node: _Node, args: Args, opset: int) -> Sequence[Any]:
    x = args[0]
    if opset < 11:
        low, high = node.attrs.get("min"), node.attrs.get("max")
    else:
        low = args[1] if len(args) > 1 else None
        high = args[2] if len(args) > 2 else None
    if low is None and high is None:
        return (x,)
    return (torch.clamp(x, min=low, max=high),)


def _shape(node: _Node, args: Args, opset: int) -> Sequence[Any]:
    x = args[0]
    dims = list(x.shape)[node.attrs.get("start", 0) : node.attrs.get("end", x.ndim)]
    return (torch.tensor(dims, dtype=torch.int64, device=x.device),)


def _gather(node: _Node, args: Args, opset: int) -> Sequence[Any]:
    x, index = args[0], args[1].long()
    axis = node.attrs.get("axis", 0) % x.ndim
    index = torch.where(index < 0, index + x.shape[axis], index)
    picked = x.index_select(axis, index.reshape(-1).to(x.device))
    return (picked.reshape(*x.shape[:axis], *index.shape, *x.shape[axis + 1 :]),)


def _slice(node: _Node, args: Args, opset: int) -> Sequence[Any]:
    x = args[0]
    if opset < 10:
        starts, ends = list(node.attrs["starts"]), list(node.attrs["ends"])
        axes = list(node.attrs.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = args[1].tolist(), args[2].tolist()
        axes = (
            args[3].tolist() if len(args) > 3 and args[3] is not None else list(range(len(starts)))
        )
        steps = args[4].tolist() if len(args) > 4 and args[4] is not None else [1] * len(starts)
    index: list[slice] = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        if step <= 0:
            raise NotConvertibleError("Slice with a negative step is not supported")
        index[int(axis) % x.ndim] = slice(int(start), int(end), int(step))
    return (x[tuple(index)],)


_OPS: dict[str, Op] = {
    "Abs": _elementwise(torch.abs),
    "Add": _elementwise(torch.add),
    "AveragePool": _pool("avg"),
    "BatchNormalization": _batch_norm,
    "Cast": _cast,
    "Clip": _clip,
    "Concat": _concat,
    "Conv": _conv,
    "Div": _elementwise(_div),
    "Dropout": _dropout,
    "Erf": _elementwise(torch.erf),
    "Exp": _elementwise(torch.exp),
    "Flatten": _flatten,
    "Gather": _gather,
    "Gemm": _gemm,
    "GlobalAveragePool": lambda node, args, opset: (
        args[0].mean(dim=tuple(range(2, args[0].ndim)), keepdim=True),
    ),
    "GlobalMaxPool": lambda node, args, opset: (
        args[0].amax(dim=tuple(range(2, args[0].ndim)), keepdim=True),
    ),
    "Identity": _elementwise(lambda x: x),
    "LeakyRelu": lambda node, args, opset: (F.leaky_relu(args[0], node.attrs.get("alpha", 0.01)),),
    "Log": _elementwise(torch.log),
    "LogSoftmax": _softmax(torch.log_softmax),
    "MatMul": _elementwise(torch.matmul),
    "MaxPool": _pool("max"),
    "Mul": _elementwise(torch.mul),
    "Neg": _elementwise(torch.neg),
    "Relu": _elementwise(torch.relu),
    "Reshape": _reshape,
    "Shape": _shape,
    "Sigmoid": _elementwise(torch.sigmoid),
    "Slice": _slice,
    "Softmax": _softmax(torch.softmax),
    "Sqrt": _elementwise(torch.sqrt),
    "Squeeze": _squeeze,
    "Sub": _elementwise(torch.sub),
    "Tanh": _elementwise(torch.tanh),
    "Transpose": _transpose,
    "Unsqueeze": _unsqueeze,
}

SUPPORTED_ONNX_OPS: tuple[str, ...] = tuple(sorted([*_OPS, "Constant"]))
"""The ONNX operators (default domain) :func:`onnx_to_torch` can convert."""
