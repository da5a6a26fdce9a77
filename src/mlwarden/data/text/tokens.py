"""Word tokens with the text around them kept, so substitutions change nothing else.

A token is a run of ASCII letters with at most one inner apostrophe (``don't``); everything else
(spaces, punctuation, digits) is kept verbatim as the gap between tokens. Budgets on the
share of changed tokens (the synonym attack's 5%) count these word tokens, not punctuation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from mlwarden.errors import DataError

__all__ = ["STOP_WORDS", "TokenizedText", "tokenize"]

#: English stop words (scikit-learn's list of 318): never substituted by the synonym attack.
STOP_WORDS: frozenset[str] = frozenset(ENGLISH_STOP_WORDS)

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_SENTENCE_END = re.compile(r"[.!?:\n]")


@dataclass(frozen=True)
class TokenizedText:
    """A text split into word tokens and the gaps around them.

    ``gaps[i]`` is the text before ``words[i]``; ``gaps[-1]`` is the text after the last word, so
    ``gaps`` has one more element than ``words`` and :meth:`join` rebuilds the text exactly.
    """

    words: tuple[str, ...]
    gaps: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.words)

    def join(self, words: tuple[str, ...] | list[str] | None = None) -> str:
        """The text with ``words`` (default: the original words) between the original gaps."""
        words = self.words if words is None else tuple(words)
        if len(words) != len(self.words):
            raise DataError(f"join needs {len(self.words)} words, got {len(words)}")
        parts = [self.gaps[0]]
        for word, gap in zip(words, self.gaps[1:], strict=True):
            parts.append(word)
            parts.append(gap)
        return "".join(parts)

    def substitute(self, replacements: Mapping[int, str]) -> str:
        """The text with the words at the given positions replaced."""
        words = list(self.words)
        for index, word in replacements.items():
            if not 0 <= index < len(words):
                raise DataError(f"token position {index} is outside 0..{len(words) - 1}")
            words[index] = word
        return self.join(words)

    def sentence_initial(self, index: int) -> bool:
        """Whether word ``index`` starts a sentence: the first word, or after ``.!?:`` or a newline."""
        return index == 0 or bool(_SENTENCE_END.search(self.gaps[index]))

    def is_named_entity(self, index: int) -> bool:
        """A capitalised word that does not start a sentence (``Obama``, ``Medicare``).

        A heuristic stand-in for a named-entity tagger: names are what the synonym attack must
        keep, and in English they are the capitalised words inside sentences.
        """
        word = self.words[index]
        return word[:1].isupper() and not self.sentence_initial(index)


def tokenize(text: str) -> TokenizedText:
    """Split ``text`` into word tokens and the gaps between them (see the module docstring)."""
    if not isinstance(text, str):
        raise DataError(f"tokenize needs a string, got {type(text).__name__}")
    words: list[str] = []
    gaps: list[str] = []
    position = 0
    for match in _WORD.finditer(text):
        gaps.append(text[position : match.start()])
        words.append(match.group())
        position = match.end()
    gaps.append(text[position:])
    return TokenizedText(words=tuple(words), gaps=tuple(gaps))
