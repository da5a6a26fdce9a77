"""A labelled corpus for the sensitive-data scanner: Faker values from several locales (Thai,
Indonesian, Philippine, US, British, German) embedded in ordinary sentences, mixed with text that
holds no personal data but plenty of numbers, and near-misses (identifiers with a wrong check
digit or an impossible date) that must not be flagged.

Faker generates Thai national IDs (with their check digit), Philippine SSS numbers, phone numbers,
e-mails, card numbers, IBANs and IPs; it has no Singapore, Malaysian or Indonesian identifiers
and no PhilSys or TIN, so those are generated here from their published structure (the checks in
``mlwarden.governance.sea_ids`` follow the same documents: that part is a consistency test, and the
unit tests pin published example numbers). Faker also invents phone numbers in unassigned ranges
(about a third of its US, Thai and Indonesian output): only numbers libphonenumber knows as
assigned are labelled phone numbers here.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import phonenumbers
from faker import Faker

from mlwarden.governance.sea_ids import MYKAD_PLACE_CODES, NIK_PROVINCES

NRIC_TABLES = {
    "S": (0, "JZIHGFEDCBA"),
    "T": (4, "JZIHGFEDCBA"),
    "F": (0, "XWUTRQPNMLK"),
    "G": (4, "XWUTRQPNMLK"),
    "M": (3, "XWUTRQPNJLK"),
}


@dataclass(frozen=True)
class Record:
    text: str
    labels: tuple[tuple[str, int, int], ...]  # (entity, start, end)


def nric(rng: random.Random, *, valid: bool = True) -> str:
    series = rng.choice("STFGM")
    digits = "".join(rng.choice(string.digits) for _ in range(7))
    offset, table = NRIC_TABLES[series]
    total = sum(int(d) * w for d, w in zip(digits, (2, 7, 6, 5, 4, 3, 2), strict=True)) + offset
    letter = table[total % 11]
    if not valid:
        letter = rng.choice([c for c in table if c != letter])
    return f"{series}{digits}{letter}"


def _birth(rng: random.Random) -> date:
    return date(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 55))


def mykad(rng: random.Random, *, valid: bool = True) -> str:
    born = _birth(rng)
    place = rng.choice(sorted(MYKAD_PLACE_CODES))
    month = born.month if valid else rng.choice([13, 14, 0])
    return f"{born:%y}{month:02d}{born:%d}-{place:02d}-{rng.randrange(0, 10000):04d}"


def nik(rng: random.Random) -> str:
    born = _birth(rng)
    day = born.day + (40 if rng.random() < 0.5 else 0)
    return (
        f"{rng.choice(sorted(NIK_PROVINCES))}{rng.randrange(1, 80):02d}{rng.randrange(1, 40):02d}"
        f"{day:02d}{born:%m%y}{rng.randrange(1, 10000):04d}"
    )


def thai_bad(fake_th: Faker) -> str:
    good = fake_th.ssn()
    return good[:-1] + str((int(good[-1]) + 3) % 10)


def sg_phone(rng: random.Random) -> str:
    return f"+65 {rng.choice('89')}{rng.randrange(0, 1000):03d} {rng.randrange(0, 10000):04d}"


def my_phone(rng: random.Random) -> str:
    return f"+60 1{rng.choice('2379')}-{rng.randrange(100, 1000)} {rng.randrange(0, 10000):04d}"


def assigned(number: str, region: str) -> bool:
    """Whether libphonenumber knows the number's range as assigned (Faker often invents area codes)."""
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(number, region))
    except phonenumbers.NumberParseException:
        return False


def real_phone(make: Callable[[], str], region: str) -> str:
    for _ in range(200):
        number = make()
        if assigned(number, region):
            return number
    raise RuntimeError(f"no assigned {region} number generated")


TEMPLATES = {
    "EMAIL_ADDRESS": "Please send the signed form to {} before Friday.",
    "PHONE_NUMBER": "For delivery questions the customer can be reached at {} during office hours.",
    "CREDIT_CARD": "The invoice was paid with card {} last month.",
    "IBAN_CODE": "Refunds go to the account {} as agreed.",
    "IP_ADDRESS": "The login came from {} according to the firewall.",
    "SG_NRIC_FIN": "Applicant NRIC {} was verified at the counter.",
    "MY_MYKAD": "MyKad number {} appears on the tenancy agreement.",
    "TH_NATIONAL_ID": "The Thai ID card {} was scanned at check-in.",
    "ID_NIK": "NIK {} tercantum pada KTP pemohon.",
    "PH_SSS": "The employee's SSS number is {} per HR records.",
    "PH_PHILSYS": "PhilSys PSN {} was presented for verification.",
    "PH_TIN": "Supplier TIN {} is printed on the official receipt.",
    "SECRET": "The deploy script still contains {} in plain text.",
    "PASSWORD": "config line: password={}",
    "PERSON": "The tenancy agreement was countersigned by {} on Monday.",
    "STREET_ADDRESS": "Please deliver the replacement parts to {} before noon.",
}


