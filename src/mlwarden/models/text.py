"""Text classifiers behind the :class:`~mlwarden.models.base.Classifier` contract.

A :class:`TextClassifier` takes a list of strings (or a 1-D array of them) wherever a tensor
classifier takes an array: ``predict_proba(["a text", ...])`` returns ``(n, n_classes)``
probabilities. Two families are provided:

* :class:`SklearnTextClassifier`: a fitted scikit-learn pipeline over raw strings (TF-IDF and a
  linear model by :func:`fit_tfidf_logreg`), saved with skops.
* :class:`TorchTextClassifier`: a PyTorch module over padded token ids with its
  :class:`Vocabulary` (the mean of word embeddings and a linear layer by
  :func:`fit_embedding_bag`, a fastText-style bag of embeddings), saved with ``torch.export``
  and the vocabulary in the JSON sidecar; nothing is pickled.

:func:`save_text_model` writes either with a sidecar whose ``modality`` is ``text``;
:func:`~mlwarden.models.loading.load_model` reads them back through the ``text`` modality
registered here, after the same safety checks as every other model file.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mlwarden._io import atomic_write_text, atomic_write_with
from mlwarden.data.text.dataset import as_text_array
from mlwarden.data.text.tokens import TokenizedText, tokenize
from mlwarden.errors import ConfigError, DataError, ModelError
from mlwarden.models.base import Classifier
from mlwarden.models.loading import (
    MODEL_MODALITIES,
    SIDECAR_SUFFIX,
    load_skops_estimator,
    load_torch_program,
)
from mlwarden.models.torch import frozen_view

__all__ = [
    "MeanEmbeddingNet",
    "SklearnTextClassifier",
    "TextClassifier",
    "TorchTextClassifier",
    "Vocabulary",
    "fit_embedding_bag",
    "fit_tfidf_logreg",
    "save_text_model",
]

_PAD, _UNK = 0, 1


class TextClassifier(Classifier):
    """A classifier over strings: ``predict_proba(texts)`` with ``texts`` a list of ``str``.

    ``input_shape`` is ``()`` (one string per sample) and ``clip_range`` is unused; attacks
    check :attr:`modality` to know they are given text.
    """

    modality = "text"

    def __init__(self, *, n_classes: int, batch_size: int = 512) -> None:
        super().__init__(input_shape=(), n_classes=n_classes, batch_size=batch_size)

    def check_inputs(self, x: Any) -> np.ndarray:
        """``x`` as a 1-D object array of strings, or :class:`DataError` naming what is wrong."""
        return as_text_array(x, source="text classifier inputs")

    def predict_proba_variants(
        self, tokens: TokenizedText, variants: Sequence[Mapping[int, str]]
    ) -> np.ndarray:
        """Probabilities of ``tokens`` with each mapping of word positions to new words.

        ``""`` deletes the word. Equal to ``predict_proba`` of the rebuilt texts; models that
        read words (:class:`TorchTextClassifier`) answer without re-tokenizing, which is what
        makes word-substitution attacks fast.
        """
        texts = np.empty(len(variants), dtype=object)
        texts[:] = [tokens.substitute(v) for v in variants]
        return self.predict_proba(texts)

    def accuracy(self, texts: Sequence[str] | np.ndarray, labels: np.ndarray) -> float:
        """Share of ``texts`` whose predicted label equals ``labels``."""
        return float((self.predict(np.asarray(texts, dtype=object)) == np.asarray(labels)).mean())


class SklearnTextClassifier(TextClassifier):
    """A fitted scikit-learn estimator (usually a ``Pipeline``) whose input is raw strings.

    Probability columns are reordered so column ``k`` is label ``k``.
    """

    def __init__(self, estimator: Any, *, n_classes: int | None = None) -> None:
        if not hasattr(estimator, "predict_proba"):
            raise ModelError(f"{type(estimator).__name__} has no predict_proba")
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            raise ModelError(f"{type(estimator).__name__} is not fitted (it has no classes_)")
        classes = np.asarray(classes)
        if not np.issubdtype(classes.dtype, np.integer) or classes.min() < 0:
            raise ModelError(
                f"the estimator's classes_ must be non-negative integers, got {classes!r}"
            )
        super().__init__(n_classes=n_classes if n_classes is not None else int(classes.max()) + 1)
        self.estimator = estimator
        self._columns = classes.astype(np.int64)

    def _predict_proba_batch(self, x: np.ndarray) -> np.ndarray:
        raw = np.asarray(self.estimator.predict_proba(list(x)), dtype=np.float32)
        proba = np.zeros((len(x), self.n_classes), dtype=np.float32)
        proba[:, self._columns] = raw
        return proba


@dataclass(frozen=True)
class Vocabulary:
    """Lower-cased word tokens to ids; ``0`` pads, ``1`` stands for unknown words.

    Words are the tokens of :func:`mlwarden.data.text.tokenize`, so the model sees exactly the
    units the synonym attack substitutes.
    """

    words: tuple[str, ...]
    max_length: int = 400

    def __post_init__(self) -> None:
        if self.words[:2] != ("<pad>", "<unk>"):
            raise ModelError("a vocabulary starts with '<pad>' and '<unk>'")
        if self.max_length < 1:
            raise ConfigError(f"max_length must be positive, got {self.max_length}")
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.words)})

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        *,
        min_count: int = 2,
        max_size: int = 30000,
        max_length: int = 400,
    ) -> Vocabulary:
        """The ``max_size`` most frequent words seen at least ``min_count`` times (ties by word)."""
        counts = Counter(w.lower() for text in texts for w in tokenize(text).words)
        kept = sorted(
            (w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w)
        )
        return cls(words=("<pad>", "<unk>", *kept[: max_size - 2]), max_length=max_length)

    def __len__(self) -> int:
        return len(self.words)

    def id_of(self, word: str) -> int:
        """The id of ``word`` (lower-cased); 1 for unknown words."""
        index: dict[str, int] = self._index  # type: ignore[attr-defined]
        return index.get(word.lower(), _UNK)

    def encode(self, texts: Sequence[str] | np.ndarray) -> torch.Tensor:
        """Token ids, ``(n, longest)`` padded with 0 and cut at ``max_length`` words."""
        index: dict[str, int] = self._index  # type: ignore[attr-defined]
        rows = [
            [index.get(w.lower(), _UNK) for w in tokenize(str(t)).words[: self.max_length]]
            for t in texts
        ]
        width = max(1, *(len(r) for r in rows)) if rows else 1
        ids = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
        return torch.from_numpy(ids)


class MeanEmbeddingNet(nn.Module):
    """Mean of the word embeddings of a text, then a linear layer (fastText, Joulin et al. 2017).

    Padding (id 0) is left out of the mean; an empty text gives the zero vector.
    """

    def __init__(self, vocab_size: int, n_classes: int, dim: int = 64) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=_PAD)
        self.dropout = nn.Dropout(0.3)
        self.out = nn.Linear(dim, n_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != _PAD).unsqueeze(-1).to(torch.float32)
        summed = (self.embedding(ids) * mask).sum(dim=1)
        mean = summed / mask.sum(dim=1).clamp(min=1.0)
        return self.out(self.dropout(mean))


class TorchTextClassifier(TextClassifier):
    """A PyTorch module over token ids (``(n, length)`` int64 -> logits) with its vocabulary."""

    def __init__(
        self,
        module: nn.Module,
        vocabulary: Vocabulary,
        *,
        n_classes: int,
        batch_size: int = 512,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(n_classes=n_classes, batch_size=batch_size)
        self.device = torch.device(device)
        self.module = module
        self.vocabulary = vocabulary
        self._inference = frozen_view(module).to(self.device)

    def logits_for_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits of the module (evaluation mode) for a batch of token ids."""
        return self._inference(ids.to(self.device))

    def _predict_proba_batch(self, x: np.ndarray) -> np.ndarray:
        return self._proba(self.vocabulary.encode(x))

    def _proba(self, ids: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            logits = self.logits_for_ids(ids)
            return torch.softmax(logits.float(), dim=1).cpu().numpy().astype(np.float32)

    def predict_proba_variants(
        self, tokens: TokenizedText, variants: Sequence[Mapping[int, str]]
    ) -> np.ndarray:
        """Like the base method, from token ids: no text is rebuilt or re-tokenized.

        Substituted words are looked up in the vocabulary, deleted words removed before the
        ``max_length`` cut, exactly as :meth:`Vocabulary.encode` would do on the rebuilt text.
        """
        vocab = self.vocabulary
        base = np.array([vocab.id_of(w) for w in tokens.words], dtype=np.int64)
        rows: list[np.ndarray] = []
        for variant in variants:
            ids = base.copy()
            dropped = []
            for position, word in variant.items():
                if word:
                    ids[position] = vocab.id_of(word)
                else:
                    dropped.append(position)
            if dropped:
                ids = np.delete(ids, dropped)
            rows.append(ids[: vocab.max_length])
        if not rows:
            return np.zeros((0, self.n_classes), dtype=np.float32)
        width = max(1, *(len(r) for r in rows))
        batch = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            batch[i, : len(row)] = row
        parts = [
            self._proba(torch.from_numpy(batch[i : i + self.batch_size]))
            for i in range(0, len(batch), self.batch_size)
        ]
        return np.concatenate(parts)


def _check_training_data(
    texts: Sequence[str] | np.ndarray, labels: Any
) -> tuple[list[str], np.ndarray]:
    x = as_text_array(texts, source="training texts")
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"training labels must be {len(x)} integers, one per text, got shape {y.shape} "
            f"dtype {y.dtype}"
        )
    if len(np.unique(y)) < 2:
        raise DataError("training labels hold a single class; a classifier needs two or more")
    return [str(t) for t in x], y.astype(np.int64)


