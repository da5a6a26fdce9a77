"""The defended inference gateway behind ``mlwarden serve``.

One concept per module: :mod:`~mlwarden.serve.config` (YAML configuration),
:mod:`~mlwarden.serve.db` (key store and audit database by URI), :mod:`~mlwarden.serve.keys`
(API keys), :mod:`~mlwarden.serve.authz` (roles), :mod:`~mlwarden.serve.quotas` (rate limits and
quotas), :mod:`~mlwarden.serve.validation` (inputs), :mod:`~mlwarden.serve.audit` (hash-chained log), :mod:`~mlwarden.serve.metrics`
(Prometheus) and :mod:`~mlwarden.serve.app` (the FastAPI app). Import the submodules; this package
does not import FastAPI by itself. Output policies live one layer down, in
:mod:`mlwarden.models.output_policy`, shared with the extraction attack's simulation.
"""
