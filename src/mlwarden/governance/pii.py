"""Sensitive-data scanning: personal data and credentials in CSV, JSON lines, ``.npz`` and text.

Personal data: Microsoft Presidio's analyzer with its pattern recognizers only, offline (a blank
spaCy tokenizer, no model download; tldextract's suffix-list fetch is switched off before
Presidio is imported), plus checksum-validated Southeast Asian identifiers
(:mod:`mlwarden.governance.sea_ids`) and phone numbers of SG, MY, TH, ID and PH (libphonenumber).
Street addresses (US, UK, German, Thai, Indonesian, Malaysian and Philippine forms) from their
structure, and, on request, person names from Faker-derived lists
(:mod:`mlwarden.governance.people`: no NER model is loaded, and its limits are stated there).
Credentials: detect-secrets' plugins (AWS, GitHub, Stripe, private keys, high-entropy strings,
keywords) and a ``password=`` / ``secret:`` assignment rule for the CSV cells its keyword plugin
skips. Where spans overlap, the more specific entity wins (a credential over a checksum-validated
ID over a card number over a phone number).

Every field (CSV column, JSON path, ``.npz`` array, or the text) gets, per entity type, a count,
masked examples (never a raw value) and a suggested action: ``drop`` (credentials), ``tokenise``
(identifiers that join records), ``mask`` (contact details).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as dc_field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mlwarden.errors import DataError
from mlwarden.governance.sea_ids import valid_mykad, valid_nik, valid_nric, valid_thai_id
from mlwarden.report.findings import Finding, Severity
from mlwarden.report.sarif import SARIF_LEVEL, SECURITY_SEVERITY, sarif_log
from mlwarden.report.taxonomy import (
    CREDENTIALS_IN_DATA_TAXONOMY,
    PERSONAL_DATA_TAXONOMY,
    Taxonomy,
)

__all__ = [
    "ENTITY_ACTIONS",
    "FieldFinding",
    "PiiScanner",
    "ScanResult",
    "Span",
    "mask",
    "scan_path",
]

#: entity -> (suggested action, severity)
ENTITY_ACTIONS: dict[str, tuple[str, Severity]] = {
    "SECRET": ("drop", Severity.CRITICAL),
    "PRIVATE_KEY": ("drop", Severity.CRITICAL),
    "PASSWORD": ("drop", Severity.CRITICAL),
    "SG_NRIC_FIN": ("tokenise", Severity.HIGH),
    "MY_MYKAD": ("tokenise", Severity.HIGH),
    "TH_NATIONAL_ID": ("tokenise", Severity.HIGH),
    "ID_NIK": ("tokenise", Severity.HIGH),
    "PH_SSS": ("tokenise", Severity.HIGH),
    "PH_PHILSYS": ("tokenise", Severity.HIGH),
    "PH_TIN": ("tokenise", Severity.HIGH),
    "US_SSN": ("tokenise", Severity.HIGH),
    "CREDIT_CARD": ("tokenise", Severity.HIGH),
    "IBAN_CODE": ("tokenise", Severity.HIGH),
    "EMAIL_ADDRESS": ("mask", Severity.MEDIUM),
    "PERSON": ("mask", Severity.MEDIUM),
    "STREET_ADDRESS": ("mask", Severity.MEDIUM),
    "PHONE_NUMBER": ("mask", Severity.MEDIUM),
    "IP_ADDRESS": ("mask", Severity.LOW),
}
_CREDENTIALS = frozenset({"SECRET", "PRIVATE_KEY", "PASSWORD"})
_PRIORITY = {
    "SECRET": 0,
    "PRIVATE_KEY": 0,
    "PASSWORD": 0,
    "PHONE_NUMBER": 3,
    "IP_ADDRESS": 3,
    "PERSON": 4,  # a street or town named after someone is part of its address
}
_CHECKSUM_IDS = {"SG_NRIC_FIN", "MY_MYKAD", "TH_NATIONAL_ID", "ID_NIK"}
_CONTEXT = {
    "CREDIT_CARD": re.compile(r"card|visa|master|amex|credit|cc\b", re.I),
    "ID_NIK": re.compile(r"\bnik\b|ktp|penduduk", re.I),
}
_PHONE_REGIONS = ("SG", "MY", "TH", "ID", "PH", "US", "GB")
_ASSIGNMENT = re.compile(
    r"(?i)\b(pass(?:word|wd)?|pwd|secret|api[_-]?key|token)\s*[=:]\s*['\"]?([^\s'\",;]{6,})"
)
#: digit groupings of national IDs (MyKad 6-2-4, Thai 1-4-5-2-1) that no phone number uses:
#: libphonenumber's lenient matcher accepts them, so a mistyped ID would read as a phone
_ID_SHAPE = re.compile(r"\d{6}-\d{2}-\d{4}|\d-\d{4}-\d{5}-\d{2}-\d")
_MAX_EXAMPLES = 3
_TOKEN_END = re.compile(r"[\s'\",;]")


@dataclass(frozen=True)
class Span:
    """One detected entity in one value (offsets into that value)."""

    entity: str
    start: int
    end: int
    score: float


def mask(value: str) -> str:
    """Keep the first two and last two characters (one each for short values), star the rest."""
    if len(value) <= 4:
        return "*" * len(value)
    keep = 1 if len(value) <= 8 else 2
    return value[:keep] + "*" * (len(value) - 2 * keep) + value[-keep:]


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _card(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return 12 <= len(digits) <= 19 and _luhn(digits)


def _sea_recognizers() -> list[Any]:
    from presidio_analyzer import Pattern, PatternRecognizer

    class _Checked(PatternRecognizer):  # type: ignore[misc]
        check: Any = None

        def validate_result(self, pattern_text: str) -> bool:
            return bool(type(self).check(pattern_text))

    def make(entity: str, regex: str, check: Any, context: list[str]) -> Any:
        cls = type(f"{entity.title()}Recognizer", (_Checked,), {"check": staticmethod(check)})
        return cls(
            supported_entity=entity,
            patterns=[Pattern(entity.lower(), regex, 0.5)],
            context=context,
        )

    def fmt(_: str) -> bool:
        return True

    return [
        make("SG_NRIC_FIN", r"\b[STFGMstfgm]\d{7}[A-Za-z]\b", valid_nric, ["nric", "fin"]),
        make("MY_MYKAD", r"\b\d{6}-?\d{2}-?\d{4}\b", valid_mykad, ["mykad", "ic"]),
        make(
            "TH_NATIONAL_ID",
            r"\b\d-?\d{4}-?\d{5}-?\d{2}-?\d\b",
            valid_thai_id,
            ["thai", "id card", "บัตรประชาชน"],
        ),
        make("ID_NIK", r"\b\d{16}\b", valid_nik, ["nik", "ktp"]),
        # card numbers Presidio's pattern misses: Mastercard 2221-2720, Maestro, 19-digit Visa,
        # 15-digit JCB; the Luhn check and the issuer prefix keep random digit runs out
        make("CREDIT_CARD", r"\b(?:2[2-7]|5[0-9]|6[0-9]|4\d|21|18|35)\d{10,17}\b", _card, ["card"]),
        make("PH_SSS", r"\b\d{2}-\d{7}-\d\b", fmt, ["sss"]),
        make("PH_PHILSYS", r"\b\d{4}-\d{4}-\d{4}(?:-\d{4})?\b", fmt, ["philsys", "psn", "pcn"]),
        make("PH_TIN", r"\b\d{3}-\d{3}-\d{3}(?:-\d{3,5})?\b", fmt, ["tin"]),
    ]


def _people_recognizers(names: bool) -> list[Any]:
    """Street addresses (and, if ``names``, person names) from structure and lists
    (:mod:`mlwarden.governance.people`)."""
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    from mlwarden.governance.people import (
        ADDRESS_ENTITY,
        PERSON_ENTITY,
        find_addresses,
        find_person_names,
    )

    class _Finder(EntityRecognizer):  # type: ignore[misc]
        def __init__(self, entity: str, find: Any, score: float) -> None:
            self.find, self.score = find, score
            super().__init__(supported_entities=[entity], name=f"mlwarden-{entity.lower()}")

        def load(self) -> None:
            """Nothing to load: the lists ship with the package."""

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            entity = self.supported_entities[0]
            if entities and entity not in entities:
                return []
            return [RecognizerResult(entity, a, b, self.score) for a, b in self.find(text)]

    found = [_Finder(ADDRESS_ENTITY, find_addresses, 0.7)]
    if names:
        found.append(_Finder(PERSON_ENTITY, find_person_names, 0.6))
    return found


@lru_cache(maxsize=2)
def _analyzer(names: bool = False) -> Any:
    """Presidio's AnalyzerEngine on pattern recognizers and a blank spaCy tokenizer (offline)."""
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )

    class _BlankSpacy(SpacyNlpEngine):  # type: ignore[misc]
        """Tokenizer only: no model is loaded or downloaded."""

        def __init__(self) -> None:
            super().__init__(models=[{"lang_code": "en", "model_name": "blank:en"}])

        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}  # type: ignore[assignment]

    recognizers = [
        EmailRecognizer(),
        CreditCardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        UsSsnRecognizer(),
        PhoneRecognizer(supported_regions=_PHONE_REGIONS),
        *_sea_recognizers(),
        *_people_recognizers(names),
    ]
    engine = _BlankSpacy()
    engine.load()
    return AnalyzerEngine(
        registry=RecognizerRegistry(recognizers=recognizers),
        nlp_engine=engine,
        supported_languages=["en"],
    )


