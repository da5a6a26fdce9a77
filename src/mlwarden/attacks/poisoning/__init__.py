"""Training-data poisoning for red-teaming your own pipeline: backdoors and label flips.

Image backdoors (:class:`BadNets`, :class:`Blend`) and the text backdoor
(:class:`TriggerPhrase`: a rare phrase inserted into a few texts) share one contract.

Every attack returns a poisoned *copy* of a :class:`~mlwarden.data.Dataset` and the indices it
changed (:class:`PoisonResult`); :func:`evaluate_backdoor` measures clean accuracy and attack
success of a model trained on it.
"""

from __future__ import annotations

from mlwarden.attacks.poisoning.badnets import PATCH_POSITIONS, BadNets
from mlwarden.attacks.poisoning.base import (
    POISONING_ATTACKS,
    PoisoningAttack,
    PoisonResult,
    TriggerAttack,
)
from mlwarden.attacks.poisoning.blend import Blend
from mlwarden.attacks.poisoning.evaluation import BackdoorMetrics, evaluate_backdoor
from mlwarden.attacks.poisoning.io import (
    attack_from_truth,
    load_text_jsonl,
    load_truth,
    save_poisoned,
    truth_path_for,
)
from mlwarden.attacks.poisoning.label_flip import LabelFlip
from mlwarden.attacks.poisoning.trigger_phrase import TriggerPhrase

__all__ = [
    "PATCH_POSITIONS",
    "POISONING_ATTACKS",
    "BackdoorMetrics",
    "BadNets",
    "Blend",
    "LabelFlip",
    "PoisonResult",
    "PoisoningAttack",
    "TriggerAttack",
    "TriggerPhrase",
    "attack_from_truth",
    "evaluate_backdoor",
    "get_poisoning_attack",
    "load_text_jsonl",
    "load_truth",
    "save_poisoned",
    "truth_path_for",
]

for _cls in (BadNets, Blend, LabelFlip, TriggerPhrase):
    POISONING_ATTACKS.register(_cls.name, _cls)

get_poisoning_attack = POISONING_ATTACKS.get
"""The poisoning attack registered as ``name``."""
