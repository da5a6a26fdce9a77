"""The exception hierarchy every user-facing mlwarden error comes from.

Every error a user can cause (a bad path, a bad configuration value, a malformed data file,
an unsafe artifact) raises a subclass of :class:`MlwardenError` whose message names the bad
value, what was expected and how to fix it. The CLI turns any of these into one red line and
exit code 2; anything else is a bug.

::

    MlwardenError
    ├── ConfigError            a configuration value or CLI option is invalid
    ├── DataError              a dataset is missing, malformed, or has bad values
    ├── ModelError             a model cannot be used as asked
    │   ├── UnsafeModelError   the file format could execute code when loaded (pickle, joblib)
    │   └── SignatureError     a signature is missing, damaged, or does not match the files
    ├── AttackError            an attack was given parameters or inputs it cannot work with
    ├── FederationError        a federated engine's process (SuperLink, SuperNode) or run failed
    └── ReportError            a report cannot be written
"""

from __future__ import annotations

__all__ = [
    "AttackError",
    "ConfigError",
    "DataError",
    "FederationError",
    "MlwardenError",
    "ModelError",
    "ReportError",
    "SecurityWarning",
    "SignatureError",
    "UnsafeModelError",
]


class MlwardenError(Exception):
    """Base class of every error mlwarden raises on purpose."""


class ConfigError(MlwardenError, ValueError):
    """A configuration value or command-line option is invalid."""


class DataError(MlwardenError, ValueError):
    """A dataset is missing, malformed, or contains values that cannot be used."""


class ModelError(MlwardenError):
    """A model cannot be loaded or used as asked."""


class UnsafeModelError(ModelError):
    """A model file is in a format that can run arbitrary code when loaded."""


class SignatureError(ModelError):
    """A model's signature is missing, damaged, made with another key, or does not match its files."""


class FederationError(MlwardenError):
    """A federated engine's process failed to start or exited early, or its run failed."""


class AttackError(MlwardenError, ValueError):
    """An attack was given parameters or inputs it cannot work with."""


class ReportError(MlwardenError):
    """A report or artifact cannot be written."""


class SecurityWarning(UserWarning):
    """Warns that a setting weakens a security property (for example, disabling a check)."""
