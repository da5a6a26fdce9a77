"""Attacks against models, one per module, all behind :class:`~mlwarden.attacks.base.Attack`."""

from mlwarden.attacks.base import Attack, AttackResult
from mlwarden.attacks.evasion import (
    APGD,
    APGDDLR,
    FGSM,
    FMN,
    PGD,
    APGDTargeted,
    HopSkipJump,
    SquareAttack,
    TextSynonymAttack,
)
from mlwarden.attacks.registry import attack_names, get_attack, register

for _cls in (
    FGSM,
    PGD,
    APGD,
    APGDDLR,
    APGDTargeted,
    FMN,
    SquareAttack,
    HopSkipJump,
    TextSynonymAttack,
):
    register(_cls.name, _cls)

__all__ = [
    "APGD",
    "APGDDLR",
    "FGSM",
    "FMN",
    "PGD",
    "APGDTargeted",
    "Attack",
    "AttackResult",
    "HopSkipJump",
    "SquareAttack",
    "TextSynonymAttack",
    "attack_names",
    "get_attack",
    "register",
]
