"""Files shipped with the package: the persona answers and the bundled demo (answers, 400 conversations,
a small tokenizer with a training chat template). They live in the repository's `examples/` folder and
are installed as package data (`advisor._examples`), so an installed wheel finds them as a checkout does."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def examples_root() -> Path:
    """The shipped `examples/` folder."""
    return Path(str(resources.files("advisor._examples")))


def demo_answers_path() -> Path:
    return examples_root() / "demo" / "answers.yaml"


def demo_tokenizer_dir() -> Path:
    return examples_root() / "demo" / "tokenizer"
