"""Knockoff extraction against local models and an in-process HTTP stub of the gateway contract."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from mlwarden.attacks.extraction import (
    HttpVictim,
    KnockoffExtraction,
    LocalVictim,
    QueryRefused,
    apply_output_policy,
    targets_from_response,
)
from mlwarden.data.builtin import load_builtin
from mlwarden.errors import AttackError
from mlwarden.models.output_policy import OutputPolicy
from mlwarden.models.zoo import load_zoo_model

FAST = {"epochs": 5, "min_steps": 150}
SECRET = "mlw_0123456789ab_s3cr3t-value-that-must-never-leak-anywhere-00"


@pytest.fixture(scope="module")
def digits() -> Any:
    return load_builtin("digits")


@pytest.fixture(scope="module")
def victim_model() -> Any:
    return load_zoo_model("digits-cnn")


# ----------------------------------------------------------------------------- output policies
def test_output_policies_reveal_what_they_promise() -> None:
    probs = np.array([[0.6, 0.3, 0.1], [0.44, 0.33, 0.23]])
    full, hard = apply_output_policy(probs, "probabilities")
    assert not hard and np.allclose(full, probs)
    rounded, hard = apply_output_policy(probs, "rounded", decimals=0)
    assert np.allclose(rounded[0], [1, 0, 0])  # 0.6 rounds to 1
    assert np.allclose(rounded[1], [1 / 3] * 3)  # nothing reaches 0.5: the row says only "unsure"
    assert not hard
    top2, hard = apply_output_policy(probs, "top_k", k=2)
    assert np.allclose(top2, [[0.6, 0.3, 0.1], [0.44, 0.33, 0.23]]) and not hard
    labels, hard = apply_output_policy(probs, "label")
    assert hard and np.array_equal(labels, np.eye(3)[[0, 0]])
    with pytest.raises(AttackError, match="unknown output policy"):
        apply_output_policy(probs, "everything")


@pytest.mark.parametrize(
    ("mode", "decimals", "top_k", "local"),
    [
        ("probabilities", 2, 1, ("rounded", 2, 1)),
        ("top_k", 6, 3, ("top_k", 6, 3)),
        ("top_k", 6, 1, ("label", 6, 1)),
        ("label", 2, 1, ("label", 2, 1)),
    ],
)
def test_gateway_outputs_parse_to_the_simulated_policy(
    mode: str, decimals: int, top_k: int, local: tuple[str, int, int]
) -> None:
    """The gateway's own policy code, parsed back, equals the local simulation of that policy."""
    probs = torch.softmax(torch.randn(20, 10, generator=torch.Generator().manual_seed(0)), 1)
    probs_np = probs.numpy().astype(np.float64)
    outputs = json.loads(
        json.dumps(OutputPolicy(mode=mode, decimals=decimals, top_k=top_k).apply(probs_np))
    )
    parsed, hard = targets_from_response(outputs, 20, 10)
    expected, expected_hard = apply_output_policy(
        np.round(probs_np, decimals) if mode == "top_k" else probs_np,
        local[0],
        decimals=local[1],
        k=local[2],
    )
    assert hard == expected_hard
    np.testing.assert_allclose(parsed, expected, atol=1e-6)


def test_policy_names_are_the_one_output_policy_with_rounded_an_alias() -> None:
    from mlwarden.attacks.extraction.local_victim import output_policy_named

    assert output_policy_named("probabilities") == OutputPolicy("probabilities", decimals=None)
    assert output_policy_named("rounded", decimals=1) == OutputPolicy("probabilities", decimals=1)
    assert output_policy_named("top_k", k=3) == OutputPolicy("top_k", decimals=None, top_k=3)
    assert output_policy_named("label") == OutputPolicy("label")


def test_local_victim_given_a_gateway_policy_answers_what_the_gateway_would(victim_model) -> None:  # type: ignore[no-untyped-def]
    """A served policy (top 3, 1 decimal) simulated locally: the targets an HTTP client reads."""
    served = OutputPolicy(mode="top_k", top_k=3, decimals=1)
    x = np.random.default_rng(0).uniform(size=(16, 1, 8, 8)).astype(np.float32)
    answer = LocalVictim(victim_model, policy=served).query(x)
    outputs = json.loads(json.dumps(served.apply(victim_model.predict_proba(x))))
    expected, hard = targets_from_response(outputs, 16, 10)
    np.testing.assert_array_equal(answer.targets, expected)
    assert answer.hard == hard


# ----------------------------------------------------------------------------- local victims
def test_surrogate_reaches_high_fidelity_and_fidelity_is_agreement(digits, victim_model) -> None:  # type: ignore[no-untyped-def]
    attack = KnockoffExtraction(budget=400, checkpoints=(250,), seed=0, **FAST)
    result = attack.run(
        LocalVictim(victim_model),
        x_eval=digits.test.x,
        y_eval=digits.test.y,
        eval_labels=victim_model,
        pool=digits.train.x,
    )
    assert [p.queries for p in result.points] == [250, 400]
    assert result.queries == 400 and result.stopped is None and not result.hard_labels
    assert result.surrogate is not None
    with torch.no_grad():
        stolen = result.surrogate(torch.from_numpy(digits.test.x)).argmax(1).numpy()
    assert result.final is not None
    assert result.final.fidelity == pytest.approx(
        np.mean(stolen == victim_model.predict(digits.test.x))
    )
    assert result.final.accuracy == pytest.approx(np.mean(stolen == digits.test.y))
    assert result.final.fidelity > 0.85  # chance agreement is about 0.1
    assert result.victim_accuracy is not None and result.victim_accuracy > 0.9


