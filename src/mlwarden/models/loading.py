"""Load a model from a file without ever unpickling untrusted data.

Accepted formats, chosen because loading them cannot run arbitrary Python code:

* ``.pt2``: a ``torch.export`` program (``torch.export.save``); ``torch.export.load`` itself is
  not safe, so the archive is first checked to hold only tensors and plain graph data
  (:mod:`mlwarden.models.export_archive`);
* ``.pt`` / ``.ts`` / ``.torchscript``: a TorchScript archive (``torch.jit.save``);
* ``.skops``: a scikit-learn estimator saved with ``skops.io.dump``; only scikit-learn, NumPy and
  SciPy types are trusted;
* ``.onnx``: an ONNX graph run by ONNX Runtime.

Raw pickles (``.pkl``, ``.pickle``, ``.joblib``, ``torch.save`` checkpoints) are refused with an
:class:`~mlwarden.errors.UnsafeModelError` explaining what to export instead.

A sidecar file ``<model>.mlwarden.json`` may describe the model (``input_shape``,
``n_classes``, ``clip_range``) and how it was made; values given to :func:`load_model` win.

A spec ``SCHEME:NAME`` whose scheme is registered in :data:`MODEL_SCHEMES` is handed to that
scheme's loader (:mod:`mlwarden.models.zoo` registers ``zoo``), so this module imports none of
them. Signature checks are injected: the caller passes ``verify`` (for example
:func:`mlwarden.supplychain.signing.signature_verifier`), so models never import the supply chain.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mlwarden.errors import ModelError, SignatureError, UnsafeModelError
from mlwarden.models.base import Classifier, ModelInfo
from mlwarden.registry import Registry

__all__ = [
    "MODEL_MODALITIES",
    "MODEL_SCHEMES",
    "SIDECAR_SUFFIX",
    "ModelVerifier",
    "load_model",
    "load_skops_estimator",
    "load_torch_program",
    "read_sidecar",
    "sha256_file",
]

logger = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".mlwarden.json"

ModelVerifier = Callable[[Path], object]
"""Checks a model file before it is read and raises (a ``SignatureError``) when it must not be."""

MODEL_SCHEMES: Registry[Callable[..., Classifier]] = Registry("model scheme")
"""Loaders of ``SCHEME:NAME`` specs by scheme, called as ``loader(NAME, device=...)``."""

MODEL_MODALITIES: Registry[Callable[..., Classifier]] = Registry("model modality")
"""Loaders of models whose sidecar names a ``modality`` other than tensors (:mod:`mlwarden.models.text`
registers ``text``), called as ``loader(path, metadata, device=...)`` after the file's format
was checked to be safe."""
_PICKLE_SUFFIXES = {".pkl", ".pickle", ".joblib", ".sav", ".dill", ".pth", ".ckpt", ".bin"}
_TORCH_SUFFIXES = {".pt2", ".pt", ".ts", ".torchscript"}
_SUPPORTED_SUFFIXES = _TORCH_SUFFIXES | {".skops", ".onnx"}
_TRUSTED_SKOPS_MODULES = ("sklearn.", "numpy.", "scipy.", "builtins.")
_UNSAFE_ADVICE = (
    "Pickle-based files can run arbitrary code when loaded, so mlwarden never loads them. "
    "Export PyTorch models with torch.export.save (.pt2) or torch.jit.save (.pt), "
    "scikit-learn models with skops.io.dump (.skops), or convert to ONNX (.onnx)."
)


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The metadata stored beside a model file, or ``{}`` if there is none."""
    sidecar = Path(str(path) + SIDECAR_SUFFIX)
    if not sidecar.exists():
        return {}
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{sidecar}: unreadable model metadata ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{sidecar}: model metadata must be a JSON object")
    return data


