"""Record what an mlwarden command made: a trained model or a derived dataset, with its lineage.

The commands that train (``harden``, ``harden dp``, ``zoo train``) or derive data (``data
poison``, ``data inspect --remove``) call these when they are given a registry (``--registry`` or
``$MLWARDEN_REGISTRY``), so a model or a dataset gets its lineage edge without anyone calling the
registry by hand; without a registry they never run.

* A model is registered under its file's stem with a ``train`` run from every digest its sidecar
  records (training and validation data, and the base model a hardened model started from) and
  from the file digest of every data file the command read: a registered CSV split into training
  and held-out parts is still found, although the sidecar records the digest of the split.
* A derived dataset gets a ``transform`` run from its inputs' digests to its own (file digest
  and, for ``.npz``/``.csv``, the :meth:`~mlwarden.data.Dataset.digest` a model trained on it will
  record). It is registered only when one of its inputs is a registered dataset: it inherits that
  dataset's data card (same owner, licence, sensitivity and retention period; the description
  says where it came from). A derived copy of unregistered data has no card to inherit and stays
  an unregistered node until someone registers it; the run already links it by digest.

A name already taken by another file gets the file digest's first eight hex digits appended;
re-running a command onto the same path re-registers it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlwarden.errors import ConfigError, DataError
from mlwarden.governance.registry import Artifact, Registry, Run, file_sha256

__all__ = [
    "data_digest",
    "input_digests",
    "record_derived_dataset",
    "record_trained_model",
    "sidecar_model_digests",
]


def sidecar_model_digests(sidecar: dict[str, Any]) -> list[str]:
    """File digests of the models a model was derived from (a hardened model's base model)."""
    training = sidecar.get("training")
    base = training.get("base_model") if isinstance(training, dict) else None
    base = base if isinstance(base, dict) else sidecar.get("base_model")
    if isinstance(base, dict):
        digest = base.get("sha256")
        if isinstance(digest, str) and len(digest) == 64:
            return [digest]
    return []


def data_digest(path: str | Path, *, label_column: str = "label") -> str | None:
    """The :meth:`~mlwarden.data.Dataset.digest` of a ``.npz``/``.csv`` file (``None``: other)."""
    path = Path(path)
    if path.suffix.lower() not in (".npz", ".csv"):
        return None
    from mlwarden.data import load_dataset

    try:
        return load_dataset(str(path), label_column=label_column).digest()
    except (DataError, ConfigError):
        return None


def input_digests(specs: Iterable[str | None]) -> list[str]:
    """File digests of the data specs that name existing files (``builtin:`` ones have none)."""
    found = []
    for spec in specs:
        if spec and not spec.startswith("builtin:") and Path(spec).exists():
            found.append(file_sha256(spec))
    return found


def _free_name(registry: Registry, path: Path, digest: str) -> tuple[str, bool]:
    """A registry name for ``path``: its stem, or stem-<digest> when another file holds it."""
    name = path.stem or path.name
    for candidate in (name, f"{name}-{digest[:8]}"):
        try:
            existing = registry.get(candidate)
        except ConfigError:
            return candidate, False
        if Path(existing.path) == path:
            return candidate, True
    raise ConfigError(
        f"{path}: the names {name!r} and {name}-{digest[:8]!r} are registered to other files; "
        "register it by hand (mlwarden governance register-model --name ...)"
    )


def record_trained_model(
    registry: Registry, path: str | Path, *, data_files: Iterable[str | None] = ()
) -> tuple[Artifact, Run | None]:
    """Register the model at ``path`` (its sidecar says what it was trained on).

    Parameters
    ----------
    registry
        Where to record it.
    path
        The model file the command wrote (its ``.mlwarden.json`` sidecar beside it).
    data_files
        The data specs the command read (``--data``, ``--val-data``): files among them are
        linked by file digest as well.

    Returns
    -------
    tuple[Artifact, Run | None]
        The model's record and its ``train`` run (``None`` when nothing it came from is known).
    """
    from mlwarden.models.loading import read_sidecar

    path = Path(path).resolve()
    sidecar = read_sidecar(path)
    name, replace = _free_name(registry, path, file_sha256(path))
    extra = [*input_digests(data_files), *sidecar_model_digests(sidecar)]
    return registry.register_model(name, path, sidecar, replace=replace, extra_inputs=extra)


def record_derived_dataset(
    registry: Registry,
    path: str | Path,
    *,
    inputs: Iterable[str],
    command: str,
    version: str,
    label_column: str = "label",
) -> tuple[Artifact | None, Run]:
    """Record that the data at ``path`` was made from the data digests ``inputs`` by ``command``.

    Returns
    -------
    tuple[Artifact | None, Run]
        The dataset's record (``None`` when no input is a registered dataset, so there is no
        data card to inherit) and the ``transform`` run.
    """
    path = Path(path).resolve()
    inputs = list(dict.fromkeys(inputs))
    if not inputs:
        raise ConfigError(f"{path}: a derived dataset needs at least one input digest")
    own = file_sha256(path)
    outputs = [own, *([d] if (d := data_digest(path, label_column=label_column)) else [])]
    parent = next(
        (
            artifact
            for digest in inputs
            for artifact in registry.by_digest(digest)
            if artifact.kind == "dataset" and artifact.card is not None
        ),
        None,
    )
    artifact = None
    if parent is not None and parent.card is not None:
        card = parent.card.model_copy(
            update={"description": f"derived from {parent.name} by {command}"}
        )
        name, replace = _free_name(registry, path, own)
        artifact = registry.register_dataset(
            name, path, card, data_sha256=outputs[1] if len(outputs) > 1 else None, replace=replace
        )
    run = registry.record_run("transform", inputs, outputs, command, version)
    return artifact, run
