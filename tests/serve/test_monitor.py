"""The extraction monitor: PRADA, share statistics, bounded state, thread safety."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import scipy.stats

from mlwarden.data.builtin import load_builtin
from mlwarden.errors import ConfigError
from mlwarden.serve.monitor import ExtractionMonitor, MonitorConfig


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    return load_builtin("digits")


def _probs_from_labels(labels: np.ndarray, confidence: float = 0.9) -> np.ndarray:
    """Confident probabilities for given labels (the monitor only needs argmax and margin)."""
    probs = np.full((len(labels), 10), (1 - confidence) / 9, dtype=np.float32)
    probs[np.arange(len(labels)), labels] = confidence
    return probs


def _first_alerts(monitor: ExtractionMonitor, x: np.ndarray, probs: np.ndarray) -> dict[str, int]:
    first: dict[str, int] = {}
    for i in range(len(x)):
        for alert in monitor.observe("key", "digits", x[i : i + 1], probs[i : i + 1]):
            first.setdefault(alert.kind, i + 1)
    return first


def _line_stream(gaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Queries on a line, one class, spaced by increasing ``gaps``: each query's nearest earlier
    query is the one before it and joins the growing set, so PRADA's distance set is ``gaps``."""
    assert np.all(np.diff(gaps) >= 0)
    positions = np.concatenate([[0.0], np.cumsum(gaps)])
    x = np.zeros((len(positions), 1, 8, 8), dtype=np.float32)
    x[:, 0, 0, 0] = positions
    return x, _probs_from_labels(np.zeros(len(positions), dtype=np.int64))


def test_prada_alerts_at_the_first_test_where_scipy_shapiro_w_falls_below_delta() -> None:
    # 30 evenly spread distances (W about 0.96), then geometrically growing ones (W falls)
    gaps = np.concatenate([np.linspace(0.02, 0.04, 30), 0.04 * 1.15 ** np.arange(1, 30)])
    x, probs = _line_stream(gaps)
    config = MonitorConfig(
        enabled=("prada",), prada_min_queries=20, prada_test_every=1, prada_delta=0.9
    )
    monitor = ExtractionMonitor(config)
    alerts = [
        a
        for i in range(len(x))
        for a in monitor.observe("key", "m", x[i : i + 1], probs[i : i + 1])
    ]
    w = {n: scipy.stats.shapiro(gaps[:n]).statistic for n in range(20, len(gaps) + 1)}
    crossing = min(n for n, value in w.items() if value < 0.9)
    assert w[crossing - 1] > 0.9 > w[crossing]  # the case decides the alert: W crosses delta
    (alert,) = alerts
    assert alert.queries == crossing + 1  # the first query has no earlier one to measure from
    assert alert.score == pytest.approx(w[crossing], abs=1e-4)  # float32 inputs, float64 W


def test_a_repeated_query_gives_w_of_one_without_warnings() -> None:
    """All distances 0: W is undefined (SciPy warns); the monitor reads it as no evidence."""
    x = np.full((30, 1, 8, 8), 0.5, dtype=np.float32)
    monitor = ExtractionMonitor(MonitorConfig(enabled=("prada",), prada_min_queries=10))
    assert monitor.observe("key", "m", x, _probs_from_labels(np.zeros(30, dtype=np.int64))) == []
    assert monitor.state("key", "m")["prada_w"] == 1.0


def test_prada_window_stays_within_the_shapiro_wilk_range() -> None:
    assert MonitorConfig(prada_window=5000).prada_window == 5000
    with pytest.raises(ConfigError, match="prada_window must be at most 5000"):
        MonitorConfig(prada_window=5001)


def test_benign_iid_stream_raises_no_alert(digits) -> None:  # type: ignore[no-untyped-def]
    """All 1,797 digits (test then train split, shuffled) from one key: a benign i.i.d. stream."""
    from mlwarden.models.zoo import load_zoo_model

    x = np.concatenate([digits.test.x, digits.train.x])
    order = np.random.default_rng(0).permutation(len(x))
    probs = load_zoo_model("digits-cnn").predict_proba(x[order])  # the served model's outputs
    monitor = ExtractionMonitor(MonitorConfig(), reference=digits.train.x)
    assert _first_alerts(monitor, x[order], probs) == {}
    state = monitor.state("key", "digits")
    assert state["queries"] == len(x)
    assert state["prada_w"] is not None and state["prada_w"] > 0.95


