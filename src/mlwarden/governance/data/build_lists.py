"""Build ``pii_lists.json``, the derived data behind the person-name and address recognizers.

Run from the repository root (needs Faker, in the ``dev`` extra)::

    python -m mlwarden.governance.data.build_lists

Everything comes from Faker's locale providers (MIT licence): first and last names, honorifics,
street types and the road words of Thai, Indonesian and Malaysian addresses, for the locales
mlwarden's scanner targets (en_US, en_GB, de_DE, th_TH, id_ID; Faker has no person provider for
the Philippines, Malaysia or Singapore, and its en_PH names are the en_US ones). The lists are
Faker's own: a name Faker never generates is not in them (see docs/governance.md for what that
does to recall). The package never imports Faker at run time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["build", "main"]

OUT = Path(__file__).with_name("pii_lists.json")
NAME_LOCALES = ("en_US", "en_GB", "de_DE", "th_TH", "id_ID")


def _words(values: Any) -> list[str]:
    return sorted({str(v).strip() for v in values if str(v).strip()})


def build() -> dict[str, Any]:
    """The lists, keyed by locale, with the Faker version they came from."""
    import importlib

    import faker

    names: dict[str, dict[str, list[str]]] = {}
    for locale in NAME_LOCALES:
        person = importlib.import_module(f"faker.providers.person.{locale}").Provider
        first: set[str] = set()
        last: set[str] = set()
        prefixes: set[str] = set()
        for attr in dir(person):
            value = getattr(person, attr)
            if callable(value) or not isinstance(value, (list, tuple, dict)):
                continue
            if attr.startswith("first_names"):
                first |= set(value)
            elif attr.startswith("last_names"):
                last |= set(value)
            elif attr.startswith("prefixes"):
                prefixes |= set(value)
        names[locale] = {
            "first": _words(first),
            "last": _words(last),
            "prefixes": _words(prefixes),
        }
    us = importlib.import_module("faker.providers.address.en_US").Provider
    gb = importlib.import_module("faker.providers.address.en_GB").Provider
    ph = importlib.import_module("faker.providers.address.en_PH").Provider
    de = importlib.import_module("faker.providers.address.de_DE").Provider
    th = importlib.import_module("faker.providers.address.th_TH").Provider
    idn = importlib.import_module("faker.providers.address.id_ID").Provider
    ms = importlib.import_module("faker.providers.address.en_MS").Provider
    street_types = {
        s.split(" ")[0]
        for s in [*us.street_suffixes, *gb.street_suffixes, *ph.street_suffixes]
        if s.strip()
    }
    return {
        "source": "Faker locale providers (MIT licence): person and address",
        "faker_version": faker.VERSION,
        "names": names,
        "street_types": _words(street_types),
        "german_street_suffixes": _words(
            [s.lower() for s in [*de.street_suffixes_long, *de.street_suffixes_short]]
        ),
        "road_words": _words(
            [
                *th.street_prefixes,
                *idn.street_prefixes_long,
                *idn.street_prefixes_short,
                *ms.street_prefixes,
            ]
        ),
    }


def main() -> None:
    """Write ``pii_lists.json`` beside this script."""
    OUT.write_text(
        json.dumps(build(), ensure_ascii=False, indent=0, sort_keys=True) + "\n", encoding="utf-8"
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