def generate(
    n_per_entity: int = 60,
    n_negative: int = 400,
    seed: int = 0,
    *,
    addresses: bool = False,
    names: bool = False,
    held_out_names: frozenset[str] | None = None,
) -> list[Record]:
    """The labelled corpus: ``n_per_entity`` records per entity type, ``n_negative`` without any.

    ``addresses`` adds street addresses (Faker's en_US, en_GB, de_DE, th_TH, id_ID, en_PH and
    en_MS formats, one line); ``names`` adds person names (its en_US, en_GB, de_DE, th_TH and
    id_ID names: the very lists the name recognizer is built from). With ``held_out_names``, only
    names with a first or last part in that set are used.
    """
    rng = random.Random(seed)
    fakers = {loc: Faker(loc) for loc in ("en_US", "en_GB", "de_DE", "th_TH", "id_ID", "en_PH")}
    for i, f in enumerate(fakers.values()):
        f.seed_instance(seed + i)
    us, th, idn, ph = fakers["en_US"], fakers["th_TH"], fakers["id_ID"], fakers["en_PH"]

    def secret() -> str:
        kind = rng.randrange(3)
        if kind == 0:
            return "AKIA" + "".join(
                rng.choice(string.ascii_uppercase + "234567") for _ in range(16)
            )
        if kind == 1:
            return "ghp_" + "".join(
                rng.choice(string.ascii_letters + string.digits) for _ in range(36)
            )
        return "sk_live_" + "".join(
            rng.choice(string.ascii_letters + string.digits) for _ in range(24)
        )

    makers = {
        "EMAIL_ADDRESS": lambda: rng.choice(list(fakers.values())).email(),
        "PHONE_NUMBER": lambda: real_phone(
            *rng.choice(
                [
                    (th.phone_number, "TH"),
                    (idn.phone_number, "ID"),
                    (ph.mobile_number, "PH"),
                    (lambda: sg_phone(rng), "SG"),
                    (lambda: my_phone(rng), "MY"),
                    (us.phone_number, "US"),
                ]
            )
        ),
        "CREDIT_CARD": lambda: us.credit_card_number(),
        "IBAN_CODE": lambda: rng.choice([fakers["en_GB"], fakers["de_DE"]]).iban(),
        "IP_ADDRESS": lambda: us.ipv4_public(),
        "SG_NRIC_FIN": lambda: nric(rng),
        "MY_MYKAD": lambda: mykad(rng),
        "TH_NATIONAL_ID": lambda: th.ssn(),
        "ID_NIK": lambda: nik(rng),
        "PH_SSS": lambda: ph.sss(),
        "PH_PHILSYS": lambda: "-".join(f"{rng.randrange(0, 10000):04d}" for _ in range(3)),
        "PH_TIN": lambda: "-".join(f"{rng.randrange(0, 1000):03d}" for _ in range(3)) + "-000",
        "SECRET": secret,
        "PASSWORD": lambda: us.password(length=12, special_chars=False),
    }
    name_fakers = [fakers[loc] for loc in ("en_US", "en_GB", "de_DE", "th_TH", "id_ID")]
    if addresses:
        address_fakers = [*name_fakers, fakers["en_PH"], Faker("en_MS")]
        address_fakers[-1].seed_instance(seed + 99)
        makers["STREET_ADDRESS"] = lambda: rng.choice(address_fakers).address().replace("\n", ", ")
    if names:

        def person() -> str:
            for _ in range(10_000):
                value = rng.choice(name_fakers).name()
                if held_out_names is None or any(
                    part.strip(".") in held_out_names for part in value.replace("-", " ").split()
                ):
                    return value
            raise RuntimeError("no held-out name generated")

        makers["PERSON"] = person
    records: list[Record] = []
    for entity, make in makers.items():
        for _ in range(n_per_entity):
            value = make()
            prefix = rng.choice(list(fakers.values())).sentence() + " "
            template = TEMPLATES[entity]
            text = prefix + template.format(value)
            start = len(prefix) + template.index("{}")
            records.append(Record(text, ((entity, start, start + len(value)),)))
    negatives = [
        lambda: us.paragraph(nb_sentences=3),
        lambda: f"{us.company()} announced {us.catch_phrase().lower()} in {us.city()}.",
        lambda: f"Ticket {rng.randrange(100, 9999)}: {us.bs().capitalize()} for {us.company()}.",
        lambda: th.sentence(),
        lambda: idn.sentence(),
        lambda: (
            f"Order {rng.randrange(1000, 99999)} shipped on {us.date()} for ${rng.randrange(5, 900)}.{rng.randrange(10, 99)}."
        ),
        lambda: (
            f"Batch {rng.randrange(10**5, 10**6)} passed QA with {rng.randrange(1, 100)}% yield at {rng.randrange(10, 40)} C."
        ),
        lambda: f"Reference NRIC {nric(rng, valid=False)} was rejected: wrong check letter.",
        lambda: f"Form field MyKad {mykad(rng, valid=False)} failed validation.",
        lambda: f"The scanned ID {thai_bad(th)} has a bad check digit.",
        lambda: (
            f"Version {rng.randrange(1, 9)}.{rng.randrange(0, 30)}.{rng.randrange(0, 200)} was released in {rng.randrange(1990, 2030)}."
        ),
    ]
    for _ in range(n_negative):
        records.append(Record(rng.choice(negatives)(), ()))
    rng.shuffle(records)
    return records