def test_jacobian_style_stream_trips_prada_within_500_queries(digits) -> None:  # type: ignore[no-untyped-def]
    """50 natural seeds, then rounds of x + 0.1·sign(direction): Papernot-style synthetic data."""
    rng = np.random.default_rng(0)
    current, rounds = digits.test.x[:50], [digits.test.x[:50]]
    labels = [digits.test.y[:50]]
    for _ in range(8):
        current = np.clip(current + 0.1 * np.sign(rng.standard_normal(current.shape)), 0, 1)
        rounds.append(current.astype(np.float32))
        labels.append(digits.test.y[:50])
    monitor = ExtractionMonitor(MonitorConfig(), reference=digits.train.x)
    first = _first_alerts(
        monitor, np.concatenate(rounds), _probs_from_labels(np.concatenate(labels))
    )
    assert "prada" in first and first["prada"] <= 500


def test_uniform_noise_stream_is_flagged_out_of_distribution(digits) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, size=(300, 1, 8, 8)).astype(np.float32)
    monitor = ExtractionMonitor(MonitorConfig(), reference=digits.train.x)
    first = _first_alerts(monitor, x, _probs_from_labels(rng.integers(0, 10, 300)))
    assert first.get("out_of_distribution") == MonitorConfig().min_queries


def test_boundary_and_duplicate_probing_raise_their_alerts() -> None:
    rng = np.random.default_rng(2)
    base = rng.uniform(0, 1, size=(1, 64)).astype(np.float32)
    x = np.clip(base + 0.001 * rng.standard_normal((100, 64)), 0, 1).astype(np.float32)
    probs = np.full((100, 10), 0.02, dtype=np.float32)
    probs[:, 0], probs[:, 1] = 0.42, 0.42  # top-1 minus top-2 margin 0
    monitor = ExtractionMonitor(MonitorConfig(enabled=("low_margin", "near_duplicate")))
    first = _first_alerts(monitor, x, probs)
    assert first == {"low_margin": 64, "near_duplicate": 64}
    assert monitor.action("key", "digits") == "throttle"


def test_each_kind_fires_once_and_sets_its_action(digits) -> None:  # type: ignore[no-untyped-def]
    config = MonitorConfig(
        actions={"out_of_distribution": "block"}, enabled=("out_of_distribution",)
    )
    monitor = ExtractionMonitor(config, reference=digits.train.x)
    noise = np.random.default_rng(3).uniform(0, 1, size=(200, 1, 8, 8)).astype(np.float32)
    probs = _probs_from_labels(np.zeros(200, dtype=np.int64))
    alerts = monitor.observe("key", "digits", noise, probs)
    assert [a.kind for a in alerts].count("out_of_distribution") == 1
    assert alerts[0].action == "block" and alerts[0].key_id == "key"
    assert monitor.observe("key", "digits", noise[:10], probs[:10]) == []
    assert monitor.action("key", "digits") == "block"
    assert monitor.action("other", "digits") == "none"  # keys are tracked separately


def test_state_stays_bounded_on_a_long_stream() -> None:
    config = MonitorConfig(window=32, prada_window=50, prada_min_queries=20, prada_max_per_class=16)
    monitor = ExtractionMonitor(config)
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1, size=(2000, 16)).astype(np.float32)
    monitor.observe("key", "m", x, _probs_from_labels(rng.integers(0, 10, 2000)))
    stream = monitor._streams[("key", "m")]
    assert stream.queries == 2000
    assert stream.recent.count == 32 and stream.recent.data.shape == (32, 16)
    assert stream.prada_distances.count == 50
    assert all(
        c.growing.count <= 16 and len(c.distances) <= 50 for c in stream.prada_classes.values()
    )
    assert len(stream.buckets) <= 4 * 32


def test_tracked_streams_are_capped_least_recently_used_first() -> None:
    monitor = ExtractionMonitor(MonitorConfig(max_tracked=3))
    x, p = np.zeros((1, 4), np.float32), _probs_from_labels(np.array([0]))
    for key in ("a", "b", "c", "a", "d"):
        monitor.observe(key, "m", x, p)
    assert len(monitor) == 3
    assert monitor.state("b", "m")["queries"] == 0  # b was the least recently used
    assert monitor.state("a", "m")["queries"] == 2


def test_concurrent_observations_are_all_counted() -> None:
    monitor = ExtractionMonitor(MonitorConfig(window=64))
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, size=(200, 8)).astype(np.float32)
    p = _probs_from_labels(rng.integers(0, 10, 200))

    def work() -> None:
        for i in range(0, 200, 4):
            monitor.observe("shared", "m", x[i : i + 4], p[i : i + 4])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert monitor.state("shared", "m")["queries"] == 800


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"prada_delta": 1.5}, "prada_delta"),
        ({"window": 0}, "window"),
        ({"actions": {"prada": "explode"}}, "explode"),
        ({"actions": {"nope": "block"}}, "nope"),
        ({"windw": 3}, "windw"),
        ({"prada_min_queries": 2}, "prada_min_queries"),
    ],
)
def test_bad_settings_are_config_errors_naming_the_value(options: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError, match=match):
        MonitorConfig.from_dict(options)


