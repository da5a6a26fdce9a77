"""What a model-extraction attack queries: a local model or a prediction API over HTTP.

Both victims answer a batch of inputs with *training targets* for the surrogate: a probability
vector per input (soft labels) when the victim returns probabilities, or a one-hot vector (hard
labels) when it returns only the top-1 label. Output policies a gateway applies (rounding to
``k`` decimals, top-k, label only) are simulated for local models by :class:`LocalVictim` so an
assessment can measure how much each policy slows extraction down.
"""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mlwarden.errors import AttackError
from mlwarden.models.base import Classifier

__all__ = [
    "OUTPUT_POLICIES",
    "Answer",
    "HttpVictim",
    "LocalVictim",
    "OutputPolicy",
    "QueryRefused",
    "Victim",
    "apply_output_policy",
    "targets_from_response",
]

logger = logging.getLogger(__name__)

OutputPolicy = Literal["probabilities", "rounded", "top_k", "label"]
OUTPUT_POLICIES: tuple[str, ...] = ("probabilities", "rounded", "top_k", "label")


class QueryRefused(Exception):
    """The victim refused further queries (quota exhausted, key blocked, budget spent)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.partial: Answer | None = None


@dataclass
class Answer:
    """The victim's answer to one batch.

    Attributes
    ----------
    targets
        Shape ``(n, n_classes)``: probability rows (soft) or one-hot rows (hard).
    hard
        Whether the rows are one-hot labels (label-only or top-1 outputs).
    alerts
        Alerts the gateway attached to the response (``[]`` for local victims).
    """

    targets: np.ndarray
    hard: bool
    alerts: list[dict[str, Any]] = field(default_factory=list)


def apply_output_policy(
    probs: np.ndarray, policy: str, *, decimals: int = 2, k: int = 1
) -> tuple[np.ndarray, bool]:
    """Turn full probabilities into the training targets an API with ``policy`` gives away.

    ``probabilities`` keeps them; ``rounded`` rounds to ``decimals`` (and renormalises; a row
    that rounds to all zeros becomes uniform, all the attacker learns from it); ``top_k`` keeps the ``k`` largest
    and spreads the remaining mass evenly over the other classes (``k = 1``: the label only);
    ``label`` returns one-hot labels. Returns ``(targets, hard)``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    n, n_classes = probs.shape
    labels = probs.argmax(axis=1)
    if policy == "probabilities":
        return probs.astype(np.float32), False
    if policy == "label" or (policy == "top_k" and k <= 1):
        return np.eye(n_classes, dtype=np.float32)[labels], True
    if policy == "rounded":
        rounded = np.round(probs, decimals)
        return _normalise(rounded)
    if policy == "top_k":
        k = min(k, n_classes)
        keep = np.argsort(-probs, axis=1)[:, :k]
        kept = np.zeros_like(probs)
        rows = np.arange(n)[:, None]
        kept[rows, keep] = probs[rows, keep]
        return _fill_rest(kept, keep), False
    raise AttackError(f"unknown output policy {policy!r}; choose from {list(OUTPUT_POLICIES)}")


