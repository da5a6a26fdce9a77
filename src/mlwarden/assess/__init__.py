"""``mlwarden assess``: red-team a model and report findings with policy gates."""

from mlwarden.assess.config import AssessConfig, Gate, load_config, parse_gate
from mlwarden.assess.runner import assess, evaluate_gates

# The optional sections register their config validators (SECTION_CHECKS) on import.
from mlwarden.assess import extraction as _extraction  # noqa: F401  isort: skip
from mlwarden.assess import privacy as _privacy  # noqa: F401  isort: skip
from mlwarden.assess import memorization as _memorization  # noqa: F401  isort: skip

__all__ = ["AssessConfig", "Gate", "assess", "evaluate_gates", "load_config", "parse_gate"]
