"""Model-extraction attacks: steal a model's function through its prediction API.

:mod:`~mlwarden.attacks.extraction.knockoff` (the attack), :mod:`~.victim` (the victim interface
and reading answers into targets), :mod:`~.local_victim` (a local model behind a simulated output
policy, :mod:`mlwarden.models.output_policy`), :mod:`~.http_victim` (a prediction API over HTTP).
A victim is also a black-box classifier for evasion attacks (:class:`~.victim.VictimClassifier`:
HopSkipJump against the gateway's label-only mode).
"""

from __future__ import annotations

from mlwarden.attacks.extraction.http_victim import HttpVictim
from mlwarden.attacks.extraction.knockoff import (
    DEFAULT_CHECKPOINTS,
    BudgetPoint,
    ExtractionResult,
    KnockoffExtraction,
    surrogate_for,
)
from mlwarden.attacks.extraction.local_victim import (
    OUTPUT_POLICIES,
    LocalVictim,
    apply_output_policy,
)
from mlwarden.attacks.extraction.victim import (
    Answer,
    QueryRefused,
    Victim,
    VictimClassifier,
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
    "VictimClassifier",
    "apply_output_policy",
    "surrogate_for",
    "targets_from_response",
]
