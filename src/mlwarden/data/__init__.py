"""Datasets: built-in data, user files, and their validation."""

from mlwarden.data.builtin import BUILTIN_DATASETS, DatasetSplits, load_builtin
from mlwarden.data.dataset import Dataset
from mlwarden.data.readers import load_dataset

__all__ = ["BUILTIN_DATASETS", "Dataset", "DatasetSplits", "load_builtin", "load_dataset"]
