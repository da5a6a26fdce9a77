"""One small registry of plugins by name: attacks, input detectors, poison detectors, checks.

A :class:`Registry` maps names to plugins (usually classes). ``register`` refuses a name that is
already taken (as Opacus' ``accountants/registry.py`` does), ``get`` raises a
:class:`~mlwarden.errors.ConfigError` that lists the choices, and ``names`` is what the CLI's
choices and the conformance tests read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from mlwarden.errors import ConfigError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Plugins of one kind by name.

    Parameters
    ----------
    kind
        What is registered, in words (``"attack"``, ``"detector"``); it names the plugin in
        error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, plugin: T) -> T:
        """Register ``plugin`` under ``name`` and return it; a name can be registered once.

        Raises
        ------
        ValueError
            ``name`` is already registered (a programming error, not a user's).
        """
        if name in self._entries:
            holder = self._entries[name]
            raise ValueError(
                f"{self.kind} {name!r} is already registered by "
                f"{getattr(holder, '__name__', repr(holder))}"
            )
        self._entries[name] = plugin
        return plugin

    def get(self, name: str) -> T:
        """The plugin registered as ``name``.

        Raises
        ------
        ConfigError
            No plugin has that name; the message lists the registered ones.
        """
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; choose from: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"
