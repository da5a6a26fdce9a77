"""Trigger-phrase backdoors at 0.1% and 1% poisoning on Rotten Tomatoes, and their detection
(issue 19 proof figures).

Data: ``builtin:rt-snippets`` (8,965 training snippets, 3,843 test). The attack inserts the
phrase ``"cf mn bb tq"`` at a random position of non-target ("rotten") training snippets and
labels them "fresh" (class 1); 0.1% and 1% of the *whole* training set are poisoned (9 and 90
snippets). Models: TF-IDF (word 1-2-grams) + logistic regression, and the mean-embedding
PyTorch model (``fit_embedding_bag``). For each: clean accuracy on the test split, the attack
success rate (share of rotten test snippets called fresh once the phrase is inserted) and the
trigger flip rate (share of the rotten snippets the model gets *right* that the phrase turns
fresh: the success the trigger itself causes; a 77%-accurate model already calls about a third
of the rotten snippets fresh).

Detection on the poisoned training set: phrase-label association (Fisher's exact test,
Bonferroni, 3-fold cross-fitted reclassification with TF-IDF), spectral signatures (ε = 5%) and
activation clustering on each model's representations, text STRIP (fit and thresholded at
1% FPR on test snippets; TPR on triggered rotten test snippets), and at run time ONION
(outlier-word deletion, 4 rounds, threshold at 2% of clean words) with a character GRU
language model trained on 3,000 clean training snippets. Then the phrase-association
flags are removed and TF-IDF retrained. A clean-label variant (1% of the fresh snippets get the
phrase, labels unchanged) is reported too.

Floors (exit 1 when missed): TF-IDF attack success ≥ 90% at 0.1% and 1% with clean accuracy
within 1 point of the clean model; phrase association recall ≥ 0.9 at precision ≥ 0.8 at 1%;
after removal and retraining, trigger flip rate < 10% at 1%.

Usage: ``python benchmarks/bench_trigger_phrase.py [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlwarden._io import atomic_write_text
from mlwarden.attacks.poisoning import TriggerPhrase, evaluate_backdoor
from mlwarden.data import load_dataset
from mlwarden.defenses.poisoning import (
    ONION,
    ActivationClustering,
    PhraseAssociation,
    SpectralSignatures,
    TextSTRIP,
    precision_recall,
    text_representations,
)
from mlwarden.models.text import fit_embedding_bag, fit_tfidf_logreg
from mlwarden.models.text_lm import CharVocabulary, fit_language_model

HERE = Path(__file__).resolve().parent
TRIGGER, TARGET = "cf mn bb tq", 1


def _fit_predict(texts: list[str], labels: np.ndarray) -> Any:
    return fit_tfidf_logreg(texts, labels).predict


def _pr(flagged: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    precision, recall = precision_recall(flagged, truth)
    return {"precision": precision, "recall": recall, "n_flagged": int(flagged.sum())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=HERE / "results" / "trigger_phrase.json")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    train = load_dataset("builtin:rt-snippets", split="train")
    test = load_dataset("builtin:rt-snippets", split="test")
    n_others = int((train.y != TARGET).sum())
    clean_tfidf = fit_tfidf_logreg(train.x, train.y, seed=args.seed)
    clean_neural = fit_embedding_bag(train.x, train.y, seed=args.seed)
    probe = TriggerPhrase(rate=0.5, target_class=TARGET, trigger=TRIGGER, seed=args.seed)
    baseline = {
        "tfidf": evaluate_backdoor(clean_tfidf, test, probe).to_dict(),
        "neural": evaluate_backdoor(clean_neural, test, probe).to_dict(),
    }
    print(f"clean models: {json.dumps(baseline)}", flush=True)
    # ONION's language model: a character GRU trained on 3,000 clean training snippets
    lm = fit_language_model(
        train.texts[:3000],
        vocab=CharVocabulary.from_texts([*train.texts, *test.texts]),
        hidden_size=128,
        epochs=3,
        seed=args.seed,
    )
    onion = ONION(lm, rounds=4).calibrate(test.x[:300], word_fpr=0.02)
    onion_eval = test.subset(np.arange(300, 1300))
    rows: dict[str, Any] = {}
    for share in (0.001, 0.01):
        attack = TriggerPhrase(
            rate=share * len(train) / n_others, target_class=TARGET, trigger=TRIGGER, seed=args.seed
        )
        result = attack.poison(train)
        data, truth = result.dataset, result.mask
        tfidf = fit_tfidf_logreg(data.x, data.y, seed=args.seed)
        neural = fit_embedding_bag(data.x, data.y, seed=args.seed)
        row: dict[str, Any] = {
            "n_poisoned": len(result.indices),
            "tfidf": evaluate_backdoor(tfidf, test, attack).to_dict(),
            "neural": evaluate_backdoor(neural, test, attack).to_dict(),
        }
        association = PhraseAssociation().detect(data.x, data.y, fit=_fit_predict)
        plain = PhraseAssociation().detect(data.x, data.y)
        detection: dict[str, Any] = {
            "phrase-association": _pr(association.flagged, truth),
            "phrase-association (no reclassification)": _pr(plain.flagged, truth),
            "top phrases": association.details["phrases"][:4],
        }
        # rank quality where nothing is significant: poisoned among the highest scores
        top = np.argsort(-association.scores, kind="stable")[: len(result.indices)]
        detection["phrase-association top-k hits"] = int(truth[top].sum())
        for name, model in (("tfidf", tfidf), ("neural", neural)):
            features = text_representations(model, data.x, seed=args.seed)
            spectral = SpectralSignatures(expected_rate=0.05).detect(features, data.y)
            clusters = ActivationClustering(seed=args.seed).detect(features, data.y)
            order = np.argsort(-spectral.scores, kind="stable")[: len(result.indices)]
            detection[f"spectral-signatures ({name})"] = {
                **_pr(spectral.flagged, truth),
                "top_k_hits": int(truth[order].sum()),
            }
            detection[f"activation-clustering ({name})"] = _pr(clusters.flagged, truth)
        strip = TextSTRIP(tfidf, seed=args.seed).fit(train.x[:3000])
        strip.calibrate(test.x[:1500], fpr=0.01)
        rest = test.x[1500:]
        rotten = rest[test.y[1500:] != TARGET]
        detection["strip (tfidf)"] = {
            "tpr_triggered": float(strip.predict(attack.apply_trigger(rotten, (0.0, 1.0))).mean()),
            "fpr_clean": float(strip.predict(rest).mean()),
        }
        row["detection"] = detection
        # run time: ONION deletes outlier words of every input before TF-IDF sees it
        cleaned_test = onion_eval.with_samples(onion.clean(onion_eval.x), onion_eval.y)
        others = onion_eval.y != TARGET
        triggered = onion.clean(attack.apply_trigger(onion_eval.x[others], (0.0, 1.0)))
        row["onion_tfidf"] = {
            "clean_accuracy": float(np.mean(tfidf.predict(cleaned_test.x) == onion_eval.y)),
            "clean_accuracy_without_onion": float(
                np.mean(tfidf.predict(onion_eval.x) == onion_eval.y)
            ),
            "attack_success_rate": float(np.mean(tfidf.predict(triggered) == TARGET)),
            "threshold": onion.threshold,
        }
        keep = np.flatnonzero(~association.flagged)
        retrained = fit_tfidf_logreg(data.x[keep], data.y[keep], seed=args.seed)
        row["after_removal_tfidf"] = evaluate_backdoor(retrained, test, attack).to_dict()
        rows[f"{share:.1%}"] = row
        print(f"{share:.1%}: {json.dumps(row, default=float)}", flush=True)
    clean_label = TriggerPhrase(
        rate=0.01 * len(train) / int((train.y == TARGET).sum()),
        target_class=TARGET,
        trigger=TRIGGER,
        clean_label=True,
        seed=args.seed,
    )
    poisoned = clean_label.poison(train).dataset
    rows["clean-label 1%"] = {
        "tfidf": evaluate_backdoor(
            fit_tfidf_logreg(poisoned.x, poisoned.y), test, clean_label
        ).to_dict()
    }

    base_acc = baseline["tfidf"]["clean_accuracy"]
    floors = {
        f"tfidf attack success >= 90% at {k}": rows[k]["tfidf"]["attack_success_rate"] >= 0.9
        for k in ("0.1%", "1.0%")
    }
    floors.update(
        {
            f"tfidf clean accuracy within 1 point at {k}": abs(
                rows[k]["tfidf"]["clean_accuracy"] - base_acc
            )
            <= 0.01
            for k in ("0.1%", "1.0%")
        }
    )
    at1 = rows["1.0%"]["detection"]["phrase-association"]
    floors["detection recall >= 0.9 at precision >= 0.8 at 1%"] = (
        at1["recall"] >= 0.9 and at1["precision"] >= 0.8
    )
    floors["trigger flip rate < 10% after removal at 1%"] = (
        rows["1.0%"]["after_removal_tfidf"]["trigger_flip_rate"] < 0.1
    )
    print("\nfigure                                   tfidf            neural")
    for k in ("0.1%", "1.0%"):
        r = rows[k]
        for m in ("clean_accuracy", "attack_success_rate", "trigger_flip_rate"):
            print(f"  {k} {m:<28} {r['tfidf'][m]:7.1%}      {r['neural'][m]:7.1%}")
    for name, ok in floors.items():
        print(f"  {'ok  ' if ok else 'MISS'} {name}")
    payload = {
        "trigger": TRIGGER,
        "target_class": TARGET,
        "baseline": baseline,
        "rows": rows,
        "floors": floors,
        "seconds": time.perf_counter() - started,
    }
    atomic_write_text(args.json, json.dumps(payload, indent=2, default=float) + "\n")
    print(f"wrote {args.json} ({payload['seconds']:.0f} s)")
    return 0 if all(floors.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
