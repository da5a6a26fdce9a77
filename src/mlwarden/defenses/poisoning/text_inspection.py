"""Inspect a text training set for poison: what ``mlwarden data inspect`` runs on text data.

* always: phrase-label association (:class:`~mlwarden.defenses.poisoning.text_association.PhraseAssociation`;
  with ``fit``, each significant phrase is confirmed by exclusionary reclassification);
* with a model trained on the data: spectral signatures and activation clustering on its text
  representations (:func:`~mlwarden.defenses.poisoning.text_representations.text_representations`);
* with a model and a clean holdout: text STRIP over the training texts
  (:class:`~mlwarden.defenses.poisoning.text_strip.TextSTRIP`), thresholded at 1% false
  positives on half of the holdout.

The result is the same :class:`~mlwarden.defenses.poisoning.inspection.Inspection` the array
checks return, so reports, removal and retraining work unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mlwarden.data.dataset import Dataset
from mlwarden.defenses.poisoning.base import SampleFlags
from mlwarden.defenses.poisoning.clustering import ActivationClustering
from mlwarden.defenses.poisoning.inspection import Inspection
from mlwarden.defenses.poisoning.spectral import SpectralSignatures
from mlwarden.defenses.poisoning.text_association import FitText, PhraseAssociation
from mlwarden.defenses.poisoning.text_representations import text_representations
from mlwarden.defenses.poisoning.text_strip import TextSTRIP
from mlwarden.errors import DataError
from mlwarden.models.base import Classifier

__all__ = ["TEXT_DEFAULT_REMOVE_BY", "TEXT_DETECTORS", "inspect_text_data"]

TEXT_DETECTORS: tuple[str, ...] = (
    "phrase-association",
    "spectral-signatures",
    "activation-clustering",
    "strip",
)
"""Names of the detectors :func:`inspect_text_data` can run (``--remove-by`` choices for text)."""

TEXT_DEFAULT_REMOVE_BY: tuple[str, ...] = ("phrase-association",)
"""What ``--remove`` acts on for text by default: the precise detector (spectral signatures
remove a fixed share of every class by design)."""

STRIP_FPR = 0.01


def inspect_text_data(
    data: Dataset,
    *,
    classifier: Classifier | None = None,
    clean: Dataset | None = None,
    truth: np.ndarray | None = None,
    fit: FitText | None = None,
    expected_rate: float = 0.05,
    seed: int = 0,
    on_step: Callable[[str], None] | None = None,
) -> Inspection:
    """Run the text detectors over ``data`` (texts and labels).

    Parameters
    ----------
    classifier
        A text model trained on ``data`` (enables the representation detectors, and STRIP
        with ``clean``).
    clean
        Curated clean texts of the same task.
    truth
        Boolean mask of the truly poisoned texts, for precision and recall.
    fit
        Trains a text model and returns its ``predict``: confirms phrases and activation
        clusters by exclusionary reclassification.
    expected_rate
        Spectral signatures' ``ε``: the largest poisoned share of a class believed possible.
    """
    if data.kind != "text":
        raise DataError(f"{data.name} is {data.kind} data; inspect_text_data reads text")
    if truth is not None and truth.shape != (len(data),):
        raise DataError(f"the truth mask has shape {truth.shape}; expected ({len(data)},)")
    step = on_step or (lambda _: None)
    texts = [str(t) for t in data.x]
    detections: list[SampleFlags] = []
    skipped: list[str] = []
    step("phrase-label association")
    detections.append(PhraseAssociation().detect(texts, data.y, fit=fit))
    if classifier is not None:
        step("text representations")
        features = text_representations(classifier, texts, seed=seed)
        step("spectral signatures")
        detections.append(SpectralSignatures(expected_rate=expected_rate).detect(features, data.y))
        step("activation clustering")
        reclassify = None
        if fit is not None:
            train_fn = fit

            def reclassify(keep: np.ndarray) -> np.ndarray:
                rows = np.flatnonzero(keep)
                return np.asarray(train_fn([texts[i] for i in rows], data.y[rows])(texts))

        detections.append(
            ActivationClustering(seed=seed).detect(features, data.y, reclassify=reclassify)
        )
    else:
        skipped.append("spectral signatures and activation clustering need a model (--model)")
    if clean is not None and classifier is not None:
        step("text STRIP")
        detections.append(_strip(classifier, data, clean, seed))
    elif clean is None:
        skipped.append("STRIP needs a clean holdout (--clean)")
    return Inspection(data=data, detections=detections, truth=truth, skipped=skipped)


def _strip(classifier: Classifier, data: Dataset, clean: Dataset, seed: int) -> SampleFlags:
    order = np.random.default_rng(seed).permutation(len(clean))
    half = len(clean) // 2
    detector = TextSTRIP(classifier, seed=seed).fit(clean.x[order[:half]])
    detector.calibrate(clean.x[order[half:]], fpr=STRIP_FPR)
    scores = detector.score(data.x)
    return SampleFlags(
        detector="strip",
        scores=scores,
        flagged=scores > detector.threshold_,
        reason=(
            "its prediction stays confident when half its words are replaced by clean words "
            f"(STRIP entropy below the clean holdout's {STRIP_FPR:.0%} quantile)"
        ),
        details={"threshold": detector.threshold_, "fpr": STRIP_FPR},
    )
