"""Attack profiles: the suites ``assess`` runs when the configuration names no attacks.

A profile is an ordered list of attacks run as AutoAttack runs its suite (Croce & Hein, 2020):
cheapest first, each one only on the samples every earlier attack left correctly classified, so
the reported robust accuracy is the worst case over the suite at a fraction of the cost of
running each attack on everything.

* ``standard``: AutoAttack's standard suite for white-box models: APGD-CE (100 steps), APGD-T
  on the DLR loss (100 steps towards each of the 9 most likely wrong classes), a minimum-norm
  attack in FAB-T's place (FMN-T, Pintor et al. 2021: 100 steps towards each of the 3 most
  likely wrong classes; on the digits CNN 3 targets broke every point 9 did) and Square Attack
  (5,000 queries). Black-box models get Square Attack with 5,000 queries and, where it is
  registered, HopSkipJump.
* A randomized white-box model (outputs change between identical calls) gets AutoAttack's
  suite for randomized defences instead: APGD-CE then APGD-DLR, each averaging its gradient
  over draws (EOT; 20 for APGD-CE as in AutoAttack, 10 for APGD-DLR in ``standard``, 5 for
  both in ``quick``).
* ``quick``: a CI-sized suite (APGD-CE 25 steps, APGD-T 25 steps towards 3 classes, Square
  500 queries) measured within 2 points of ``standard`` on the plain and adversarially trained
  zoo models.
* ``full``: the ``standard`` evasion suite and every other check that applies to the model
  (:data:`FULL_PROFILE_SECTIONS`): certification when it was noise-trained, input detectors,
  membership inference, extraction, poisoning when training data is given, and a scan of the
  model artefact. Each section says whether it applies from plain facts about the run
  (:class:`RunFacts`) and which configuration keys it sets when the configuration leaves them
  unset, so a new check (text attacks, federated clients) joins the profile by registering one
  :class:`FullProfileSection`; :func:`plan_full_profile` records why each section did or did
  not run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlwarden.registry import Registry

__all__ = [
    "DEFAULT_PROFILE",
    "FULL_PROFILE",
    "FULL_PROFILE_SECTIONS",
    "PROFILES",
    "FullProfilePlan",
    "FullProfileSection",
    "RunFacts",
    "full_profile_detectors",
    "plan_full_profile",
    "profile_attacks",
]

DEFAULT_PROFILE = "standard"

_Suite = tuple[tuple[str, dict[str, Any]], ...]

PROFILES: dict[str, dict[str, _Suite]] = {
    "standard": {
        "white_box": (
            ("apgd", {"loss": "ce", "steps": 100, "restarts": 1}),
            ("apgd-t", {"steps": 100, "target_classes": 9, "restarts": 1}),
            ("fmn", {"steps": 100, "target_classes": 3}),
            ("square", {"queries": 5000}),
        ),
        "black_box": (
            ("square", {"queries": 5000}),
            ("hsj", {"max_queries": 5000}),
        ),
        "randomized": (
            ("apgd", {"loss": "ce", "steps": 100, "restarts": 1}),
            # half of APGD-CE's draws: on the noisy-input digits CNN (500 samples, four
            # budgets) 10 draws left the same robust accuracy as 20 (within 0.15 points) at
            # half the cost; this stage only refines the points APGD-CE left standing
            ("apgd-dlr", {"steps": 100, "restarts": 1, "eot_samples": 10}),
        ),
    },
    "quick": {
        "white_box": (
            ("apgd", {"loss": "ce", "steps": 25, "restarts": 1}),
            ("apgd-t", {"steps": 25, "target_classes": 3, "restarts": 1}),
            ("square", {"queries": 500}),
        ),
        "black_box": (
            ("square", {"queries": 1000}),
            ("hsj", {"max_queries": 1000}),
        ),
        "randomized": (
            ("apgd", {"loss": "ce", "steps": 25, "restarts": 1}),
            ("apgd-dlr", {"steps": 25, "restarts": 1}),
        ),
    },
}
FULL_PROFILE = "full"
PROFILES[FULL_PROFILE] = PROFILES["standard"]  # the full profile's evasion suite
"""Per profile, the ordered suite for white-box (gradients), black-box and randomized white-box
models (AutoAttack's version for randomized defences: APGD-CE and APGD-DLR, with EOT)."""


def profile_attacks(
    profile: str, *, white_box: bool, randomized: bool = False
) -> list[tuple[str, dict[str, Any]]]:
    """The ordered ``(attack name, parameters)`` of ``profile`` for this kind of model."""
    kind = ("randomized" if randomized else "white_box") if white_box else "black_box"
    return [(name, dict(params)) for name, params in PROFILES[profile][kind]]


@dataclass(frozen=True)
class RunFacts:
    """What the full profile knows about one run when it decides which sections apply.

    Attributes
    ----------
    white_box
        The model (or its exact conversion) gives gradients.
    noise_trained
        The model's sidecar records the Gaussian noise it was trained with (``smoothing.sigma``,
        written by ``mlwarden harden smoothing``), so its smoothed version can be certified.
    train_data_given
        The caller passed the model's training data (``--train-data``).
    builtin_data
        The evaluation data is a ``builtin:`` dataset, whose train split stands in for the
        training data where a check needs members or clean data.
    artifact
        The model file on disk, when there is one to scan.
    artifacts_scanned
        A supply-chain section over the model's folder (``--artifacts``) is already in the run.
    config
        The configuration's settings as given (``None`` for a key left unset).
    """

    white_box: bool
    noise_trained: bool
    train_data_given: bool
    builtin_data: bool
    artifact: Path | None
    artifacts_scanned: bool
    config: Mapping[str, Any]

    @property
    def clean_data(self) -> bool:
        """Clean (member) data is at hand: given, or a built-in train split."""
        return self.train_data_given or self.builtin_data


@dataclass(frozen=True)
class FullProfileSection:
    """One check of the full profile.

    Attributes
    ----------
    title
        What the section checks, in words (reports and progress).
    applies
        ``None`` when the section applies to the run, else the reason it does not.
    settings
        The configuration keys the section sets, from the run's facts; each is applied only
        when the configuration leaves it unset (a value the user gave always wins).
    """

    title: str
    applies: Callable[[RunFacts], str | None]
    settings: Callable[[RunFacts], dict[str, Any]] = field(default=lambda facts: {})


FULL_PROFILE_SECTIONS: Registry[FullProfileSection] = Registry("full-profile section")
"""The sections of ``--profile full`` by name; modules with a new check register theirs."""


def _always(facts: RunFacts) -> str | None:
    return None


def _noise_trained(facts: RunFacts) -> str | None:
    if facts.noise_trained or facts.config.get("smoothing") is not None:
        return None
    return "the model was not trained with Gaussian noise (no smoothing sigma in its sidecar)"


def _needs_clean_data(what: str) -> Callable[[RunFacts], str | None]:
    def applies(facts: RunFacts) -> str | None:
        if facts.clean_data:
            return None
        return f"{what} need the model's training data: pass --train-data"

    return applies


def _poisoning(facts: RunFacts) -> str | None:
    if facts.config.get("poisoning") is False:
        return "poisoning: false in the configuration"
    if not facts.train_data_given:
        return "no training data to inspect: pass --train-data"
    return None


def _scan(facts: RunFacts) -> str | None:
    if facts.artifacts_scanned:
        return "the --artifacts supply-chain section already scans the model's folder"
    if facts.artifact is None:
        return "the model has no file on disk to scan"
    return None


def full_profile_detectors(white_box: bool) -> list[str]:
    """The input detectors the full profile evaluates: Mahalanobis needs gradients."""
    return ["feature-squeezing", "mahalanobis"] if white_box else ["feature-squeezing", "knn"]


for _name, _section in {
    "evasion": FullProfileSection("evasion attacks (the standard suite)", _always),
    "certification": FullProfileSection(
        "certified robustness of the smoothed model", _noise_trained
    ),
    "detection": FullProfileSection(
        "input detectors against plain and adaptive attacks",
        _needs_clean_data("input detectors"),
        lambda facts: {"detectors": full_profile_detectors(facts.white_box)},
    ),
    "membership-inference": FullProfileSection(
        "membership inference (training-data leakage)",
        _needs_clean_data("membership inference attacks"),
        lambda facts: {"privacy": {"membership": True, "lira_shadows": 0, "inversion": False}},
    ),
    "extraction": FullProfileSection(
        "model extraction through the API, per output policy",
        _always,
        lambda facts: {"extraction": True},
    ),
    "poisoning": FullProfileSection("poisoning inspection of the training data", _poisoning),
    "supply-chain-scan": FullProfileSection(
        "scan of the model artefact (unsafe deserialisation, signature)", _scan
    ),
}.items():
    FULL_PROFILE_SECTIONS.register(_name, _section)


@dataclass(frozen=True)
class FullProfilePlan:
    """The sections of one full-profile run: which run, which did not and why.

    Attributes
    ----------
    settings
        The configuration keys to set (only those the configuration left unset).
    ran
        Section names that apply, in registry order.
    skipped
        Section name → the reason it does not apply.
    """

    settings: dict[str, Any]
    ran: list[str]
    skipped: dict[str, str]

    def section(self) -> dict[str, Any]:
        """The ``profile`` section of the report."""
        return {
            "name": FULL_PROFILE,
            "checks": [
                {
                    "name": name,
                    "title": FULL_PROFILE_SECTIONS[name].title,
                    "ran": name in self.ran,
                    "reason": self.skipped.get(name),
                }
                for name in FULL_PROFILE_SECTIONS
            ],
        }


def plan_full_profile(facts: RunFacts) -> FullProfilePlan:
    """Decide which full-profile sections run on this model and data, and how.

    A section that applies contributes its settings for every configuration key left unset;
    one that does not is recorded with its reason, so the report says what was not checked.
    """
    settings: dict[str, Any] = {}
    ran: list[str] = []
    skipped: dict[str, str] = {}
    for name in FULL_PROFILE_SECTIONS:
        section = FULL_PROFILE_SECTIONS[name]
        reason = section.applies(facts)
        if reason is not None:
            skipped[name] = reason
            continue
        ran.append(name)
        for key, value in section.settings(facts).items():
            if facts.config.get(key) is None:
                settings[key] = value
    return FullProfilePlan(settings=settings, ran=ran, skipped=skipped)
