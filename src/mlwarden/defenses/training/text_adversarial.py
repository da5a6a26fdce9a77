"""Adversarial training of text classifiers against synonym substitution.

Two ingredients, run in this order:

1. **Random synonym augmentation** (the training distribution SAFER smooths over, Ye et al.
   2020): ``copies`` extra versions of every training text in which each eligible word (no stop
   word, no named entity, with POS-filtered synonyms) is swapped for a random synonym with
   probability ``rate``.
2. **Adversarial examples** (Ren et al. 2019 and Jin et al. 2020 retrain on their attacks'
   outputs): for ``rounds`` rounds, the training texts are split in two halves; a model
   fitted (with augmentation) on one half is attacked by :class:`~mlwarden.attacks.evasion.
   text_synonym.TextSynonymAttack` on up to ``attack_samples / 2`` texts of the other half it
   gets right, with a budget of ``train_eps`` of the words, and the other way round (out of
   fold: a model attacked on the texts it fitted is rarely fooled). Every successful
   adversarial text joins the training set with its true label (``adversarial_copies``
   times) and the model is refitted.

The model is refitted from scratch with its own recipe: a scikit-learn pipeline is cloned
(same hyperparameters), a PyTorch mean-embedding model is trained anew with the same embedding
width (its vocabulary rebuilt from the augmented texts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlwarden.attacks.evasion.text_synonym import TextSynonymAttack
from mlwarden.data.text.dataset import TextDataset
from mlwarden.data.text.lexicon import SynonymTable, load_synonyms
from mlwarden.data.text.tokens import tokenize
from mlwarden.errors import ConfigError, ModelError
from mlwarden.models.text import (
    SklearnTextClassifier,
    TextClassifier,
    TorchTextClassifier,
    fit_embedding_bag,
)

__all__ = ["TextAdversarialTrainer", "harden_text_model", "synonym_augment"]


def synonym_augment(
    texts: list[str],
    labels: np.ndarray,
    *,
    copies: int,
    rate: float,
    seed: int,
    synonyms: SynonymTable | None = None,
) -> tuple[list[str], np.ndarray]:
    """The texts followed by ``copies`` randomly synonym-substituted versions of each.

    Each eligible word of a copy is swapped with probability ``rate`` for a uniform choice among
    the candidates :class:`TextSynonymAttack` would try, so the training data covers the
    attack's substitutions.
    """
    table = synonyms if synonyms is not None else load_synonyms()
    helper = TextSynonymAttack(synonyms=table)
    rng = np.random.default_rng(seed)
    out = list(texts)
    out_labels = [int(v) for v in labels]
    for text, label in zip(texts, labels, strict=True):
        tokens = tokenize(text)
        candidates = helper.candidates(tokens, table)
        for _ in range(copies):
            swaps = {
                p: options[int(rng.integers(len(options)))]
                for p, options in candidates.items()
                if rng.random() < rate
            }
            out.append(tokens.substitute(swaps))
            out_labels.append(int(label))
    return out, np.asarray(out_labels, dtype=np.int64)


def _refit(
    classifier: TextClassifier, texts: list[str], labels: np.ndarray, seed: int
) -> TextClassifier:
    if isinstance(classifier, SklearnTextClassifier):
        from sklearn.base import clone

        estimator = clone(classifier.estimator)
        if "random_state" in estimator.get_params():
            estimator.set_params(random_state=seed)
        estimator.fit(texts, labels)
        return SklearnTextClassifier(estimator, n_classes=classifier.n_classes)
    if isinstance(classifier, TorchTextClassifier):
        widths = [p.shape[1] for p in classifier.module.parameters() if p.dim() == 2]
        if not widths:
            raise ModelError("the PyTorch text model has no embedding table to size a new one")
        return fit_embedding_bag(texts, labels, dim=int(widths[0]), seed=seed)
    raise ModelError(
        f"cannot retrain a {type(classifier).__name__}; adversarial training needs a "
        "scikit-learn or PyTorch text model"
    )


@dataclass
class TextAdversarialTrainer:
    """Synonym augmentation, then rounds of attack-and-refit (see the module docstring).

    Parameters
    ----------
    copies, rate
        Random synonym augmentation: extra copies per text and the swap probability per word.
    rounds
        Attack-and-refit rounds after the augmented fit.
    train_eps
        Budget (share of words) of the training attack.
    attack_samples
        Training texts attacked per round (a seeded draw of the correctly classified ones).
    adversarial_copies
        How many times each successful adversarial text joins the training data.
    seed
        Seed of augmentation, draws and refits.
    """

    copies: int = 4
    rate: float = 0.3
    rounds: int = 1
    train_eps: float = 0.1
    attack_samples: int = 200
    adversarial_copies: int = 3
    seed: int = 0
    record_: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def _validate(self) -> None:
        for key in ("copies", "rounds", "attack_samples", "adversarial_copies"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{key} must be an integer >= 0, got {value!r}")
        if not 0.0 <= self.rate <= 1.0:
            raise ConfigError(f"rate must lie in [0, 1], got {self.rate!r}")
        if not 0.0 < self.train_eps <= 1.0:
            raise ConfigError(f"train_eps must lie in (0, 1], got {self.train_eps!r}")

    def fit(self, classifier: TextClassifier, train: TextDataset) -> TextClassifier:
        """A new classifier of ``classifier``'s kind, trained adversarially on ``train``.

        ``classifier`` itself is not changed; :attr:`record_` says what was added per round.
        """
        self._validate()
        if train.kind != "text":
            raise ConfigError(f"{train.name} is not text data; give a text dataset")
        table = load_synonyms()
        texts, labels = synonym_augment(
            train.texts, train.y, copies=self.copies, rate=self.rate, seed=self.seed, synonyms=table
        )
        model = _refit(classifier, texts, labels, self.seed)
        record: dict[str, Any] = {"augmented_texts": len(texts) - len(train), "rounds": []}
        attack = TextSynonymAttack(eps=self.train_eps, synonyms=table, search="importance")
        rng = np.random.default_rng(self.seed)
        for round_index in range(self.rounds):
            if not self.attack_samples:
                break
            # out-of-fold: each half of the training texts is attacked through a model fitted
            # (with augmentation) on the other half, since a model attacked on the very texts
            # it fitted is rarely fooled and yields no examples to learn from
            order = rng.permutation(len(train))
            halves = (np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2 :]))
            per_half = max(1, self.attack_samples // 2)
            found: list[str] = []
            found_labels: list[int] = []
            attacked = 0
            successes = 0
            for fit_idx, attack_idx in (halves, halves[::-1]):
                fold_texts, fold_labels = synonym_augment(
                    [str(t) for t in train.x[fit_idx]],
                    train.y[fit_idx],
                    copies=self.copies,
                    rate=self.rate,
                    seed=self.seed + round_index + 1,
                    synonyms=table,
                )
                fold_model = _refit(classifier, fold_texts, fold_labels, self.seed)
                correct = attack_idx[fold_model.predict(train.x[attack_idx]) == train.y[attack_idx]]
                if not len(correct):
                    continue
                pick = np.sort(rng.choice(correct, size=min(per_half, len(correct)), replace=False))
                result = attack.generate(fold_model, train.x[pick], train.y[pick])
                attacked += len(pick)
                successes += int(result.success.sum())
                found += [str(t) for t in result.x_adv[result.success]]
                found_labels += [int(v) for v in train.y[pick][result.success]]
            texts = texts + found * self.adversarial_copies
            labels = np.concatenate(
                [labels, np.tile(np.asarray(found_labels, dtype=np.int64), self.adversarial_copies)]
            )
            record["rounds"].append(
                {
                    "round": round_index + 1,
                    "attacked": attacked,
                    "attack_success_rate": successes / attacked if attacked else 0.0,
                    "adversarial_texts_added": len(found),
                }
            )
            if found:
                model = _refit(classifier, texts, labels, self.seed + round_index + 1)
        record["training_texts"] = len(texts)
        self.record_ = record
        return model


def harden_text_model(
    model: str,
    data: str,
    *,
    eps: float,
    out: str | Path,
    eval_samples: int = 100,
    seed: int = 0,
    trainer: TextAdversarialTrainer | None = None,
) -> dict[str, Any]:
    """``mlwarden harden adversarial`` for a text model: train, measure, write.

    Trains with ``trainer`` (a default :class:`TextAdversarialTrainer` whose ``train_eps`` is
    ``eps``) on the train split of the text dataset ``data``, measures clean accuracy on the
    test split and the synonym attack's success at ``eps`` on ``eval_samples`` of its correctly
    classified texts, before and after, writes the hardened model to ``out`` (same format as
    the input) with the measurements in its sidecar, and returns them.
    """
    from mlwarden.data import load_dataset
    from mlwarden.models import load_model
    from mlwarden.models.text import save_text_model

    train = load_dataset(data, split="train")
    test = load_dataset(data, split="test")
    if not isinstance(train, TextDataset) or not isinstance(test, TextDataset):
        raise ConfigError(f"{data} is not a text dataset")
    classifier = load_model(model)
    if not isinstance(classifier, TextClassifier):
        raise ModelError(f"{model} is not a text model; its data {data} is text")
    trainer = trainer or TextAdversarialTrainer(train_eps=eps, seed=seed)
    hardened = trainer.fit(classifier, train)
    attack = TextSynonymAttack(eps=eps)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(test), size=min(eval_samples, len(test)), replace=False))
    sample = test.subset(pick)

    def measure(m: TextClassifier) -> dict[str, float]:
        correct = np.flatnonzero(m.predict(sample.x) == sample.y)
        result = attack.generate(m, sample.x[correct], sample.y[correct])
        return {
            "clean_accuracy": m.accuracy(test.x, test.y),
            f"attack_success_rate@{eps:g}": result.success_rate,
        }

    record = {
        "before": measure(classifier),
        "after": measure(hardened),
        "trainer": {k: v for k, v in vars(trainer).items() if k != "record_"},
        "rounds": trainer.record_,
        "dataset": train.name,
        "dataset_sha256": train.digest(),
    }
    metadata = {"name": Path(out).stem, "training": {"recipe": "text-adversarial", **record}}
    save_text_model(hardened, out, metadata=metadata)
    return record
