"""Attacks that measure how much a model leaks about its training data.

* :mod:`~mlwarden.attacks.privacy.membership`: loss-threshold membership inference (Yeom et
  al., 2018) and the shared ROC metrics;
* :mod:`~mlwarden.attacks.privacy.lira`: the likelihood-ratio attack with shadow models
  (Carlini et al., 2022);
* :mod:`~mlwarden.attacks.privacy.inversion`: MI-Face model inversion (Fredrikson et al., 2015);
* :mod:`~mlwarden.attacks.privacy.gradient_leakage`: reconstructing a client's inputs from one
  federated update (DLG/iDLG, Zhu et al., 2019, Zhao et al., 2020; inverting gradients,
  Geiping et al., 2020);
* :mod:`~mlwarden.attacks.privacy.dp_audit`: empirical lower bounds on a training run's ε
  (Jagielski et al., 2020; Nasr et al., 2021);
* :mod:`~mlwarden.attacks.privacy.memorization`: canary exposure and verbatim regurgitation of
  a generative text model (Carlini et al., 2019, "The Secret Sharer").
"""

from mlwarden.attacks.privacy.dp_audit import (
    AuditResult,
    audit_from_scores,
    clopper_pearson,
    epsilon_lower_bound,
    make_canaries,
    one_run_epsilon_bound,
    run_audit,
)
from mlwarden.attacks.privacy.gradient_leakage import (
    GRADIENT_LEAKAGE_METHODS,
    GradientLeakage,
    LeakageResult,
    gradient_from_update,
)
from mlwarden.attacks.privacy.inversion import InversionResult, MIFace, class_similarity
from mlwarden.attacks.privacy.lira import LiRA
from mlwarden.attacks.privacy.membership import (
    REPORTED_FPRS,
    LossThresholdAttack,
    MembershipMetrics,
    MembershipResult,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)
from mlwarden.attacks.privacy.memorization import (
    Canary,
    CanarySpace,
    MemorizationAttack,
    MemorizationResult,
)

__all__ = [
    "GRADIENT_LEAKAGE_METHODS",
    "REPORTED_FPRS",
    "AuditResult",
    "Canary",
    "CanarySpace",
    "GradientLeakage",
    "InversionResult",
    "LeakageResult",
    "LiRA",
    "LossThresholdAttack",
    "MIFace",
    "MembershipMetrics",
    "MembershipResult",
    "MemorizationAttack",
    "MemorizationResult",
    "audit_from_scores",
    "class_similarity",
    "clopper_pearson",
    "epsilon_lower_bound",
    "gradient_from_update",
    "make_canaries",
    "one_run_epsilon_bound",
    "roc_auc",
    "roc_curve",
    "run_audit",
    "tpr_at_fpr",
]
