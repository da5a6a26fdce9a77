"""The character language model: DPGRU and nn.GRU agree, saving round-trips, bad files refused,
deduplication keeps one copy of each line."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mlwarden.errors import DataError, ModelError
from mlwarden.models.text_lm import (
    CharGRU,
    CharLanguageModel,
    CharVocabulary,
    deduplicate_lines,
    encode_batch,
    fit_language_model,
    split_lines,
)


def test_private_network_computes_what_its_standard_copy_computes() -> None:
    torch.manual_seed(0)
    private = CharGRU(12, embed_dim=8, hidden_size=16, num_layers=2, private=True).eval()
    standard = private.standard_copy()
    assert isinstance(standard.gru, torch.nn.GRU)
    tokens = torch.randint(0, 12, (3, 9))
    with torch.no_grad():
        a, state_a = private(tokens)
        b, state_b = standard(tokens)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state_a, state_b, atol=1e-5, rtol=1e-5)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model = fit_language_model(["abc abc", "cab"], hidden_size=8, epochs=1, seed=0)
    path = model.save(tmp_path / "lm.pt")
    loaded = CharLanguageModel.load(path)
    assert loaded.vocab == model.vocab
    assert loaded.metadata == model.metadata
    assert loaded.mean_loss(["abc"]) == pytest.approx(model.mean_loss(["abc"]))


def test_loading_something_else_is_a_model_error(tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ModelError, match="not a language model"):
        CharLanguageModel.load(other)
    with pytest.raises(ModelError, match="does not exist"):
        CharLanguageModel.load(tmp_path / "missing.pt")


def test_same_seed_same_model_different_seed_differs() -> None:
    lines = ["hello there", "general kenobi"]
    a = fit_language_model(lines, hidden_size=8, epochs=2, seed=0)
    b = fit_language_model(lines, hidden_size=8, epochs=2, seed=0)
    c = fit_language_model(lines, hidden_size=8, epochs=2, seed=1)
    assert a.mean_loss(lines) == b.mean_loss(lines)
    assert a.mean_loss(lines) != c.mean_loss(lines)


def test_encoding_frames_and_pads_lines() -> None:
    vocab = CharVocabulary("ab")
    assert encode_batch(vocab, ["ab", "b"]).tolist() == [[1, 4, 5, 2], [1, 5, 2, 0]]
    assert vocab.decode([1, 4, 3, 5, 2]) == "a\ufffdb"
    assert split_lines(["abcde\n\nxy"], 2) == ["ab", "cd", "e", "xy"]
    with pytest.raises(DataError, match="vocabulary"):
        vocab.require("abc", "the prefix")


def test_deduplication_keeps_one_copy_of_each_line_in_first_seen_order_with_its_count() -> None:
    lines = ["b", "a", "b", "c", "b", "a", "a b", "c"]
    deduplicated = deduplicate_lines(lines)
    assert deduplicated.lines == ("b", "a", "c", "a b")
    assert deduplicated.counts == (3, 2, 2, 1)
    assert deduplicated.n_input == len(lines)
    assert deduplicated.duplicates_removed == 4
    assert deduplicated.max_count == 3
    assert lines == ["b", "a", "b", "c", "b", "a", "a b", "c"]  # the input is not changed


def test_deduplication_merges_only_identical_lines() -> None:
    # a secret inside lines that differ elsewhere, or with other case or spacing, stays in each
    lines = ["pin 1 2 3", "my pin 1 2 3", "PIN 1 2 3", "pin 1 2 3 ", "pin 1 2 3"]
    deduplicated = deduplicate_lines(lines)
    assert deduplicated.lines == ("pin 1 2 3", "my pin 1 2 3", "PIN 1 2 3", "pin 1 2 3 ")
    assert deduplicated.counts == (2, 1, 1, 1)


@given(st.lists(st.sampled_from(["x", "y", "z", "x y", ""]), max_size=40))
def test_deduplication_is_the_multiset_of_its_input(lines: list[str]) -> None:
    deduplicated = deduplicate_lines(lines)
    assert len(set(deduplicated.lines)) == len(deduplicated.lines)
    assert dict(zip(deduplicated.lines, deduplicated.counts, strict=True)) == Counter(lines)
    assert deduplicated.duplicates_removed == len(lines) - len(set(lines))
