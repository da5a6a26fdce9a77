"""The vendored ATLAS data is MITRE's file, unchanged, and every ATLAS id mlwarden cites is in it."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

import mlwarden
from mlwarden.errors import ConfigError
from mlwarden.program.atlas import load_atlas
from mlwarden.report.taxonomy import ATLAS

PACKAGE = Path(mlwarden.__file__).parent
DATA = PACKAGE / "program" / "data"
ATLAS_ID = re.compile(r"AML\.(?:T|M|TA)\d{4}(?:\.\d{3})?")


def _ids_used_in_source() -> dict[str, list[str]]:
    """Every ATLAS id written anywhere in ``src/mlwarden`` (code, docstrings, templates)."""
    used: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*")):
        if not path.is_file() or DATA in path.parents or path.suffix not in (".py", ".j2"):
            continue
        for match in ATLAS_ID.findall(path.read_text(encoding="utf-8")):
            used.setdefault(match, []).append(str(path.relative_to(PACKAGE)))
    return used


def test_vendored_file_is_the_documented_release() -> None:
    digest = hashlib.sha256((DATA / "ATLAS.yaml").read_bytes()).hexdigest()
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    assert digest in readme
    assert f"ATLAS data {load_atlas().version}" in readme


def test_vendored_data_carries_its_apache_licence() -> None:
    licence = (DATA / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License, Version 2.0" in licence and "MITRE" in licence


def test_source_cites_atlas_ids() -> None:
    used = _ids_used_in_source()
    assert "AML.T0043" in used and "AML.T0010" in used  # the scan below sees the taxonomy


def test_every_atlas_id_used_in_the_source_exists_in_the_vendored_data() -> None:
    atlas = load_atlas()
    known = set(atlas.techniques) | set(atlas.mitigations)
    missing = {i: files for i, files in _ids_used_in_source().items() if i not in known}
    assert missing == {}


def test_every_taxonomy_atlas_entry_exists_in_the_vendored_data() -> None:
    assert set(ATLAS) <= set(load_atlas().techniques)


def test_mitigation_links_point_at_known_techniques() -> None:
    atlas = load_atlas()
    for mitigation in atlas.mitigations.values():
        assert set(mitigation.techniques) <= set(atlas.techniques), mitigation.id


def test_sub_technique_names_include_their_parent() -> None:
    assert load_atlas().display_name("AML.T0024.000") == (
        "Exfiltration via AI Inference API: Infer Training Data Membership"
    )


def test_mitigations_for_follows_the_data_links() -> None:
    ids = [m.id for m in load_atlas().mitigations_for("AML.T0024.002")]
    assert "AML.M0004" in ids and "AML.M0002" in ids  # query limits, output obfuscation


def test_unknown_technique_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"AML\.T9999"):
        load_atlas().technique("AML.T9999")


def test_loader_parses_once() -> None:
    assert load_atlas() is load_atlas()
