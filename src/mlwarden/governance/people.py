"""Person names and street addresses without an NER model: name lists and address structure.

Presidio finds names and places with a spaCy NER model, which this offline configuration does not
load (no model download, no unverified re-upload of one). These two recognizers are what can be
done without one, and they are honest about it:

* :class:`PersonNameRecognizer` finds a capitalised first name followed (after at most one middle
  name or initial) by a capitalised last name, both from the locale lists in
  ``data/pii_lists.json`` (derived from Faker's person providers by ``data/build_lists.py``:
  en_US, en_GB, de_DE, th_TH, id_ID), with an optional honorific before it; Thai names are a
  Thai first name and a Thai last name (a title such as ``นาย`` may be fused to the first name).
  A name whose first or last part is not in the lists is missed, and a name written in lower or
  upper case is missed: recall on real data is bounded by the lists' coverage, which the Faker
  corpus cannot measure (its names come from the same lists). docs/governance.md gives the
  figures, held-out names included.
* :class:`AddressRecognizer` finds a street part (a house, unit or lot number next to a street
  type such as ``Avenue``/``Road``, a German ``...straße 12``, an Indonesian or Malaysian
  ``Jalan``/``Jl.``/``Gg.``/``Lorong``, a Thai ``ถนน``/``ถ.``/``ซอย``, or ``Flat/Unit/Block/Lot
  n``) followed, within the same sentence and 160 characters, by a postcode in a form the
  targeted countries use (US state + ZIP, UK postcode, five digits for DE/TH/ID/MY, four digits
  and a capitalised name for PH). An address without a postcode, or with a street type outside
  the lists, is missed.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = [
    "ADDRESS_ENTITY",
    "PERSON_ENTITY",
    "NameLists",
    "find_addresses",
    "find_person_names",
    "load_lists",
]

PERSON_ENTITY = "PERSON"
ADDRESS_ENTITY = "STREET_ADDRESS"
_MAX_ADDRESS_CHARS = 160
_THAI = re.compile(r"[\u0E00-\u0E7F]+")
_LATIN_WORD = re.compile(r"[^\W\d_][\w'’-]*\.?")


@dataclass(frozen=True)
class NameLists:
    """First names, last names and honorifics (Latin-script locales merged; Thai apart)."""

    first: frozenset[str]
    last: frozenset[str]
    prefixes: frozenset[str]
    thai_first: frozenset[str]
    thai_last: frozenset[str]
    thai_prefixes: tuple[str, ...]  # longest first: fused to the name without a space
    street_types: frozenset[str]
    german_street_suffixes: tuple[str, ...]
    road_words: frozenset[str]


@lru_cache(maxsize=1)
def load_lists() -> NameLists:
    """The shipped lists (``data/pii_lists.json``)."""
    raw = json.loads(
        resources.files("mlwarden.governance.data").joinpath("pii_lists.json").read_text("utf-8")
    )
    return lists_from(raw)


def lists_from(raw: dict[str, Any], *, drop: frozenset[str] = frozenset()) -> NameLists:
    """:class:`NameLists` from the JSON structure (``drop``: names to leave out, for held-out
    evaluation)."""
    names = raw["names"]
    latin = [loc for loc in names if loc != "th_TH"]
    thai = names.get("th_TH", {"first": [], "last": [], "prefixes": []})
    return NameLists(
        first=frozenset(n for loc in latin for n in names[loc]["first"] if n not in drop),
        last=frozenset(n for loc in latin for n in names[loc]["last"] if n not in drop),
        prefixes=frozenset(p for loc in latin for p in names[loc]["prefixes"]),
        thai_first=frozenset(n for n in thai["first"] if n not in drop),
        thai_last=frozenset(n for n in thai["last"] if n not in drop),
        thai_prefixes=tuple(sorted(thai["prefixes"], key=len, reverse=True)),
        street_types=frozenset(raw["street_types"]),
        german_street_suffixes=tuple(raw["german_street_suffixes"]),
        road_words=frozenset(raw["road_words"]),
    )


def _capitalised(word: str) -> bool:
    return len(word) > 1 and word[0].isupper() and not word[1:].replace("-", "").isupper()


def _is_first(word: str, lists: NameLists) -> bool:
    if word in lists.first:
        return True
    parts = word.split("-")
    return len(parts) > 1 and all(p in lists.first for p in parts)


def _is_last(word: str, lists: NameLists) -> bool:
    if word in lists.last:
        return True
    parts = word.split("-")
    return len(parts) > 1 and all(p in lists.last for p in parts)


def find_person_names(text: str, lists: NameLists | None = None) -> list[tuple[int, int]]:
    """``(start, end)`` of every person name found in ``text`` (see the module docstring)."""
    lists = lists or load_lists()
    spans: list[tuple[int, int]] = []
    words = list(_LATIN_WORD.finditer(text))
    i = 0
    while i < len(words):
        first = words[i].group().rstrip(".")
        if not (_capitalised(first) and _is_first(first, lists)):
            i += 1
            continue
        found = None
        for j in (i + 1, i + 2):
            if j >= len(words) or text[words[j - 1].end() : words[j].start()] != " ":
                break
            last = words[j].group().rstrip(".")
            if _capitalised(last) and _is_last(last, lists):
                found = j
                break
            middle = words[j].group()
            if not (middle in lists.first or re.fullmatch(r"[A-Z]\.", middle)):
                break
        if found is None:
            i += 1
            continue
        start = words[i].start()
        honorific = words[i - 1] if i > 0 else None
        if (
            honorific is not None
            and honorific.group() in lists.prefixes
            and text[honorific.end() : start] == " "
        ):
            start = honorific.start()
        end = words[found].end() - (1 if words[found].group().endswith(".") else 0)
        spans.append((start, end))
        i = found + 1
    thai = list(_THAI.finditer(text))
    for a, b in itertools.pairwise(thai):
        if text[a.end() : b.start()] != " " or b.group() not in lists.thai_last:
            continue
        first = a.group()
        if first in lists.thai_first or any(
            first.startswith(p) and first[len(p) :] in lists.thai_first for p in lists.thai_prefixes
        ):
            spans.append((a.start(), b.end()))
    return sorted(spans)


@lru_cache(maxsize=4)
def _address_patterns(lists: NameLists) -> tuple[re.Pattern[str], re.Pattern[str]]:
    types = "|".join(sorted((re.escape(t) for t in lists.street_types), key=len, reverse=True))
    german = "|".join(
        re.escape(v)
        for s in lists.german_street_suffixes
        for v in dict.fromkeys((s, s[:1].upper() + s[1:]))
    )
    roads = "|".join(sorted((re.escape(w) for w in lists.road_words), key=len, reverse=True))
    number = r"\d{1,5}[A-Za-z]?(?:[-/](?:\d{1,4}[A-Za-z]?|[A-Za-z]))?"
    street = re.compile(
        "|".join(
            [
                # 7631 Johnson Village / 2364-G Balimbing Road / 5201 Johnson Road
                rf"\b{number},?\s(?:(?:[A-Z][\w'’.-]*|\d+(?:st|nd|rd|th))\s){{0,4}}(?:{types})\b",
                # Wesackstraße 26-83 / Klaus-Lindner-Platz 59
                rf"\b[A-ZÄÖÜ][\wäöüß.-]*(?:{german})\s{number}\b",
                # Jl. Peta No. 366 / Jalan Sentul 2r / Lorong Pantai / ถนนเขียวขุ้ย
                rf"(?:(?<=\s)|^|(?<=,)|(?<=\d\s))(?:{roads})(?=[\s\u0E00-\u0E7F\d])",
                # Flat 7 / Unit 2537 / Block 16 Lot 84 / Room 736 / No. 9g-01 / Lot 297
                rf"\b(?:Flat|Unit|Block|Lot|Room|Suite|No\.|PSC)\s{number}\b",
                r"\bB\d{1,3}\sL\d{1,3}\b",  # Philippine block and lot: B01 L40
                # US military mail: USNS Smith, FPO AE 14705
                r"\b(?:USNS|USNV|USS|USCGC)\s[A-Z][a-z]+",
                # Thai house number before a Thai road, village or sub-district word
                rf"\b{number}\s(?=[\u0E00-\u0E7F])",
            ]
        )
    )
    postcode = re.compile(
        "|".join(
            [
                r"\b[A-Z]{2}\s\d{5}(?:-\d{4})?\b",  # US: state and ZIP
                r"\b[A-Z]{1,2}\d[A-Z\d]?\s\d[A-Z]{2}\b",  # UK
                r"(?<![\d-])\d{5}(?![\d-])",  # DE, TH, ID, MY
                r"(?<![\d-])\d{4}\s[A-Z][a-z]+(?:\s[A-Z][a-z]+)?",  # PH: postcode and province
                # Thai addresses often end without a postcode: a district and its province
                r"(?:อ\.|อำเภอ|เขต)[\u0E00-\u0E7F]+(?:\s(?:จ\.|จังหวัด)?[\u0E00-\u0E7F]+)?",
            ]
        )
    )
    return street, postcode


#: a sentence ends at a full stop after a lower-case word of three or more letters, or ! or ?
_SENTENCE_END = re.compile(r"(?:[a-zäöüß]{3,}\.|[!?])(?:\s|$)")


def find_addresses(text: str, lists: NameLists | None = None) -> list[tuple[int, int]]:
    """``(start, end)`` of every street address found in ``text`` (see the module docstring)."""
    lists = lists or load_lists()
    street, postcode = _address_patterns(lists)
    spans: list[tuple[int, int]] = []
    covered = 0
    for head in street.finditer(text):
        if head.start() < covered:
            continue
        window = text[head.end() : head.end() + _MAX_ADDRESS_CHARS]
        stop = _SENTENCE_END.search(window)
        if stop is not None:
            window = window[: stop.start() + 1]
        tail = postcode.search(window)
        if tail is None:
            continue
        end = head.end() + tail.end()
        postcode_after = re.match(r"\s\d{5}\b", text[end : end + 6])
        if postcode_after is not None:  # a Thai district, then the postcode
            end += postcode_after.end()
        spans.append((head.start(), end))
        covered = end
    return spans
