"""Stream records out of a dataset file, one at a time, without holding the file in memory.

Supported sources: JSONL, a JSON array, CSV, Parquet, a directory written by `datasets.save_to_disk`,
and a hub dataset id (only when online). Every record carries where it came from (`line` for text
files, `row` for tables) so findings can point at it. Broken records are yielded with an `error`
instead of being skipped: counting and reporting them is the point of the pre-flight.
"""

from __future__ import annotations

import csv
import json
import os
import re
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advisor.errors import UserError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_CHUNK = 1 << 20  # JSON-array reader: read 1 MiB at a time
_MAX_ELEMENT = 64 << 20  # one array element larger than this is treated as malformed


@dataclass
class Record:
    """One record: its ordinal `index` (0-based, broken ones included), its location, its value."""

    index: int
    line: int  # 1-based line (JSONL, JSON, CSV) or row number (Parquet, datasets, hub)
    value: Any = None
    error: str | None = None  # set when the record could not be parsed
    kind: str = "malformed"  # finding kind for `error`: malformed | not-utf8


@dataclass
class Source:
    """A resolved data source: what kind it is and how locations are named ("line" or "row")."""

    path: str
    kind: str  # jsonl | json | csv | parquet | arrow-dir | hub
    unit: str = "line"

    def records(self) -> Iterator[Record]:
        """Iterate the records (a fresh pass each call; reading is deterministic)."""
        reader = {
            "jsonl": _jsonl,
            "json": _json_array,
            "csv": _csv,
            "parquet": _parquet,
            "arrow-dir": _arrow_dir,
            "hub": _hub,
        }[self.kind]
        return reader(self.path)


def resolve_source(path: str | os.PathLike) -> Source:
    """Work out what `path` is. Missing files and unreadable ones are `UserError`s (exit 2).

    Regular files and save_to_disk folders are read in place. `-` (standard input) and a pipe such as
    `<(zcat data.jsonl.gz)` are read once into a temporary file, since every later pass (format
    detection, counting, the split) must see the same rows. Other special files (a device such as
    /dev/zero, a named pipe, a socket) are refused: they never end, or wait forever for a writer."""
    text = str(path)
    spooled = _SPOOLED.get(text) or _SPOOLED.get(_realpath(text))
    if spooled is not None:
        return spooled
    p = Path(text).expanduser()
    if text == "-" or _is_anonymous_pipe(p):
        return _spool(text, p)
    special = _special_kind(p)
    if special:
        raise UserError(
            f"{text} is {special}, not a data file; tunewise reads regular files",
            "save the data to a file and pass that, or pipe it in: `... | tunewise inspect -`",
        )
    if not p.exists():
        # "data/train" next to an existing data/ folder is a mistyped local file, not a hub id to fetch.
        local_folder = p.parent != Path(".") and p.parent.is_dir()
        if (
            _HUB_ID.match(text)
            and not local_folder
            and not text.endswith((".jsonl", ".json", ".csv", ".parquet"))
        ):
            return _hub_source(text)
        raise UserError(
            f"dataset file not found: {text}",
            "check the path (relative paths are "
            "resolved from the current directory; in an answers file, from its folder)",
        )
    if p.is_dir():
        if (p / "state.json").exists() or (p / "dataset_dict.json").exists():
            return Source(str(p), "arrow-dir", "row")
        raise UserError(
            f"{text} is a directory but not one written by `datasets.save_to_disk`",
            "pass a .jsonl, .json, .csv or .parquet file, or a save_to_disk directory",
        )
    if not os.access(p, os.R_OK):
        raise UserError(f"cannot read {text}: permission denied", "check the file's permissions")
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        return Source(str(p), "parquet", "row")
    if suffix in (".csv", ".tsv"):
        return Source(str(p), "csv", "line")
    head = _head(p)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in head[:4096]:
        raise UserError(
            f"{text} is not UTF-8 text (it looks like UTF-16 or a binary file)",
            "re-encode it as UTF-8, e.g. `iconv -f UTF-16 -t UTF-8 in > out`",
        )
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
        return Source(str(p), "json", "line")
    return Source(str(p), "jsonl", "line")


_SPOOLED: dict[str, Source] = {}
MAX_SPOOL = 8 << 30  # piped data beyond this belongs in a file


def _realpath(text: str) -> str:
    try:
        return os.path.realpath(text)
    except (OSError, ValueError):
        return text


def _special_kind(p: Path) -> str | None:
    """ "a device", "a named pipe", ... for what is neither a regular file nor a folder (links followed)."""
    try:
        mode = p.stat().st_mode
    except (OSError, ValueError):
        return None  # missing: reported below
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a named pipe (reading it would wait for a writer)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device (it never ends)"
    return "a special file (a socket?)"