def _normalise(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """Rows rescaled to sum 1; a row that rounded to all zeros (no class reached 0.5 at 0
    decimals) says only "unsure" and becomes uniform. ``hard``: every row is one-hot."""
    n_classes = values.shape[1]
    sums = values.sum(axis=1, keepdims=True)
    out = np.where(sums > 0, values / np.where(sums > 0, sums, 1.0), 1.0 / n_classes)
    hard = bool(np.all((out == 0) | (out == 1)))
    return out.astype(np.float32), hard


def _fill_rest(kept: np.ndarray, keep: np.ndarray) -> np.ndarray:
    n_classes = kept.shape[1]
    rest = np.clip(1.0 - kept.sum(axis=1, keepdims=True), 0.0, 1.0)
    others = n_classes - keep.shape[1]
    mask = np.ones_like(kept, dtype=bool)
    mask[np.arange(len(kept))[:, None], keep] = False
    out = kept + (mask * rest / others if others else 0.0)
    sums = out.sum(axis=1, keepdims=True)
    return (out / np.where(sums > 0, sums, 1.0)).astype(np.float32)


def targets_from_response(
    outputs: dict[str, Any], n: int, n_classes: int
) -> tuple[np.ndarray, bool]:
    """Training targets from a gateway response's ``outputs`` (see ``mlwarden serve``).

    Accepts ``{"probabilities": [[...]]}``, ``{"top_k": [[{"label", "probability"}]]}`` or
    ``{"labels": [...]}``.

    Raises
    ------
    AttackError
        The outputs have none of these forms, or the wrong number of rows or classes.
    """
    if "probabilities" in outputs:
        probs = np.asarray(outputs["probabilities"], dtype=np.float64)
        if probs.shape != (n, n_classes):
            raise AttackError(
                f"the API returned probabilities of shape {probs.shape}; expected ({n}, {n_classes})"
            )
        return _normalise(np.clip(probs, 0.0, None))
    if "top_k" in outputs:
        rows = outputs["top_k"]
        if len(rows) != n or any(not row for row in rows):
            raise AttackError(f"the API returned {len(rows)} top-k rows for {n} inputs")
        k = len(rows[0])
        kept = np.zeros((n, n_classes))
        keep = np.zeros((n, k), dtype=np.int64)
        for i, row in enumerate(rows):
            for j, entry in enumerate(row[:k]):
                label = int(entry["label"])
                if not 0 <= label < n_classes:
                    raise AttackError(f"the API returned label {label} outside [0, {n_classes})")
                keep[i, j] = label
                kept[i, label] = float(entry.get("probability", 1.0))
        if k == 1:
            return np.eye(n_classes, dtype=np.float32)[keep[:, 0]], True
        return _fill_rest(kept, keep), False
    if "labels" in outputs:
        labels = np.asarray(outputs["labels"], dtype=np.int64)
        if labels.shape != (n,) or labels.min() < 0 or labels.max() >= n_classes:
            raise AttackError(f"the API returned labels {labels.tolist()[:5]}... for {n} inputs")
        return np.eye(n_classes, dtype=np.float32)[labels], True
    raise AttackError(
        f"the API response's outputs have keys {sorted(outputs)}; expected probabilities, "
        "top_k or labels"
    )


class Victim(ABC):
    """A model the attack can query, counting every query it answers."""

    input_shape: tuple[int, ...]
    n_classes: int
    clip_range: tuple[float, float]

    def __init__(self) -> None:
        self.queries = 0
        self.requests = 0
        self.alerts: list[dict[str, Any]] = []
        self.first_alert_at: int | None = None

    def query(self, x: np.ndarray) -> Answer:
        """Answer ``x``; raises :class:`QueryRefused` when the victim stops answering.

        Inputs answered before a refusal stay counted; the returned answer may cover fewer
        rows than ``x`` only through a refusal, never silently.
        """
        answer = self._query(np.asarray(x, dtype=np.float32))
        return answer

    def _count(self, n: int, alerts: list[dict[str, Any]]) -> None:
        self.queries += n
        self.requests += 1
        if alerts:
            if self.first_alert_at is None:
                self.first_alert_at = self.queries
            self.alerts.extend(alerts)

    @abstractmethod
    def _query(self, x: np.ndarray) -> Answer:
        """Answer a batch."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op for local victims
        """Release connections (nothing to release by default)."""

    def __enter__(self) -> Victim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def description(self) -> str:
        """What the victim is, for reports (never holds a secret)."""
        return type(self).__name__


class LocalVictim(Victim):
    """A local :class:`~mlwarden.models.base.Classifier` behind a simulated output policy.

    Parameters
    ----------
    classifier
        The victim model.
    policy
        ``probabilities``, ``rounded`` (to ``decimals``), ``top_k`` (``k``) or ``label``.
    max_queries
        Refuse (like an exhausted quota) after this many queries; ``None``: no limit.
    """

    def __init__(
        self,
        classifier: Classifier,
        *,
        policy: str = "probabilities",
        decimals: int = 2,
        k: int = 1,
        max_queries: int | None = None,
    ) -> None:
        super().__init__()
        if policy not in OUTPUT_POLICIES:
            raise AttackError(
                f"unknown output policy {policy!r}; choose from {list(OUTPUT_POLICIES)}"
            )
        self.classifier = classifier
        self.policy = policy
        self.decimals = decimals
        self.k = k
        self.max_queries = max_queries
        self.input_shape = classifier.input_shape
        self.n_classes = classifier.n_classes
        self.clip_range = classifier.clip_range

    def _query(self, x: np.ndarray) -> Answer:
        if self.max_queries is not None:
            left = self.max_queries - self.queries
            if left <= 0:
                raise QueryRefused("quota", f"{self.max_queries} queries allowed")
            x = x[:left]
        targets, hard = apply_output_policy(
            self.classifier.predict_proba(x), self.policy, decimals=self.decimals, k=self.k
        )
        self._count(len(x), [])
        return Answer(targets=targets, hard=hard)

    @property
    def description(self) -> str:
        name = self.classifier.info.get("name") or self.classifier.info.get("path") or "model"
        return f"{name} ({self.policy})"


class HttpVictim(Victim):
    """A model behind ``mlwarden serve`` (or any API with the same contract).

    ``POST {url}/v1/models/{model}/predict`` with ``Authorization: Bearer KEY`` and body
    ``{"inputs": [...]}``. A 429 is retried after its ``Retry-After`` when that is at most
    ``max_retry_wait_s`` (the rate limit); a longer wait (the daily quota) or a 403 (blocked)
    stops the attack with :class:`QueryRefused`, keeping what was answered.

    Parameters
    ----------
    url
        The gateway's base URL, e.g. ``http://127.0.0.1:8000``.
    model
        The served model's name.
    api_key
        The API key; sent only in the ``Authorization`` header, never logged or reported.
    input_shape, n_classes, clip_range
        The model's input description; read from ``GET /v1/models`` when not given.
    batch_size
        Inputs per request.
    max_retry_wait_s
        Longest single ``Retry-After`` the attack waits for.
    max_total_wait_s
        Longest total time spent waiting for rate limits before giving up.
    client
        An ``httpx.Client`` to use (tests pass one with an in-process transport).
    sleep
        The sleep function (tests pass a fake clock).
    """

    def __init__(
        self,
        url: str,
        model: str,
        api_key: str | None,
        *,
        input_shape: tuple[int, ...] | None = None,
        n_classes: int | None = None,
        clip_range: tuple[float, float] | None = None,
        batch_size: int = 32,
        max_retry_wait_s: float = 30.0,
        max_total_wait_s: float = 300.0,
        timeout_s: float = 30.0,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        import httpx

        if batch_size < 1:
            raise AttackError(f"batch_size must be >= 1, got {batch_size}")
        self.url = url.rstrip("/")
        self.model = model
        self.batch_size = batch_size
        self.max_retry_wait_s = max_retry_wait_s
        self.max_total_wait_s = max_total_wait_s
        self.waited_s = 0.0
        self.rate_limited = 0
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._owns_client = client is None
        self._client = client or httpx.Client(base_url=self.url, timeout=timeout_s)
        self._headers = headers
        if input_shape is None or n_classes is None:
            info = self._describe()
            input_shape = input_shape or tuple(int(d) for d in info["input_shape"])
            n_classes = n_classes or int(info["n_classes"])
            clip_range = clip_range or tuple(info.get("clip_range") or (0.0, 1.0))  # type: ignore[assignment]
        self.input_shape = tuple(input_shape)
        self.n_classes = int(n_classes)
        low, high = clip_range or (0.0, 1.0)
        self.clip_range = (float(low), float(high))

    @property
    def description(self) -> str:
        return f"{self.url}/v1/models/{self.model}"

    def close(self) -> None:
        """Close the HTTP client (when this victim created it)."""
        if self._owns_client:
            self._client.close()

    def _describe(self) -> dict[str, Any]:
        """``GET /v1/models/{model}`` (or the ``/v1/models`` listing): shape and classes."""
        import httpx

        for path in (f"/v1/models/{self.model}", "/v1/models"):
            try:
                response = self._client.get(path, headers=self._headers)
            except httpx.HTTPError as exc:
                raise AttackError(f"cannot reach {self.url}: {type(exc).__name__}") from exc
            if response.status_code != 200:
                continue
            body = response.json()
            if isinstance(body, dict) and "input_shape" in body and "n_classes" in body:
                return dict(body)
            entries = body.get("models", []) if isinstance(body, dict) else body
            for entry in entries if isinstance(entries, list) else []:
                if (
                    isinstance(entry, dict)
                    and entry.get("name") == self.model
                    and "input_shape" in entry
                    and "n_classes" in entry
                ):
                    return dict(entry)
        raise AttackError(
            f"cannot read model {self.model!r}'s input shape and classes from {self.url}/v1/models "
            "(check --model-name and the API key)"
        )

    def _query(self, x: np.ndarray) -> Answer:
        parts: list[np.ndarray] = []
        hard = True
        for start in range(0, len(x), self.batch_size):
            batch = x[start : start + self.batch_size]
            try:
                targets, batch_hard = self._post(batch)
            except QueryRefused as refused:
                if parts:  # keep what was answered so the attack can still train on it
                    refused.partial = Answer(np.concatenate(parts), hard)
                raise
            parts.append(targets)
            hard = hard and batch_hard
        return Answer(targets=np.concatenate(parts), hard=hard)

    def _post(self, batch: np.ndarray) -> tuple[np.ndarray, bool]:
        import httpx

        path = f"/v1/models/{self.model}/predict"
        body = {"inputs": batch.tolist()}
        while True:
            try:
                response = self._client.post(path, json=body, headers=self._headers)
            except httpx.HTTPError as exc:
                raise QueryRefused("unreachable", f"{type(exc).__name__}") from exc
            status = response.status_code
            if status == 200:
                payload = response.json()
                alerts = list(payload.get("alerts") or [])
                targets, hard = targets_from_response(
                    payload.get("outputs") or {}, len(batch), self.n_classes
                )
                self._count(len(batch), alerts)
                return targets, hard
            detail = _detail(response)
            if status == 429:
                self.rate_limited += 1
                wait = _retry_after(response.headers.get("retry-after"))
                if wait > self.max_retry_wait_s or self.waited_s + wait > self.max_total_wait_s:
                    raise QueryRefused("quota", f"429, Retry-After {wait:g} s: {detail}")
                logger.info("rate limited; waiting %.2f s", wait)
                self._sleep(wait)
                self.waited_s += wait
                continue
            if status in (401, 403):
                raise QueryRefused("blocked" if status == 403 else "unauthorized", detail)
            if status == 413 and len(batch) > 1:
                half = len(batch) // 2
                self.batch_size = min(self.batch_size, half)  # later batches start smaller
                a, ha = self._post(batch[:half])
                b, hb = self._post(batch[half:])
                return np.concatenate([a, b]), ha and hb
            if status == 404:
                raise AttackError(f"model {self.model!r} not found at {self.url}: {detail}")
            raise AttackError(f"POST {path} answered {status}: {detail}")


def _detail(response: Any) -> str:
    try:
        detail = response.json().get("detail", "")
    except (ValueError, AttributeError):
        detail = ""
    return str(detail)[:200]


def _retry_after(value: str | None) -> float:
    """Seconds from a ``Retry-After`` header (delta-seconds; HTTP dates count as one hour)."""
    if value is None:
        return 1.0
    try:
        seconds = float(value)
    except ValueError:
        return 3600.0
    return seconds if math.isfinite(seconds) and seconds >= 0 else 1.0
