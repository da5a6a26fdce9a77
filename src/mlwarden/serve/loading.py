"""Load the gateway's models: scan first, verify the signature when a key is configured, then load.

A model whose artifact has a scan finding of medium severity or worse, or whose signature does not
verify, is refused and the gateway does not start (:class:`~mlwarden.errors.UnsafeModelError`,
:class:`~mlwarden.errors.SignatureError`).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mlwarden.errors import ModelError, UnsafeModelError
from mlwarden.models.base import Classifier
from mlwarden.serve.config import ModelConfig
from mlwarden.serve.validation import input_schema

__all__ = ["ServedModel", "artifact_path", "attach_detectors", "load_served_model"]

logger = logging.getLogger(__name__)

_WORK_SAMPLES = 15


@dataclass
class ServedModel:
    """A loaded model with its configuration, input schema and detectors."""

    config: ModelConfig
    classifier: Classifier
    detectors: list[tuple[Any, str]] = field(default_factory=list)
    #: median of the last 15 requests' model work (detectors, model, output
    #: policy; thread CPU seconds), robust to the odd slow call (a descheduled virtual CPU)
    work_s: float | None = None
    _recent_work: deque[float] = field(
        default_factory=lambda: deque(maxlen=_WORK_SAMPLES), init=False, repr=False
    )

    #: model work this cheap runs on the event loop: a thread hop would cost more than it
    INLINE_MAX_S: ClassVar[float] = 0.001
    INLINE_MAX_BATCH: ClassVar[int] = 8
    #: one call this slow moves the model off the loop at once (a hang, not a slow CPU)
    SLOW_CALL_S: ClassVar[float] = 0.05

    def runs_inline(self, batch: int) -> bool:
        """Whether a request's model work may run on the event loop instead of a thread.

        Only small batches of a model measured to take under a millisecond: anything slower,
        or not measured yet, goes to the threadpool so that one key's request never stalls the
        others. (A model that hangs after many fast answers would still stall one request's
        worth of the loop; the measurement moves it off at its next request.)
        """
        work = self.work_s
        return work is not None and work < self.INLINE_MAX_S and batch <= self.INLINE_MAX_BATCH

    def record_work(self, seconds: float) -> None:
        """Fold one request's model-work time into :attr:`work_s` (median of the recent ones)."""
        recent = self._recent_work
        # a call slower than SLOW_CALL_S holds the majority of the window: the next several
        # requests (until as many fast ones have been seen) run off the loop
        recent.extend([seconds] * (_WORK_SAMPLES // 2 + 1 if seconds > self.SLOW_CALL_S else 1))
        self.work_s = sorted(recent)[len(recent) // 2]

    @property
    def name(self) -> str:
        """The model's name in URLs."""
        return self.config.name

    def schema(self) -> dict[str, Any]:
        """JSON Schema of a predict body for this model."""
        return input_schema(
            self.classifier.input_shape, self.classifier.clip_range, self.config.max_batch
        )


def artifact_path(source: str) -> Path:
    """The file a model source refers to (a ``zoo:`` model's cache file, trained if missing)."""
    if source.startswith("zoo:"):
        from mlwarden.models.zoo import train_zoo_model, zoo_path

        path = zoo_path(source[4:])
        if not path.exists():
            train_zoo_model(source[4:], path)
        return path
    return Path(source)


def load_served_model(config: ModelConfig, *, scan: bool = True) -> ServedModel:
    """Scan, verify and load one configured model (and its detectors).

    Raises
    ------
    UnsafeModelError
        The scan found something of medium severity or worse.
    SignatureError
        A public key is configured and the signature does not verify.
    ModelError
        The model or a detector cannot be loaded.
    """
    from mlwarden.models import load_model
    from mlwarden.report.findings import Severity
    from mlwarden.supplychain.signing import signature_verifier

    path = artifact_path(config.source)
    if not path.is_file():
        raise ModelError(f"model {config.name!r}: artifact {str(path)!r} does not exist")
    if scan:
        from mlwarden.supplychain.scan import scan_paths

        report = scan_paths([path])
        bad = report.at_or_above(Severity.MEDIUM)
        if bad:
            worst = "; ".join(f"{i.severity.value}: {i.message}" for i in bad[:3])
            raise UnsafeModelError(
                f"model {config.name!r}: refusing to serve {path}: the scan found {len(bad)} "
                f"issue(s) ({worst}); run mlwarden scan {path} for details"
            )
    if config.public_key is not None:
        if config.source.startswith("zoo:"):
            from mlwarden.errors import SignatureError

            raise SignatureError(
                f"model {config.name!r}: {config.source} has no signature; a public_key needs a "
                "signed model file"
            )
        classifier = load_model(path, verify=signature_verifier(config.public_key))
    else:
        classifier = load_model(path)
    served = attach_detectors(ServedModel(config=config, classifier=classifier))
    logger.info("loaded model %s from %s", config.name, path)
    return served


def attach_detectors(served: ServedModel) -> ServedModel:
    """Load the detectors configured for ``served`` (each checked against its classifier).

    Raises
    ------
    ModelError
        A detector folder is missing, malformed, or was fitted for another model.
    """
    if served.config.detectors:
        from mlwarden.defenses.detectors import load_detector

        for det in served.config.detectors:
            served.detectors.append((load_detector(det.path, served.classifier), det.action))
    return served
