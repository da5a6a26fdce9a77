"""mlwarden's Flower app project, for Flower's deployment engine (SuperLink + SuperNodes).

This folder is a Flower app: its ``pyproject.toml`` names the ``ServerApp``
(:mod:`mlwarden.federated.app.serverapp`) and the ``ClientApp``
(:mod:`mlwarden.federated.app.clientapp`) and declares the run config
(:class:`~mlwarden.federated.job.FederatedJob`). Both apps build what the in-process engine
builds, with the same functions of :mod:`mlwarden.federated.runner`; only the transport differs.
``flwr run <APP_DIR> <connection>`` submits it; ``mlwarden fl train --engine deployment`` starts
a SuperLink and SuperNodes on 127.0.0.1 and does so itself
(:func:`mlwarden.federated.deployment.run_deployment`).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["APP_DIR"]

APP_DIR = Path(__file__).resolve().parent
"""The app project's folder (the ``APP`` argument of ``flwr run``)."""
