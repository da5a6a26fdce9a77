"""The one plugin registry: refuses a taken name, lists the choices when a name is unknown."""

from __future__ import annotations

import pytest

from mlwarden.errors import ConfigError
from mlwarden.registry import Registry


class _First:
    pass


class _Second:
    pass


def test_a_name_can_be_registered_once() -> None:
    registry: Registry[type] = Registry("widget")
    assert registry.register("a", _First) is _First
    with pytest.raises(ValueError, match="widget 'a' is already registered by _First"):
        registry.register("a", _Second)
    assert registry.get("a") is _First


def test_an_unknown_name_raises_config_error_listing_the_sorted_choices() -> None:
    registry: Registry[type] = Registry("widget")
    registry.register("zeta", _First)
    registry.register("alpha", _Second)
    with pytest.raises(ConfigError, match=r"unknown widget 'beta'; choose from: alpha, zeta"):
        registry.get("beta")
    assert registry.names() == ["alpha", "zeta"] == list(registry)
    assert "alpha" in registry and len(registry) == 2
