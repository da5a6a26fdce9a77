"""Role-based authorisation: which actions a role may take on which models.

Least privilege: only what a grant lists is allowed; a role not in the configuration, or one
whose grants match nothing, can do nothing. Model patterns are shell-style globs matched against
configured model names only (never file paths).
"""

from __future__ import annotations

import dataclasses
from fnmatch import fnmatchcase

from mlwarden.models.output_policy import OutputPolicy
from mlwarden.serve.config import ALL_CLASSES, GatewayConfig

__all__ = ["Authorizer", "effective_output"]


def _shows_all_classes(policy: OutputPolicy) -> OutputPolicy:
    """``policy`` with ``top_k`` unbounded unless its mode is ``top_k`` (where it means something)."""
    if policy.mode == "top_k" or policy.top_k == ALL_CLASSES:
        return policy
    return dataclasses.replace(policy, top_k=ALL_CLASSES)


def effective_output(model: OutputPolicy, role: OutputPolicy | None) -> OutputPolicy:
    """The output policy a key gets on a model: the stricter of each field of the two policies.

    ``mode`` the more restrictive (``probabilities`` < ``top_k`` < ``label``), ``decimals`` the
    fewer (``None``, full precision, is the loosest) and ``top_k`` the fewer, where a policy
    whose mode is not ``top_k`` shows every class (its ``top_k`` field limits nothing). A role's
    ``output`` block read from ``gateway.yaml`` leaves the fields it does not set at their loosest,
    so it tightens only what it names. A role can never loosen a model's policy.
    """
    combined = _shows_all_classes(model)
    if role is not None:
        combined = combined.stricter(_shows_all_classes(role))
    return combined


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
