"""The ladder of what the gateway does to a key after an extraction alert.

``none < throttle < label_only < block``: ``throttle`` adds the configured throttle rate limit,
``label_only`` degrades the key's outputs to labels, ``block`` refuses its requests (403). The
monitor gives each alert one of these actions, the configuration chooses them, and the key store
keeps the strictest one a key has earned: a restriction only ever tightens.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from mlwarden.errors import ConfigError

__all__ = ["LADDER", "Restriction"]


class Restriction(Enum):
    """One rung of the ladder, ordered from the mildest to the strictest."""

    NONE = "none"
    THROTTLE = "throttle"
    LABEL_ONLY = "label_only"
    BLOCK = "block"

    @property
    def rank(self) -> int:
        """Position on the ladder (``NONE`` is 0)."""
        return _ORDER.index(self)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Restriction):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Restriction):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Restriction):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Restriction):
            return NotImplemented
        return self.rank >= other.rank

    @classmethod
    def parse(cls, value: str | Restriction | None, *, where: str = "action") -> Restriction:
        """The rung named ``value`` (``None`` is ``NONE``).

        Raises
        ------
        ConfigError
            ``value`` names no rung; the message names ``where`` and the choices.
        """
        if isinstance(value, Restriction):
            return value
        if value is None:
            return cls.NONE
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(
                f"{where} {value!r} is not one of {', '.join(r.value for r in _ORDER)}"
            ) from None

    @classmethod
    def strictest(cls, values: Iterable[str | Restriction | None]) -> Restriction:
        """The strictest of ``values`` (``NONE`` when there are none).

        Raises
        ------
        ConfigError
            A value names no rung.
        """
        return max((cls.parse(v) for v in values), default=cls.NONE)

    def weaker(self) -> tuple[Restriction, ...]:
        """The rungs below this one, mildest first."""
        return _ORDER[: self.rank]


_ORDER: tuple[Restriction, ...] = tuple(Restriction)
#: The rung names, mildest first (what configuration files and the key store spell).
LADDER: tuple[str, ...] = tuple(r.value for r in _ORDER)
