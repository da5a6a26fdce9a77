"""One registry of attacks by name; the CLI's choices and the conformance tests read from it."""

from __future__ import annotations

from mlwarden.attacks.base import Attack
from mlwarden.errors import ConfigError

__all__ = ["attack_names", "get_attack", "register"]

_ATTACKS: dict[str, type[Attack]] = {}


def register(name: str, cls: type[Attack]) -> type[Attack]:
    """Register ``cls`` under ``name``; a name can be registered once."""
    if name in _ATTACKS:
        raise ValueError(f"attack {name!r} is already registered by {_ATTACKS[name].__name__}")
    _ATTACKS[name] = cls
    return cls


def get_attack(name: str) -> type[Attack]:
    """The attack class registered as ``name``."""
    try:
        return _ATTACKS[name]
    except KeyError:
        raise ConfigError(
            f"unknown attack {name!r}; choose from: {', '.join(sorted(_ATTACKS))}"
        ) from None


def attack_names() -> list[str]:
    """Names of all registered attacks, sorted."""
    return sorted(_ATTACKS)
