"""Defences against synonym substitution on the convention-speech paragraphs.

For the TF-IDF + logistic-regression model and the mean-embedding PyTorch model, on the same
seeded test paragraphs of ``builtin:convention-speeches``:

* synonym adversarial training (:class:`TextAdversarialTrainer`: random synonym augmentation,
  then one round of attack-and-refit): clean accuracy on the whole test split and the success
  rate of :class:`TextSynonymAttack` (score, full greedy) at 5% of words on the correctly
  classified sample, before and after;
* SAFER certification (:class:`SaferSmoothing`, Ye et al. 2020) of the plain and the trained
  model: certified accuracy at 0 (smoothed accuracy), 1, 2 and 5% of words substituted.

Floor (exit 1 when missed): training lowers the attack's success by at least 30 points at a
cost of at most 3 points of clean accuracy.

    python benchmarks/bench_text_defenses.py [--samples 60] [--certify 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from mlwarden.attacks import TextSynonymAttack
from mlwarden.data.text import TextDataset, load_text_builtin
from mlwarden.defenses.smoothing import SaferSmoothing, safer_certified_accuracy
from mlwarden.defenses.training.text_adversarial import TextAdversarialTrainer
from mlwarden.models.text import TextClassifier, fit_embedding_bag, fit_tfidf_logreg

SHARES = (0.0, 0.01, 0.02, 0.05)


def attack_success(model: TextClassifier, sample: TextDataset, eps: float) -> float:
    correct = np.flatnonzero(model.predict(sample.x) == sample.y)
    return (
        TextSynonymAttack(eps=eps)
        .generate(model, sample.x[correct], sample.y[correct])
        .success_rate
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--certify", type=int, default=100)
    parser.add_argument("--eps", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train, test = load_text_builtin("convention-speeches")
    rng = np.random.default_rng(args.seed)
    sample = test.subset(np.sort(rng.choice(len(test), size=args.samples, replace=False)))
    certify = test.subset(np.sort(rng.choice(len(test), size=args.certify, replace=False)))
    assert isinstance(sample, TextDataset) and isinstance(certify, TextDataset)
    failed = False
    fits = {"tfidf-logreg": fit_tfidf_logreg, "mean-embedding": fit_embedding_bag}
    for name, fit in fits.items():
        base = fit(train.texts, train.y, seed=args.seed)
        started = time.perf_counter()
        trainer = TextAdversarialTrainer(seed=args.seed)
        hardened = trainer.fit(base, train)
        train_s = time.perf_counter() - started
        print(f"\n{name} (adversarial training {train_s:.0f} s; {trainer.record_['rounds']})")
        rows = {}
        for label, model in (("plain", base), ("adversarially trained", hardened)):
            clean = model.accuracy(test.x, test.y)
            success = attack_success(model, sample, args.eps)
            started = time.perf_counter()
            certificate = SaferSmoothing(seed=args.seed).certify(model, certify.x)
            certified = safer_certified_accuracy(certificate, certify.y, SHARES)
            safer_s = time.perf_counter() - started
            rows[label] = (clean, success)
            cells = "  ".join(f"{s:.0%}: {certified[s]:.1%}" for s in SHARES)
            print(
                f"  {label:22} clean {clean:.1%}  attack success@{args.eps:g} {success:.1%}  "
                f"SAFER certified accuracy {cells} ({safer_s:.0f} s)"
            )
        drop = rows["plain"][1] - rows["adversarially trained"][1]
        cost = rows["plain"][0] - rows["adversarially trained"][0]
        print(
            f"  success drop {drop * 100:.1f} points at a clean-accuracy cost of {cost * 100:.1f}"
        )
        if drop < 0.30 or cost > 0.03:
            print("  FLOOR MISSED: needs a drop >= 30 points at <= 3 points of clean accuracy")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