def _is_anonymous_pipe(p: Path) -> bool:
    """A pipe handed over as /dev/fd/N, /proc/self/fd/N or /dev/stdin (process substitution, `cmd |`)."""
    text = str(p)
    if not text.startswith(("/dev/fd/", "/proc/", "/dev/stdin")):
        return False
    try:
        return stat.S_ISFIFO(p.stat().st_mode)
    except OSError:
        return False


def _spool(text: str, p: Path) -> Source:
    """Copy standard input or a pipe into a temporary file, once; every later pass reads the copy."""
    import atexit
    import shutil
    import tempfile

    if text == "-" and sys.stdin.isatty():
        raise UserError(
            "`-` reads the data from standard input, but nothing is piped in",
            "pipe the data in (`cat data.jsonl | tunewise inspect -`) or pass a file",
        )
    folder = tempfile.mkdtemp(prefix="tunewise-stdin-")
    atexit.register(shutil.rmtree, folder, True)
    copy = Path(folder) / "data"
    size = 0
    try:
        src = sys.stdin.buffer if text == "-" else open(p, "rb")
        with src, open(copy, "wb") as out:
            while block := src.read(_CHUNK):
                size += len(block)
                if size > MAX_SPOOL:
                    raise UserError(
                        f"{text}: more than {MAX_SPOOL >> 30} GiB came through the pipe",
                        "save the data to a file and pass the file",
                    )
                out.write(block)
    except OSError as e:
        raise UserError(
            f"cannot read {text}: {e.strerror or e}", "save the data to a file and pass that"
        ) from None
    head = _head(copy)
    body = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"PAR1"):
        kind, unit, name = "parquet", "row", "data.parquet"
    elif body.startswith(b"["):
        kind, unit, name = "json", "line", "data.json"
    elif body.startswith(b"{") or not body:
        kind, unit, name = "jsonl", "line", "data.jsonl"
    else:
        kind, unit, name = "csv", "line", "data.csv"
    copy = copy.rename(copy.with_name(name))
    source = Source(str(copy), kind, unit)
    _SPOOLED[text] = _SPOOLED[_realpath(text)] = _SPOOLED[str(copy)] = source
    return source


def _head(p: Path) -> bytes:
    with open(p, "rb") as f:
        return f.read(65536)


def _hub_source(name: str) -> Source:
    offline = any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )
    if offline:
        raise UserError(
            f"{name} is not a local file; it looks like a hub dataset id, but the hub is "
            "offline here (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)",
            f"download it where you are online (e.g. `datasets.load_dataset('{name}', "
            "split='train').to_json('train.jsonl')`) and pass the local file",
        )
    return Source(name, "hub", "row")


def _decode(raw: bytes) -> tuple[str | None, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as e:
        return None, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})"


def _jsonl(path: str) -> Iterator[Record]:
    index = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue  # blank lines are not rows
            text, err = _decode(raw)
            if err:
                yield Record(index, lineno, error=err, kind="not-utf8")
            else:
                try:
                    yield Record(index, lineno, json.loads(text))
                except json.JSONDecodeError as e:
                    yield Record(index, lineno, error=f"malformed JSON: {e.msg} (column {e.colno})")
                except RecursionError:
                    yield Record(index, lineno, error="malformed JSON: nested too deeply")
                except ValueError as e:  # a number of more than 4,300 digits
                    yield Record(index, lineno, error=f"unreadable JSON: {_first_line(e)}")
            index += 1


