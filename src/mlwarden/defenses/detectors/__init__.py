"""Input detectors: fitted on clean data, calibrated to a false-positive rate, saved without pickle."""

from mlwarden.defenses.detectors.base import DETECTOR_FORMAT, DETECTORS, Detector, load_detector
from mlwarden.defenses.detectors.features import penultimate_features
from mlwarden.defenses.detectors.knn import KNNDetector
from mlwarden.defenses.detectors.mahalanobis import MahalanobisDetector
from mlwarden.defenses.detectors.squeeze import FeatureSqueezing
from mlwarden.defenses.detectors.strip import STRIP

register = DETECTORS.register
get_detector = DETECTORS.get
detector_names = DETECTORS.names

for _cls in (FeatureSqueezing, MahalanobisDetector, KNNDetector, STRIP):
    register(_cls.name, _cls)

__all__ = [
    "DETECTORS",
    "DETECTOR_FORMAT",
    "STRIP",
    "Detector",
    "FeatureSqueezing",
    "KNNDetector",
    "MahalanobisDetector",
    "detector_names",
    "get_detector",
    "load_detector",
    "penultimate_features",
    "register",
]
