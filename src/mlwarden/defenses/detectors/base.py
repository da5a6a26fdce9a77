"""The detector contract: fit on clean data, score, calibrate a threshold, save without pickle.

A :class:`Detector` scores inputs so that higher means more suspicious. ``fit(x_clean)`` learns
whatever the detector needs from clean data; ``calibrate(x_holdout, fpr)`` sets ``threshold_``
so that at most a fraction ``fpr`` of held-out clean inputs score above it; ``predict`` flags
inputs above the threshold. ``save(directory)`` writes ``detector.json`` (class, parameters,
threshold, the model's digest) and ``state.npz`` (learned arrays), and :func:`load_detector`
reads them with ``allow_pickle=False``, so a saved detector can never run code when loaded and a
serving gateway can use it unchanged.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from mlwarden import __version__
from mlwarden._io import atomic_write_text, atomic_write_with
from mlwarden.errors import ConfigError, DataError, ModelError
from mlwarden.models.base import Classifier
from mlwarden.params import KeywordParams
from mlwarden.registry import Registry

__all__ = ["DETECTORS", "DETECTOR_FORMAT", "Detector", "load_detector"]

DETECTOR_FORMAT = "mlwarden.detector/1"
_META_FILE = "detector.json"
_STATE_FILE = "state.npz"


class Detector(KeywordParams, ABC):
    """Base class of every input detector.

    Subclasses set :attr:`name`, take keyword-only hyperparameters in ``__init__`` (stored
    only), implement :meth:`_fit` and :meth:`score_tensor`, and list their learned arrays in
    :meth:`_state` / :meth:`_set_state`.

    Parameters
    ----------
    classifier
        The model whose inputs are screened (``None`` for detectors that look at inputs only).
    batch_size
        Inputs scored at once.

    Attributes
    ----------
    threshold_
        Scores above it are flagged; set by :meth:`calibrate`.
    calibration_fpr_
        The false-positive rate the threshold was calibrated for.
    """

    name: ClassVar[str]
    needs_classifier: ClassVar[bool] = True
    needs_gradients: ClassVar[bool] = False

    def __init__(self, classifier: Classifier | None = None, *, batch_size: int = 512) -> None:
        self.classifier = classifier
        self.batch_size = batch_size

    # -- parameters (``get_params`` from :class:`~mlwarden.params.KeywordParams`) -----------
    def _validate_params(self) -> None:
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or self.batch_size < 1
        ):
            raise ConfigError(
                f"{self.name}: batch_size must be an integer >= 1, got {self.batch_size!r}"
            )
        if self.needs_classifier and self.classifier is None:
            raise ConfigError(f"{self.name} needs the classifier it protects")
        if (
            self.needs_gradients
            and self.classifier is not None
            and not self.classifier.differentiable
        ):
            raise ModelError(
                f"{self.name} needs a white-box (PyTorch) model; use the knn detector for "
                f"black-box models"
            )

    # -- fitting and scoring ---------------------------------------------------------------
    def _inputs(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if self.classifier is not None:
            return self.classifier.check_inputs(x)
        if x.ndim < 2:
            raise DataError(f"{self.name}: inputs need a batch dimension, got shape {x.shape}")
        return x.astype(np.float32, copy=False)

    @property
    def device(self) -> torch.device:
        """Where scoring runs: the classifier's device, or the CPU."""
        return getattr(self.classifier, "device", torch.device("cpu"))

    def fit(self, x_clean: np.ndarray, y: np.ndarray | None = None) -> Detector:
        """Learn from clean inputs (``y``: their labels, where the detector uses them); return self.

        Raises
        ------
        ConfigError
            A hyperparameter is invalid.
        DataError
            The inputs are empty or do not match the classifier.
        """
        self._validate_params()
        x = self._inputs(x_clean)
        if len(x) == 0:
            raise DataError(f"{self.name}: fit needs at least one clean input")
        if y is not None:
            y = np.asarray(y)
            if y.shape != (len(x),):
                raise DataError(f"{self.name}: y must have shape ({len(x)},), got {y.shape}")
            y = y.astype(np.int64)
        self._fit(x, y)
        self.fitted_ = True
        return self

    @abstractmethod
    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        """Learn from validated clean inputs."""

    @abstractmethod
    def score_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of a batch on :attr:`device`, differentiable in ``x`` where possible.

        Non-differentiable steps use a straight-through (BPDA) gradient, so an adaptive attacker
        can descend on the score (Athalye, Carlini and Wagner, 2018).
        """

    def attack_views(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Transformed inputs whose classification the detector compares with ``x``'s.

        An adaptive attacker should misclassify these too (through BPDA), since the detector
        flags inputs whose views disagree; detectors that compare no views return ``[]``.
        """
        return []

    def _check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise ConfigError(f"{self.name}: call fit() before scoring")

    def score(self, x: np.ndarray) -> np.ndarray:
        """Suspicion scores, shape ``(n,)``: higher is more suspicious."""
        self._check_fitted()
        xs = self._inputs(x)
        parts = []
        with torch.no_grad():
            for start in range(0, len(xs), self.batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(xs[start : start + self.batch_size]))
                parts.append(self.score_tensor(batch.to(self.device)).detach().cpu().numpy())
        if not parts:
            return np.zeros(0, dtype=np.float64)
        return np.concatenate(parts).astype(np.float64)

    def calibrate(self, x_holdout: np.ndarray, fpr: float = 0.05) -> Detector:
        """Set ``threshold_`` so at most ``fpr`` of held-out clean inputs are flagged; return self.

        The threshold is the smallest held-out score with at most ``⌊fpr·n⌋`` scores above it.
        Use clean data not seen by :meth:`fit`.
        """
        if isinstance(fpr, bool) or not isinstance(fpr, (int, float)) or not 0 < fpr < 1:
            raise ConfigError(f"fpr must be in (0, 1), got {fpr!r}")
        scores = np.sort(self.score(x_holdout))
        if len(scores) == 0:
            raise DataError(f"{self.name}: calibrate needs held-out clean inputs")
        allowed = math.floor(fpr * len(scores))
        self.threshold_ = float(scores[len(scores) - 1 - allowed])
        self.calibration_fpr_ = float(fpr)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Per input: ``True`` when its score exceeds ``threshold_`` (flagged as suspicious)."""
        threshold = getattr(self, "threshold_", None)
        if threshold is None:
            raise ConfigError(f"{self.name}: call calibrate() before predict()")
        return self.score(x) > threshold

    # -- persistence -----------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        """Learned arrays to save (numeric only)."""
        return {}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`_state` returned."""

    def save(self, directory: str | Path) -> Path:
        """Write ``detector.json`` and ``state.npz`` into ``directory`` (atomically each)."""
        self._check_fitted()
        target = Path(directory)
        if target.exists() and not target.is_dir():
            raise ConfigError(f"{target} exists and is not a directory")
        arrays = {k: np.ascontiguousarray(v) for k, v in self._state().items()}
        for key, value in arrays.items():
            if value.dtype == object:
                raise ModelError(f"{self.name}: state {key!r} is an object array; refusing to save")

        def write_npz(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)  # type: ignore[arg-type]

        atomic_write_with(target / _STATE_FILE, write_npz)
        info = getattr(self.classifier, "info", {}) if self.classifier is not None else {}
        meta = {
            "format": DETECTOR_FORMAT,
            "detector": self.name,
            "params": self.get_params(),
            "threshold": getattr(self, "threshold_", None),
            "calibration_fpr": getattr(self, "calibration_fpr_", None),
            "model_sha256": info.get("sha256"),
            "input_shape": list(self.classifier.input_shape) if self.classifier else None,
            "mlwarden_version": __version__,
        }
        atomic_write_text(target / _META_FILE, json.dumps(meta, indent=2, sort_keys=True))
        return target

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