@lru_cache(maxsize=1)
def _secret_plugins() -> tuple[Any, ...]:
    from detect_secrets.plugins.aws import AWSKeyDetector
    from detect_secrets.plugins.github_token import GitHubTokenDetector
    from detect_secrets.plugins.high_entropy_strings import (
        Base64HighEntropyString,
        HexHighEntropyString,
    )
    from detect_secrets.plugins.keyword import KeywordDetector
    from detect_secrets.plugins.private_key import PrivateKeyDetector
    from detect_secrets.plugins.slack import SlackDetector
    from detect_secrets.plugins.stripe import StripeDetector

    return (
        AWSKeyDetector(),
        GitHubTokenDetector(),
        StripeDetector(),
        SlackDetector(),
        PrivateKeyDetector(),
        KeywordDetector(),
        Base64HighEntropyString(limit=4.5),
        HexHighEntropyString(limit=3.0),
    )


class PiiScanner:
    """Find personal data and credentials in strings.

    Parameters
    ----------
    score_threshold
        Presidio's minimum score (0.4 keeps libphonenumber's valid numbers).
    secrets
        Also look for credentials (detect-secrets and the assignment rule).
    pii
        Also run Presidio (off: credentials only).
    names
        Also look for person names (:mod:`mlwarden.governance.people`: Faker-derived name
        lists, no NER model). Off by default: names outside the lists are missed (0.4% recall
        on held-out names, docs/governance.md), so a clean result would mean little.
    """

    def __init__(
        self,
        *,
        score_threshold: float = 0.4,
        secrets: bool = True,
        pii: bool = True,
        names: bool = False,
    ) -> None:
        self.score_threshold = score_threshold
        self.secrets = secrets
        self.pii = pii
        self.names = names

    def _secret_spans(self, text: str) -> list[Span]:
        spans: list[Span] = []
        for match in _ASSIGNMENT.finditer(text):
            spans.append(Span("PASSWORD", match.start(2), match.end(2), 1.0))
        if "-----BEGIN" in text and "PRIVATE KEY" in text:
            start = text.index("-----BEGIN")
            spans.append(Span("PRIVATE_KEY", start, len(text), 1.0))
        for plugin in _secret_plugins():
            for secret in plugin.analyze_line(filename="data", line=text, line_number=0):
                value = secret.secret_value or ""
                if not value or plugin.secret_type == "Private Key":
                    continue
                at = text.find(value)
                if at >= 0:
                    end = at + len(value)
                    while end < len(text) and not _TOKEN_END.match(text[end]):
                        end += 1  # a plugin may report a token's prefix (GitHub's ``ghp``)
                    spans.append(Span("SECRET", at, end, 0.9))
        return spans

    def analyze(self, text: str) -> list[Span]:
        """Every entity in ``text``, overlaps resolved (most specific wins)."""
        if not text or not text.strip():
            return []
        spans: list[Span] = []
        if self.secrets:
            spans += self._secret_spans(text)
        if self.pii:
            analyzer = _analyzer(self.names)
            for r in analyzer.analyze(text, language="en", score_threshold=self.score_threshold):
                if r.entity_type == "PHONE_NUMBER" and _ID_SHAPE.fullmatch(text[r.start : r.end]):
                    continue  # grouped like a MyKad or Thai ID, not like any phone number
                spans.append(Span(r.entity_type, r.start, r.end, float(r.score)))
        return _resolve(text, spans)


