"""``mlwarden assess``: red-team a model and report findings with policy gates."""

from mlwarden.assess.config import AssessConfig, Gate, load_config, parse_gate
from mlwarden.assess.runner import assess, evaluate_gates

__all__ = ["AssessConfig", "Gate", "assess", "evaluate_gates", "load_config", "parse_gate"]
