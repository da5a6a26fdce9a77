"""Each public package's ``__all__`` lists exactly what it exports, and every name imports.

After httpx's ``tests/test_exported_members.py``: a public name that is not in ``__all__`` is
an accident of an import, and a name in ``__all__`` that does not exist breaks ``import *``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

PUBLIC_MODULES = [
    "mlwarden",
    "mlwarden.attacks",
    "mlwarden.attacks.privacy",
    "mlwarden.attacks.extraction",
    "mlwarden.models",
    "mlwarden.data",
    "mlwarden.report",
    "mlwarden.assess",
    "mlwarden.errors",
    "mlwarden.defenses.training",
    "mlwarden.defenses.smoothing",
    "mlwarden.defenses.detectors",
    "mlwarden.attacks.poisoning",
    "mlwarden.defenses.poisoning",
    "mlwarden.program",
    "mlwarden.federated",
]
INCLUDED_PRIVATE_MEMBERS = {"__version__"}
# what ``from __future__ import annotations`` binds in a module: a feature, not an export
FUTURE_FEATURE = type(annotations)


def _public_members(module: ModuleType) -> set[str]:
    """Names bound in ``module`` that a user could take for its API.

    Submodules (bound as attributes when imported) and ``from __future__`` features are not
    exports. Packages that import their names on first use (PEP 562 ``__getattr__``) are asked
    for every name in ``__all__`` first, so that a name they cannot produce fails here.
    """
    for name in getattr(module, "__all__", ()):
        getattr(module, name)
    return {
        name
        for name, value in vars(module).items()
        if (not name.startswith("_") or name in INCLUDED_PRIVATE_MEMBERS)
        and not isinstance(value, (ModuleType, FUTURE_FEATURE))
    }


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_all_lists_exactly_the_public_members(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert len(module.__all__) == len(set(module.__all__)), "duplicate names in __all__"
    assert set(module.__all__) == _public_members(module)


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_name_in_all_is_importable(module_name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {module_name} import *", namespace)
    for name in importlib.import_module(module_name).__all__:
        assert name in namespace, f"{module_name}.{name} is in __all__ but cannot be imported"
        assert namespace[name] is not None
