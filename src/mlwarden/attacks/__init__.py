"""Attacks against models, one per module, all behind :class:`~mlwarden.attacks.base.Attack`."""

from mlwarden.attacks.base import Attack, AttackResult
from mlwarden.attacks.evasion import FGSM, PGD, HopSkipJump, SquareAttack
from mlwarden.attacks.registry import attack_names, get_attack, register

for _cls in (FGSM, PGD, SquareAttack, HopSkipJump):
    register(_cls.name, _cls)

__all__ = [
    "FGSM",
    "PGD",
    "Attack",
    "AttackResult",
    "HopSkipJump",
    "SquareAttack",
    "attack_names",
    "get_attack",
    "register",
]
