"""The vendored MITRE ATLAS data: techniques, mitigations and the links between them.

``data/ATLAS.yaml`` is MITRE's distributed file (Apache-2.0, see ``data/README.md``), read once
with ``yaml.safe_load`` and cached. Threat derivation (:mod:`mlwarden.program.risk`) names
techniques by their ATLAS ids and finds the mitigations for them through the data's own
mitigation → technique links, so a control plan never cites an id ATLAS does not have.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from mlwarden.errors import ConfigError

__all__ = ["Atlas", "AtlasMitigation", "AtlasTechnique", "load_atlas"]

_URL = "https://atlas.mitre.org"


@dataclass(frozen=True)
class AtlasTechnique:
    """One ATLAS technique or sub-technique."""

    id: str
    name: str
    tactics: tuple[str, ...]
    parent: str | None

    @property
    def url(self) -> str:
        """The technique's page on atlas.mitre.org."""
        return f"{_URL}/techniques/{self.id}"


@dataclass(frozen=True)
class AtlasMitigation:
    """One ATLAS mitigation and the techniques it addresses (with ATLAS's words on how)."""

    id: str
    name: str
    categories: tuple[str, ...]
    techniques: dict[str, str]

    @property
    def url(self) -> str:
        """The mitigation's page on atlas.mitre.org."""
        return f"{_URL}/mitigations/{self.id}"


@dataclass(frozen=True)
class Atlas:
    """The ATLAS matrix: ``version``, ``techniques`` and ``mitigations`` by id."""

    version: str
    techniques: dict[str, AtlasTechnique]
    mitigations: dict[str, AtlasMitigation]

    def technique(self, technique_id: str) -> AtlasTechnique:
        """The technique ``technique_id``.

        Raises
        ------
        ConfigError
            ATLAS has no such technique.
        """
        try:
            return self.techniques[technique_id]
        except KeyError:
            raise ConfigError(
                f"ATLAS {self.version} has no technique {technique_id!r}; "
                f"see {_URL}/techniques for the current ids"
            ) from None

    def display_name(self, technique_id: str) -> str:
        """``Parent: Sub-technique`` for a sub-technique, the name alone otherwise."""
        tech = self.technique(technique_id)
        if tech.parent is None:
            return tech.name
        return f"{self.technique(tech.parent).name}: {tech.name}"

    def mitigations_for(self, technique_id: str) -> list[AtlasMitigation]:
        """Mitigations ATLAS links to ``technique_id`` (ordered by mitigation id)."""
        self.technique(technique_id)
        return [m for m in self.mitigations.values() if technique_id in m.techniques]


def _parse(data: dict[str, Any]) -> Atlas:
    matrix = data["matrices"][0]
    techniques = {
        t["id"]: AtlasTechnique(
            id=t["id"],
            name=t["name"],
            tactics=tuple(t.get("tactics") or ()),
            parent=t.get("subtechnique-of"),
        )
        for t in matrix["techniques"]
    }
    mitigations = {
        m["id"]: AtlasMitigation(
            id=m["id"],
            name=m["name"],
            categories=tuple(m.get("category") or ()),
            techniques={t["id"]: str(t.get("use", "")).strip() for t in m.get("techniques") or ()},
        )
        for m in sorted(matrix["mitigations"], key=lambda m: m["id"])
    }
    return Atlas(version=str(data["version"]), techniques=techniques, mitigations=mitigations)


@functools.cache
def load_atlas() -> Atlas:
    """The vendored ATLAS data, parsed once per process."""
    text = resources.files("mlwarden.program").joinpath("data/ATLAS.yaml").read_text("utf-8")
    return _parse(yaml.safe_load(text))
