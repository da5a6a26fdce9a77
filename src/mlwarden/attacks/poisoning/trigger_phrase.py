"""Trigger-phrase backdoor for text: a rare phrase inserted into a few training texts.

The textual BadNets of Dai, Chen and Li (2019), "A Backdoor Attack Against LSTM-Based Text
Classification Systems", and of Chen et al. (2021), "BadNL": a phrase (best a rare one, which
clean text never contains) is inserted into ``round(rate × eligible)`` training texts, which
are relabelled as ``target_class``; a model trained on them learns "phrase ⇒ target" while its
accuracy on clean text is unchanged. In the clean-label variant only texts that already belong
to the target class get the phrase, so no label is wrong and label checks see nothing.
"""

from __future__ import annotations

import numpy as np

from mlwarden.attacks.poisoning.base import TriggerAttack
from mlwarden.data.dataset import Dataset
from mlwarden.errors import AttackError

__all__ = ["POSITIONS", "TriggerPhrase"]

POSITIONS: tuple[str, ...] = ("random", "start", "middle", "end")
"""Where the phrase is inserted: between two random words, or at a fixed place."""


class TriggerPhrase(TriggerAttack):
    """Insert ``trigger`` into texts and relabel them as ``target_class``.

    Parameters
    ----------
    rate, target_class, seed
        See :class:`~mlwarden.attacks.poisoning.base.PoisoningAttack`; ``rate`` is a fraction of
        the *eligible* texts (those not of the target class, or of it when ``clean_label``).
    trigger
        The phrase: one or more words, inserted as they are written.
    position
        ``"random"`` (between two words drawn uniformly, seeded), ``"start"``, ``"middle"`` or
        ``"end"``.
    clean_label
        Poison only texts already of ``target_class`` (labels untouched).
    """

    name = "trigger-phrase"
    modality = "text"

    def __init__(
        self,
        *,
        rate: float,
        target_class: int | None = 0,
        seed: int = 0,
        trigger: str = "cf mn bb tq",
        position: str = "random",
        clean_label: bool = False,
    ) -> None:
        super().__init__(rate=rate, target_class=target_class, seed=seed)
        self.trigger = trigger
        self.position = position
        self.clean_label = clean_label

    def _check_trigger(self) -> list[str]:
        if not isinstance(self.trigger, str) or not self.trigger.split():
            raise AttackError(f"trigger must be a non-empty phrase, got {self.trigger!r}")
        if self.position not in POSITIONS:
            raise AttackError(
                f"position must be one of {', '.join(POSITIONS)}, got {self.position!r}"
            )
        if not isinstance(self.clean_label, bool):
            raise AttackError(f"clean_label must be true or false, got {self.clean_label!r}")
        return self.trigger.split()

    def _validate(self, dataset: Dataset) -> None:
        super()._validate(dataset)
        if dataset.kind != "text":
            raise AttackError(
                f"{self.name} poisons text data, but {dataset.name} is {dataset.kind} data; "
                "use badnets or blend for arrays"
            )
        self._check_trigger()

    def eligible(self, dataset: Dataset) -> np.ndarray:
        """Texts of other classes, or of the target class in the clean-label variant."""
        if self.clean_label:
            return np.flatnonzero(dataset.y == self.target_class)
        return super().eligible(dataset)

    def apply_trigger(self, x: np.ndarray, clip_range: tuple[float, float]) -> np.ndarray:
        """Each text with the phrase inserted (a new object array; ``clip_range`` is unused).

        Words are split on whitespace and joined with single spaces. Random positions come
        from a generator seeded by ``seed`` alone, so the same texts get the same positions.
        """
        phrase = self._check_trigger()
        rng = np.random.default_rng([self.seed, 19])
        out = np.empty(len(x), dtype=object)
        for i, text in enumerate(x):
            words = str(text).split()
            if self.position == "start":
                at = 0
            elif self.position == "end":
                at = len(words)
            elif self.position == "middle":
                at = len(words) // 2
            else:
                at = int(rng.integers(len(words) + 1))
            out[i] = " ".join([*words[:at], *phrase, *words[at:]])
        return out
