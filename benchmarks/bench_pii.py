"""Sensitive-data scanner: precision/recall per entity type on the Faker corpus, and throughput
(MB/s) of mlwarden's scanner against Presidio's AnalyzerEngine alone as mlwarden configures it
(the same pattern recognizers, SE Asian ones included, and blank tokenizer; without the
detect-secrets plugins, the assignment rule and the overlap resolution), measured in the same run.

    PYTHONPATH=src:tests python benchmarks/bench_pii.py
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

warnings.simplefilter("ignore", DeprecationWarning)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from governance.pii_corpus import generate  # noqa: E402
from governance.test_pii import measure  # noqa: E402
from mlwarden.governance.pii import PiiScanner, _analyzer  # noqa: E402


def main() -> None:
    records = generate(n_per_entity=200, n_negative=1500, seed=1)
    scores = measure(records, PiiScanner())
    print(f"{'entity':16} {'precision':>9} {'recall':>7} {'tp':>4} {'fp':>3} {'fn':>3}")
    for entity, s in scores.items():
        print(
            f"{entity:16} {s['precision']:9.3f} {s['recall']:7.3f} {s['tp']:4} {s['fp']:3} {s['fn']:3}"
        )
    texts = [r.text for r in records]
    size_mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    scanner, presidio = PiiScanner(), _analyzer()
    scanner.analyze(texts[0])
    start = time.perf_counter()
    for t in texts:
        presidio.analyze(t, language="en", score_threshold=0.4)
    presidio_s = time.perf_counter() - start
    start = time.perf_counter()
    for t in texts:
        scanner.analyze(t)
    ours_s = time.perf_counter() - start
    result = {
        "corpus_records": len(records),
        "corpus_mb": round(size_mb, 3),
        "presidio_alone_mb_s": round(size_mb / presidio_s, 3),
        "mlwarden_scan_mb_s": round(size_mb / ours_s, 3),
        "ratio_vs_presidio": round(presidio_s / ours_s, 3),
        "scores": scores,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "scores"}))
    out = Path(__file__).with_name("results")
    out.mkdir(exist_ok=True)
    (out / "pii.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
