"""Audit Python dependencies against vulnerability advisories in the OSV format.

Advisories come from a local folder or zip of OSV JSON files (an export of
https://osv.dev, for air-gapped runs) or from the OSV API. Packages come from a pinned
requirements file or from the running environment. Affected ranges are evaluated as the OSV
schema defines them (https://ossf.github.io/osv-schema/): ``ECOSYSTEM`` ranges with PEP 440
ordering (``packaging``), ``SEMVER`` ranges with Semantic Versioning 2.0 precedence,
``introduced``/``fixed``/``last_affected``/``limit`` events, explicit ``versions`` lists, several
ranges and several ``affected`` entries per advisory. Withdrawn advisories are ignored, and an
advisory published under several ids (PYSEC, GHSA, CVE aliases) is reported once per package.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import os
import re
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from mlwarden import __version__
from mlwarden.errors import ConfigError
from mlwarden.report.findings import Severity

__all__ = [
    "AdvisorySource",
    "AuditReport",
    "LocalOsvDatabase",
    "OsvApi",
    "Package",
    "Vulnerability",
    "audit",
    "cvss3_base_score",
    "installed_packages",
    "read_requirements",
    "version_affected",
]

logger = logging.getLogger(__name__)

_ECOSYSTEM = "PyPI"
_SEVERITY_WORDS = {
    "LOW": Severity.LOW,
    "MODERATE": Severity.MEDIUM,
    "MEDIUM": Severity.MEDIUM,
    "HIGH": Severity.HIGH,
    "CRITICAL": Severity.CRITICAL,
}


@dataclass(frozen=True)
class Package:
    """A package at one version, and where that version came from."""

    name: str
    version: str
    source: str

    @property
    def key(self) -> str:
        """The normalised (PEP 503) name."""
        return canonicalize_name(self.name)


@dataclass(frozen=True)
class Vulnerability:
    """One advisory that affects one package at its version."""

    id: str
    package: Package
    summary: str
    severity: Severity
    aliases: tuple[str, ...]
    fixed_versions: tuple[str, ...]
    last_affected: tuple[str, ...]
    references: tuple[str, ...]
    cvss_score: float | None = None

    @property
    def fix(self) -> str:
        """What to upgrade to, in words."""
        if self.fixed_versions:
            return f">={self.fixed_versions[0]}"
        if self.last_affected:
            return f"none yet (last affected {self.last_affected[-1]})"
        return "none yet"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {
            "id": self.id,
            "aliases": list(self.aliases),
            "package": self.package.name,
            "version": self.package.version,
            "source": self.package.source,
            "summary": self.summary,
            "severity": self.severity.value,
            "cvss_score": self.cvss_score,
            "fixed_versions": list(self.fixed_versions),
            "last_affected": list(self.last_affected),
            "fix": self.fix,
            "references": list(self.references),
        }


@dataclass
class AuditReport:
    """The packages audited, the vulnerabilities found, and what could not be audited."""

    packages: list[Package]
    vulnerabilities: list[Vulnerability]
    unpinned: list[str] = field(default_factory=list)
    database: str = ""
    advisories: int = 0
    withdrawn: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def vulnerable(self) -> bool:
        """Whether any package is affected by an advisory."""
        return bool(self.vulnerabilities)

    @property
    def max_severity(self) -> Severity | None:
        """The most severe vulnerability's severity, or None."""
        return max((v.severity for v in self.vulnerabilities), key=lambda s: s.rank, default=None)

    def at_or_above(self, severity: Severity) -> list[Vulnerability]:
        """The vulnerabilities at least as severe as ``severity``."""
        return [v for v in self.vulnerabilities if v.severity.rank >= severity.rank]

    def to_dict(self) -> dict[str, Any]:
        """The audit as a JSON document (``schema: mlwarden.audit``)."""
        worst = self.max_severity
        return {
            "schema": "mlwarden.audit",
            "schema_version": "1.0",
            "tool": {"name": "mlwarden", "version": __version__},
            "database": self.database,
            "summary": {
                "packages": len(self.packages),
                "vulnerable_packages": len({v.package.key for v in self.vulnerabilities}),
                "vulnerabilities": len(self.vulnerabilities),
                "max_severity": None if worst is None else worst.value,
                "advisories_loaded": self.advisories,
                "withdrawn_ignored": self.withdrawn,
            },
            "vulnerabilities": [v.to_dict() for v in self.vulnerabilities],
            "unpinned": list(self.unpinned),
            "problems": list(self.problems),
            "packages": [
                {"name": p.name, "version": p.version, "source": p.source} for p in self.packages
            ],
        }


