"""Write a poisoned dataset with its ground truth, and read the ground truth back.

``save_poisoned(result, "poisoned.npz")`` writes ``poisoned.npz`` (arrays ``x`` and ``y``, as
every mlwarden data reader expects) and ``poisoned.truth.json`` beside it: the attack, its
parameters and the poisoned indices. Both writes are atomic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mlwarden._io import atomic_write_text, atomic_write_with
from mlwarden.attacks.poisoning.base import PoisoningAttack, PoisonResult
from mlwarden.errors import ConfigError, DataError

__all__ = [
    "TRUTH_FORMAT",
    "attack_from_truth",
    "load_text_jsonl",
    "load_truth",
    "save_poisoned",
    "truth_path_for",
]

TRUTH_FORMAT = "mlwarden.poison-truth/2"
"""/2: its digests cover shape and dtype (:meth:`~mlwarden.data.Dataset.digest`); /1 still reads."""
_READABLE_TRUTH_FORMATS = ("mlwarden.poison-truth/1", TRUTH_FORMAT)


def truth_path_for(path: str | Path) -> Path:
    """``data.npz`` → ``data.truth.json``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.truth.json")


def save_poisoned(
    result: PoisonResult, path: str | Path, *, source: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write the poisoned data to ``path`` (``.npz``) and its truth file beside it.

    Text data is written as JSON lines (``.jsonl``, one ``{"text": ..., "label": ...}`` a
    line; no pickled object arrays), read back by :func:`load_text_jsonl`.

    Raises
    ------
    ConfigError
        ``path`` does not end in ``.npz`` (``.jsonl`` for text).
    """
    path = Path(path)
    data = result.dataset
    suffix = ".jsonl" if data.kind == "text" else ".npz"
    if path.suffix.lower() != suffix:
        raise ConfigError(
            f"--out {path} must end in {suffix} (the poisoned copy of {data.kind} data is "
            f"saved as {'JSON lines' if suffix == '.jsonl' else 'x, y'})"
        )

    def write(tmp: Path) -> None:
        if data.kind == "text":
            lines = (
                json.dumps({"text": str(t), "label": int(v)}, ensure_ascii=False)
                for t, v in zip(data.x, data.y, strict=True)
            )
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
            return
        with open(tmp, "wb") as fh:
            np.savez(fh, x=data.x, y=data.y)

    target = atomic_write_with(path, write)
    record = {
        **result.truth(),
        "source": source or {},
        "poisoned_sha256": data.digest(),
        "data_file": target.name,
    }
    truth = atomic_write_text(truth_path_for(target), json.dumps(record, indent=2) + "\n")
    return target, truth


def load_truth(path: str | Path, *, n_samples: int | None = None) -> dict[str, Any]:
    """Read a truth file; check its indices against ``n_samples`` when given.

    Raises
    ------
    DataError
        The file is missing, not a truth file, or does not fit the data.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"truth file {str(path)!r} does not exist") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON truth file ({exc})") from None
    if not isinstance(record, dict) or record.get("format") not in _READABLE_TRUTH_FORMATS:
        raise DataError(f"{path}: not a {TRUTH_FORMAT} file (write one with mlwarden data poison)")
    indices = record.get("indices")
    if not isinstance(indices, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in indices
    ):
        raise DataError(f"{path}: 'indices' must be a list of integers")
    if n_samples is not None:
        if record.get("n_samples") not in (None, n_samples):
            raise DataError(
                f"{path}: the truth is for {record['n_samples']} samples but the data has "
                f"{n_samples}; give the truth file written with this data"
            )
        bad = [i for i in indices if not 0 <= i < n_samples]
        if bad:
            raise DataError(f"{path}: indices {bad[:5]} lie outside [0, {n_samples - 1}]")
    return record


def attack_from_truth(record: dict[str, Any]) -> PoisoningAttack:
    """Rebuild the attack a truth file records (to re-apply its trigger to test data)."""
    from mlwarden.attacks.poisoning import get_poisoning_attack

    cls = get_poisoning_attack(str(record.get("attack")))
    params = record.get("params") or {}
    if not isinstance(params, dict):
        raise DataError("the truth file's params must be a mapping")
    try:
        return cls(**params)
    except TypeError as exc:
        raise DataError(f"the truth file's params do not fit {cls.__name__}: {exc}") from None


def load_text_jsonl(path: str | Path, *, n_classes: int | None = None) -> Any:
    """The :class:`~mlwarden.data.text.TextDataset` of a JSON-lines file ``{"text", "label"}``.

    Raises
    ------
    DataError
        The file is missing, a line is not JSON, or lacks a string ``text`` or integer ``label``.
    """
    from mlwarden.data.text import TextDataset

    path = Path(path)
    if not path.is_file():
        raise DataError(f"text data file {str(path)!r} does not exist")
    texts: list[str] = []
    labels: list[int] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: not JSON ({exc.msg})") from None
        text, label = (row.get("text"), row.get("label")) if isinstance(row, dict) else (None, None)
        if not isinstance(text, str) or isinstance(label, bool) or not isinstance(label, int):
            raise DataError(f"{path}:{number}: needs a string 'text' and an integer 'label'")
        texts.append(text)
        labels.append(label)
    if not texts:
        raise DataError(f"{path} holds no texts")
    return TextDataset.from_texts(texts, labels, name=str(path), n_classes=n_classes)
