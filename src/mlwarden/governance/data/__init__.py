"""Derived data of the sensitive-data scanner: ``pii_lists.json`` (built by ``build_lists.py``)."""
