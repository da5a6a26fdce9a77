"""Tests of :mod:`mlwarden.attacks` (a package so module names never clash with other test folders)."""
