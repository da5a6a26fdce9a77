"""Model-extraction attacks: steal a model's function through its prediction API."""

from __future__ import annotations

from mlwarden.attacks.extraction.knockoff import (
    DEFAULT_CHECKPOINTS,
    BudgetPoint,
    ExtractionResult,
    KnockoffExtraction,
    surrogate_for,
)
from mlwarden.attacks.extraction.victim import (
    OUTPUT_POLICIES,
    Answer,
    HttpVictim,
    LocalVictim,
    QueryRefused,
    Victim,
    apply_output_policy,
    targets_from_response,
)

__all__ = [
    "DEFAULT_CHECKPOINTS",
    "OUTPUT_POLICIES",
    "Answer",
    "BudgetPoint",
    "ExtractionResult",
    "HttpVictim",
    "KnockoffExtraction",
    "LocalVictim",
    "QueryRefused",
    "Victim",
    "apply_output_policy",
    "surrogate_for",
    "targets_from_response",
]
