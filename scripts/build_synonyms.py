"""Build mlwarden's shipped WordNet synonym table (build time only; needs nltk and WordNet 3.0).

Usage::

    apt-get install -y wordnet-base         # WordNet 3.0 database in /usr/share/wordnet
    python -m venv /tmp/nltkenv && /tmp/nltkenv/bin/pip install nltk
    /tmp/nltkenv/bin/python scripts/build_synonyms.py [--wordnet /usr/share/wordnet]

Debian's ``wordnet-base`` lacks the ``lexnames`` file nltk's reader wants, so the database is
copied into a temporary corpus root (``<tmp>/corpora/wordnet``, on ``nltk.data.path``) and the
standard ``lexnames`` table of WordNet 3.0 (lexnames(5WN)) is written beside it; nltk's
mapping to its own copy (which reads a missing ``index.sense``) is skipped.

Output: ``src/mlwarden/data/text/wordnet_synonyms.json.gz``, a deterministic gzip'd JSON object
``{"pos": ..., "table": {word: {pos: [synonyms]}}}`` where ``pos`` is ``n``, ``v``, ``a`` (with
adjective satellites) or ``r``, listed for each word from the part of speech with the most
senses to the one with the fewest. The keys are every single-word, lower-case alphabetic
WordNet lemma plus every lower-case word of the shipped text datasets that WordNet's morphy
maps to a lemma; a synonym is any other single-word alphabetic lemma of a synset holding the
word (PWWS, Ren et al. 2019, draws its candidates the same way). Inflected words get inflected
synonyms by regular rules (``policies`` -> ``programs``: plural ``-s``/``-es``/``-ies``;
verbs in ``-s``, ``-ed``, ``-ing``); forms the rules cannot rebuild get none. The manifest
records sizes and SHA-256 digests; ``WORDNET_LICENSE`` carries Princeton's notice.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "mlwarden" / "data" / "text"

LEXNAMES = [
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
]
_SYNTACTIC = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
_WORD = re.compile(r"^[a-z]+$")
_TOKEN = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


def _lexnames() -> str:
    return "".join(
        f"{i:02d}\t{name}\t{_SYNTACTIC[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES)
    )


def _reader(wordnet_dir: Path, tmp: Path):  # type: ignore[no-untyped-def]
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    root = tmp / "corpora" / "wordnet"
    shutil.copytree(wordnet_dir, root, ignore=shutil.ignore_patterns("bin", "pixmaps", "wnres"))
    (root / "lexnames").write_text(_lexnames(), encoding="ascii")
    nltk.data.path.insert(0, str(tmp))

    class _WordNet30(WordNetCorpusReader):  # type: ignore[misc]
        # nltk maps synsets to its own "wordnet" corpus for the multilingual data, reading an
        # index.sense that Debian does not ship; this database is WordNet 3.0 itself, so the
        # map is the identity (None), and no multilingual reader is given.
        def map_wn(self, version: str = "wordnet") -> None:
            return None

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The multilingual functions", UserWarning)
        return _WordNet30(str(root), None)


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _past(word: str) -> str:
    if word.endswith("e"):
        return word + "d"
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ied"
    return word + "ed"


def _gerund(word: str) -> str:
    if word.endswith("e") and not word.endswith(("ee", "ye", "oe")):
        return word[:-1] + "ing"
    return word + "ing"


_RULES = {"n": (_plural,), "v": (_plural, _past, _gerund)}


def _synonyms(wn, lemma: str, pos: str) -> list[str]:  # type: ignore[no-untyped-def]
    out: set[str] = set()
    for synset in wn.synsets(lemma, pos=pos):
        for name in synset.lemma_names():
            name = name.lower()
            if name != lemma and _WORD.match(name):
                out.add(name)
    return sorted(out)


def build(wn, corpus_words: set[str]) -> dict[str, dict[str, list[str]]]:  # type: ignore[no-untyped-def]
    """The synonym table: every base lemma, then inflected corpus words by regular rules.

    A rebuilt inflection is kept only when it is a known word (a word of the shipped corpora,
    a lemma, or an irregular form in WordNet's exception lists), so the rules never invent
    ``goed`` or ``croped``.
    """
    table: dict[str, dict[str, list[str]]] = {}
    base_lemmas = {n.lower() for n in wn.all_lemma_names()}
    irregular = {form for forms in wn._exception_map.values() for form in forms}
    known = base_lemmas | corpus_words | irregular
    lemmas = sorted(base_lemmas | corpus_words)
    for word in lemmas:
        if not _WORD.match(word):
            continue
        entry: list[tuple[int, str, list[str]]] = []
        for pos, wn_pos in (("n", "n"), ("v", "v"), ("a", "a"), ("r", "r")):
            senses = wn.synsets(word, pos=wn_pos)
            if not senses:
                continue
            base = wn.morphy(word, wn_pos)
            if (
                base == word
                or base is None
                or word in {lemma.name().lower() for s in senses for lemma in s.lemmas()}
            ):
                synonyms = _synonyms(wn, word, wn_pos)
            else:
                synonyms = []
                for rule in _RULES.get(pos, ()):
                    if rule(base) == word:
                        rebuilt = {rule(s) for s in _synonyms(wn, base, wn_pos)}
                        synonyms = sorted((rebuilt & known) - {word})
                        break
            if synonyms:
                entry.append((len(senses), pos, synonyms))
        if entry:
            entry.sort(key=lambda e: -e[0])  # stable: ties keep n, v, a, r order
            table[word] = {pos: synonyms for _, pos, synonyms in entry}
    return table


def _corpus_words() -> set[str]:
    words: set[str] = set()
    for name in ("convention_speeches.json.gz", "rt_snippets.json.gz"):
        with gzip.open(OUT / name, "rt", encoding="utf-8") as fh:
            for text in json.load(fh)["texts"]:
                words.update(t.lower() for t in _TOKEN.findall(text) if "'" not in t)
    return words


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wn = _reader(args.wordnet, Path(tmp))
        version = wn.get_version()
        table = build(wn, _corpus_words())
    body = json.dumps(
        {"source": f"WordNet {version}", "pos": ["n", "v", "a", "r"], "table": table},
        separators=(",", ":"),
        sort_keys=False,
    ).encode("utf-8")
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
        gz.write(body)
    data = buffer.getvalue()
    (OUT / "wordnet_synonyms.json.gz").write_bytes(data)
    manifest_path = OUT / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["synonyms"] = {
        "file": "wordnet_synonyms.json.gz",
        "sha256": hashlib.sha256(data).hexdigest(),
        "source": f"WordNet {version} (Debian wordnet-base)",
        "n_words": len(table),
        "n_pairs": sum(len(s) for entry in table.values() for s in entry.values()),
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(f"{len(table)} words -> wordnet_synonyms.json.gz ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
