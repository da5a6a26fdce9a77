"""Tests of :mod:`mlwarden.attacks.extraction`."""
