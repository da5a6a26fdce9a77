"""The shipped WordNet 3.0 synonym table and a small part-of-speech heuristic.

The table (``wordnet_synonyms.json.gz``, built by ``scripts/build_synonyms.py``; WordNet's
licence in ``WORDNET_LICENSE``) maps a lower-case word to its parts of speech (``n``, ``v``,
``a``, ``r``; most senses first) and, for each, the single-word lemmas sharing a synset with it,
inflected like the word where regular rules allow. Users need neither nltk nor WordNet.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from mlwarden.data.text.corpora import _manifest, read_packaged
from mlwarden.data.text.tokens import STOP_WORDS
from mlwarden.errors import DataError

__all__ = ["POS_TAGS", "SynonymTable", "load_synonyms", "match_case"]

#: WordNet's parts of speech: noun, verb, adjective (with satellites), adverb.
POS_TAGS: tuple[str, ...] = ("n", "v", "a", "r")

_DETERMINERS = frozenset(
    [
        "the",
        "a",
        "an",
        "this",
        "that",
        "these",
        "those",
        "my",
        "your",
        "his",
        "her",
        "its",
        "our",
        "their",
        "every",
        "each",
        "some",
        "any",
        "no",
        "another",
        "such",
    ]
)
_VERB_CONTEXT = frozenset(
    [
        "to",
        "will",
        "would",
        "can",
        "could",
        "should",
        "may",
        "might",
        "must",
        "shall",
        "do",
        "does",
        "did",
        "not",
        "never",
        "i",
        "we",
        "you",
        "they",
        "he",
        "she",
        "it",
        "who",
    ]
)
_ADJ_CONTEXT = frozenset(
    [
        "very",
        "so",
        "too",
        "more",
        "most",
        "less",
        "least",
        "quite",
        "rather",
        "really",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "am",
        "become",
        "became",
        "seems",
        "seem",
    ]
)
_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("ly", "r"),
    ("ing", "v"),
    ("ed", "v"),
    ("tion", "n"),
    ("sion", "n"),
    ("ment", "n"),
    ("ness", "n"),
    ("ity", "n"),
    ("ism", "n"),
    ("ous", "a"),
    ("ful", "a"),
    ("ive", "a"),
    ("able", "a"),
    ("ible", "a"),
    ("ical", "a"),
    ("less", "a"),
)


def match_case(candidate: str, original: str) -> str:
    """``candidate`` written in the case pattern of ``original`` (``Good`` -> ``Fine``)."""
    if original.isupper() and len(original) > 1:
        return candidate.upper()
    if original[:1].isupper():
        return candidate[:1].upper() + candidate[1:]
    return candidate


class SynonymTable:
    """Word -> part of speech -> synonyms, with stop words never offered as candidates.

    Parameters
    ----------
    table
        ``{word: {pos: [synonyms]}}`` with lower-case words and POS tags from :data:`POS_TAGS`.
    """

    def __init__(self, table: dict[str, dict[str, list[str]]]) -> None:
        for word, entry in table.items():
            bad = set(entry) - set(POS_TAGS)
            if bad:
                raise DataError(f"synonym table entry {word!r} has unknown POS tags {sorted(bad)}")
        self._table = table

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and word.lower() in self._table

    def __len__(self) -> int:
        return len(self._table)

    def parts_of_speech(self, word: str) -> tuple[str, ...]:
        """The word's parts of speech in the table, the one with most senses first."""
        return tuple(self._table.get(word.lower(), {}))

    def synonyms(self, word: str, pos: str | None = None) -> list[str]:
        """Lower-case synonyms of ``word`` for ``pos`` (all parts of speech when ``None``).

        Stop words and the word itself are left out; the order is the table's (alphabetical
        within a part of speech), so candidate lists are deterministic.
        """
        if pos is not None and pos not in POS_TAGS:
            raise DataError(f"unknown part of speech {pos!r}; use one of {', '.join(POS_TAGS)}")
        entry = self._table.get(word.lower(), {})
        tags = [pos] if pos is not None else list(entry)
        seen: dict[str, None] = {}
        for tag in tags:
            for synonym in entry.get(tag, ()):
                if synonym != word.lower() and synonym not in STOP_WORDS:
                    seen.setdefault(synonym, None)
        return list(seen)

    def is_synonym(self, word: str, candidate: str) -> bool:
        """Whether ``candidate`` (any case) is one of ``word``'s synonyms in the table."""
        return candidate.lower() in self.synonyms(word)

    def guess_pos(self, words: Sequence[str], index: int) -> str | None:
        """A part of speech for ``words[index]`` from its table entry and its left neighbour.

        A deliberately small heuristic in place of a tagger (PWWS and TextFooler use one to keep
        substitutions grammatical): a word with one part of speech gets it; otherwise the
        previous word (a determiner suggests a noun, a pronoun or modal a verb, a copula or
        intensifier an adjective) and then the suffix choose among the word's own parts of
        speech; failing both, the part of speech with most senses. ``None`` for unknown words.
        """
        tags = self.parts_of_speech(words[index])
        if len(tags) <= 1:
            return tags[0] if tags else None
        previous = words[index - 1].lower() if index > 0 else ""
        wanted: tuple[str, ...] = ()
        if previous in _DETERMINERS:
            wanted = ("n", "a")
        elif previous in _VERB_CONTEXT:
            wanted = ("v",)
        elif previous in _ADJ_CONTEXT:
            wanted = ("a", "v")
        else:
            lower = words[index].lower()
            wanted = tuple(tag for suffix, tag in _SUFFIXES if lower.endswith(suffix))[:1]
        for tag in wanted:
            if tag in tags:
                return tag
        return tags[0]


@lru_cache(maxsize=1)
def load_synonyms() -> SynonymTable:
    """The shipped WordNet 3.0 synonym table (read once, digest-checked against the manifest)."""
    entry = _manifest()["synonyms"]
    payload = read_packaged(entry["file"], entry["sha256"])
    return SynonymTable(payload["table"])
