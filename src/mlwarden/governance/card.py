"""Data cards: what a registered dataset is, where it came from and how long it may be kept.

The fields follow Gebru et al., 2021, "Datasheets for Datasets" (motivation, composition,
collection process, uses, distribution, maintenance) and Pushkarna et al., 2022, "Data Cards:
Purposeful and Transparent Dataset Documentation", cut to what a registry can act on: who owns
it, under which licence, for what purpose, how sensitive it is, and its retention period.
"""

from __future__ import annotations

import json
import re
from enum import Enum
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlwarden.errors import ConfigError

__all__ = ["DataCard", "Sensitivity", "load_card", "retention_seconds"]

_DURATION = re.compile(r"^(\d+)([hdwy])$")
_SECONDS = {"h": 3600, "d": 86400, "w": 604800, "y": 365 * 86400}


class Sensitivity(str, Enum):
    """How much harm a leak would do (ISO 27001-style classification)."""

    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"


def retention_seconds(text: str) -> float | None:
    """``365d``, ``12w``, ``48h``, ``2y`` as seconds; ``forever`` is ``None``.

    Raises
    ------
    ConfigError
        The text is none of those.
    """
    if text == "forever":
        return None
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match.group(1)) <= 0:
        raise ConfigError(
            f"retention {text!r} must be a positive duration (48h, 30d, 12w, 2y) or 'forever'"
        )
    return float(int(match.group(1)) * _SECONDS[match.group(2)])


class DataCard(BaseModel):
    """The documentation a dataset is registered with (strict: unknown fields are refused)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    source: str = Field(min_length=1, description="Where the data came from (system, vendor, URL).")
    collection_method: str = Field(min_length=1, description="How it was collected or generated.")
    licence: str = Field(min_length=1, description="SPDX identifier or contract reference.")
    owner: str = Field(min_length=1, description="Accountable person or team.")
    purpose: str = Field(min_length=1, description="What it may be used for.")
    sensitivity: Sensitivity = Field(description="public, internal, confidential or restricted.")
    retention: str = Field(description="How long it may be kept: 30d, 12w, 2y or forever.")
    description: str = ""

    @field_validator("sensitivity", mode="before")
    @classmethod
    def _sensitivity(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return Sensitivity(value)
            except ValueError:
                pass
        return value

    @field_validator("retention")
    @classmethod
    def _retention(cls, value: str) -> str:
        retention_seconds(value)
        return value

    @property
    def retention_s(self) -> float | None:
        """The retention period in seconds (``None``: forever)."""
        return retention_seconds(self.retention)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), as stored in the registry."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def load_card(path: str | Path) -> DataCard:
    """Read a data card from a YAML or JSON file.

    Raises
    ------
    ConfigError
        The file is missing, not YAML/JSON, or a field is missing, unknown or of the wrong type
        (every bad field is named).
    """
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"data card {path}: cannot read it ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"data card {path}: expected a mapping of fields")
    try:
        return DataCard.model_validate(raw)
    except pydantic.ValidationError as exc:
        bad = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(card)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"data card {path}: {bad}") from None
