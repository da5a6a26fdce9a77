"""Evasion attacks: perturb inputs within an ε-ball to change the model's decision."""

from mlwarden.attacks.evasion.apgd import APGD, APGDDLR, APGDTargeted
from mlwarden.attacks.evasion.fgsm import FGSM
from mlwarden.attacks.evasion.fmn import FMN
from mlwarden.attacks.evasion.hop_skip_jump import HopSkipJump
from mlwarden.attacks.evasion.pgd import PGD
from mlwarden.attacks.evasion.square import SquareAttack
from mlwarden.attacks.evasion.text_synonym import TextSynonymAttack

__all__ = [
    "APGD",
    "APGDDLR",
    "FGSM",
    "FMN",
    "PGD",
    "APGDTargeted",
    "HopSkipJump",
    "SquareAttack",
    "TextSynonymAttack",
]