def fit_tfidf_logreg(
    texts: Sequence[str] | np.ndarray,
    labels: Any,
    *,
    ngram_range: tuple[int, int] = (1, 2),
    c: float = 10.0,
    seed: int = 0,
) -> SklearnTextClassifier:
    """TF-IDF (sublinear term frequency, word n-grams) and logistic regression, fitted."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    x, y = _check_training_data(texts, labels)
    pipeline = Pipeline(
        [
            ("tfidf", TfidfVectorizer(ngram_range=ngram_range, sublinear_tf=True)),
            ("logreg", LogisticRegression(C=c, max_iter=2000, random_state=seed)),
        ]
    )
    pipeline.fit(x, y)
    return SklearnTextClassifier(pipeline, n_classes=max(2, int(y.max()) + 1))


def fit_embedding_bag(
    texts: Sequence[str] | np.ndarray,
    labels: Any,
    *,
    dim: int = 128,
    epochs: int = 4,
    batch_size: int = 32,
    lr: float = 1e-2,
    weight_decay: float = 1e-5,
    seed: int = 0,
    vocabulary: Vocabulary | None = None,
) -> TorchTextClassifier:
    """Train a :class:`MeanEmbeddingNet` with Adam on cross-entropy (seeded, CPU).

    The defaults are the best of a small sweep on ``builtin:convention-speeches`` (about 76%
    test accuracy; longer training overfits the 1,666 training paragraphs).
    """
    x, y = _check_training_data(texts, labels)
    if epochs < 1 or batch_size < 1:
        raise ConfigError(f"epochs and batch_size must be positive, got {epochs}, {batch_size}")
    vocab = vocabulary or Vocabulary.build(x)
    n_classes = max(2, int(y.max()) + 1)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MeanEmbeddingNet(len(vocab), n_classes, dim=dim)
    ids = vocab.encode(x)
    targets = torch.from_numpy(y)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
                loss = nn.functional.cross_entropy(model(ids[batch]), targets[batch])
            loss.backward()
            optimizer.step()
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return TorchTextClassifier(model, vocab, n_classes=n_classes)


def save_text_model(
    classifier: TextClassifier, path: str | Path, *, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``classifier`` to ``path`` (``.skops`` or ``.pt2``) and its ``.mlwarden.json`` sidecar.

    The sidecar says ``"modality": "text"`` and, for a PyTorch model, holds the vocabulary.
    Both files are written atomically.
    """
    path = Path(path)
    meta: dict[str, Any] = dict(metadata or {})
    meta.update(modality="text", n_classes=classifier.n_classes)
    if isinstance(classifier, SklearnTextClassifier):
        if path.suffix != ".skops":
            raise ConfigError(f"a scikit-learn text model is saved as .skops, got {path.name}")
        import skops.io as sio

        target = atomic_write_with(path, lambda tmp: sio.dump(classifier.estimator, tmp))
    elif isinstance(classifier, TorchTextClassifier):
        if path.suffix != ".pt2":
            raise ConfigError(f"a PyTorch text model is saved as .pt2, got {path.name}")
        module = frozen_view(classifier.module)
        example = torch.ones((2, 8), dtype=torch.int64)
        dims = ({0: torch.export.Dim("batch", min=1), 1: torch.export.Dim("length", min=1)},)
        program = torch.export.export(module, (example,), dynamic_shapes=dims)
        target = atomic_write_with(path, lambda tmp: torch.export.save(program, str(tmp)))
        meta["vocabulary"] = list(classifier.vocabulary.words)
        meta["max_length"] = classifier.vocabulary.max_length
    else:
        raise ConfigError(f"cannot save a {type(classifier).__name__}; give a text classifier")
    atomic_write_text(str(target) + SIDECAR_SUFFIX, json.dumps(meta, indent=1, sort_keys=True))
    return target


def _load_text_model(path: Path, meta: dict[str, Any], *, device: str = "cpu") -> TextClassifier:
    n_classes = meta.get("n_classes")
    if not isinstance(n_classes, int) or n_classes < 2:
        raise ModelError(f"{path.name}{SIDECAR_SUFFIX}: n_classes must be an integer >= 2")
    if path.suffix.lower() == ".skops":
        return SklearnTextClassifier(load_skops_estimator(path), n_classes=n_classes)
    if path.suffix.lower() == ".pt2":
        words = meta.get("vocabulary")
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ModelError(
                f"{path.name}{SIDECAR_SUFFIX}: a PyTorch text model needs its vocabulary "
                "(a list of words) in the sidecar"
            )
        vocab = Vocabulary(words=tuple(words), max_length=int(meta.get("max_length", 400)))
        module = load_torch_program(path, device=device)
        return TorchTextClassifier(module, vocab, n_classes=n_classes, device=device)
    raise ModelError(f"{path.name}: text models are .skops or .pt2 files")


MODEL_MODALITIES.register("text", _load_text_model)