# -- packages --------------------------------------------------------------------------------


def read_requirements(path: str | os.PathLike[str]) -> tuple[list[Package], list[str]]:
    """The pinned packages of a requirements file, and the requirements that are not pinned.

    ``name==X`` and ``name===X`` pins are audited; ranges, URLs and editable installs cannot be
    and are returned as unpinned. ``-r`` includes are followed; environment markers that do not
    apply to this interpreter are skipped; ``--hash`` options and comments are ignored.

    Raises
    ------
    ConfigError
        The file does not exist or a line is not a valid requirement.
    """
    pinned: list[Package] = []
    unpinned: list[str] = []
    _read_requirements(Path(path), pinned, unpinned, seen=set())
    return pinned, unpinned


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        yield start, (buffer + line).strip()
        buffer = ""
    if buffer.strip():
        yield start, buffer.strip()


def _read_requirements(
    path: Path, pinned: list[Package], unpinned: list[str], seen: set[Path]
) -> None:
    if not path.is_file():
        raise ConfigError(f"requirements file {str(path)!r} does not exist")
    resolved = path.resolve()
    if resolved in seen:
        return
    seen.add(resolved)
    for number, line in _logical_lines(path.read_text(encoding="utf-8")):
        if not line:
            continue
        include = re.match(r"^(-r|--requirement)(=|\s+)(\S+)$", line)
        if include:
            _read_requirements(path.parent / include.group(3), pinned, unpinned, seen)
            continue
        if line.startswith(("-e", "--editable")):
            unpinned.append(f"{line} (editable)")
            continue
        if line.startswith("-"):
            continue  # --index-url, -c constraints, --hash on its own line, ...
        line = re.split(r"\s+--?[A-Za-z]", line)[0].strip()
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            raise ConfigError(f"{path}:{number}: not a valid requirement {line!r} ({exc})") from exc
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        specs = list(requirement.specifier)
        if (
            requirement.url is None
            and len(specs) == 1
            and specs[0].operator in {"==", "==="}
            and "*" not in specs[0].version
        ):
            pinned.append(Package(requirement.name, specs[0].version, f"{path}:{number}"))
        else:
            unpinned.append(line)


def installed_packages() -> list[Package]:
    """Every distribution installed in the running environment (``importlib.metadata``)."""
    found: dict[str, Package] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        package = Package(name, dist.version, "environment")
        found.setdefault(package.key, package)
    return sorted(found.values(), key=lambda p: p.key)


# -- version ranges ---------------------------------------------------------------------------


_SEMVER = re.compile(
    r"^v?(?P<core>\d+(?:\.\d+){0,2})(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)


def _semver_key(text: str) -> tuple[Any, ...]:
    """Semantic Versioning 2.0 precedence (missing minor/patch read as 0)."""
    match = _SEMVER.match(text.strip())
    if match is None:
        # a PEP 440 version of a PyPI package: map its release and pre-release onto SemVer
        version = Version(text)
        core = (*version.release, 0, 0, 0)[:3]
        pre = version.pre or (("dev", version.dev) if version.dev is not None else None)
        tag = {"a": "alpha", "b": "beta"}.get(str(pre[0]), str(pre[0])) if pre else ""
        ids: tuple[Any, ...] = () if pre is None else ((1, tag), (0, int(pre[1])))
        return (*core, (1,) if pre is None else (0, ids))
    core = (*(int(n) for n in match.group("core").split(".")), 0, 0, 0)[:3]
    pre_text = match.group("pre")
    if pre_text is None:
        return (*core, (1,))
    ids = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre_text.split("."))
    return (*core, (0, ids))


def _key_function(range_type: str) -> Callable[[str], Any]:
    if range_type == "SEMVER":
        return _semver_key
    return Version


