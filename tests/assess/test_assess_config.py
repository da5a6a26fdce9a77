"""The assessment configuration: YAML loading, validation, and policy gates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlwarden.assess import AssessConfig, Gate, load_config, parse_gate
from mlwarden.assess.profiles import DEFAULT_PROFILE
from mlwarden.errors import ConfigError

# parse_gate --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "metric", "threshold", "eps", "attack"),
    [
        ("clean_accuracy=0.9", "clean_accuracy", 0.9, None, None),
        ("robust_accuracy@0.1=0.6", "robust_accuracy@0.1", 0.6, 0.1, None),
        ("robust_accuracy[pgd]@0.05=0", "robust_accuracy[pgd]@0.05", 0.0, 0.05, "pgd"),
        ("robust_accuracy@1e-1=1", "robust_accuracy@1e-1", 1.0, 0.1, None),
        (" robust_accuracy@0.1 =0.5", "robust_accuracy@0.1", 0.5, 0.1, None),
    ],
)
def test_parse_gate_reads_metric_threshold_eps_and_attack(
    text: str, metric: str, threshold: float, eps: float | None, attack: str | None
) -> None:
    gate = parse_gate(text)
    assert gate == Gate(metric=metric, threshold=threshold, source="--fail-under")
    assert gate.eps == eps
    assert gate.attack == attack


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("robust_accuracy@0.1", "expected METRIC=THRESHOLD"),
        ("clean_accuracy=", "is not a number"),
        ("clean_accuracy=high", "'high' is not a number"),
        ("accuracy=0.5", "unknown gate metric 'accuracy'"),
        ("robust_accuracy@abc=0.5", "unknown gate metric"),
        ("robust_accuracy=0.5", "needs an epsilon"),
        ("clean_accuracy@0.1=0.5", "clean_accuracy takes no @EPS"),
        ("clean_accuracy[pgd]=0.5", "clean_accuracy takes no @EPS or [ATTACK]"),
        ("robust_accuracy@1e=0.5", "bad epsilon"),
        ("robust_accuracy@0=0.5", "must be > 0"),
        ("robust_accuracy@0.1=1.01", "must be in [0, 1]"),
        ("robust_accuracy@0.1=-0.01", "must be in [0, 1]"),
        ("robust_accuracy@0.1=nan", "must be in [0, 1]"),
        ("robust_accuracy@0.1=inf", "must be in [0, 1]"),
    ],
)
def test_parse_gate_rejects_bad_gates_naming_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match="--fail-under") as info:
        parse_gate(text)
    assert fragment in str(info.value)


# AssessConfig -------------------------------------------------------------------------------------


def test_defaults_are_valid_and_sorted() -> None:
    config = AssessConfig()
    assert config.epsilons == [0.02, 0.05, 0.1]
    assert config.norm == "linf"
    assert config.attacks is None  # the default list, with black-box skipping
    assert DEFAULT_PROFILE == "standard"
    assert config.gates == []


def test_epsilons_are_deduplicated_and_sorted() -> None:
    assert AssessConfig(epsilons=[0.1, 0.02, 0.1, 1]).epsilons == [0.02, 0.1, 1.0]


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"seed": -1}, "seed"),
        ({"seed": True}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"epsilons": []}, "epsilons: List should have at least 1 item"),
        ({"epsilons": "0.1"}, "epsilons: Input should be a valid list (got '0.1')"),
        ({"epsilons": [0.1, -0.1]}, "epsilons must be finite numbers > 0"),
        ({"epsilons": [0]}, "epsilons must be finite numbers > 0"),
        ({"epsilons": [float("inf")]}, "epsilons must be finite numbers > 0"),
        ({"epsilons": [True]}, "epsilons.0: Input should be a valid number (got True)"),
        ({"epsilons": ["0.1"]}, "epsilons.0: Input should be a valid number (got '0.1')"),
        ({"norm": "l1"}, "norm must be linf or l2"),
        ({"attacks": []}, "attacks: List should have at least 1 item"),
        ({"attacks": "pgd"}, "attacks: Input should be a valid list"),
        ({"attacks": ["pgd", "deepfool"]}, "unknown attack 'deepfool'"),
        ({"attack_params": ["pgd"]}, "attack_params: Input should be a valid dictionary"),
        ({"attack_params": {"deepfool": {}}}, "unknown attack 'deepfool'"),
        ({"attack_params": {"pgd": 20}}, "attack_params.pgd: Input should be a valid dictionary"),
        ({"attack_params": {"pgd": {"stepz": 3}}}, "stepz"),
        ({"attack_params": {"pgd": {"eps": 0.3}}}, "['eps'] are set by the assessment"),
        ({"attack_params": {"square": {"seed": 1, "norm": "l2"}}}, "['norm', 'seed']"),
        ({"attack_params": {"fgsm": {"targeted": True}}}, "['targeted']"),
        ({"max_samples": 0}, "max_samples: Input should be greater than or equal to 1 (got 0)"),
        ({"max_samples": 2.5}, "max_samples"),
        ({"batch_size": 0}, "batch_size: Input should be greater than or equal to 1 (got 0)"),
        ({"examples": -1}, "examples: Input should be greater than or equal to 0 (got -1)"),
        ({"clip_range": [0, 1, 2]}, "clip_range: List should have at most 2 items"),
        ({"clip_range": [1, 1]}, "clip_range must be [low, high] with low < high"),
        ({"clip_range": ["a", "b"]}, "clip_range"),
    ],
)
def test_invalid_settings_raise_config_error_naming_the_setting(
    settings: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        AssessConfig(**settings)
    assert fragment in str(info.value)


def test_with_gates_adds_every_gate_epsilon_to_the_grid() -> None:
    config = AssessConfig(epsilons=[0.05, 0.1]).with_gates(
        [parse_gate("robust_accuracy@0.2=0.5"), parse_gate("robust_accuracy[pgd]@0.01=0.5")]
    )
    assert config.epsilons == [0.01, 0.05, 0.1, 0.2]
    assert [g.metric for g in config.gates] == [
        "robust_accuracy@0.2",
        "robust_accuracy[pgd]@0.01",
    ]


def test_with_gates_does_not_duplicate_an_epsilon_already_in_the_grid() -> None:
    config = AssessConfig(epsilons=[0.1]).with_gates([parse_gate("robust_accuracy@0.10=0.5")])
    assert config.epsilons == [0.1]


def test_with_gates_lets_a_later_gate_replace_one_on_the_same_metric() -> None:
    config = AssessConfig().with_gates([Gate("clean_accuracy", 0.8, "assess.yaml")])
    config = config.with_gates([parse_gate("clean_accuracy=0.9")])
    assert config.gates == [Gate("clean_accuracy", 0.9, "--fail-under")]


def test_with_gates_rejects_a_gate_on_an_unknown_attack() -> None:
    with pytest.raises(ConfigError, match="unknown attack 'cw'"):
        AssessConfig().with_gates([parse_gate("robust_accuracy[cw]@0.1=0.5")])


def test_with_gates_leaves_the_original_unchanged() -> None:
    config = AssessConfig(epsilons=[0.1])
    config.with_gates([parse_gate("robust_accuracy@0.2=0.5")])
    assert config.epsilons == [0.1]
    assert config.gates == []


def test_to_dict_records_the_gates_as_plain_data() -> None:
    values = AssessConfig().with_gates([parse_gate("clean_accuracy=0.9")]).to_dict()
    assert values["gates"] == [
        {"metric": "clean_accuracy", "threshold": 0.9, "source": "--fail-under"}
    ]
    assert values["epsilons"] == [0.02, 0.05, 0.1]


# load_config --------------------------------------------------------------------------------------


def test_load_config_without_a_path_gives_the_defaults() -> None:
    assert load_config(None) == AssessConfig()


def test_an_empty_config_file_gives_the_defaults(write_yaml: Any) -> None:
    assert load_config(write_yaml(None, text="")) == AssessConfig()


def test_load_config_reads_every_setting(write_yaml: Any) -> None:
    path = write_yaml(
        {
            "seed": 3,
            "epsilons": [0.1, 0.03],
            "norm": "l2",
            "attacks": ["pgd"],
            "attack_params": {"pgd": {"steps": 7, "restarts": 2}},
            "max_samples": None,
            "batch_size": 32,
            "examples": 0,
            "clip_range": [0.0, 1.0],
        }
    )
    config = load_config(path)
    assert config.seed == 3
    assert config.epsilons == [0.03, 0.1]
    assert config.norm == "l2"
    assert config.attacks == ["pgd"]
    assert config.attack_params == {"pgd": {"steps": 7, "restarts": 2}}
    assert config.max_samples is None
    assert (config.batch_size, config.examples, config.clip_range) == (32, 0, [0.0, 1.0])


def test_load_config_turns_the_policy_into_gates_named_after_the_file(write_yaml: Any) -> None:
    path = write_yaml(
        {
            "epsilons": [0.05],
            "policy": {"fail_under": {"clean_accuracy": 0.9, "robust_accuracy@0.2": 0.5}},
        },
        name="ci.yaml",
    )
    config = load_config(path)
    assert config.gates == [
        Gate("clean_accuracy", 0.9, "ci.yaml: policy.fail_under"),
        Gate("robust_accuracy@0.2", 0.5, "ci.yaml: policy.fail_under"),
    ]
    assert config.epsilons == [0.05, 0.2]


def test_an_empty_policy_adds_no_gates(write_yaml: Any) -> None:
    assert load_config(write_yaml({"policy": None})).gates == []
    assert load_config(write_yaml({"policy": {"fail_under": None}})).gates == []


@pytest.mark.parametrize(
    ("settings", "text", "fragment"),
    [
        (None, "epsilons: [0.1\n", "not valid YAML at line 2"),
        (None, "a: b: c\n", "not valid YAML"),
        (None, "- 0.1\n- 0.2\n", "the top level must be a mapping"),
        (None, "just a string\n", "the top level must be a mapping"),
        ({"epsilon": [0.1]}, None, "unknown setting(s) ['epsilon']"),
        ({"policy": ["clean_accuracy"]}, None, "policy must be a mapping"),
        ({"policy": {"fail_over": {}}}, None, "policy must be a mapping with fail_under"),
        ({"policy": {"fail_under": [0.5]}}, None, "policy.fail_under must map metrics"),
        ({"policy": {"fail_under": {"f1": 0.5}}}, None, "unknown gate metric 'f1'"),
        ({"policy": {"fail_under": {"clean_accuracy": "0.5"}}}, None, "must be a number"),
        ({"policy": {"fail_under": {"clean_accuracy": True}}}, None, "must be a number"),
        ({"policy": {"fail_under": {"clean_accuracy": 2}}}, None, "must be in [0, 1]"),
        ({"epsilons": [-0.1]}, None, "epsilons must be finite numbers > 0"),
    ],
)
def test_load_config_rejects_bad_files_with_one_line_messages(
    write_yaml: Any, settings: Any, text: str | None, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write_yaml(settings, text=text))
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_load_config_of_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_config(tmp_path / "absent.yaml")
    assert "absent.yaml" in str(info.value)


def test_load_config_of_a_binary_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


@pytest.mark.parametrize(
    ("settings", "path"),
    [
        ({"acknowledge_masking": "false"}, "acknowledge_masking"),  # a string is not a boolean
        ({"poisoning": "no"}, "poisoning"),
        ({"seed": True}, "seed"),  # nor is a boolean a number
        ({"batch_size": "256"}, "batch_size"),
    ],
)
def test_strings_and_booleans_never_pass_for_other_types(settings, path) -> None:
    with pytest.raises(ConfigError, match=f"^{path}: Input should be a valid"):
        AssessConfig(**settings)


def test_one_error_names_the_path_of_every_bad_value() -> None:
    with pytest.raises(ConfigError) as caught:
        AssessConfig(seed=-1, norm="l3", acknowledge_masking="yes", typo=1)
    message = str(caught.value)
    for path in ("seed:", "norm:", "acknowledge_masking:", "typo: unknown setting"):
        assert path in message
