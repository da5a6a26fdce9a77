"""Identifiers of the three frameworks every finding is mapped to.

* MITRE ATLAS techniques (https://atlas.mitre.org/techniques/);
* OWASP Machine Learning Security Top 10, 2023 edition (https://owasp.org/www-project-machine-learning-security-top-10/),
  and, for generative models, the OWASP Top 10 for LLM Applications 2025 (https://genai.owasp.org/llm-top-10/);
* NIST AI Risk Management Framework 1.0 functions and subcategories (NIST AI 100-1).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ATLAS",
    "BACKDOOR_TAXONOMY",
    "CREDENTIALS_IN_DATA_TAXONOMY",
    "DATA_POISONING_TAXONOMY",
    "EXTRACTION_TAXONOMY",
    "GRADIENT_LEAKAGE_TAXONOMY",
    "INVERSION_TAXONOMY",
    "MEMBERSHIP_TAXONOMY",
    "MEMORIZATION_TAXONOMY",
    "NIST_AI_RMF",
    "OWASP_ML",
    "PERSONAL_DATA_TAXONOMY",
    "Taxonomy",
    "TaxonomyRef",
]


@dataclass(frozen=True)
class TaxonomyRef:
    """One entry of a framework: its identifier, name and where to read about it."""

    framework: str
    id: str
    name: str
    url: str

    def to_dict(self) -> dict[str, str]:
        """A JSON-serialisable view."""
        return {"framework": self.framework, "id": self.id, "name": self.name, "url": self.url}


def _atlas(tid: str, name: str) -> TaxonomyRef:
    return TaxonomyRef("MITRE ATLAS", tid, name, f"https://atlas.mitre.org/techniques/{tid}")


def _owasp(tid: str, name: str) -> TaxonomyRef:
    slug = tid.split(":")[0]
    return TaxonomyRef(
        "OWASP ML Top 10",
        tid,
        name,
        f"https://owasp.org/www-project-machine-learning-security-top-10/docs/{slug}_2023-{name.replace(' ', '_')}",
    )


def _owasp_llm(tid: str, name: str, slug: str) -> TaxonomyRef:
    return TaxonomyRef(
        "OWASP Top 10 for LLM Applications", tid, name, f"https://genai.owasp.org/llmrisk/{slug}/"
    )


def _nist(tid: str, name: str) -> TaxonomyRef:
    return TaxonomyRef("NIST AI RMF", tid, name, "https://doi.org/10.6028/NIST.AI.100-1")


ATLAS: dict[str, TaxonomyRef] = {
    ref.id: ref
    for ref in (
        _atlas("AML.T0043", "Craft Adversarial Data"),
        _atlas("AML.T0043.000", "Craft Adversarial Data: White-Box Optimization"),
        _atlas("AML.T0043.001", "Craft Adversarial Data: Black-Box Optimization"),
        _atlas("AML.T0015", "Evade ML Model"),
        _atlas("AML.T0024", "Exfiltration via ML Inference API"),
        _atlas(
            "AML.T0024.000", "Exfiltration via ML Inference API: Infer Training Data Membership"
        ),
        _atlas("AML.T0024.001", "Exfiltration via ML Inference API: Invert ML Model"),
        _atlas("AML.T0024.002", "Exfiltration via ML Inference API: Extract ML Model"),
        _atlas("AML.T0020", "Poison Training Data"),
        _atlas("AML.T0018", "Backdoor ML Model"),
        _atlas("AML.T0010", "ML Supply Chain Compromise"),
        _atlas("AML.T0055", "Unsecured Credentials"),
        _atlas("AML.T0057", "LLM Data Leakage"),
    )
}

OWASP_ML: dict[str, TaxonomyRef] = {
    ref.id: ref
    for ref in (
        _owasp("ML01:2023", "Input Manipulation Attack"),
        _owasp("ML02:2023", "Data Poisoning Attack"),
        _owasp("ML03:2023", "Model Inversion Attack"),
        _owasp("ML04:2023", "Membership Inference Attack"),
        _owasp("ML05:2023", "Model Theft"),
        _owasp("ML06:2023", "AI Supply Chain Attacks"),
        _owasp("ML07:2023", "Transfer Learning Attack"),
        _owasp("ML08:2023", "Model Skewing"),
        _owasp("ML09:2023", "Output Integrity Attack"),
        _owasp("ML10:2023", "Model Poisoning"),
        _owasp_llm(
            "LLM02:2025",
            "Sensitive Information Disclosure",
            "llm022025-sensitive-information-disclosure",
        ),
    )
}

NIST_AI_RMF: dict[str, TaxonomyRef] = {
    ref.id: ref
    for ref in (
        _nist("GOVERN", "Govern: a culture of risk management is cultivated and present"),
        _nist("MAP", "Map: context is recognized and risks related to context are identified"),
        _nist("MEASURE", "Measure: identified risks are assessed, analyzed, or tracked"),
        _nist("MANAGE", "Manage: risks are prioritized and acted upon based on projected impact"),
        _nist("MEASURE 2.7", "AI system security and resilience are evaluated and documented"),
        _nist("MEASURE 2.10", "Privacy risk of the AI system is examined and documented"),
        _nist("MEASURE 2.3", "AI system performance or assurance criteria are measured"),
        _nist(
            "MANAGE 1.3",
            "Responses to high-priority AI risks are developed, planned and documented",
        ),
        _nist(
            "MAP 4.1",
            "Approaches for mapping AI technology and legal risks of components are in place",
        ),
    )
}


@dataclass(frozen=True)
class Taxonomy:
    """The framework entries one finding maps to."""

    atlas: tuple[str, ...] = ()
    owasp: tuple[str, ...] = ()
    nist: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for ids, table in ((self.atlas, ATLAS), (self.owasp, OWASP_ML), (self.nist, NIST_AI_RMF)):
            unknown = [i for i in ids if i not in table]
            if unknown:
                raise ValueError(f"unknown taxonomy id(s) {unknown}")

    def refs(self) -> list[TaxonomyRef]:
        """Every referenced entry, ATLAS first."""
        return (
            [ATLAS[i] for i in self.atlas]
            + [OWASP_ML[i] for i in self.owasp]
            + [NIST_AI_RMF[i] for i in self.nist]
        )

    def to_dict(self) -> dict[str, list[str]]:
        """A JSON-serialisable view (ids only)."""
        return {
            "atlas": list(self.atlas),
            "owasp": list(self.owasp),
            "nist_ai_rmf": list(self.nist),
        }


DATA_POISONING_TAXONOMY = Taxonomy(
    atlas=("AML.T0020",), owasp=("ML02:2023",), nist=("MEASURE 2.7", "MANAGE 1.3")
)
"""Poisoned or mislabelled training data (label flips, planted samples)."""

BACKDOOR_TAXONOMY = Taxonomy(
    atlas=("AML.T0020", "AML.T0018"),
    owasp=("ML02:2023", "ML10:2023"),
    nist=("MEASURE 2.7", "MANAGE 1.3"),
)
"""A backdoor planted through the training data into the model."""

MEMBERSHIP_TAXONOMY = Taxonomy(
    atlas=("AML.T0024.000",), owasp=("ML04:2023",), nist=("MEASURE 2.10", "MANAGE 1.3")
)
"""Membership inference: ATLAS Infer Training Data Membership, OWASP ML04:2023."""

INVERSION_TAXONOMY = Taxonomy(
    atlas=("AML.T0024.001",), owasp=("ML03:2023",), nist=("MEASURE 2.10", "MANAGE 1.3")
)
"""Model inversion: ATLAS Invert ML Model, OWASP ML03:2023."""

GRADIENT_LEAKAGE_TAXONOMY = Taxonomy(
    atlas=("AML.T0024.001",), owasp=("ML03:2023",), nist=("MEASURE 2.10", "MANAGE 1.3")
)
"""Gradient leakage in federated learning (inputs rebuilt from a shared update): ATLAS has no
federated technique, the nearest is Invert ML Model; OWASP ML03:2023 Model Inversion Attack."""

EXTRACTION_TAXONOMY = Taxonomy(
    atlas=("AML.T0024.002",), owasp=("ML05:2023",), nist=("MEASURE 2.7", "MANAGE 1.3")
)
"""Model extraction through the inference API: ATLAS Extract ML Model, OWASP ML05:2023 Model Theft."""

PERSONAL_DATA_TAXONOMY = Taxonomy(
    atlas=("AML.T0024.000", "AML.T0024.001"),
    owasp=("ML03:2023", "ML04:2023"),
    nist=("MEASURE 2.10", "MANAGE 1.3"),
)
"""Personal data in training data: what membership inference and model inversion expose."""

CREDENTIALS_IN_DATA_TAXONOMY = Taxonomy(atlas=("AML.T0055",), nist=("MEASURE 2.7", "MANAGE 1.3"))
"""Credentials in training data: ATLAS Unsecured Credentials (OWASP's ML Top 10 has no entry)."""
MEMORIZATION_TAXONOMY = Taxonomy(
    atlas=("AML.T0057", "AML.T0024"),
    owasp=("LLM02:2025", "ML03:2023", "ML04:2023"),
    nist=("MEASURE 2.10", "MANAGE 1.3"),
)
"""Memorised training text a generative model discloses: ATLAS LLM Data Leakage and
Exfiltration via ML Inference API, OWASP LLM02:2025 Sensitive Information Disclosure and the ML
Top 10 privacy items (ML03 inversion, ML04 membership)."""
