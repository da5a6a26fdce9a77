"""Request validation: body size before parsing, strict JSON, and a per-model input schema.

A predict body is ``{"inputs": [sample, ...]}`` where each sample is nested to the model's input
shape (``[[[0.0, ...] x8] x8]`` for a ``(1, 8, 8)`` model), numbers only, finite, inside the
model's ``clip_range``. The same rules are published as JSON Schema (:func:`input_schema`) at
``GET /v1/models/{name}``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

__all__ = ["InvalidInput", "PayloadTooLarge", "input_schema", "parse_inputs", "read_body"]


class InvalidInput(Exception):
    """The request body is not acceptable (422); ``reason`` is a short code, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PayloadTooLarge(Exception):
    """The request body exceeds the configured limit (413)."""


async def read_body(
    content_length: str | None, chunks: AsyncIterator[bytes], max_bytes: int
) -> bytes:
    """Read a body of at most ``max_bytes`` (declared length checked first, then while streaming).

    Raises
    ------
    PayloadTooLarge
        ``Content-Length`` is larger than ``max_bytes``, or a chunked body grows past it.
    InvalidInput
        ``Content-Length`` is not a non-negative integer.
    """
    if content_length is not None:
        if not content_length.isdigit():
            raise InvalidInput(
                "bad_content_length", "Content-Length must be a non-negative integer"
            )
        if int(content_length) > max_bytes:
            raise PayloadTooLarge(
                f"request body of {int(content_length)} bytes exceeds the limit of {max_bytes}"
            )
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"request body exceeds the limit of {max_bytes} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _reject_constant(name: str) -> Any:
    raise InvalidInput("non_finite", f"inputs contain {name}; only finite numbers are accepted")


def parse_inputs(
    body: bytes,
    *,
    input_shape: tuple[int, ...],
    clip_range: tuple[float, float],
    max_batch: int,
) -> np.ndarray:
    """The ``inputs`` of a predict body as a float32 array of shape ``(n, *input_shape)``.

    Raises
    ------
    InvalidInput
        Not JSON, not an object with a list ``inputs``, empty or too large a batch, non-numeric,
        ragged or wrongly shaped samples, NaN/Infinity, or values outside ``clip_range``.
    """
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except InvalidInput:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidInput("bad_json", "the request body is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("inputs"), list):
        raise InvalidInput("bad_body", 'the body must be a JSON object {"inputs": [sample, ...]}')
    extra = set(data) - {"inputs"}
    if extra:
        raise InvalidInput(
            "bad_body", f"unknown field(s) {sorted(extra)!r}; only 'inputs' is accepted"
        )
    inputs = data["inputs"]
    if not 1 <= len(inputs) <= max_batch:
        raise InvalidInput(
            "batch_size", f"inputs holds {len(inputs)} sample(s); send between 1 and {max_batch}"
        )
    try:
        array = np.asarray(inputs)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(
            "bad_shape", f"samples are ragged; each must be nested to shape {list(input_shape)}"
        ) from None
    # ``true``/``false`` among numbers become 1.0/0.0 in NumPy; JSON has no other way to spell
    # them than these bare words, and the only string a valid body holds is the key "inputs",
    # so their presence anywhere in the body means a boolean (or a string) where a number goes
    if array.dtype.kind not in "iuf" or b"true" in body or b"false" in body:
        raise InvalidInput(
            "bad_type",
            "inputs must contain only numbers nested to shape "
            f"{list(input_shape)} (got {array.dtype.kind!r} values or ragged lists)",
        )
    expected = (len(inputs), *input_shape)
    if array.shape != expected:
        raise InvalidInput(
            "bad_shape",
            f"inputs have shape {list(array.shape[1:])} per sample; the model expects "
            f"{list(input_shape)}",
        )
    values = array.astype(np.float64, copy=False)
    if not np.isfinite(values).all():
        raise InvalidInput("non_finite", "inputs contain NaN or infinite values")
    low, high = clip_range
    if values.min() < low or values.max() > high:
        raise InvalidInput(
            "out_of_range", f"inputs must lie in [{low}, {high}] (the model's clip_range)"
        )
    return values.astype(np.float32)


def input_schema(
    input_shape: tuple[int, ...], clip_range: tuple[float, float], max_batch: int
) -> dict[str, Any]:
    """JSON Schema of a predict body for a model with this input shape and range."""
    item: dict[str, Any] = {"type": "number", "minimum": clip_range[0], "maximum": clip_range[1]}
    for dim in reversed(input_shape):
        item = {"type": "array", "items": item, "minItems": dim, "maxItems": dim}
    return {
        "type": "object",
        "required": ["inputs"],
        "additionalProperties": False,
        "properties": {
            "inputs": {"type": "array", "items": item, "minItems": 1, "maxItems": max_batch}
        },
    }