def _json_array(path: str) -> Iterator[Record]:
    """Stream the elements of a top-level JSON array with `raw_decode`, chunk by chunk.

    A syntax error inside the array cannot be resynchronised reliably, so it ends the read with
    one malformed record at the line where the problem starts.
    """
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8-sig", errors="surrogateescape") as f:
        buf = f.read(_CHUNK)
        pos = buf.index("[") + 1
        line = 1 + buf.count("\n", 0, pos)
        index = 0
        eof = False
        while True:
            # Skip whitespace and the separating comma, topping the buffer up as needed.
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n,":
                    if buf[pos] == "\n":
                        line += 1
                    pos += 1
                if pos < len(buf) or eof:
                    break
                buf, pos = f.read(_CHUNK), 0
                eof = not buf
            if pos >= len(buf):
                yield Record(index, line, error="malformed JSON: the array is not closed with ']'")
                return
            if buf[pos] == "]":
                return
            while True:
                try:
                    value, end = decoder.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError as e:
                    # An element cut by the chunk edge parses once more text arrives; a real error
                    # does not, so give up at the end of the file or past a sane element size.
                    more = "" if eof or len(buf) - pos > _MAX_ELEMENT else f.read(_CHUNK)
                    if not more:
                        eof = True
                        at = line + buf.count("\n", pos, e.pos)
                        yield Record(index, at, error=f"malformed JSON: {e.msg}; reading stopped here")
                        return
                    buf, pos = buf[pos:] + more, 0
                except RecursionError:
                    yield Record(index, line, error="malformed JSON: nested too deeply; reading stopped")
                    return
                except ValueError as e:  # a number of more than 4,300 digits
                    yield Record(index, line, error=f"unreadable JSON: {_first_line(e)}; reading stopped")
                    return
            if _has_surrogates(buf, pos, end):
                yield Record(index, line, error="not valid UTF-8", kind="not-utf8")
            else:
                yield Record(index, line, value)
            line += buf.count("\n", pos, end)
            pos = end
            index += 1
            if pos > _CHUNK:  # drop what was consumed so the buffer stays small
                buf, pos = buf[pos:], 0


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0][:120] if str(e) else type(e).__name__


def _has_surrogates(buf: str, start: int, end: int) -> bool:
    s = buf[start:end]
    return not s.isascii() and any("\udc80" <= ch <= "\udcff" for ch in s)


def _csv(path: str) -> Iterator[Record]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long text fields are normal in LLM data
    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise UserError(f"cannot parse {path} as CSV: {e}", "check the file is comma-separated") from e
        index = 0
        start = reader.line_num + 1
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield Record(index, start, error=f"malformed CSV: {e}")
                index += 1
                start = reader.line_num + 1
                continue
            if fields:
                if any(_has_surrogates(v, 0, len(v)) for v in fields):
                    yield Record(index, start, error="not valid UTF-8", kind="not-utf8")
                elif len(fields) != len(header):
                    yield Record(
                        index,
                        start,
                        error=f"malformed CSV: {len(fields)} fields, the header has {len(header)}",
                    )
                else:
                    yield Record(index, start, dict(zip(header, fields, strict=True)))
                index += 1
            start = reader.line_num + 1


def _parquet(path: str) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise UserError(f"cannot read {path} as Parquet: {e}", "check the file is a Parquet file") from e
    index = 0
    for batch in pf.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            yield Record(index, index + 1, row)
            index += 1


def _arrow_dir(path: str) -> Iterator[Record]:
    """Read a `save_to_disk` directory's Arrow stream files directly (no `datasets` import)."""
    import pyarrow as pa

    p = Path(path)
    if (p / "dataset_dict.json").exists():
        try:
            splits = json.loads((p / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
            if not isinstance(splits, list) or not all(isinstance(x, str) for x in splits):
                raise ValueError("`splits` is not a list of names")
        except (OSError, ValueError, AttributeError, RecursionError) as e:
            raise UserError(
                f"cannot read {p / 'dataset_dict.json'}: {_first_line(e)}",
                "re-save the dataset with save_to_disk",
            ) from None
        split = "train" if "train" in splits else (splits[0] if splits else None)
        if split is None:
            raise UserError(f"{path} holds no splits", "save a dataset with at least one split")
        p = p / split
    try:
        state = json.loads((p / "state.json").read_text(encoding="utf-8"))
        files = [p / d["filename"] for d in state["_data_files"]]
        if any(
            Path(d["filename"]).is_absolute() or ".." in Path(d["filename"]).parts
            for d in state["_data_files"]
        ):
            raise ValueError("a data file name points outside the dataset folder")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        raise UserError(
            f"cannot read {p / 'state.json'}: {e}", "re-save the dataset with save_to_disk"
        ) from e
    index = 0
    for fname in files:
        try:
            with pa.memory_map(str(fname)) as source:
                for batch in pa.ipc.open_stream(source):
                    for row in batch.to_pylist():
                        yield Record(index, index + 1, row)
                        index += 1
        except (OSError, pa.ArrowInvalid) as e:
            raise UserError(f"cannot read {fname}: {e}", "re-save the dataset with save_to_disk") from e


def _hub(name: str) -> Iterator[Record]:  # pragma: no cover - needs the network
    try:
        from datasets import load_dataset

        stream = load_dataset(name, split="train", streaming=True)
        for index, row in enumerate(stream):
            yield Record(index, index + 1, row)
    except Exception as e:
        raise UserError(
            f"cannot load hub dataset {name}: {e}", "download it and pass the local file, or check the id"
        ) from e
