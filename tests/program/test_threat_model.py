"""The threat-model file: a template that validates, and strict validation of what teams write."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlwarden.errors import ConfigError
from mlwarden.program.threat_model import (
    SCHEMA,
    load_threat_model,
    template,
    threat_model_from_dict,
    write_template,
)

from .conftest import threat_model_dict, write_yaml


def test_template_validates_and_names_the_system() -> None:
    tm = threat_model_from_dict(yaml.safe_load(template("fraud-scorer")))
    assert tm.system == "fraud-scorer"
    assert tm.cadence_months == 12


def test_template_documents_every_choice_in_comments() -> None:
    text = template("x")
    for choice in ("public-api | partner | internal | offline", "user-contributed", "severe"):
        assert choice in text


def test_write_template_never_overwrites_a_filled_in_model(tmp_path: Path) -> None:
    path = write_template(tmp_path / "tm.yaml", "x")
    path.write_text("edited", encoding="utf-8")
    with pytest.raises(ConfigError, match="already exists"):
        write_template(path, "x")
    assert path.read_text(encoding="utf-8") == "edited"


def test_round_trip_through_yaml_is_lossless(tmp_path: Path) -> None:
    tm = threat_model_from_dict(threat_model_dict())
    path = tmp_path / "tm.yaml"
    path.write_text(tm.to_yaml(), encoding="utf-8")
    assert load_threat_model(path) == tm
    assert yaml.safe_load(tm.to_yaml())["schema"] == SCHEMA


def test_unknown_key_is_an_error_naming_its_path(tmp_path: Path) -> None:
    data = threat_model_dict()
    data["impact"] = {**data["impact"], "integrety": "high"}
    with pytest.raises(ConfigError, match=r"impact\.integrety: unknown key"):
        load_threat_model(write_yaml(tmp_path / "tm.yaml", data))


def test_misspelt_exposure_is_refused_not_defaulted() -> None:
    with pytest.raises(ConfigError, match="exposure"):
        threat_model_from_dict(threat_model_dict(exposure="publicapi"))


def test_string_boolean_is_not_coerced() -> None:
    data = threat_model_dict(data=[{"name": "d", "sensitivity": "public", "personal_data": "no"}])
    with pytest.raises(ConfigError, match=r"data\.0\.personal_data"):
        threat_model_from_dict(data)


def test_every_bad_value_is_reported_at_once() -> None:
    with pytest.raises(ConfigError, match="2 invalid value"):
        threat_model_from_dict(threat_model_dict(exposure="moon", cadence_months="12"))


def test_system_name_must_be_usable_as_a_file_name() -> None:
    with pytest.raises(ConfigError, match="system"):
        threat_model_from_dict(threat_model_dict(system="../etc"))


def test_unreadable_and_non_yaml_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_threat_model(tmp_path / "absent.yaml")
    (tmp_path / "bad.yaml").write_text("a: [", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_threat_model(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        load_threat_model(tmp_path / "list.yaml")