def test_observe_checks_the_probability_shape() -> None:
    monitor = ExtractionMonitor()
    with pytest.raises(ConfigError, match="probs"):
        monitor.observe("k", "m", np.zeros((2, 4), np.float32), np.zeros((3, 10), np.float32))


def test_a_reference_of_another_input_size_is_skipped_not_an_error(digits) -> None:  # type: ignore[no-untyped-def]
    """One gateway, two models: the digits reference must not break a 30-feature model's stream."""
    monitor = ExtractionMonitor(MonitorConfig(), reference=digits.train.x)
    x = np.random.default_rng(6).uniform(0, 1, size=(100, 30)).astype(np.float32)
    alerts = monitor.observe("key", "tabular", x, _probs_from_labels(np.zeros(100, np.int64)))
    assert "out_of_distribution" not in {a.kind for a in alerts}
    assert monitor.state("key", "tabular")["ood_share"] is None
    assert monitor.state("key", "tabular")["queries"] == 100


def test_shapiro_wilk_runs_every_test_every_queries_after_the_window_fills(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The test's cadence holds on long streams (it once ran on every query past the window)."""
    import mlwarden.serve.monitor as monitor_module

    calls: list[int] = []
    real = monitor_module._shapiro_w

    def counted(distances: np.ndarray) -> float:
        calls.append(len(distances))
        return real(distances)

    monkeypatch.setattr(monitor_module, "_shapiro_w", counted)
    config = MonitorConfig.from_dict(
        {"prada_window": 100, "prada_min_queries": 50, "prada_test_every": 10, "prada_delta": 0.0}
    )
    monitor = ExtractionMonitor(config)
    rng = np.random.default_rng(0)
    x = rng.random((600, 1, 8, 8)).astype(np.float32)
    monitor.observe("key", "digits", x, np.full((600, 2), 0.5, dtype=np.float32))
    # 599 distances (the first query of a class starts its growing set); tests at 50, 60, ... 590
    assert len(calls) == 55 and max(calls) == 100


def test_running_shares_equal_a_brute_force_recount_over_the_window(digits) -> None:  # type: ignore[no-untyped-def]
    """The window's shares are kept as running counts and nearest distances from cached norms;
    recomputed from scratch over the last ``window`` queries they agree exactly, before and long
    after the rings wrap."""
    rng = np.random.default_rng(3)
    window, radius = 32, 0.05
    x = digits.train.x[rng.integers(0, len(digits.train.x), 300)].astype(np.float32)
    x[::3] = x[1::3][: len(x[::3])] + 0.01  # near duplicates of a neighbour
    probs = rng.dirichlet(np.full(10, 0.3), size=len(x)).astype(np.float32)
    monitor = ExtractionMonitor(
        MonitorConfig(window=window, duplicate_radius=radius, min_queries=1000),
        reference=digits.train.x[:200],
    )
    flat = x.reshape(len(x), -1).astype(np.float64)
    ref = digits.train.x[:200].reshape(200, -1).astype(np.float64)
    ref_nn = np.sort(np.linalg.norm(ref[:, None] - ref[None], axis=2), axis=1)[:, 1]
    ood_radius = np.quantile(ref_nn, 0.99)
    low, dup, ood = [], [], []
    for i in range(len(x)):
        monitor.observe("k", "m", x[i : i + 1], probs[i : i + 1])
        top = np.sort(probs[i])[-2:]
        low.append(top[1] - top[0] < 0.2)
        earlier = flat[max(0, i - window) : i]
        nearest = np.linalg.norm(earlier - flat[i], axis=1).min() if len(earlier) else np.inf
        dup.append(nearest / np.sqrt(flat.shape[1]) <= radius)
        ood.append(np.linalg.norm(ref - flat[i], axis=1).min() > ood_radius)
        if i + 1 in (20, 32, 33, 100, 300):
            state = monitor.state("k", "m")
            recent = slice(max(0, i + 1 - window), i + 1)
            assert state["low_margin_share"] == pytest.approx(np.mean(low[recent]), abs=1e-12)
            assert state["duplicate_share"] == pytest.approx(np.mean(dup[recent]), abs=1e-12)
            assert state["ood_share"] == pytest.approx(np.mean(ood[recent]), abs=1e-12)
    assert 0 < np.mean(dup[-window:]) < 1  # the recount is not trivially all or nothing