def load_model(
    spec: str | Path,
    *,
    input_shape: tuple[int, ...] | None = None,
    n_classes: int | None = None,
    clip_range: tuple[float, float] | None = None,
    device: str = "cpu",
    verify: ModelVerifier | None = None,
) -> Classifier:
    """Load the model named by ``spec`` (a path or ``zoo:NAME``) as a :class:`Classifier`.

    Parameters
    ----------
    verify
        Called with the model file before anything is read from it; it raises to refuse the
        file. Pass ``signature_verifier(public_key)`` from :mod:`mlwarden.supplychain.signing`
        to require a valid signature (``FILE.sig``, or the folder's ``model.sig``).

    Raises
    ------
    SignatureError
        ``verify`` is given and refuses the file, or ``spec`` names a model with no file.
    UnsafeModelError
        The file is a pickle (or a ``torch.save`` checkpoint) that could execute code.
    ModelError
        The file is missing, unreadable, or its shape/classes cannot be determined.
    """
    text = str(spec)
    scheme, colon, name = text.partition(":")
    if colon and scheme in MODEL_SCHEMES:
        if verify is not None:
            raise SignatureError(
                f"{text} is trained locally and has no signature; "
                "--require-signature needs a model file"
            )
        return MODEL_SCHEMES.get(scheme)(name, device=device)
    path = Path(text)
    if not path.exists():
        raise ModelError(f"model file {text!r} does not exist (or use zoo:digits-cnn)")
    if path.is_dir():
        raise ModelError(f"model path {text!r} is a directory; give the model file itself")
    if verify is not None:
        verify(path)
    # Decide whether the file is safe to read before anything else, so an unsafe file is refused
    # as such even when its input shape is unknown.
    suffix = path.suffix.lower()
    if suffix in _PICKLE_SUFFIXES:
        raise UnsafeModelError(f"refusing to load {path.name}: {_UNSAFE_ADVICE}")
    if suffix not in _SUPPORTED_SUFFIXES:
        raise ModelError(
            f"unsupported model format {suffix or '(no extension)'!r} for {path.name}; "
            "use .pt2 (torch.export), .pt (TorchScript), .skops or .onnx"
        )
    torch_kind = _torch_archive_kind(path) if suffix in _TORCH_SUFFIXES else None
    meta = read_sidecar(path)
    modality = meta.get("modality", "tensor")
    if modality != "tensor":
        loaded: Classifier = MODEL_MODALITIES.get(str(modality))(path, meta, device=device)
        loaded.info = _info(path, suffix, meta)
        return loaded
    shape = input_shape or _tuple(meta.get("input_shape"))
    if shape is None:
        raise ModelError(
            f"{path}: the input shape is unknown; pass data to infer it or write "
            f"{path.name}{SIDECAR_SUFFIX} with an input_shape"
        )
    classes = n_classes or meta.get("n_classes")
    rng = clip_range or _tuple(meta.get("clip_range")) or (0.0, 1.0)

    if torch_kind is not None:
        classifier: Classifier = _load_torch(path, torch_kind, shape, classes, rng, device)
    elif suffix == ".skops":
        classifier = _load_skops(path, shape, classes, rng)
    else:
        from mlwarden.models.onnx import OnnxClassifier

        if classes is None:
            classes = _probe_onnx_classes(path, shape)
        classifier = OnnxClassifier(path, input_shape=shape, n_classes=int(classes), clip_range=rng)
    classifier.info = _info(path, suffix, meta)
    return classifier


def _info(path: Path, suffix: str, meta: dict[str, Any]) -> ModelInfo:
    return ModelInfo(
        path=str(path),
        format=suffix.lstrip("."),
        sha256=sha256_file(path),
        name=meta.get("name", path.stem),
        metadata=meta,
    )


def _tuple(value: Any) -> tuple[Any, ...] | None:
    return tuple(value) if isinstance(value, (list, tuple)) else None


def _zip_names(path: Path) -> list[str] | None:
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except zipfile.BadZipFile:
        return None


