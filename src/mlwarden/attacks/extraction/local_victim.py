"""A local model behind a simulated output policy: what an assessment attacks.

The simulation is the gateway's own code: :meth:`mlwarden.models.output_policy.OutputPolicy.apply`
shapes the answer exactly as ``mlwarden serve`` would, and :func:`targets_from_response` reads it
exactly as :class:`~mlwarden.attacks.extraction.http_victim.HttpVictim` reads a real response.
So an assessment measures how much each policy slows extraction down for the policy a deployment
actually serves.

Policy names (``--policy`` of ``mlwarden attack extract``, ``extraction.policies`` of
``mlwarden assess``) map onto :class:`~mlwarden.models.output_policy.OutputPolicy`:

============== =========================================================================
name           policy
============== =========================================================================
probabilities  ``OutputPolicy("probabilities", decimals=None)``: every class, full precision
rounded        ``OutputPolicy("probabilities", decimals=decimals)`` (an alias kept for
               ``mode: probabilities`` with ``decimals``)
top_k          ``OutputPolicy("top_k", decimals=None, top_k=k)``
label          ``OutputPolicy("label")``
============== =========================================================================
"""

from __future__ import annotations

import numpy as np

from mlwarden.attacks.extraction.victim import Answer, QueryRefused, Victim, targets_from_response
from mlwarden.errors import AttackError
from mlwarden.models.base import Classifier
from mlwarden.models.output_policy import OutputPolicy

__all__ = ["OUTPUT_POLICIES", "LocalVictim", "apply_output_policy", "output_policy_named"]

#: Policy names a local simulation accepts (see the module docstring for what each means).
OUTPUT_POLICIES: tuple[str, ...] = ("probabilities", "rounded", "top_k", "label")


def output_policy_named(name: str, *, decimals: int = 2, k: int = 1) -> OutputPolicy:
    """The :class:`OutputPolicy` a policy name stands for (see the module docstring).

    Parameters
    ----------
    name
        ``probabilities``, ``rounded``, ``top_k`` or ``label``.
    decimals
        Decimal places of ``rounded``.
    k
        Classes returned by ``top_k`` (``k <= 1``: the label only).

    Raises
    ------
    AttackError
        ``name`` is not one of :data:`OUTPUT_POLICIES`.
    """
    if name == "probabilities":
        return OutputPolicy("probabilities", decimals=None)
    if name == "rounded":
        return OutputPolicy("probabilities", decimals=decimals)
    if name == "top_k":
        return OutputPolicy("top_k", decimals=None, top_k=max(int(k), 1))
    if name == "label":
        return OutputPolicy("label")
    raise AttackError(f"unknown output policy {name!r}; choose from {list(OUTPUT_POLICIES)}")


def apply_output_policy(
    probs: np.ndarray, policy: str | OutputPolicy, *, decimals: int = 2, k: int = 1
) -> tuple[np.ndarray, bool]:
    """Turn full probabilities into the training targets an API with ``policy`` gives away.

    ``probabilities`` keeps them; ``rounded`` rounds to ``decimals`` (and renormalises; a row
    that rounds to all zeros becomes uniform, all the attacker learns from it); ``top_k`` keeps
    the ``k`` largest and spreads the remaining mass evenly over the other classes (``k = 1``:
    the label only); ``label`` returns one-hot labels. An :class:`OutputPolicy` is applied as
    given (``decimals`` and ``k`` are then ignored).

    Returns
    -------
    tuple
        ``(targets, hard)``: shape ``(n, n_classes)`` float32 targets, and whether every row is
        a one-hot label.

    Raises
    ------
    AttackError
        ``policy`` is an unknown name.
    """
    if isinstance(policy, str):
        policy = output_policy_named(policy, decimals=decimals, k=k)
    probs = np.asarray(probs, dtype=np.float64)
    if policy.mode == "probabilities" and policy.decimals is None:
        return probs.astype(np.float32), False  # the full vector, exactly as the model gave it
    n, n_classes = probs.shape
    if n == 0:  # nothing answered: no rows, hard when the policy only ever gives labels
        hard = policy.mode != "top_k" or policy.top_k == 1
        return np.zeros((0, n_classes), dtype=np.float32), hard
    return targets_from_response(policy.apply(probs), n, n_classes)


class LocalVictim(Victim):
    """A local :class:`~mlwarden.models.base.Classifier` behind a simulated output policy.

    Parameters
    ----------
    classifier
        The victim model.
    policy
        ``probabilities``, ``rounded`` (to ``decimals``), ``top_k`` (``k``) or ``label``, or an
        :class:`~mlwarden.models.output_policy.OutputPolicy` (a gateway's exact policy).
    max_queries
        Refuse (like an exhausted quota) after this many queries; ``None``: no limit.

    Raises
    ------
    AttackError
        ``policy`` is an unknown name.
    """

    def __init__(
        self,
        classifier: Classifier,
        *,
        policy: str | OutputPolicy = "probabilities",
        decimals: int = 2,
        k: int = 1,
        max_queries: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(policy, OutputPolicy):
            self.output_policy = policy
            self.policy = policy.describe()
        else:
            self.output_policy = output_policy_named(policy, decimals=decimals, k=k)
            self.policy = policy
        self.classifier = classifier
        self.max_queries = max_queries
        self.input_shape = classifier.input_shape
        self.n_classes = classifier.n_classes
        self.clip_range = classifier.clip_range

    def _query(self, x: np.ndarray) -> Answer:
        if self.max_queries is not None:
            left = self.max_queries - self.queries
            if left <= 0:
                raise QueryRefused("quota", f"{self.max_queries} queries allowed")
            x = x[:left]
        targets, hard = apply_output_policy(self.classifier.predict_proba(x), self.output_policy)
        self._count(len(x), [])
        return Answer(targets=targets, hard=hard)

    @property
    def description(self) -> str:
        name = self.classifier.info.get("name") or self.classifier.info.get("path") or "model"
        return f"{name} ({self.policy})"
