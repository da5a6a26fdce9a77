"""One registry of attacks by name; the CLI's choices and the conformance tests read from it."""

from __future__ import annotations

from mlwarden.attacks.base import Attack
from mlwarden.registry import Registry

__all__ = ["ATTACKS", "attack_names", "get_attack", "register"]

ATTACKS: Registry[type[Attack]] = Registry("attack")
"""Evasion attacks by name."""

register = ATTACKS.register
get_attack = ATTACKS.get


def attack_names(modality: str | None = "tensor") -> list[str]:
    """Names of the registered attacks on ``modality`` (``None``: every attack), sorted.

    Attacks declare their modalities (:attr:`Attack.modalities`); the default lists the tensor
    attacks the image and tabular checks choose from, ``"text"`` the text attacks.
    """
    return [
        name
        for name in ATTACKS.names()
        if modality is None or modality in ATTACKS.get(name).modalities
    ]