DETECTORS: Registry[type[Detector]] = Registry("detector")
"""Input detectors by name; saved detectors, config choices and the conformance tests read it."""


def load_detector(directory: str | Path, classifier: Classifier | None = None) -> Detector:
    """Load a detector written by :meth:`Detector.save`, without unpickling anything.

    Parameters
    ----------
    directory
        The folder holding ``detector.json`` and ``state.npz``.
    classifier
        The protected model, for detectors that need one. When the detector recorded the
        model's SHA-256 and the classifier has one, they must match.

    Raises
    ------
    ModelError
        The files are missing, malformed, of another format, or made for another model.
    """
    folder = Path(directory)
    meta_path, state_path = folder / _META_FILE, folder / _STATE_FILE
    if not meta_path.is_file() or not state_path.is_file():
        raise ModelError(f"{folder} is not a saved detector (needs {_META_FILE} and {_STATE_FILE})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{meta_path}: unreadable detector metadata ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != DETECTOR_FORMAT:
        raise ModelError(f"{meta_path}: not a {DETECTOR_FORMAT} file")
    cls = DETECTORS.get(str(meta.get("detector")))
    recorded = meta.get("model_sha256")
    actual = getattr(classifier, "info", {}).get("sha256") if classifier is not None else None
    if recorded and actual and recorded != actual:
        raise ModelError(
            f"{folder}: the detector was fitted for model sha256 {recorded[:12]}… but the given "
            f"model is {actual[:12]}…; refit it for this model"
        )
    params = meta.get("params") or {}
    if not isinstance(params, dict):
        raise ModelError(f"{meta_path}: params must be a mapping")
    detector = cls(classifier, **params)
    try:
        with np.load(state_path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (ValueError, OSError) as exc:
        raise ModelError(f"{state_path}: unreadable or not purely numeric ({exc})") from exc
    detector._validate_params()
    detector._set_state(arrays)
    detector.fitted_ = True
    if meta.get("threshold") is not None:
        detector.threshold_ = float(meta["threshold"])
        detector.calibration_fpr_ = float(meta.get("calibration_fpr") or 0.0)
    return detector
