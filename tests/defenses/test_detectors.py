"""Input detectors: the shared contract over every registered detector, then each detector."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from mlwarden.attacks import FGSM
from mlwarden.data import DatasetSplits
from mlwarden.defenses.detectors import (
    Detector,
    FeatureSqueezing,
    KNNDetector,
    MahalanobisDetector,
    detector_names,
    get_detector,
    load_detector,
    penultimate_features,
    register,
)
from mlwarden.defenses.detectors.squeeze import median_smooth, reduce_bit_depth
from mlwarden.errors import ConfigError, ModelError
from mlwarden.models.base import Classifier
from mlwarden.models.torch import TorchClassifier
from mlwarden.models.zoo import digits_cnn as digits_architecture


def test_the_registry_lists_the_builtin_detectors() -> None:
    assert detector_names() == ["feature-squeezing", "knn", "mahalanobis", "strip"]
    assert get_detector("mahalanobis") is MahalanobisDetector


def test_registering_a_name_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register("knn", KNNDetector)


def test_an_unknown_detector_name_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match="feature-squeezing"):
        get_detector("nope")


@pytest.fixture(params=detector_names())
def fitted(
    request: pytest.FixtureRequest, digits: DatasetSplits, digits_cnn: Classifier
) -> Detector:
    detector = get_detector(request.param)(digits_cnn)
    return detector.fit(digits.train.x[:800], digits.train.y[:800])


def test_scores_have_one_finite_value_per_input(fitted: Detector, digits: DatasetSplits) -> None:
    scores = fitted.score(digits.test.x[:50])
    assert scores.shape == (50,)
    assert np.all(np.isfinite(scores))


def test_calibrate_gives_about_the_target_fpr_on_held_out_clean_data(
    fitted: Detector, digits: DatasetSplits
) -> None:
    fitted.calibrate(digits.train.x[800:], fpr=0.05)
    held_out_fpr = float(np.mean(fitted.predict(digits.test.x)))
    assert abs(held_out_fpr - 0.05) <= 0.04
    calibration_fpr = float(np.mean(fitted.predict(digits.train.x[800:])))
    assert calibration_fpr <= 0.05


def test_save_and_load_round_trip_gives_identical_scores_and_threshold(
    fitted: Detector, digits: DatasetSplits, digits_cnn: Classifier, tmp_path: Path
) -> None:
    fitted.calibrate(digits.train.x[800:], fpr=0.1)
    fitted.save(tmp_path / "det")
    loaded = load_detector(tmp_path / "det", digits_cnn)
    assert type(loaded) is type(fitted)
    assert loaded.threshold_ == fitted.threshold_
    np.testing.assert_array_equal(loaded.score(digits.test.x), fitted.score(digits.test.x))


def test_saved_detectors_contain_no_pickle(fitted: Detector, tmp_path: Path) -> None:
    fitted.save(tmp_path / "det")
    assert sorted(p.name for p in (tmp_path / "det").iterdir()) == ["detector.json", "state.npz"]
    with np.load(tmp_path / "det" / "state.npz", allow_pickle=False) as archive:
        assert all(archive[k].dtype != object for k in archive.files)
    meta = json.loads((tmp_path / "det" / "detector.json").read_text())
    assert meta["format"] == "mlwarden.detector/1"
    assert meta["detector"] == fitted.name


def test_scoring_before_fit_is_refused(digits_cnn: Classifier, digits: DatasetSplits) -> None:
    for name in detector_names():
        with pytest.raises(ConfigError, match="fit"):
            get_detector(name)(digits_cnn).score(digits.test.x[:2])


def test_predict_before_calibrate_is_refused(fitted: Detector, digits: DatasetSplits) -> None:
    with pytest.raises(ConfigError, match="calibrate"):
        fitted.predict(digits.test.x[:2])


@pytest.mark.parametrize("fpr", [0, 1, -0.1, 1.5])
def test_calibrate_refuses_an_fpr_outside_0_1(
    fitted: Detector, digits: DatasetSplits, fpr: float
) -> None:
    with pytest.raises(ConfigError, match="fpr"):
        fitted.calibrate(digits.train.x[800:], fpr=fpr)


def test_loading_a_detector_for_another_model_is_refused(
    digits: DatasetSplits, digits_cnn: Classifier, tmp_path: Path
) -> None:
    FeatureSqueezing(digits_cnn).fit(digits.train.x[:10]).save(tmp_path / "det")
    other = TorchClassifier(digits_architecture(), input_shape=(1, 8, 8), n_classes=10)
    other.info["sha256"] = "0" * 64
    with pytest.raises(ModelError, match="refit"):
        load_detector(tmp_path / "det", other)


def test_loading_a_folder_that_is_not_a_detector_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"detector\.json"):
        load_detector(tmp_path)


def test_loading_refuses_object_arrays(
    digits: DatasetSplits, digits_cnn: Classifier, tmp_path: Path
) -> None:
    KNNDetector(digits_cnn).fit(digits.train.x[:20]).save(tmp_path / "det")
    np.savez(tmp_path / "det" / "state.npz", reference=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ModelError, match="numeric"):
        load_detector(tmp_path / "det", digits_cnn)


def test_feature_squeezing_detects_fgsm_on_the_digits_cnn(
    digits: DatasetSplits, digits_cnn: Classifier
) -> None:
    result = FGSM(eps=0.1).generate(digits_cnn, digits.test.x, digits.test.y)
    adversarial = result.x_adv[result.success]
    detector = FeatureSqueezing(digits_cnn).fit(digits.train.x)
    clean_scores = detector.score(digits.test.x)
    adv_scores = detector.score(adversarial)
    labels = np.r_[np.zeros(len(clean_scores)), np.ones(len(adv_scores))]
    auc = roc_auc_score(labels, np.r_[clean_scores, adv_scores])
    assert auc > 0.8


def test_bit_depth_reduction_keeps_2_to_the_bits_levels() -> None:
    x = torch.linspace(0, 1, 101)
    assert len(torch.unique(reduce_bit_depth(x, 2, (0.0, 1.0)))) == 4
    assert torch.equal(
        reduce_bit_depth(torch.tensor([0.0, 1.0]), 1, (0.0, 1.0)), torch.tensor([0.0, 1.0])
    )


def test_median_smoothing_matches_scipy() -> None:
    from scipy.ndimage import median_filter

    rng = np.random.default_rng(0)
    x = rng.random((2, 1, 6, 7)).astype(np.float32)
    for size in (2, 3):
        expected = median_filter(x, size=(1, 1, size, size), mode="nearest")
        np.testing.assert_allclose(median_smooth(torch.from_numpy(x), size).numpy(), expected)


def test_squeezing_gradients_pass_straight_through(
    digits_cnn: Classifier, digits: DatasetSplits
) -> None:
    detector = FeatureSqueezing(digits_cnn, bit_depth=2).fit(digits.train.x[:5])
    x = torch.from_numpy(digits.test.x[:4]).requires_grad_(True)
    detector.score_tensor(x).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_feature_squeezing_needs_a_squeezer(digits_cnn: Classifier, digits: DatasetSplits) -> None:
    with pytest.raises(ConfigError, match="squeezer"):
        FeatureSqueezing(digits_cnn, bit_depth=None).fit(digits.train.x[:5])


def test_penultimate_features_of_an_exported_model_feed_its_last_layer(
    digits_cnn: Classifier,
) -> None:
    features = penultimate_features(digits_cnn)
    x = torch.rand(3, 1, 8, 8)
    module = digits_cnn.module  # type: ignore[attr-defined]
    weight, bias = module.get_parameter("8.weight"), module.get_parameter("8.bias")
    with torch.no_grad():
        f = features(x)
        assert f.shape == (3, 64)
        torch.testing.assert_close(f @ weight.T + bias, digits_cnn.logits(x))  # type: ignore[attr-defined]


def test_penultimate_features_of_a_sequential_drop_its_last_layer() -> None:
    module = digits_architecture()
    classifier = TorchClassifier(module, input_shape=(1, 8, 8), n_classes=10)
    with torch.no_grad():
        x = torch.rand(2, 1, 8, 8)
        torch.testing.assert_close(module[-1](penultimate_features(classifier)(x)), module(x))


def test_mahalanobis_flags_far_out_of_distribution_inputs(
    digits: DatasetSplits, digits_cnn: Classifier
) -> None:
    detector = MahalanobisDetector(digits_cnn).fit(digits.train.x, digits.train.y)
    detector.calibrate(digits.test.x[:270], fpr=0.05)
    noise = np.random.default_rng(0).random((100, 1, 8, 8)).astype(np.float32)
    assert np.mean(detector.predict(noise)) > 0.9


class _BlackBox(Classifier):
    def _predict_proba_batch(self, x: np.ndarray) -> np.ndarray:
        return np.full((len(x), self.n_classes), 1.0 / self.n_classes, dtype=np.float32)


def test_mahalanobis_refuses_black_box_models(digits: DatasetSplits) -> None:
    model = _BlackBox(input_shape=(1, 8, 8), n_classes=10)
    with pytest.raises(ModelError, match="knn"):
        MahalanobisDetector(model).fit(digits.train.x[:20])


def test_knn_works_without_a_model_and_calibrates_on_tabular_data() -> None:
    rng = np.random.default_rng(0)
    clean = rng.normal(size=(3000, 5)).astype(np.float32)
    detector = KNNDetector(k=5).fit(clean[:1000]).calibrate(clean[1000:2000], fpr=0.05)
    assert abs(float(np.mean(detector.predict(clean[2000:]))) - 0.05) <= 0.02
    shifted = clean[2000:2100] + 3.0
    assert np.mean(detector.predict(shifted)) > 0.95
