"""Person names and street addresses without an NER model: what is found, what is missed on
purpose, and that the shipped lists are exactly what their build script derives."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from mlwarden.governance.people import find_addresses, find_person_names, lists_from, load_lists


def _found(find: object, text: str, value: str) -> bool:
    start = text.index(value)
    end = start + len(value)
    return any(a < end and start < b for a, b in find(text))  # type: ignore[operator]


@pytest.mark.parametrize(
    "name",
    ["Dr. Jennifer Wilson", "Karsten Wieloch-Bolnbach", "Mary J. Smith", "Hans-Peter Müller"],
)
def test_a_listed_first_and_last_name_is_found_with_its_honorific(name: str) -> None:
    text = f"Signed on behalf of the tenant by {name} in March."
    lists = load_lists()
    first = name.split()[1] if name.startswith("Dr.") else name.split()[0]
    assert all(p in lists.first for p in first.split("-"))
    (span,) = find_person_names(text)
    assert text[span[0] : span[1]] == name


def test_a_thai_title_fused_to_the_first_name_is_part_of_the_name() -> None:
    lists = load_lists()
    first, last = sorted(lists.thai_first)[0], sorted(lists.thai_last)[0]
    text = f"ผู้เช่า นาย{first} {last} ลงนามแล้ว"
    (span,) = find_person_names(text)
    assert text[span[0] : span[1]] == f"นาย{first} {last}"


@pytest.mark.parametrize(
    "text",
    [
        "signed by jennifer wilson",  # lower case
        "SIGNED BY JENNIFER WILSON",  # upper case
        "signed by Jennifer Qwzxlk",  # a last name outside the lists
        "Grant applications close on Friday",  # one listed word is not a name
        "Morgan",
    ],
)
def test_what_the_lists_cannot_see_is_not_reported(text: str) -> None:
    assert find_person_names(text) == []


@pytest.mark.parametrize(
    "address",
    [
        "1600 Pennsylvania Avenue NW, Washington, DC 20500",
        "221B Baker Street, London NW1 6XE",
        "Wilhelmstraße 54, 10117 Berlin",
        "Jl. Medan Merdeka Utara No. 3, Jakarta Pusat 10110",
        "Jalan Ampang, 50450 Kuala Lumpur",
        "1 ถนนนครราชสีมา แขวงดุสิต เขตดุสิต กรุงเทพมหานคร 10300",
        "Unit 5, 1000 Roxas Boulevard, Ermita, 1000 Manila",
    ],
)
def test_real_world_addresses_of_the_targeted_countries_are_found(address: str) -> None:
    text = f"Ship the signed originals to {address} by courier."
    assert _found(find_addresses, text, address), find_addresses(text)


@pytest.mark.parametrize(
    "text",
    [
        "Order 48213 shipped on 2024-03-01 for $120.50.",
        "Batch 123456 passed QA with 97% yield at 21 C.",
        "Take the Avenue exit. 12345 people attended.",
        "Platz der Republik 1, 11011 Berlin",  # street type first: a known miss
        "12, rue de la Paix, 75002 Paris",  # French: not a targeted country
    ],
)
def test_numbers_without_an_address_structure_are_not_addresses(text: str) -> None:
    assert find_addresses(text) == []


def test_held_out_names_are_missed_which_is_why_names_are_opt_in() -> None:
    lists = load_lists()
    first, last = sorted(lists.first)[10], sorted(lists.last)[10]
    text = f"Countersigned by {first} {last}."
    assert find_person_names(text)
    raw = json.loads(
        resources.files("mlwarden.governance.data").joinpath("pii_lists.json").read_text("utf-8")
    )
    without = lists_from(raw, drop=frozenset({last}))
    assert find_person_names(text, without) == []


def test_the_shipped_lists_are_what_the_build_script_derives_from_faker() -> None:
    import faker

    from mlwarden.governance.data.build_lists import build

    raw = json.loads(
        resources.files("mlwarden.governance.data").joinpath("pii_lists.json").read_text("utf-8")
    )
    if raw["faker_version"] != faker.VERSION:
        pytest.skip(f"lists built from Faker {raw['faker_version']}, {faker.VERSION} installed")
    assert build() == raw
