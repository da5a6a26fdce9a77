"""What a text classifier "sees" of each training text: the representations spectral signatures
(Tran et al. 2018) and activation clustering (Chen et al. 2018) read.

* A PyTorch text model (:class:`~mlwarden.models.text.TorchTextClassifier`): the input of its
  last ``nn.Linear`` layer (for the mean-embedding model, the text's mean word embedding),
  recorded by a forward pre-hook, as :mod:`~mlwarden.defenses.poisoning.representations` does
  for image models.
* A scikit-learn pipeline ending in a linear model (TF-IDF + logistic regression): its
  *evidence*, each feature's value times its weight (``x ⊙ w``, what the decision sums), reduced
  to ``n_components`` dimensions by truncated SVD (seeded). A trigger's n-grams carry large
  weights in few texts, so they dominate the evidence of the poisoned texts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import sparse
from torch import nn

from mlwarden.errors import ModelError
from mlwarden.models.base import Classifier

__all__ = ["text_representations"]


def text_representations(
    classifier: Classifier,
    texts: Sequence[str] | np.ndarray,
    *,
    n_components: int = 64,
    seed: int = 0,
    batch_size: int = 512,
) -> np.ndarray:
    """``(n, d)`` representations of ``texts`` under ``classifier`` (see the module docstring).

    Raises
    ------
    ModelError
        The classifier is neither a PyTorch text model with a linear layer nor a scikit-learn
        pipeline ending in a linear model.
    """
    from mlwarden.models.text import SklearnTextClassifier, TorchTextClassifier

    docs = [str(t) for t in texts]
    if isinstance(classifier, TorchTextClassifier):
        return _torch_features(classifier, docs, batch_size)
    if isinstance(classifier, SklearnTextClassifier):
        return _linear_evidence(classifier.estimator, docs, n_components, seed)
    raise ModelError(
        f"text representations need a PyTorch text model or a scikit-learn text pipeline, got "
        f"{type(classifier).__name__}"
    )


def _torch_features(classifier: object, docs: list[str], batch_size: int) -> np.ndarray:
    module: nn.Module = classifier.module  # type: ignore[attr-defined]
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ModelError("the text model has no nn.Linear layer to read representations before")
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        captured.append(inputs[0].detach().flatten(1).float().cpu())

    handle = linears[-1].register_forward_pre_hook(hook)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(docs), batch_size):
                ids = classifier.vocabulary.encode(docs[start : start + batch_size])  # type: ignore[attr-defined]
                module(ids)
    finally:
        handle.remove()
        module.train(was_training)
    return torch.cat(captured).numpy().astype(np.float64)


def _linear_evidence(
    estimator: object, docs: list[str], n_components: int, seed: int
) -> np.ndarray:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.pipeline import Pipeline

    if not isinstance(estimator, Pipeline) or not hasattr(estimator[-1], "coef_"):
        raise ModelError(
            "text representations of a scikit-learn model need a Pipeline ending in a linear "
            f"model (coef_), got {type(estimator).__name__}"
        )
    features = sparse.csr_matrix(estimator[:-1].transform(docs))
    coef = np.asarray(estimator[-1].coef_)
    weights = coef[0] if coef.shape[0] == 1 else np.abs(coef).max(axis=0)
    evidence = sparse.csr_matrix(features.multiply(weights[None, :]))
    k = max(1, min(n_components, evidence.shape[1] - 1, evidence.shape[0] - 1))
    return np.asarray(TruncatedSVD(n_components=k, random_state=seed).fit_transform(evidence))
