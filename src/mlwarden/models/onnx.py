"""ONNX Runtime adapter: a black-box classifier over an ``.onnx`` file (``mlwarden[onnx]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from mlwarden.errors import ModelError
from mlwarden.models.base import Classifier

__all__ = ["OnnxClassifier"]

OutputKind = Literal["auto", "logits", "probabilities"]


class OnnxClassifier(Classifier):
    """Run an ONNX classifier with ONNX Runtime on the CPU.

    The first 2-D float output is used. With ``output="auto"`` it is treated as probabilities
    when every row is non-negative and sums to one, and as logits (softmax applied) otherwise.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        input_shape: tuple[int, ...],
        n_classes: int,
        clip_range: tuple[float, float] = (0.0, 1.0),
        batch_size: int = 512,
        output: OutputKind = "auto",
    ) -> None:
        super().__init__(
            input_shape=input_shape,
            n_classes=n_classes,
            clip_range=clip_range,
            batch_size=batch_size,
        )
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ModelError("ONNX models need onnxruntime: pip install 'mlwarden[onnx]'") from exc
        if output not in ("auto", "logits", "probabilities"):
            raise ModelError(f"output must be auto, logits or probabilities, got {output!r}")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session: Any = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{path}: not a valid ONNX model ({exc})") from exc
        self.path = Path(path)
        self._input_name = self.session.get_inputs()[0].name
        self._output_name = self.session.get_outputs()[0].name
        self.output = output

    def _predict_proba_batch(self, x: np.ndarray) -> np.ndarray:
        try:
            outputs = self.session.run(None, {self._input_name: x})
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(
                f"ONNX Runtime could not run the model on inputs of shape {x.shape} "
                f"(input_shape={self.input_shape}): {exc}"
            ) from exc
        candidates = [o for o in outputs if isinstance(o, np.ndarray) and o.ndim == 2]
        if not candidates:
            raise ModelError("the ONNX model has no 2-D output of class scores")
        scores = candidates[-1].astype(np.float32)
        if self.output == "probabilities" or (
            self.output == "auto"
            and scores.min() >= 0
            and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3)
        ):
            return scores
        shifted = scores - scores.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        return exp / exp.sum(axis=1, keepdims=True)