def _rank(text: str, span: Span) -> tuple[int, float, int]:
    priority = _PRIORITY.get(span.entity, 2)
    if span.entity in _CHECKSUM_IDS:
        priority = 1
    context = _CONTEXT.get(span.entity)
    if context is not None and context.search(text[max(0, span.start - 40) : span.start]):
        priority = 0
    return (priority, -span.score, -(span.end - span.start))


def _resolve(text: str, spans: list[Span]) -> list[Span]:
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: _rank(text, s)):
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)


@dataclass
class FieldFinding:
    """One entity type found in one field."""

    field: str
    entity: str
    count: int = 0
    rows: int = 0
    examples: list[str] = dc_field(default_factory=list)

    @property
    def action(self) -> str:
        """``drop``, ``tokenise`` or ``mask``."""
        return ENTITY_ACTIONS.get(self.entity, ("mask", Severity.MEDIUM))[0]

    @property
    def severity(self) -> Severity:
        """How urgent it is (credentials critical, identifiers high, contact details medium)."""
        return ENTITY_ACTIONS.get(self.entity, ("mask", Severity.MEDIUM))[1]

    @property
    def taxonomy(self) -> Taxonomy:
        """Credentials: ATLAS Unsecured Credentials; personal data: what membership inference
        and model inversion (ATLAS AML.T0024.000/.001, OWASP ML04/ML03) would expose."""
        return (
            CREDENTIALS_IN_DATA_TAXONOMY if self.entity in _CREDENTIALS else PERSONAL_DATA_TAXONOMY
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (examples are masked)."""
        return {
            "field": self.field,
            "entity": self.entity,
            "count": self.count,
            "rows": self.rows,
            "examples_masked": list(self.examples),
            "suggested_action": self.action,
            "severity": self.severity.value,
        }


@dataclass
class ScanResult:
    """What a scan found, and what it could not read."""

    path: str
    fields: dict[str, int]  # field -> values scanned
    findings: list[FieldFinding]
    bytes_scanned: int
    unreadable: list[str]

    def worst(self) -> Severity | None:
        """The highest severity found."""
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=None)

    def to_findings(self) -> list[Finding]:
        """The results as report findings (one per field and entity type)."""
        out = []
        for f in self.findings:
            out.append(
                Finding(
                    id=f"data.sensitive.{f.entity.lower()}",
                    check="data.scan-pii",
                    title=f"{f.entity} in {f.field}",
                    summary=(
                        f"{f.count} {f.entity} value(s) in {f.rows} row(s) of field {f.field!r} "
                        f"of {self.path}; examples (masked): {', '.join(f.examples)}"
                    ),
                    severity=f.severity,
                    metrics={"count": float(f.count), "rows": float(f.rows)},
                    taxonomy=f.taxonomy,
                    recommendation=f"{f.action} field {f.field!r} before training",
                    details={**f.to_dict(), "path": self.path},
                )
            )
        return out

    def to_sarif(self, version: str) -> dict[str, Any]:
        """A SARIF 2.1.0 log: one rule per entity type (tagged with its taxonomy ids), one
        result per field and entity type, located at the file and, logically, the field."""
        findings = self.to_findings()
        rules: dict[str, dict[str, Any]] = {}
        results = []
        for f in findings:
            refs = f.taxonomy.refs()
            rules.setdefault(
                f.id,
                {
                    "id": f.id,
                    "name": f"{f.details['entity']} in training data",
                    "shortDescription": {"text": f"{f.details['entity']} in training data"},
                    "help": {"text": f"Suggested action: {f.details['suggested_action']}."},
                    "helpUri": refs[0].url if refs else "https://atlas.mitre.org",
                    "properties": {
                        "tags": ["security", "privacy", *f.taxonomy.atlas, *f.taxonomy.owasp],
                        "security-severity": SECURITY_SEVERITY[f.severity],
                    },
                },
            )
            results.append(
                {
                    "ruleId": f.id,
                    "level": SARIF_LEVEL[f.severity],
                    "message": {"text": f"{f.summary}. Suggested action: {f.recommendation}."},
                    "locations": [
                        {
                            "physicalLocation": {"artifactLocation": {"uri": self.path}},
                            "logicalLocations": [{"name": f.details["field"], "kind": "member"}],
                        }
                    ],
                    "properties": {
                        "severity": f.severity.value,
                        "metrics": f.metrics,
                        "taxonomy": f.taxonomy.to_dict(),
                    },
                }
            )
        return sarif_log(
            rules, results, version=version, properties={"unreadable": self.unreadable}
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {
            "path": self.path,
            "fields_scanned": self.fields,
            "bytes_scanned": self.bytes_scanned,
            "unreadable": self.unreadable,
            "findings": [f.to_dict() for f in self.findings],
        }


def _flatten(prefix: str, node: Any) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _flatten(f"{prefix}.{key}" if prefix else str(key), value)
    elif isinstance(node, list):
        for item in node:
            yield from _flatten(f"{prefix}[]", item)
    elif isinstance(node, str):
        yield prefix or "$", node


def _values(path: Path, unreadable: list[str]) -> Iterator[tuple[str, int, str]]:
    """``(field, row, value)`` for every string in the file."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            for name in archive.files:
                try:
                    array = archive[name]
                except ValueError:
                    unreadable.append(f"{name}: object array (needs pickle; not loaded)")
                    continue
                if array.dtype.kind not in "US":
                    continue
                for row, value in enumerate(array.reshape(-1)):
                    text = (
                        value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
                    )
                    yield name, row, text
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    if suffix == ".csv":
        reader = csv.reader(io.StringIO(text))
        header = next(reader, [])
        for row, cells in enumerate(reader):
            for i, cell in enumerate(cells):
                yield (header[i] if i < len(header) else f"column{i}"), row, cell
        return
    if suffix in (".jsonl", ".ndjson"):
        for row, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                unreadable.append(f"line {row + 1}: not JSON")
                continue
            for name, value in _flatten("", record):
                yield name, row, value
        return
    for row, line in enumerate(text.splitlines()):
        yield "text", row, line


def scan_path(path: str | Path, scanner: PiiScanner | None = None) -> ScanResult:
    """Scan a CSV, JSON-lines, ``.npz`` or text file (or every such file in a directory).

    Raises
    ------
    DataError
        The path does not exist or a file cannot be parsed at all.
    """
    scanner = scanner or PiiScanner()
    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: no such file or directory")
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    fields: dict[str, int] = {}
    found: dict[tuple[str, str], FieldFinding] = {}
    seen_rows: dict[tuple[str, str], set[int]] = {}
    unreadable: list[str] = []
    total = 0
    for file in files:
        label = file.name if root.is_dir() else ""
        total += file.stat().st_size
        try:
            values = list(_values(file, unreadable))
        except (OSError, ValueError, csv.Error) as exc:
            raise DataError(f"{file}: cannot be read ({exc.__class__.__name__})") from exc
        for name, row, value in values:
            key_field = f"{label}:{name}" if label else name
            fields[key_field] = fields.get(key_field, 0) + 1
            for span in scanner.analyze(value):
                item = found.setdefault(
                    (key_field, span.entity), FieldFinding(key_field, span.entity)
                )
                item.count += 1
                rows = seen_rows.setdefault((key_field, span.entity), set())
                rows.add(row)
                item.rows = len(rows)
                if len(item.examples) < _MAX_EXAMPLES:
                    item.examples.append(mask(value[span.start : span.end]))
    ordered = sorted(found.values(), key=lambda f: (-f.severity.rank, f.field, f.entity))
    return ScanResult(str(root), fields, ordered, total, unreadable)