def _torch_archive_kind(path: Path) -> str:
    """``"export"`` or ``"script"``; refuses pickles and archives that could run code."""
    names = _zip_names(path)
    if names is None:
        with open(path, "rb") as fh:
            head = fh.read(2)
        if head[:1] == b"\x80":  # the PROTO opcode that starts every pickle since protocol 2
            raise UnsafeModelError(
                f"refusing to load {path.name}: it is not a zip archive but a pickle, so it is a "
                f"legacy torch.save file. {_UNSAFE_ADVICE}"
            )
        raise ModelError(
            f"{path.name}: not a PyTorch program (the file is not a zip archive, or it is damaged); "
            "export the model with torch.export.save (.pt2) or torch.jit.save (.pt)"
        )
    if any(n.endswith("archive_format") or "/models/" in n for n in names):
        from mlwarden.models.export_archive import check_export_archive

        check_export_archive(path)
        return "export"
    if any("/code/" in n for n in names):
        return "script"
    if any(n.endswith("data.pkl") for n in names):
        raise UnsafeModelError(
            f"refusing to load {path.name}: it is a torch.save checkpoint (pickled state), not "
            f"an exported program. {_UNSAFE_ADVICE}"
        )
    raise ModelError(
        f"{path.name}: a zip archive but not a PyTorch program; export the model with "
        "torch.export.save (.pt2) or torch.jit.save (.pt)"
    )


def _load_torch(
    path: Path,
    kind: str,
    shape: tuple[int, ...],
    n_classes: int | None,
    clip_range: tuple[float, float],
    device: str,
) -> Classifier:
    import torch

    from mlwarden.models.torch import TorchClassifier

    module = load_torch_program(path, device=device, kind=kind)
    if n_classes is None:
        with torch.no_grad():
            out = module(torch.zeros((2, *shape), dtype=torch.float32))
        n_classes = int(out.shape[-1])
    return TorchClassifier(
        module, input_shape=shape, n_classes=int(n_classes), clip_range=clip_range, device=device
    )


def load_torch_program(path: Path, *, device: str = "cpu", kind: str | None = None) -> Any:
    """The frozen module of a ``torch.export`` (``.pt2``) or TorchScript archive at ``path``.

    The archive is checked first (:func:`_torch_archive_kind`): pickles and archives that could
    run code are refused with :class:`UnsafeModelError`.
    """
    import torch

    from mlwarden.models.torch import set_eval

    kind = kind or _torch_archive_kind(path)
    try:
        if kind == "export":
            module = torch.export.load(str(path)).module()
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(path), map_location=device)
    except Exception as exc:  # torch raises many untyped errors for damaged archives
        raise ModelError(f"{path.name}: cannot load the PyTorch program ({exc})") from exc
    # The loaded module is ours, not a caller's: freeze it once so the classifier runs it as is.
    set_eval(module)
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


def _load_skops(
    path: Path, shape: tuple[int, ...], n_classes: int | None, clip_range: tuple[float, float]
) -> Classifier:
    from mlwarden.models.sklearn import SklearnClassifier

    estimator = load_skops_estimator(path)
    return SklearnClassifier(
        estimator, input_shape=shape, n_classes=n_classes, clip_range=clip_range
    )


def load_skops_estimator(path: Path) -> Any:
    """The scikit-learn estimator in the ``.skops`` file at ``path``, refusing unsafe types.

    Only scikit-learn, NumPy, SciPy and builtin types are trusted; anything else is refused with
    :class:`UnsafeModelError` before it is loaded.
    """
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(file=str(path))
    except Exception as exc:  # skops raises a variety of errors for bad archives
        raise ModelError(f"{path.name}: not a valid skops file ({exc})") from exc
    refused = [t for t in untrusted if not t.startswith(_TRUSTED_SKOPS_MODULES)]
    if refused:
        raise UnsafeModelError(
            f"refusing to load {path.name}: it contains types outside scikit-learn, NumPy and "
            f"SciPy that could run code: {sorted(refused)}"
        )
    try:
        return sio.load(str(path), trusted=list(untrusted))
    except Exception as exc:
        raise ModelError(f"{path.name}: cannot load the skops file ({exc})") from exc


def _probe_onnx_classes(path: Path, shape: tuple[int, ...]) -> int:
    from mlwarden.models.onnx import OnnxClassifier

    probe = OnnxClassifier(path, input_shape=shape, n_classes=2, output="probabilities")
    outputs = probe.session.run(None, {probe._input_name: np.zeros((1, *shape), np.float32)})
    widths = [o.shape[1] for o in outputs if isinstance(o, np.ndarray) and o.ndim == 2]
    if not widths:
        raise ModelError(f"{path.name}: the ONNX model has no 2-D output of class scores")
    return int(widths[-1])