def version_affected(version: str, affected: dict[str, Any]) -> tuple[bool, list[str], list[str]]:
    """Whether ``version`` is affected by one OSV ``affected`` entry.

    Returns
    -------
    tuple
        (affected, fixed versions above ``version`` in the ranges that affect it,
        ``last_affected`` versions of those ranges).

    Raises
    ------
    InvalidVersion
        A version in the entry (or ``version``) cannot be parsed.
    """
    hit = False
    fixed: list[str] = []
    last: list[str] = []
    explicit = affected.get("versions") or []
    if explicit:
        try:
            target = Version(version)
            hit = any(_same_version(target, v) for v in explicit)
        except InvalidVersion:
            hit = version in explicit
    for spec in affected.get("ranges") or []:
        range_type = spec.get("type", "ECOSYSTEM")
        if range_type not in {"ECOSYSTEM", "SEMVER"}:
            continue  # GIT ranges need the repository; the versions list covers them
        key = _key_function(range_type)
        if _in_range(version, spec.get("events") or [], key):
            hit = True
            current = key(version)
            for event in spec.get("events") or []:
                if "fixed" in event and key(event["fixed"]) > current:
                    fixed.append(event["fixed"])
                if "last_affected" in event:
                    last.append(event["last_affected"])
    return hit, fixed, last


def _same_version(target: Version, text: str) -> bool:
    try:
        return Version(text) == target
    except InvalidVersion:
        return str(target) == text


def _in_range(version: str, events: Sequence[dict[str, str]], key: Callable[[str], Any]) -> bool:
    """The OSV evaluation: walk the events in version order; the last one at or below decides."""
    current = key(version)
    ordered: list[tuple[int, Any, str]] = []
    limits: list[str] = []
    for event in events:
        for kind in ("introduced", "fixed", "last_affected", "limit"):
            if kind in event:
                value = event[kind]
                if kind == "limit":
                    limits.append(value)
                elif kind == "introduced" and value == "0":
                    ordered.append((0, None, kind))
                else:
                    ordered.append((1, key(value), kind))
    ordered.sort(key=lambda e: (e[0], e[1]) if e[1] is not None else (e[0],))
    affected = False
    for _, bound, kind in ordered:
        if kind == "introduced" and (bound is None or current >= bound):
            affected = True
        elif (kind == "fixed" and current >= bound) or (
            kind == "last_affected" and current > bound
        ):
            affected = False
    if affected and limits:
        affected = any(limit == "*" or current < key(limit) for limit in limits)
    return affected


# -- severity ---------------------------------------------------------------------------------

_CVSS3 = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
    "AC": {"L": 0.77, "H": 0.44},
    "UI": {"N": 0.85, "R": 0.62},
    "C": {"H": 0.56, "L": 0.22, "N": 0.0},
    "I": {"H": 0.56, "L": 0.22, "N": 0.0},
    "A": {"H": 0.56, "L": 0.22, "N": 0.0},
}


def _roundup(value: float) -> float:
    scaled = round(value * 100000)
    if scaled % 10000 == 0:
        return scaled / 100000.0
    return (math.floor(scaled / 10000) + 1) / 10.0


def cvss3_base_score(vector: str) -> float:
    """The CVSS 3.0/3.1 base score of a vector such as ``CVSS:3.1/AV:N/AC:L/...``.

    Raises
    ------
    ValueError
        The vector lacks a base metric or has an unknown value.
    """
    metrics = dict(part.split(":", 1) for part in vector.split("/") if ":" in part)
    missing = [m for m in ("AV", "AC", "PR", "UI", "S", "C", "I", "A") if m not in metrics]
    if missing:
        raise ValueError(f"CVSS vector {vector!r} lacks the base metric(s) {', '.join(missing)}")
    if metrics["S"] not in ("U", "C"):
        raise ValueError(f"CVSS vector {vector!r}: scope S must be U or C, got {metrics['S']!r}")
    scope_changed = metrics["S"] == "C"
    privileges = {
        "N": 0.85,
        "L": 0.68 if scope_changed else 0.62,
        "H": 0.5 if scope_changed else 0.27,
    }
    try:
        pr = privileges[metrics["PR"]]
        av, ac, ui = (_CVSS3[m][metrics[m]] for m in ("AV", "AC", "UI"))
        c, i, a = (_CVSS3[m][metrics[m]] for m in ("C", "I", "A"))
    except KeyError as exc:
        raise ValueError(f"CVSS vector {vector!r} has an unknown value {exc}") from None
    iss = 1 - (1 - c) * (1 - i) * (1 - a)
    impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if scope_changed else 6.42 * iss
    exploitability = 8.22 * av * ac * pr * ui
    if impact <= 0:
        return 0.0
    total = impact + exploitability
    return _roundup(min(1.08 * total if scope_changed else total, 10.0))


