"""Role-based authorisation: which actions a role may take on which models.

Least privilege: only what a grant lists is allowed; a role not in the configuration, or one
whose grants match nothing, can do nothing. Model patterns are shell-style globs matched against
configured model names only (never file paths).
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from mlwarden.models.output_policy import OutputPolicy
from mlwarden.serve.config import GatewayConfig

__all__ = ["Authorizer"]


class Authorizer:
    """Answer ``may role do action on model`` from a :class:`GatewayConfig`'s roles."""

    def __init__(self, config: GatewayConfig) -> None:
        self._roles = config.roles
        self._models = tuple(config.models)
        self._cache: dict[tuple[str, str, str], tuple[bool, OutputPolicy | None]] = {}

    def _decide(self, role: str, model: str, action: str) -> tuple[bool, OutputPolicy | None]:
        key = (role, model, action)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        allowed, output = False, None
        spec = self._roles.get(role)
        if spec is not None:
            for grant in spec.grants:
                if action in grant.actions and any(fnmatchcase(model, p) for p in grant.models):
                    allowed = True
                    if grant.output is not None:
                        output = grant.output.stricter(output) if output else grant.output
        result = (allowed, output)
        if len(self._cache) < 10_000:
            self._cache[key] = result
        return result

    def allowed(self, role: str, model: str, action: str) -> bool:
        """Whether ``role`` may take ``action`` on ``model``."""
        return self._decide(role, model, action)[0]

    def output_override(
        self, role: str, model: str, action: str = "predict"
    ) -> OutputPolicy | None:
        """The strictest output policy the role's matching grants impose, if any."""
        return self._decide(role, model, action)[1]

    def visible_models(self, role: str) -> list[str]:
        """Configured models on which ``role`` has at least one action other than ``metrics``."""
        return [
            m
            for m in self._models
            if any(self.allowed(role, m, a) for a in ("predict", "explain", "admin"))
        ]

    def has_anywhere(self, role: str, action: str) -> bool:
        """Whether any grant of ``role`` includes ``action`` (used for ``metrics``)."""
        spec = self._roles.get(role)
        return spec is not None and any(action in g.actions for g in spec.grants)
