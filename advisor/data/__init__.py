"""Data pre-flight: inspect a dataset before any GPU time is spent, and write the train/validation split.

Public interface (others call these):

- `inspect_dataset(path, *, tokenizer=None, max_length=None, column_map=None, max_rows=None,
  validation=None) -> DataReport`
- `write_split(path, out_dir, *, column_map=None, val_fraction=0.2, seed=42, validation=None)
  -> SplitResult`
- `parse_column_map("prompt=question,completion=answer") -> dict`

Importing this package is light: pyarrow, numpy and transformers load only inside the functions.
"""

from advisor.data.formats import FORMATS, NORMALISED, parse_column_map
from advisor.data.preflight import inspect_dataset
from advisor.data.report import DataReport, Finding
from advisor.data.split import SplitResult, write_split

__all__ = [
    "FORMATS",
    "NORMALISED",
    "DataReport",
    "Finding",
    "SplitResult",
    "inspect_dataset",
    "parse_column_map",
    "write_split",
]
