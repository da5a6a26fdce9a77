"""Text datasets, the tokenizer and the shipped synonym table."""

from __future__ import annotations

import gzip
import hashlib
import json
from importlib import resources

import numpy as np
import pytest

from mlwarden.data import load_dataset
from mlwarden.data.text import (
    STOP_WORDS,
    SynonymTable,
    TextDataset,
    corpora,
    load_synonyms,
    load_text_builtin,
    tokenize,
)
from mlwarden.errors import DataError


def test_convention_speeches_are_2380_paragraphs_of_30_tokens_with_party_labels() -> None:
    train = load_dataset("builtin:convention-speeches:train")
    test = load_dataset("builtin:convention-speeches")

    assert isinstance(test, TextDataset)
    assert (len(train), len(test)) == (1666, 714)
    assert test.kind == "text" and test.n_classes == 2
    assert test.class_names == ("democrat", "republican")
    assert min(len(t.split()) for t in train.texts + test.texts) >= 30
    assert not set(train.texts) & set(test.texts)
    # stage directions and speaker prefixes were removed by the builder
    assert not any("applause" in t.lower() or "OBAMA:" in t for t in test.texts)


def test_rt_snippets_are_12808_fresh_or_rotten_snippets() -> None:
    train, test = load_text_builtin("rt-snippets")

    assert len(train) + len(test) == 12808
    assert test.class_names == ("rotten", "fresh")
    assert int((np.concatenate([train.y, test.y]) == 1).sum()) == 7403


def test_shipped_files_match_the_manifest_digests() -> None:
    manifest = json.loads(
        resources.files("mlwarden.data.text").joinpath("manifest.json").read_text()
    )
    entries = [*manifest["datasets"].values(), manifest["synonyms"]]
    for entry in entries:
        raw = resources.files("mlwarden.data.text").joinpath(entry["file"]).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == entry["sha256"]
    speeches = json.loads(
        gzip.decompress(
            resources.files("mlwarden.data.text")
            .joinpath("convention_speeches.json.gz")
            .read_bytes()
        )
    )
    assert len(speeches["texts"]) == manifest["datasets"]["convention-speeches"]["n_texts"]


def test_a_damaged_data_file_is_refused() -> None:
    with pytest.raises(DataError, match="damaged"):
        corpora.read_packaged("rt_snippets.json.gz", "0" * 64)


def test_unknown_text_dataset_names_the_choices() -> None:
    with pytest.raises(DataError, match="builtin:convention-speeches"):
        load_text_builtin("imdb")


def test_text_dataset_digest_depends_on_texts_and_labels() -> None:
    a = TextDataset.from_texts(["one text", "two"], [0, 1], name="a")
    b = TextDataset.from_texts(["one text", "two"], [0, 1], name="b")
    c = TextDataset.from_texts(["one text", "tw0"], [0, 1], name="c")
    d = TextDataset.from_texts(["one text", "two"], [1, 1], name="d")

    assert a.digest() == b.digest()
    assert len({a.digest(), c.digest(), d.digest()}) == 3


@pytest.mark.parametrize(
    ("texts", "labels", "message"),
    [
        (["ok", 3], [0, 1], "element 1 is int"),
        (["ok", "fine"], [0], "2 texts but y has 1 labels"),
        (["ok"], [2], r"labels must lie in \[0, 1\]"),
    ],
)
def test_bad_text_data_is_named(texts: list[object], labels: list[int], message: str) -> None:
    with pytest.raises(DataError, match=message):
        TextDataset.from_texts(texts, labels, name="bad", n_classes=2)  # type: ignore[arg-type]


def test_tokenize_keeps_every_character_between_words() -> None:
    text = "  Don't stop -- we've 2 more (big) jobs!\nYes."
    tokens = tokenize(text)

    assert tokens.words == ("Don't", "stop", "we've", "more", "big", "jobs", "Yes")
    assert tokens.join() == text
    assert tokens.substitute({5: "tasks"}) == text.replace("jobs", "tasks")


def test_named_entities_are_capitalised_words_inside_sentences() -> None:
    tokens = tokenize("Today Obama spoke. Then Romney answered")

    assert [tokens.is_named_entity(i) for i in range(len(tokens))] == [
        False,
        True,
        False,
        False,
        True,
        False,
    ]


def test_synonym_table_holds_wordnet_synsets_by_part_of_speech() -> None:
    table = load_synonyms()

    # WordNet 3.0: "fight" shares the verb synset of "struggle" and the noun synset of "battle"
    assert "struggle" in table.synonyms("fight", "v")
    assert "battle" in table.synonyms("fight", "n")
    assert "battle" not in table.synonyms("fight", "v")
    assert table.parts_of_speech("Fight") == ("n", "v")
    assert len(table) > 40000
    # stop words are never candidates ("us" is a WordNet synonym of "america")
    assert "us" not in table.synonyms("america")
    assert "the" not in table and "the" in STOP_WORDS


def test_inflected_words_get_inflected_synonyms() -> None:
    table = load_synonyms()

    assert "chores" in table.synonyms("jobs", "n")
    assert "struggling" in table.synonyms("fighting", "v")


def test_pos_heuristic_reads_the_left_neighbour() -> None:
    table = SynonymTable({"fight": {"n": ["battle"], "v": ["struggle"]}})

    assert table.guess_pos(["the", "fight"], 1) == "n"
    assert table.guess_pos(["we", "fight"], 1) == "v"
    assert table.guess_pos(["fight"], 0) == "n"
    assert table.guess_pos(["unknownword"], 0) is None


def test_bad_pos_tag_is_named() -> None:
    with pytest.raises(DataError, match="unknown part of speech 'x'"):
        load_synonyms().synonyms("fight", "x")
