"""Partitions: disjoint, complete, seeded, and skewed the way each spec says."""

from __future__ import annotations

import numpy as np
import pytest

from mlwarden.data.builtin import load_builtin
from mlwarden.data.dataset import Dataset
from mlwarden.errors import ConfigError
from mlwarden.federated.partition import parse_partition, partition_dataset


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_builtin("digits").train


@pytest.mark.parametrize(
    "spec", ["iid", "dirichlet:0.5", "dirichlet:0.1", "by-class:2", "by-class:3"]
)
def test_partitions_are_disjoint_and_cover_every_sample(digits: Dataset, spec: str) -> None:
    parts = partition_dataset(digits, spec, 5, seed=0)
    assert len(parts) == 5
    # digits may contain duplicate images; compare multisets of (image, label) instead of indices
    pooled = sorted(
        r.tobytes() + bytes([int(y)]) for p in parts for r, y in zip(p.x, p.y, strict=True)
    )
    original = sorted(
        r.tobytes() + bytes([int(y)]) for r, y in zip(digits.x, digits.y, strict=True)
    )
    assert pooled == original
    assert sum(len(p) for p in parts) == len(digits)


def test_iid_parts_are_near_equal_with_every_class(digits: Dataset) -> None:
    parts = partition_dataset(digits, "iid", 5, seed=0)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    for p in parts:
        assert set(np.unique(p.y)) == set(range(10))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_by_class_gives_each_client_exactly_k_classes(digits: Dataset, k: int) -> None:
    parts = partition_dataset(digits, f"by-class:{k}", 10, seed=3)
    for p in parts:
        assert len(np.unique(p.y)) == k


def test_dirichlet_skew_grows_as_alpha_shrinks(digits: Dataset) -> None:
    def mean_classes(alpha: float) -> float:
        counts = []
        for seed in range(5):
            parts = partition_dataset(digits, f"dirichlet:{alpha}", 5, seed=seed)
            counts += [np.sum(np.bincount(p.y, minlength=10) >= 5) for p in parts]
        return float(np.mean(counts))

    # α = 100 is close to IID (all 10 classes well represented); α = 0.1 leaves few per client
    assert mean_classes(100.0) == 10.0
    assert mean_classes(0.1) < 5.0


def test_same_seed_same_split_and_another_seed_another(digits: Dataset) -> None:
    a = partition_dataset(digits, "dirichlet:0.5", 5, seed=7)
    b = partition_dataset(digits, "dirichlet:0.5", 5, seed=7)
    c = partition_dataset(digits, "dirichlet:0.5", 5, seed=8)
    assert [p.digest() for p in a] == [p.digest() for p in b]
    assert [p.digest() for p in a] != [p.digest() for p in c]


def test_the_callers_dataset_is_not_changed(digits: Dataset) -> None:
    before = digits.digest()
    partition_dataset(digits, "by-class:2", 5, seed=0)
    assert digits.digest() == before


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("dirichlet:0", "ALPHA must be a positive number"),
        ("dirichlet:abc", "ALPHA must be a positive number"),
        ("by-class:0", "K must be a positive whole number"),
        ("by-class:1.5", "K must be a positive whole number"),
        ("shards", "is unknown"),
    ],
)
def test_bad_specs_name_what_is_wrong(spec: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_partition(spec)


def test_by_class_refuses_to_leave_classes_out(digits: Dataset) -> None:
    with pytest.raises(ConfigError, match="some would be left out"):
        partition_dataset(digits, "by-class:1", 5, seed=0)


def test_one_client_is_refused(digits: Dataset) -> None:
    with pytest.raises(ConfigError, match="--clients must be a whole number ≥ 2"):
        partition_dataset(digits, "iid", 1, seed=0)
