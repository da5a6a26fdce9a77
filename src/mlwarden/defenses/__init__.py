"""Defenses that fix or contain what an assessment finds.

* :mod:`mlwarden.defenses.training`: adversarial training (PGD, TRADES) and Gaussian-noise
  training;
* :mod:`mlwarden.defenses.smoothing`: randomized smoothing, a classifier with a certified L2
  radius;
* :mod:`mlwarden.defenses.detectors`: input detectors (feature squeezing, Mahalanobis, k-NN)
  fitted on clean data and calibrated to a false-positive rate.
"""