def test_same_seed_same_result_different_seed_differs(digits, victim_model) -> None:  # type: ignore[no-untyped-def]
    def run(seed: int) -> list[Any]:
        result = KnockoffExtraction(
            budget=250, checkpoints=(), query_data="random", seed=seed, **FAST
        ).run(LocalVictim(victim_model), x_eval=digits.test.x, eval_labels=victim_model)
        return [p.to_dict() for p in result.points]

    assert run(0) == run(0)
    assert run(0) != run(1)


def test_quota_ends_the_attack_with_a_partial_result(digits, victim_model) -> None:  # type: ignore[no-untyped-def]
    victim = LocalVictim(victim_model, policy="label", max_queries=300)
    result = KnockoffExtraction(budget=1000, seed=0, **FAST).run(
        victim, x_eval=digits.test.x, eval_labels=victim_model, pool=digits.train.x
    )
    assert result.stopped == "quota" and result.queries == 300 and result.hard_labels
    assert [p.queries for p in result.points] == [250, 300]
    assert result.final is not None and result.final.fidelity is not None


def test_pool_exhaustion_continues_with_jacobian_augmentation(digits, victim_model) -> None:  # type: ignore[no-untyped-def]
    attack = KnockoffExtraction(budget=300, checkpoints=(100,), pool_limit=100, seed=0, **FAST)
    seen: list[np.ndarray] = []

    class Recording(LocalVictim):
        def _query(self, x: np.ndarray) -> Any:
            seen.append(x.copy())
            return super()._query(x)

    attack.run(
        Recording(victim_model), x_eval=digits.test.x, eval_labels=victim_model, pool=digits.train.x
    )
    queried = np.concatenate(seen)
    assert len(queried) == 300
    # after the 100 pool samples every query is an earlier one moved by exactly ±λ per pixel
    # (or clipped to the valid range)
    later = queried[100:].reshape(200, -1)
    earlier = queried[:100].reshape(100, -1)
    steps = np.abs(later[:, None, :] - earlier[None, :, :]).max(axis=2).min(axis=1)
    assert np.all(steps <= 0.1 + 1e-6)
    assert queried.min() >= 0.0 and queried.max() <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"budget": 0}, "budget"),
        ({"budget": 10, "query_data": "imagenet"}, "query_data"),
        ({"budget": 10, "lr": 0.0}, "lr"),
    ],
)
def test_bad_parameters_are_attack_errors(kwargs: dict, match: str, digits, victim_model) -> None:  # type: ignore[no-untyped-def, type-arg]
    with pytest.raises(AttackError, match=match):
        KnockoffExtraction(**kwargs).run(
            LocalVictim(victim_model), x_eval=digits.test.x, pool=digits.train.x
        )


def test_pool_of_the_wrong_shape_is_refused(digits, victim_model) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AttackError, match="shape"):
        KnockoffExtraction(budget=10).run(
            LocalVictim(victim_model), x_eval=digits.test.x, pool=np.zeros((5, 30), np.float32)
        )


