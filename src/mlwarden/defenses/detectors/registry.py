"""One registry of detectors by name; config choices and the conformance tests read from it."""

from __future__ import annotations

from mlwarden.defenses.detectors.base import Detector
from mlwarden.errors import ConfigError

__all__ = ["detector_names", "get_detector", "register"]

_DETECTORS: dict[str, type[Detector]] = {}


def register(name: str, cls: type[Detector]) -> type[Detector]:
    """Register ``cls`` under ``name``; a name can be registered once."""
    if name in _DETECTORS:
        raise ValueError(f"detector {name!r} is already registered by {_DETECTORS[name].__name__}")
    _DETECTORS[name] = cls
    return cls


def get_detector(name: str) -> type[Detector]:
    """The detector class registered as ``name``."""
    try:
        return _DETECTORS[name]
    except KeyError:
        raise ConfigError(
            f"unknown detector {name!r}; choose from: {', '.join(sorted(_DETECTORS))}"
        ) from None


def detector_names() -> list[str]:
    """Names of all registered detectors, sorted."""
    return sorted(_DETECTORS)
