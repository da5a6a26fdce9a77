"""Sensitive-data scanner: precision/recall per entity type on the Faker corpus, throughput (MB/s)
against Presidio alone, and the limits of the name and address recognizers, in one run.

Throughput baselines, measured in the same run on the same texts:

* ``presidio_stock``: Presidio's AnalyzerEngine with its own pattern recognizers only (e-mail,
  card, IBAN, IP, US SSN, phone) on the same blank spaCy tokenizer;
* ``presidio_as_configured``: the AnalyzerEngine as mlwarden configures it (plus the SE Asian
  identifiers, extra card issuers and street addresses), without detect-secrets, the assignment
  rule and the overlap resolution;
* ``mlwarden``: the full scanner (:class:`mlwarden.governance.pii.PiiScanner`, defaults).

Name and address limits: recall on names whose first or last part was held out of the lists
(a random half of every list), on names of Faker locales the lists were not built from, and on
addresses of countries the address patterns do not target.

    PYTHONPATH=src:tests python benchmarks/bench_pii.py
"""

from __future__ import annotations

import json
import random
import sys
import time
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

warnings.simplefilter("ignore", DeprecationWarning)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from faker import Faker  # noqa: E402

from governance.pii_corpus import generate  # noqa: E402
from governance.test_pii import measure  # noqa: E402
from mlwarden.governance.people import (  # noqa: E402
    find_addresses,
    find_person_names,
    lists_from,
)
from mlwarden.governance.pii import PiiScanner, _analyzer  # noqa: E402


def _stock_presidio() -> Any:
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )

    recognizers = [
        EmailRecognizer(),
        CreditCardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        UsSsnRecognizer(),
        PhoneRecognizer(supported_regions=("SG", "MY", "TH", "ID", "PH", "US", "GB")),
    ]
    return AnalyzerEngine(
        registry=RecognizerRegistry(recognizers=recognizers),
        nlp_engine=_analyzer().nlp_engine,
        supported_languages=["en"],
    )


def _recall(find: Any, values: list[str], lists: Any = None) -> float:
    hits = 0
    for value in values:
        text = f"The form was filled in by {value} yesterday."
        start = text.index(value)
        end = start + len(value)
        hits += any(a < end and start < b for a, b in find(text, lists))
    return round(hits / len(values), 3)


def _limits() -> dict[str, Any]:
    raw = json.loads(
        resources.files("mlwarden.governance.data").joinpath("pii_lists.json").read_text("utf-8")
    )
    rng = random.Random(0)
    every = sorted({n for loc in raw["names"].values() for k in ("first", "last") for n in loc[k]})
    held = frozenset(n for n in every if rng.random() < 0.5)
    fakers = [Faker(loc) for loc in ("en_US", "en_GB", "de_DE", "th_TH", "id_ID")]
    for i, f in enumerate(fakers):
        f.seed_instance(10 + i)
    held_names: list[str] = []
    while len(held_names) < 500:
        name = rng.choice(fakers).name()
        if any(p.strip(".") in held for p in name.replace("-", " ").split()):
            held_names.append(name)
    out: dict[str, Any] = {
        "names_held_out_recall": _recall(find_person_names, held_names, lists_from(raw, drop=held)),
        "names_other_locales_recall": {},
        "addresses_other_countries_recall": {},
    }
    for loc in ("fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR", "vi_VN", "en_IN"):
        f = Faker(loc)
        f.seed_instance(5)
        out["names_other_locales_recall"][loc] = _recall(
            find_person_names, [f.name() for _ in range(200)]
        )
    for loc in ("en_AU", "en_CA", "en_NZ", "fr_FR", "es_ES", "nl_NL", "en_IN", "vi_VN"):
        f = Faker(loc)
        f.seed_instance(5)
        out["addresses_other_countries_recall"][loc] = _recall(
            find_addresses, [f.address().replace("\n", ", ") for _ in range(200)]
        )
    return out


def _throughput(texts: list[str], analyze: Any, repeats: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        for text in texts:
            analyze(text)
    return time.perf_counter() - start


def main() -> None:
    records = generate(n_per_entity=200, n_negative=1500, seed=1, addresses=True)
    scores = measure(records, PiiScanner())
    named = generate(n_per_entity=200, n_negative=1500, seed=1, names=True)
    person = measure(named, PiiScanner(names=True))["PERSON"]
    scores["PERSON (opt-in, in-vocabulary)"] = person
    print(f"{'entity':32} {'precision':>9} {'recall':>7} {'tp':>4} {'fp':>3} {'fn':>3}")
    for entity, s in scores.items():
        print(
            f"{entity:32} {s['precision']:9.3f} {s['recall']:7.3f} {s['tp']:4} {s['fp']:3} {s['fn']:3}"
        )
    texts = [r.text for r in records]
    size_mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    scanner, configured, stock = PiiScanner(), _analyzer(), _stock_presidio()
    scanner.analyze(texts[0])
    stock.analyze(texts[0], language="en")
    stock_s = _throughput(texts, lambda t: stock.analyze(t, language="en", score_threshold=0.4))
    configured_s = _throughput(
        texts, lambda t: configured.analyze(t, language="en", score_threshold=0.4)
    )
    ours_s = _throughput(texts, scanner.analyze)
    result = {
        "corpus_records": len(records),
        "corpus_mb": round(size_mb, 3),
        "presidio_stock_mb_s": round(size_mb / stock_s, 3),
        "presidio_as_configured_mb_s": round(size_mb / configured_s, 3),
        "mlwarden_scan_mb_s": round(size_mb / ours_s, 3),
        "ratio_vs_presidio_stock": round(stock_s / ours_s, 3),
        "ratio_vs_presidio_as_configured": round(configured_s / ours_s, 3),
    }
    print(json.dumps(result))
    limits = _limits()
    print(json.dumps(limits))
    out = Path(__file__).with_name("results")
    out.mkdir(exist_ok=True)
    (out / "pii.json").write_text(
        json.dumps({**result, "limits": limits, "scores": scores}, indent=2) + "\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
