"""Threat derivation, likelihood × impact scoring, and the evidence-marked control plan."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from mlwarden.program.atlas import load_atlas
from mlwarden.program.evidence import collect_evidence
from mlwarden.program.risk import IMPLEMENTATIONS, THREATS, assess_risk, rating
from mlwarden.program.threat_model import load_threat_model, threat_model_from_dict

from .conftest import assess_report, threat_model_dict

GATEWAY = {
    "models": {"fraud": {"source": "model.pt2", "output": {"decimals": 2}}},
    "roles": {"analyst": {"grants": [{"models": ["fraud"], "actions": ["predict"]}]}},
    "rate_limits": {"daily_quota": 500},
}


def _by_id(items: tuple) -> dict:  # type: ignore[type-arg]
    return {item.id: item for item in items}


def test_public_api_on_restricted_data_scores_in_closed_form(public_system: Path) -> None:
    risk = assess_risk(load_threat_model(public_system))
    threats = _by_id(risk.threats)
    # membership: reach 4 (public-api) + 1 (probabilities) = 5; impact max(low 2, restricted 5)
    assert (threats["membership"].likelihood, threats["membership"].impact) == (5, 5)
    assert threats["membership"].score == 25 and threats["membership"].rating == "critical"
    # inversion: 4 - 1 + 1 = 4; impact 5
    assert threats["inversion"].score == 20
    # extraction: 5 × intellectual_property high (4)
    assert threats["extraction"].score == 20
    # evasion: reach 4 × integrity moderate (3)
    assert threats["evasion"].score == 12 and threats["evasion"].rating == "high"
    # poisoning: user-contributed 4 × integrity 3
    assert threats["poisoning"].score == 12
    # abuse: reach 4 × availability low (2)
    assert threats["abuse"].score == 8


def test_likelihood_steps_are_kept_as_reasons(public_system: Path) -> None:
    membership = _by_id(assess_risk(load_threat_model(public_system)).threats)["membership"]
    assert membership.likelihood_reasons == (
        "exposure public-api: base 4",
        "callers see full probability vectors (+1)",
    )
    assert "training data 'transactions' is restricted: at least 5" in membership.impact_reasons


def test_scores_are_clamped_to_the_five_point_scales() -> None:
    tm = threat_model_from_dict(
        threat_model_dict(
            exposure="public-api",
            access=[{"who": "partners", "kind": "partner", "access": "weights"}],
            impact={
                "integrity": "severe",
                "privacy": "low",
                "intellectual_property": "low",
                "availability": "low",
            },
        )
    )
    evasion = _by_id(assess_risk(tm).threats)["evasion"]
    assert evasion.likelihood == 5 and evasion.score == 25  # 4 + 1 (white-box outsiders)


def test_label_only_outputs_lower_query_threats() -> None:
    probs = threat_model_dict(exposure="partner")
    labels = threat_model_dict(exposure="partner", deployment={"outputs": "label"})
    high = _by_id(assess_risk(threat_model_from_dict(probs)).threats)["extraction"]
    low = _by_id(assess_risk(threat_model_from_dict(labels)).threats)["extraction"]
    assert (high.likelihood, low.likelihood) == (4, 2)


def test_offline_system_has_no_query_threats() -> None:
    tm = threat_model_from_dict(threat_model_dict(exposure="offline"))
    ids = {t.id for t in assess_risk(tm).threats}
    assert ids.isdisjoint({"membership", "inversion", "extraction", "abuse"})
    assert {"evasion", "supply-chain"} <= ids


def test_privacy_threats_need_sensitive_training_data() -> None:
    public_data = threat_model_dict(exposure="public-api")  # template data is internal
    assert "membership" not in {
        t.id for t in assess_risk(threat_model_from_dict(public_data)).threats
    }


def test_threats_are_ranked_by_score(public_system: Path) -> None:
    scores = [t.score for t in assess_risk(load_threat_model(public_system)).threats]
    assert scores == sorted(scores, reverse=True)


def test_rating_bands() -> None:
    assert [rating(s) for s in (25, 20, 19, 12, 11, 6, 5, 1)] == [
        "critical",
        "critical",
        "high",
        "high",
        "medium",
        "medium",
        "low",
        "low",
    ]


def test_every_threat_technique_and_control_mitigation_is_real_atlas() -> None:
    atlas = load_atlas()
    for spec in THREATS:
        for technique in spec.techniques:
            atlas.technique(technique)
    assert set(IMPLEMENTATIONS) <= set(atlas.mitigations)


def test_controls_come_from_atlas_links_of_the_threat_techniques(public_system: Path) -> None:
    atlas = load_atlas()
    risk = assess_risk(load_threat_model(public_system))
    threats = _by_id(risk.threats)
    for control in risk.controls:
        if control.id.startswith("AML.M"):
            linked = set(atlas.mitigations[control.id].techniques)
            for threat_id in control.threats:
                assert linked & {t for t, _ in threats[threat_id].techniques}


def test_control_priority_is_its_worst_threat_and_the_plan_is_ranked(public_system: Path) -> None:
    risk = assess_risk(load_threat_model(public_system))
    controls = _by_id(risk.controls)
    assert controls["AML.M0004"].priority == 25  # query limits address membership inference
    assert controls["MLW.DP"].threats == ("membership", "inversion")
    priorities = [c.priority for c in risk.controls]
    assert priorities == sorted(priorities, reverse=True)


def test_without_evidence_checkable_controls_are_missing(public_system: Path) -> None:
    tm = load_threat_model(public_system)
    risk = assess_risk(tm, collect_evidence(tm, base_dir=public_system.parent))
    statuses = {c.id: c.status for c in risk.controls}
    assert statuses["AML.M0004"] == "missing" and statuses["AML.M0013"] == "missing"
    assert statuses["AML.M0025"] == "manual"
    assert "AML.M0004" in {c.id for c in risk.missing_for_top_risks()}


def test_evidence_on_disk_marks_controls_done(public_system: Path) -> None:
    folder = public_system.parent
    (folder / "model.pt2.sig").write_text("{}", encoding="utf-8")
    (folder / "gateway.yaml").write_text(yaml.safe_dump(GATEWAY), encoding="utf-8")
    sidecar = {"training": {"privacy": {"epsilon": 3.0, "delta": 1e-5, "accountant": "rdp"}}}
    (folder / "model.pt2.mlwarden.json").write_text(json.dumps(sidecar), encoding="utf-8")
    tm = load_threat_model(public_system)
    evidence = collect_evidence(tm, base_dir=folder, report=assess_report(passed=True))
    statuses = {c.id: c.status for c in assess_risk(tm, evidence).controls}
    assert statuses["AML.M0013"] == "done"  # signature beside the model
    assert statuses["AML.M0004"] == "done"  # gateway daily quota
    assert statuses["AML.M0002"] == "done"  # gateway rounds probabilities
    assert statuses["MLW.DP"] == "done"  # privacy record in the sidecar
    assert statuses["AML.M0008"] == "done"  # passing assessment
    assert statuses["AML.M0007"] == "missing"  # that assessment did not inspect the data
    assert statuses["AML.M0015"] == "missing"  # no detector configured


def test_failing_assessment_is_not_evidence(public_system: Path) -> None:
    tm = load_threat_model(public_system)
    evidence = collect_evidence(
        tm, base_dir=public_system.parent, report=assess_report(passed=False)
    )
    assert not evidence["passing-assessment"].found
    assert "fails robust_accuracy@0.1" in evidence["passing-assessment"].detail


def test_full_precision_gateway_is_not_rounding_evidence(public_system: Path) -> None:
    gateway = {
        **GATEWAY,
        "models": {
            "fraud": {"source": "model.pt2", "output": {"mode": "probabilities", "decimals": None}}
        },
    }
    (public_system.parent / "gateway.yaml").write_text(yaml.safe_dump(gateway), encoding="utf-8")
    tm = load_threat_model(public_system)
    evidence = collect_evidence(tm, base_dir=public_system.parent)
    assert evidence["gateway-quota"].found and not evidence["gateway-rounding"].found


def test_invalid_gateway_config_is_reported_not_raised(public_system: Path) -> None:
    (public_system.parent / "gateway.yaml").write_text("models: {}\n", encoding="utf-8")
    tm = load_threat_model(public_system)
    evidence = collect_evidence(tm, base_dir=public_system.parent)
    assert not evidence["gateway-quota"].found
    assert "unusable" in evidence["gateway-quota"].detail


def test_risk_assessment_serialises_to_json(public_system: Path) -> None:
    doc = assess_risk(load_threat_model(public_system)).to_dict()
    assert json.loads(json.dumps(doc)) == doc
    assert doc["threats"][0]["atlas"][0]["id"].startswith("AML.T")


def _signed_system(folder: Path, *, with_key: bool) -> tuple[Path, Path]:
    """A threat model whose model file is signed with a fresh key pair (``mlwarden sign``)."""
    from mlwarden.supplychain.signing import generate_keypair, sign_model

    from .conftest import threat_model_dict, write_yaml

    model = folder / "model.bin"
    model.write_bytes(b"weights v1")
    keys = generate_keypair(folder / "keys")
    sign_model(model, private_key=keys.private_key)
    entry = {"name": "m", "path": "model.bin"}
    if with_key:
        entry["public_key"] = "keys/public.pem"
    path = write_yaml(folder / "tm.yaml", threat_model_dict("signed", models=[entry]))
    return path, model


def test_a_signature_verified_with_the_threat_models_key_is_evidence(tmp_path: Path) -> None:
    path, _ = _signed_system(tmp_path, with_key=True)
    tm = load_threat_model(path)
    evidence = collect_evidence(tm, base_dir=tmp_path)["signature"]
    assert evidence.found and "verified, signed by key sha256:" in evidence.detail


def test_a_tampered_model_or_another_signer_is_not_evidence(tmp_path: Path) -> None:
    path, model = _signed_system(tmp_path, with_key=True)
    tm = load_threat_model(path)
    model.write_bytes(b"weights v2")  # changed after signing
    evidence = collect_evidence(tm, base_dir=tmp_path)["signature"]
    assert not evidence.found and "does not verify" in evidence.detail
    statuses = {c.id: c.status for c in assess_risk(tm, {"signature": evidence}).controls}
    assert statuses["AML.M0013"] == "missing"

    from mlwarden.supplychain.signing import generate_keypair

    model.write_bytes(b"weights v1")  # the signed content again, but checked with another key
    other = generate_keypair(tmp_path / "other")
    (tmp_path / "keys" / "public.pem").write_bytes(other.public_key.read_bytes())
    evidence = collect_evidence(tm, base_dir=tmp_path)["signature"]
    assert not evidence.found and "does not verify" in evidence.detail


def test_a_signature_without_a_key_counts_but_says_it_is_unverified(tmp_path: Path) -> None:
    path, _ = _signed_system(tmp_path, with_key=False)
    evidence = collect_evidence(load_threat_model(path), base_dir=tmp_path)["signature"]
    assert evidence.found and "not verified" in evidence.detail
