"""Attack profiles: the suites ``assess`` runs when the configuration names no attacks.

A profile is an ordered list of attacks run as AutoAttack runs its suite (Croce & Hein, 2020):
cheapest first, each one only on the samples every earlier attack left correctly classified, so
the reported robust accuracy is the worst case over the suite at a fraction of the cost of
running each attack on everything.

* ``standard``: AutoAttack's standard suite for white-box models: APGD-CE (100 steps), APGD-T
  on the DLR loss (100 steps towards each of the 9 most likely wrong classes), a minimum-norm
  attack in FAB-T's place (FMN-T, Pintor et al. 2021: 100 steps towards each of the 3 most
  likely wrong classes; on the digits CNN 3 targets broke every point 9 did) and Square Attack
  (5,000 queries). Black-box models get Square Attack with 5,000 queries and, where it is
  registered, HopSkipJump.
* A randomized white-box model (outputs change between identical calls) gets AutoAttack's
  suite for randomized defences instead: APGD-CE then APGD-DLR, each averaging its gradient
  over draws (EOT).
* ``quick``: a CI-sized suite (APGD-CE 25 steps, APGD-T 25 steps towards 3 classes, Square
  500 queries) measured within 2 points of ``standard`` on the plain and adversarially trained
  zoo models.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_PROFILE", "PROFILES", "profile_attacks"]

DEFAULT_PROFILE = "standard"

_Suite = tuple[tuple[str, dict[str, Any]], ...]

PROFILES: dict[str, dict[str, _Suite]] = {
    "standard": {
        "white_box": (
            ("apgd", {"loss": "ce", "steps": 100, "restarts": 1}),
            ("apgd-t", {"steps": 100, "target_classes": 9, "restarts": 1}),
            ("fmn", {"steps": 100, "target_classes": 3}),
            ("square", {"queries": 5000}),
        ),
        "black_box": (
            ("square", {"queries": 5000}),
            ("hsj", {"max_queries": 5000}),
        ),
        "randomized": (
            ("apgd", {"loss": "ce", "steps": 100, "restarts": 1}),
            ("apgd-dlr", {"steps": 100, "restarts": 1}),
        ),
    },
    "quick": {
        "white_box": (
            ("apgd", {"loss": "ce", "steps": 25, "restarts": 1}),
            ("apgd-t", {"steps": 25, "target_classes": 3, "restarts": 1}),
            ("square", {"queries": 500}),
        ),
        "black_box": (
            ("square", {"queries": 1000}),
            ("hsj", {"max_queries": 1000}),
        ),
        "randomized": (
            ("apgd", {"loss": "ce", "steps": 25, "restarts": 1}),
            ("apgd-dlr", {"steps": 25, "restarts": 1}),
        ),
    },
}
"""Per profile, the ordered suite for white-box (gradients), black-box and randomized white-box
models (AutoAttack's version for randomized defences: APGD-CE and APGD-DLR, with EOT)."""


def profile_attacks(
    profile: str, *, white_box: bool, randomized: bool = False
) -> list[tuple[str, dict[str, Any]]]:
    """The ordered ``(attack name, parameters)`` of ``profile`` for this kind of model."""
    kind = ("randomized" if randomized else "white_box") if white_box else "black_box"
    return [(name, dict(params)) for name, params in PROFILES[profile][kind]]