# ----------------------------------------------------------------------------- HTTP victims
class GatewayStub:
    """The gateway's HTTP contract in a few lines: auth, outputs by mode, 429s, 403, 413."""

    def __init__(
        self,
        model: Any,
        *,
        mode: str = "probabilities",
        quota: int | None = None,
        rate_limit_every: int = 0,
        block_after: int | None = None,
        max_batch: int = 64,
    ) -> None:
        self.model = model
        self.policy = OutputPolicy(mode=mode, decimals=2)
        self.quota = quota
        self.rate_limit_every = rate_limit_every
        self.block_after = block_after
        self.max_batch = max_batch
        self.requests = 0
        self.answered = 0
        self.answered_requests = 0
        self.seen_headers: list[dict[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen_headers.append(dict(request.headers))
        if request.headers.get("authorization") != f"Bearer {SECRET}":
            return httpx.Response(401, json={"detail": "missing or invalid API key"})
        if request.url.path == "/v1/models/digits":
            return httpx.Response(
                200,
                json={
                    "name": "digits",
                    "input_shape": [1, 8, 8],
                    "n_classes": 10,
                    "clip_range": [0.0, 1.0],
                },
            )
        if request.url.path != "/v1/models/digits/predict":
            return httpx.Response(404, json={"detail": "no such model"})
        self.requests += 1
        if self.block_after is not None and self.answered >= self.block_after:
            return httpx.Response(403, json={"detail": "this key is blocked (extraction monitor)"})
        if self.rate_limit_every and self.requests % self.rate_limit_every == 0:
            return httpx.Response(429, headers={"Retry-After": "1"}, json={"detail": "rate limit"})
        if self.quota is not None and self.answered_requests >= self.quota:
            return httpx.Response(429, headers={"Retry-After": "86000"}, json={"detail": "quota"})
        inputs = np.asarray(json.loads(request.content)["inputs"], dtype=np.float32)
        if len(inputs) > self.max_batch:
            return httpx.Response(413, json={"detail": "batch too large"})
        self.answered += len(inputs)
        self.answered_requests += 1
        outputs = self.policy.apply(self.model.predict_proba(inputs))
        return httpx.Response(
            200, json={"model": "digits", "outputs": outputs, "policy": "x", "alerts": []}
        )


def _http_victim(stub: GatewayStub, sleeps: list[float], **kwargs: Any) -> HttpVictim:
    client = httpx.Client(transport=httpx.MockTransport(stub), base_url="http://gateway")
    return HttpVictim(
        "http://gateway", "digits", SECRET, client=client, sleep=sleeps.append, **kwargs
    )


def test_http_victim_honours_retry_after_and_counts_queries(digits, victim_model) -> None:  # type: ignore[no-untyped-def]
    stub, sleeps = GatewayStub(victim_model, rate_limit_every=4), []
    victim = _http_victim(stub, sleeps, batch_size=25)
    assert victim.input_shape == (1, 8, 8) and victim.n_classes == 10  # read from the API
    answer = victim.query(digits.test.x[:200])
    assert answer.targets.shape == (200, 10) and not answer.hard
    assert victim.queries == 200 == stub.answered
    assert sleeps and all(s == 1.0 for s in sleeps)
    assert victim.rate_limited == len(sleeps)


def test_http_quota_stops_the_attack_and_keeps_the_answered_part(digits, victim_model) -> None:  # type: ignore[no-untyped-def]
    stub, sleeps = GatewayStub(victim_model, mode="label", quota=10), []  # 10 requests a day
    result = KnockoffExtraction(budget=1000, seed=0, **FAST).run(
        _http_victim(stub, sleeps, batch_size=32, max_retry_wait_s=30),
        x_eval=digits.test.x,
        eval_labels=victim_model,
        pool=digits.train.x,
    )
    # 250 queries take 8 requests of 32 (the last of 26), two more requests add 64
    assert result.stopped == "quota" and result.requests == 10
    assert result.queries == 314 == stub.answered
    assert result.hard_labels and sleeps == []  # a one-day Retry-After is not waited for
    assert [p.queries for p in result.points] == [250, 314]
    assert SECRET not in json.dumps(result.to_dict())


def test_http_block_stops_the_attack(digits, victim_model) -> None:  # type: ignore[no-untyped-def]
    stub, sleeps = GatewayStub(victim_model, block_after=64), []
    victim = _http_victim(stub, sleeps, batch_size=32)
    with pytest.raises(QueryRefused) as refused:
        victim.query(digits.test.x[:200])
    assert refused.value.reason == "blocked" and victim.queries == 64
    assert refused.value.partial is not None and len(refused.value.partial.targets) == 64


def test_http_oversize_batches_are_split(digits, victim_model) -> None:  # type: ignore[no-untyped-def]
    stub, sleeps = GatewayStub(victim_model, mode="top_k", max_batch=10), []
    victim = _http_victim(stub, sleeps, batch_size=40)
    answer = victim.query(digits.test.x[:40])
    assert answer.targets.shape == (40, 10) and victim.queries == 40 and victim.batch_size <= 10


def test_cli_extract_writes_json_and_plot_and_never_the_key(
    tmp_path, digits, victim_model, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from mlwarden.cli.extract import run_extract

    stub = GatewayStub(victim_model, mode="label")
    client = httpx.Client(transport=httpx.MockTransport(stub), base_url="http://gateway")
    document = run_extract(
        target="http://gateway",
        budget=250,
        out=tmp_path,
        api_key=SECRET,
        model_name="digits",
        query_data="random",
        eval_data="builtin:digits:test",
        client=client,
    )
    assert document["queries"] == 250 and document["hard_labels"]
    # fidelity without an evaluator copy: the held-out labels are asked once, outside the budget
    assert document["fidelity"] is not None and stub.answered == 250 + len(digits.test.x)
    written = (tmp_path / "extraction.json").read_text()
    assert json.loads(written)["points"][-1]["queries"] == 250
    assert (tmp_path / "extraction.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for path in tmp_path.iterdir():
        assert SECRET.encode() not in path.read_bytes()


def test_cli_extract_against_a_local_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from mlwarden.cli.app import main

    code = main(
        [
            "attack",
            "extract",
            "--target",
            "zoo:digits-cnn",
            "--budget",
            "250",
            "--out",
            str(tmp_path),
            "--policy",
            "label",
            "--save-surrogate",
        ]
    )
    assert code == 0
    document = json.loads((tmp_path / "extraction.json").read_text())
    assert document["hard_labels"] and document["queries"] == 250
    assert (tmp_path / "surrogate.pt2").exists()
