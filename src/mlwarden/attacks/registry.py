"""One registry of attacks by name; the CLI's choices and the conformance tests read from it."""

from __future__ import annotations

from mlwarden.attacks.base import Attack
from mlwarden.registry import Registry

__all__ = ["ATTACKS", "attack_names", "get_attack", "register"]

ATTACKS: Registry[type[Attack]] = Registry("attack")
"""Evasion attacks by name."""

register = ATTACKS.register
get_attack = ATTACKS.get
attack_names = ATTACKS.names