def _band(score: float) -> Severity:
    if score >= 9.0:
        return Severity.CRITICAL
    if score >= 7.0:
        return Severity.HIGH
    if score >= 4.0:
        return Severity.MEDIUM
    if score > 0.0:
        return Severity.LOW
    return Severity.INFO


def _severity(advisory: dict[str, Any], affected: dict[str, Any]) -> tuple[Severity, float | None]:
    score = None
    for entry in advisory.get("severity") or []:
        kind, value = entry.get("type", ""), str(entry.get("score", ""))
        try:
            if kind.startswith("CVSS_V3"):
                score = cvss3_base_score(value)
            elif re.fullmatch(r"\d+(\.\d+)?", value):
                score = float(value)
        except (ValueError, KeyError):
            continue
        if score is not None:
            break
    for holder in (
        advisory.get("database_specific"),
        affected.get("ecosystem_specific"),
        affected.get("database_specific"),
    ):
        word = holder.get("severity") if isinstance(holder, dict) else None
        if isinstance(word, str) and word.upper() in _SEVERITY_WORDS:
            return _SEVERITY_WORDS[word.upper()], score
    if score is not None:
        return _band(score), score
    return Severity.MEDIUM, None  # unrated: worth a look, not ignorable


# -- advisory sources -------------------------------------------------------------------------


class AdvisorySource(Protocol):
    """Where advisories come from: a local OSV export or the OSV API."""

    description: str

    def advisories_for(self, packages: Sequence[Package]) -> list[dict[str, Any]]:
        """Every advisory that mentions one of ``packages`` (withdrawn ones included)."""
        ...


