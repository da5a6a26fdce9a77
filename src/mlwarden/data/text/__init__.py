"""Text as a modality: text datasets, the tokenizer every text check shares, the synonym lexicon.

* :class:`TextDataset`: a :class:`~mlwarden.data.dataset.Dataset` whose ``x`` is a 1-D array
  of strings (``kind="text"``); ``texts`` gives them as a list.
* ``builtin:convention-speeches`` and ``builtin:rt-snippets``: two shipped corpora (data card
  in ``README.md`` beside this module; provenance and digests in ``manifest.json``).
* :func:`tokenize` / :class:`TokenizedText`: word tokens with the text between them kept, so a
  text rebuilt after substitutions differs only in the substituted words.
* :class:`SynonymTable`: the shipped WordNet 3.0 synonym table (word -> part of speech ->
  synonyms).
"""

from mlwarden.data.text.corpora import TEXT_DATASETS, load_text_builtin
from mlwarden.data.text.dataset import TextDataset
from mlwarden.data.text.lexicon import SynonymTable, load_synonyms
from mlwarden.data.text.tokens import STOP_WORDS, TokenizedText, tokenize

__all__ = [
    "STOP_WORDS",
    "TEXT_DATASETS",
    "SynonymTable",
    "TextDataset",
    "TokenizedText",
    "load_synonyms",
    "load_text_builtin",
    "tokenize",
]
