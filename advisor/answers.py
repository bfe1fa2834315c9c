"""The answers file (`--answers FILE`): schema, loading and validation.

Every key is optional. The wizard writes the same file. Unknown keys, wrong types and impossible
values are `UserError`s that name the key and the allowed values.
"""

from __future__ import annotations

import os
import re
import reprlib
from pathlib import Path
from typing import Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from advisor.errors import UserError
from advisor.safeyaml import load_yaml

Task = Literal[
    "classification",
    "extraction",
    "question-answering",
    "summarization",
    "chat",
    "code",
    "reasoning",
    "generation",
]
Goal = Literal[
    "tone-style",
    "privacy",
    "low-resource-language",
    "cheaper-inference",
    "new-capability",
    "output-format",
]
Method = Literal["auto", "lora", "qlora", "spectrum", "full"]
MIN_LENGTH = 16  # a shorter max_length leaves no room for a prompt and an answer
MAX_LENGTH = 1_048_576  # 2^20 tokens: longer than any supported model's context


def _reject_bool(v):
    """pydantic reads `true` as 1 for numbers; a yes/no where a count or size belongs is a mistake."""
    if isinstance(v, bool):
        raise ValueError("expected a number, not true/false")
    return v


class GPUAnswer(BaseModel):
    """A GPU given by the user (planning for another machine) instead of detected."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = "GPU"
    memory_gib: float = Field(gt=0, le=4096)
    # The card also drives a display: the desktop's share is not usable for training.
    display: bool = False
    reserve_gib: float | None = Field(default=None, ge=0, le=4096)  # that share, when known (else 1.5 GiB)
    bf16: bool | None = None  # supports bfloat16; default from the name (unknown names: no)

    @field_validator("memory_gib", "reserve_gib", mode="before")
    @classmethod
    def _no_bool(cls, v):
        return _reject_bool(v)

    @model_validator(mode="after")
    def _reserve_below_memory(self):
        if self.reserve_gib is not None and self.reserve_gib >= self.memory_gib:
            raise ValueError(
                f"reserve_gib ({self.reserve_gib:g}) must be less than memory_gib ({self.memory_gib:g})"
            )
        return self


SuccessMetric = Literal[
    "exact_match",
    "accuracy",
    "macro_f1",
    "token_f1",
    "json_valid",
    "field_f1",
    "rouge_l",
    "chrf",
    "perplexity",
    "tests_pass",
]  # advisor/task_metrics.py's METRICS


class SuccessAnswer(BaseModel):
    """The success criterion: a task metric and the value that counts as good enough."""

    model_config = ConfigDict(extra="forbid")

    metric: SuccessMetric
    target: float = Field(gt=0)

    @field_validator("target", mode="before")
    @classmethod
    def _no_bool(cls, v):
        return _reject_bool(v)

    @field_validator("target")
    @classmethod
    def _share(cls, v, info):
        if info.data.get("metric") != "perplexity" and v > 1:
            raise ValueError("a share between 0 and 1 (e.g. 0.8 for 80%); only perplexity is above 1")
        return v


class Answers(BaseModel):
    """What the user told us. `None` means "not answered" (the rules treat it as a missing fact)."""

    # strict: "2500", "off", "yes" and a bare string for a list are errors, not silently converted; the one
    # conversion kept is a whole number where a decimal is expected (memory_gib: 24).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)

    task: Task | None = None
    goals: list[Goal] = Field(default_factory=list)
    needs_citations: bool | None = None
    knowledge_changes_often: bool | None = None
    clear_task: bool | None = None
    tried_prompting: bool | None = None
    examples: int | None = Field(default=None, ge=0)
    preference_pairs: int | None = Field(default=None, ge=0)
    dataset: str | None = None
    # Preference pairs (prompt/chosen/rejected) in their own file, beside the SFT `dataset`: counted and
    # measured like it; SFT on `dataset`, then DPO on these pairs.
    preference_dataset: str | None = None
    model: str | None = None
    gpus: list[GPUAnswer] | None = None
    zero_latency: bool | None = None
    method: Method = "auto"
    success: SuccessAnswer | None = None  # metric + target; `recommend --probe` measures prompting against it
    # Not in the minimal schema of DESIGN.md but asked by the wizard; optional like every key.
    trust_remote_code: bool = False
    # What one GPU-hour costs you (any currency, shown as $): the report's cost = run time x GPUs x this.
    # Without it, a dated market midpoint for the card where rules/gpus.yaml has one (never a quote).
    gpu_hour_price: float | None = Field(default=None, gt=0, le=1000)
    # The sequence length to train at (tokens), instead of one sized from the data; above the model's context is
    # an error (advisor/facts.py). The bound is far above any context a dense model here has.
    max_length: int | None = Field(default=None, ge=MIN_LENGTH, le=MAX_LENGTH)
    # Tokens in a long example (prompt and answer together) when the data cannot be measured (no dataset yet,
    # or no tokenizer for the model): the plan's max_length covers it. Measured lengths win over it.
    tokens_per_example: int | None = Field(default=None, ge=1, le=MAX_LENGTH)

    @field_validator("goals", mode="before")
    @classmethod
    def _goals_list(cls, v):
        if v is None:  # `goals:` with nothing after it
            return []
        if isinstance(v, str):
            raise ValueError(f"goals is a list: write [{v}]")
        return v

    @field_validator(
        "examples", "preference_pairs", "gpu_hour_price", "max_length", "tokens_per_example", mode="before"
    )
    @classmethod
    def _count_not_bool(cls, v):
        return _reject_bool(v)

    @field_validator("dataset", "preference_dataset", "model")
    @classmethod
    def _not_blank(cls, v):
        if v is not None and not v.strip():
            raise ValueError("must not be empty")
        return v


_ALLOWED = {
    "task": ", ".join(get_args(Task)),
    "goals": ", ".join(get_args(Goal)),
    "method": ", ".join(get_args(Method)),
    "success": "{metric: " + " | ".join(get_args(SuccessMetric)) + ", target: NUMBER}",
    "max_length": f"a whole number of tokens from {MIN_LENGTH} to {MAX_LENGTH:,}, at most the model's context "
    "(leave it out to size it from the data)",
    "tokens_per_example": f"a whole number of tokens from 1 to {MAX_LENGTH:,}: a long example's prompt and answer "
    "together (used only when the data cannot be measured)",
}


_MAX_PROBLEMS = 12  # a generated file with thousands of bad keys still gets a readable message
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 3, 6, 6, 60, 60


def _describe(err: dict) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    key = str(err["loc"][0]) if err["loc"] else ""
    if err["type"] == "extra_forbidden":
        known = ", ".join(Answers.model_fields)
        if len(err["loc"]) > 1 and err["loc"][0] in ("gpus", "success"):
            known = ", ".join((GPUAnswer if err["loc"][0] == "gpus" else SuccessAnswer).model_fields)
        return f"unknown key '{loc}' (known keys: {known})"
    allowed = _ALLOWED.get(key)
    # Bounded repr: a YAML alias bomb makes a value whose full repr is gigabytes.
    got = _SHORT.repr(err.get("input"))
    msg = f"'{loc}': {err['msg']} (got {got})"
    if allowed:
        msg += f"; allowed: {allowed}"
    return msg


def parse_answers(data: object, source: str = "answers") -> Answers:
    """Validate a mapping as answers; every problem is reported at once."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(
            f"{source}: expected a mapping of keys to values, got {type(data).__name__}",
            "write one `key: value` per line, e.g. `task: chat`",
        )
    try:
        return Answers.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
        shown = [_describe(err) for err in errors[:_MAX_PROBLEMS]]
        if len(errors) > _MAX_PROBLEMS:
            shown.append(f"... and {len(errors) - _MAX_PROBLEMS} more")
        problems = "\n  - ".join(shown)
        raise UserError(
            f"{source}: {len(errors)} problem(s):\n  - {problems}",
            "correct the keys above; `tunewise wizard --save-answers FILE` writes a valid file",
        ) from None