class LocalOsvDatabase:
    """OSV advisories read from a folder of ``*.json`` files or a zip of them (``all.zip``).

    Each file holds one advisory (or a list of advisories) in the OSV schema; entries for
    ecosystems other than PyPI are ignored.

    Raises
    ------
    ConfigError
        The path does not exist or holds no readable advisory.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.description = f"local OSV database {self.path}"
        self.problems: list[str] = []
        self._by_package: dict[str, list[dict[str, Any]]] = {}
        self.count = 0
        if not self.path.exists():
            raise ConfigError(f"advisory database {str(self.path)!r} does not exist")
        for name, text in self._documents():
            try:
                document = json.loads(text)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                self.problems.append(f"{name}: not JSON ({exc})")
                continue
            for advisory in document if isinstance(document, list) else [document]:
                if not isinstance(advisory, dict) or "id" not in advisory:
                    self.problems.append(f"{name}: not an OSV advisory (no id)")
                    continue
                self._index(advisory)
        if self.count == 0:
            raise ConfigError(
                f"no OSV advisories found in {self.path}; give a folder of OSV .json files or "
                "the zip osv.dev exports (e.g. PyPI/all.zip)"
            )

    def _documents(self) -> Iterable[tuple[str, bytes]]:
        if self.path.is_dir():
            for file in sorted(self.path.rglob("*.json")):
                yield str(file), file.read_bytes()
        elif zipfile.is_zipfile(self.path):
            with zipfile.ZipFile(self.path) as archive:
                for info in archive.infolist():
                    if info.filename.endswith(".json"):
                        yield f"{self.path}!{info.filename}", archive.read(info)
        else:
            yield str(self.path), self.path.read_bytes()

    def _index(self, advisory: dict[str, Any]) -> None:
        self.count += 1
        names = set()
        for affected in advisory.get("affected") or []:
            package = affected.get("package") or {}
            if package.get("ecosystem") == _ECOSYSTEM and package.get("name"):
                names.add(canonicalize_name(package["name"]))
        for name in names:
            self._by_package.setdefault(name, []).append(advisory)

    def advisories_for(self, packages: Sequence[Package]) -> list[dict[str, Any]]:
        """The advisories that name any of ``packages``."""
        found: dict[str, dict[str, Any]] = {}
        for package in packages:
            for advisory in self._by_package.get(package.key, []):
                found[advisory["id"]] = advisory
        return list(found.values())


class OsvApi:
    """Advisories from the OSV API (``POST /v1/querybatch``, then ``GET /v1/vulns/ID``).

    Only used when asked for (``--online``); tests pass a fake ``opener``.
    """

    def __init__(
        self,
        url: str = "https://api.osv.dev",
        *,
        timeout_s: float = 30.0,
        opener: Callable[..., Any] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._open = opener or urllib.request.urlopen
        self.description = f"OSV API {self.url}"
        self.problems: list[str] = []
        self.count = 0

    def _json(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            headers={"Content-Type": "application/json", "User-Agent": f"mlwarden/{__version__}"},
            method="POST" if data is not None else "GET",
        )
        try:
            with self._open(request, timeout=self.timeout_s) as response:
                return json.loads(response.read().decode("utf-8"))
        except (urllib.error.URLError, OSError, json.JSONDecodeError) as exc:
            raise ConfigError(
                f"cannot query {self.url}{path} ({exc}); use --db with a local OSV export when "
                "offline"
            ) from exc

    def advisories_for(self, packages: Sequence[Package]) -> list[dict[str, Any]]:
        """Ask which advisories affect each package version, then fetch each one in full."""
        ids: set[str] = set()
        for start in range(0, len(packages), 500):
            chunk = packages[start : start + 500]
            queries = [
                {"package": {"name": p.name, "ecosystem": _ECOSYSTEM}, "version": p.version}
                for p in chunk
            ]
            answer = self._json("/v1/querybatch", {"queries": queries})
            for result in answer.get("results", []):
                ids.update(v["id"] for v in result.get("vulns", []) if "id" in v)
        advisories = [self._json(f"/v1/vulns/{vid}") for vid in sorted(ids)]
        self.count = len(advisories)
        return advisories


# -- the audit --------------------------------------------------------------------------------


def audit(
    packages: Sequence[Package], source: AdvisorySource, *, unpinned: Sequence[str] = ()
) -> AuditReport:
    """Match ``packages`` against the advisories of ``source``.

    Returns
    -------
    AuditReport
        One :class:`Vulnerability` per (package, advisory), duplicates under aliases merged,
        sorted by severity then package.
    """
    by_key: dict[str, Package] = {p.key: p for p in packages}
    advisories = sorted(source.advisories_for(list(by_key.values())), key=lambda a: str(a["id"]))
    report = AuditReport(
        packages=list(by_key.values()),
        vulnerabilities=[],
        unpinned=list(unpinned),
        database=source.description,
        advisories=int(getattr(source, "count", len(advisories))),
        problems=list(getattr(source, "problems", [])),
    )
    seen: dict[str, set[str]] = {}
    for advisory in advisories:
        if advisory.get("withdrawn"):
            report.withdrawn += 1
            continue
        names = {str(advisory["id"]), *map(str, advisory.get("aliases", []))}
        hits: dict[str, tuple[list[str], list[str], dict[str, Any]]] = {}
        for affected in advisory.get("affected") or []:
            package_info = affected.get("package") or {}
            if package_info.get("ecosystem") != _ECOSYSTEM:
                continue
            package = by_key.get(canonicalize_name(package_info.get("name", "")))
            if package is None or seen.get(package.key, set()) & names:
                continue
            try:
                hit, fixed, last = version_affected(package.version, affected)
            except (InvalidVersion, TypeError, KeyError) as exc:
                report.problems.append(f"{advisory['id']}: cannot evaluate its ranges ({exc})")
                continue
            if hit:
                all_fixed, all_last, _ = hits.setdefault(package.key, ([], [], affected))
                all_fixed += fixed
                all_last += last
        for key, (fixed, last, affected) in hits.items():
            seen.setdefault(key, set()).update(names)
            report.vulnerabilities.append(
                _vulnerability(advisory, by_key[key], affected, fixed, last)
            )
    report.vulnerabilities.sort(key=lambda v: (-v.severity.rank, v.package.key, v.id))
    return report


def _vulnerability(
    advisory: dict[str, Any],
    package: Package,
    affected: dict[str, Any],
    fixed: list[str],
    last: list[str],
) -> Vulnerability:
    severity, score = _severity(advisory, affected)
    try:
        fixed_sorted = tuple(sorted(set(fixed), key=Version))
    except InvalidVersion:
        fixed_sorted = tuple(sorted(set(fixed)))
    return Vulnerability(
        id=str(advisory["id"]),
        package=package,
        summary=str(advisory.get("summary") or str(advisory.get("details", ""))[:200]),
        severity=severity,
        aliases=tuple(sorted(set(map(str, advisory.get("aliases", []))))),
        fixed_versions=fixed_sorted,
        last_affected=tuple(sorted(set(last))),
        references=tuple(r["url"] for r in advisory.get("references", []) if "url" in r),
        cvss_score=score,
    )
