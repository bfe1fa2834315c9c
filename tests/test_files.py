"""advisor.files: written whole or not at all; only the helper's own file operations become a UserError."""

import errno
import os

import pytest

from advisor.errors import UserError
from advisor.files import atomic_file, atomic_write


def test_an_error_of_the_callers_own_code_passes_through_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "train.jsonl"
    target.write_text("old\n")
    with pytest.raises(FileNotFoundError):  # e.g. the source being read while writing the split
        with atomic_file(target) as f:
            f.write("new\n")
            open(tmp_path / "missing.jsonl")  # noqa: SIM115
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["train.jsonl"]


def test_a_full_disk_is_a_user_error_naming_the_file_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "plan.yaml"
    target.write_text("old\n")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UserError, match=f"cannot write {target}: No space left"):
        atomic_write(target, "new\n")
    monkeypatch.undo()
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["plan.yaml"]
    assert atomic_write(target, b"bytes", mode=0o600).read_bytes() == b"bytes"
    assert oct(target.stat().st_mode & 0o777) == "0o600"