def load_answers(path: str | Path) -> Answers:
    """Read an answers YAML file (safe loader only). Relative `dataset`/`model` paths that exist
    are resolved against the answers file's directory."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"answers file not found: {p}", "pass an existing YAML file to --answers")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{p}: not UTF-8 text", "save the answers file as UTF-8") from None
    except OSError as e:
        raise UserError(f"{p}: cannot read ({e.strerror})", "check the path and its permissions") from None
    # Safe loader; a key given twice, an alias bomb or a 5,000-digit number is a UserError too.
    data = load_yaml(
        text,
        p,
        what="an answers file",
        fix="fix the YAML syntax (indentation, colons, quotes); write one `key: value` per line",
    )
    answers = parse_answers(data, source=str(p))
    return resolve_paths(answers, p.parent)


_DATA_SUFFIXES = {".jsonl", ".json", ".csv", ".tsv", ".parquet"}


def expand_path(value: str, key: str) -> str:
    """`~` and `$VAR`/`${VAR}` in a path from the answers file, as a shell would expand them; a variable
    that is not set is an error (it would otherwise become a literal `$VAR` folder)."""
    if "$" in value:
        missing = sorted(
            {
                m.group(1) or m.group(2)
                for m in _ENV_VAR.finditer(value)
                if (m.group(1) or m.group(2)) not in os.environ
            }
        )
        if missing:
            raise UserError(
                f"'{key}': the environment variable {missing[0]} in {value!r} is not set",
                f"set it (`export {missing[0]}=...`) or write the path out",
            )
        value = os.path.expandvars(value)
    return os.path.expanduser(value)


_ENV_VAR = re.compile(r"\$(?:(\w+)|\{(\w+)\})")


def resolve_paths(answers: Answers, base: Path) -> Answers:
    """Expand `~` and environment variables in `dataset`, `preference_dataset` and `model`, then resolve
    relative paths against `base` (the answers file's folder)."""
    updates = {}
    # Every path key: `~` and environment variables first, as a shell would.
    for key in ("dataset", "preference_dataset", "model"):
        value = getattr(answers, key)
        if value and ("~" in value or "$" in value):
            updates[key] = expand_path(value, key)
    if updates:
        answers = answers.model_copy(update=updates)
        updates = {}
    for key in ("dataset", "preference_dataset"):
        given = getattr(answers, key)
        if not given or Path(given).is_absolute():
            continue
        cand = (base / given).resolve()
        # A data file found in neither place is reported at the answers file's folder, where the
        # README says relative paths are looked up (a hub dataset id has no such suffix).
        missing_file = not Path(given).exists() and Path(given).suffix.lower() in _DATA_SUFFIXES
        if cand.exists() or missing_file:
            updates[key] = str(cand)
    if answers.model and answers.model.startswith((".", "/", "~")):
        cand = (base / Path(answers.model).expanduser()).resolve()
        # Like the dataset: a directory found in neither place is named where the answers file puts it.
        if cand.exists() or not Path(answers.model).expanduser().exists():
            updates["model"] = str(cand)
    return answers.model_copy(update=updates) if updates else answers


def dump_answers(answers: Answers) -> str:
    """YAML text of the answers, keys in schema order, unanswered keys left out."""
    data = answers.model_dump(mode="json", exclude_none=True)
    if not data.get("goals"):
        data.pop("goals", None)
    if data.get("method") == "auto":
        data.pop("method")
    if not data.get("trust_remote_code"):
        data.pop("trust_remote_code", None)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
