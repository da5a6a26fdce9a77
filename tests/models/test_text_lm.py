"""The character language model: DPGRU and nn.GRU agree, saving round-trips, bad files refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mlwarden.errors import DataError, ModelError
from mlwarden.models.text_lm import (
    CharGRU,
    CharLanguageModel,
    CharVocabulary,
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
