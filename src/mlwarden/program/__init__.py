"""The ML security programme: threat models, risk-ranked controls, inventory and history."""

from __future__ import annotations

from mlwarden.program.atlas import Atlas, AtlasMitigation, AtlasTechnique, load_atlas

__all__ = ["Atlas", "AtlasMitigation", "AtlasTechnique", "load_atlas"]
