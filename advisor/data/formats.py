"""Dataset formats: detect which one a file uses, check each row, and normalise it for TRL.

Detected formats (what the user's file looks like): alpaca, messages, sharegpt, prompt-completion,
preference, text. Normalised formats (what the split files hold, TRL-native): messages,
prompt-completion, preference, text. Alpaca and ShareGPT become `{"messages": [...]}`.

A row check returns the normalised row, or the problems that make it invalid (dropped from the
split), plus notes that keep the row but deserve a look.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from advisor.errors import UserError

FORMATS = ("alpaca", "messages", "sharegpt", "prompt-completion", "preference", "text")
NORMALISED = {
    "alpaca": "messages",
    "sharegpt": "messages",
    "messages": "messages",
    "prompt-completion": "prompt-completion",
    "preference": "preference",
    "text": "text",
}
# The names `--column-map` may map onto (canonical name = user's column).
CANONICAL = (
    "instruction",
    "input",
    "output",
    "system",
    "messages",
    "conversations",
    "prompt",
    "completion",
    "chosen",
    "rejected",
    "text",
    "label",
    "tests",
)
# A row's tests for its answer (code tasks): Python `assert` statements, a string or a list of them. The split
# keeps them as `tests` beside the normalised row; the job drops them (launcher/datafile.py), `tunewise eval`
# runs them on the model's code. `test_list` is MBPP's name.
TEST_COLUMNS = ("tests", "test_list")
LABEL_COLUMNS = ("label", "labels", "category", "class", "intent")
ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "tool": "tool",
    "observation": "tool",
    "function_call": "assistant",
    "function": "tool",
}


@dataclass
class Checked:
    """The outcome of checking one row."""

    row: dict | None = None  # the normalised row; None when the row is invalid
    problems: list[tuple[str, str]] = field(default_factory=list)  # (kind, message): row invalid
    notes: list[tuple[str, str]] = field(default_factory=list)  # (kind, message): row kept
    label: str | None = None  # the value to stratify on, when there is one
    target: str | None = None  # the answer text, to detect classification-style labels
    tests: Any = None  # the row's tests as the data gives them (checked where they are run)


def parse_column_map(text: str | None) -> dict[str, str] | None:
    """Parse `prompt=question,completion=answer` into `{"prompt": "question", ...}`."""
    if text is None or not text.strip():
        return None
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise UserError(
                f"--column-map entry {part.strip()!r} is not NAME=COLUMN",
                "write it like prompt=question,completion=answer",
            )
        out[key] = value
    check_column_map(out)
    return out


def check_column_map(column_map: dict[str, str] | None) -> None:
    """Reject mappings onto names no format uses."""
    for key in column_map or {}:
        if key not in CANONICAL:
            raise UserError(
                f"--column-map maps onto unknown name {key!r}", f"map onto one of: {', '.join(CANONICAL)}"
            )


def apply_column_map(value: dict, column_map: dict[str, str] | None) -> dict:
    """Rename the user's columns to canonical names (a new dict; the others are kept)."""
    if not column_map:
        return value
    out = dict(value)
    for canonical, source in column_map.items():
        if source in out:
            out[canonical] = out.pop(source)
    return out


def classify(keys: Iterable[str], value: dict) -> str | None:
    """The format one row's keys point at, or None."""
    k = set(keys)
    if "messages" in k:
        return "messages"
    if "conversations" in k:
        conv = value.get("conversations")
        first = conv[0] if isinstance(conv, list) and conv else None
        if isinstance(first, dict) and "role" in first:
            return "messages"
        return "sharegpt"
    if "chosen" in k and "rejected" in k:
        return "preference"
    if "instruction" in k and "output" in k:
        return "alpaca"
    if "prompt" in k and "completion" in k:
        return "prompt-completion"
    if "text" in k:
        return "text"
    return None


def detect_format(sample: list[dict], column_map: dict[str, str] | None) -> str:
    """Majority format over a sample of (already column-mapped) rows; `UserError` if none fits."""
    votes = Counter(f for row in sample if (f := classify(row.keys(), row)))
    if not votes:
        columns = sorted({k for row in sample for k in row})[:20]
        if column_map:  # rows are already mapped: a canonical name nowhere means its column is absent
            missing = [f"{k}={v}" for k, v in column_map.items() if not any(k in r for r in sample)]
            if missing:
                # Name the file's own columns, not the canonical names the map renamed them to.
                own = sorted({column_map.get(k, k) for row in sample for k in row})[:20]
                raise UserError(
                    f"--column-map names column(s) the data does not have: {', '.join(missing)}",
                    f"the columns are: {', '.join(own) or '(none)'}",
                )
        raise UserError(
            f"cannot tell the dataset format from its columns: {', '.join(columns) or '(none)'}",
            "use alpaca (instruction/input/output), messages, sharegpt (conversations), "
            "prompt/completion, prompt/chosen/rejected or text columns, or map yours with "
            "--column-map prompt=question,completion=answer",
        )
    best = max(votes.values())
    return next(
        f
        for f in ("messages", "sharegpt", "preference", "alpaca", "prompt-completion", "text")
        if votes.get(f) == best
    )


def check_row(value: Any, fmt: str) -> Checked:
    """Check one (column-mapped) row against `fmt` and normalise it."""
    if not isinstance(value, dict):
        return Checked(problems=[("wrong-type", f"row is a JSON {_typename(value)}, expected an object")])
    other = classify(value.keys(), value)
    if other and other != fmt and "preference" in (other, fmt):
        # Preference pairs and SFT rows train different stages: one file holds one kind.
        what = "a preference pair (prompt/chosen/rejected)" if other == "preference" else f"a {other} row"
        fix = (
            "move preference pairs to their own file and name it as `preference_dataset` in the answers"
            if other == "preference"
            else "keep SFT rows in the `dataset` file and pairs in `preference_dataset`"
        )
        return Checked(problems=[("other-format", f"{what} in a {fmt} file: {fix}")])
    out = _CHECKERS[fmt](value)
    if out.row is not None and not out.problems:
        for col in LABEL_COLUMNS:
            if col in value and value[col] is not None and not isinstance(value[col], (list, dict)):
                out.label = str(value[col])
                break
        out.tests = next((value[c] for c in TEST_COLUMNS if value.get(c) is not None), None)
    else:
        out.row = None
    return out


def _typename(v: Any) -> str:
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
        type(None): "null",
    }.get(type(v), type(v).__name__)


def _text_field(
    value: dict, name: str, c: Checked, *, required: bool = True, allow_empty: bool = False
) -> str | None:
    if name not in value or value[name] is None:
        if required:
            c.problems.append(("missing-field", f"missing field {name!r}"))
        return None
    v = value[name]
    if not isinstance(v, str):
        c.problems.append(("wrong-type", f"field {name!r} is a {_typename(v)}, expected a string"))
        return None
    if not allow_empty and not v.strip():
        c.problems.append(("empty-field", f"field {name!r} is empty"))
    return v


def _alpaca(value: dict) -> Checked:
    c = Checked()
    instruction = _text_field(value, "instruction", c)
    extra = _text_field(value, "input", c, required=False, allow_empty=True)
    output = _text_field(value, "output", c)
    system = _text_field(value, "system", c, required=False, allow_empty=True)
    if c.problems:
        return c
    user = instruction if not (extra and extra.strip()) else f"{instruction}\n\n{extra}"
    messages = [{"role": "system", "content": system}] if system and system.strip() else []
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    c.row, c.target = {"messages": messages}, output
    return c


def _messages(value: dict) -> Checked:
    c = Checked()
    key = "messages" if "messages" in value else "conversations"
    msgs = _message_list(value.get(key), key, c, sharegpt=False)
    if msgs is not None:
        _check_order(msgs, key, c, need_assistant=True)
        c.row = {"messages": msgs}
        c.target = _last_assistant(msgs)
    return c


def _sharegpt(value: dict) -> Checked:
    c = Checked()
    msgs = _message_list(value.get("conversations"), "conversations", c, sharegpt=True)
    if msgs is not None:
        _check_order(msgs, "conversations", c, need_assistant=True)
        c.row = {"messages": msgs}
        c.target = _last_assistant(msgs)
    return c


def _message_list(v: Any, key: str, c: Checked, *, sharegpt: bool) -> list[dict] | None:
    """Check a list of turns; ShareGPT's from/value become role/content."""
    if v is None:
        c.problems.append(("missing-field", f"missing field {key!r}"))
        return None
    if not isinstance(v, list):
        c.problems.append(("wrong-type", f"field {key!r} is a {_typename(v)}, expected a list of turns"))
        return None
    if not v:
        c.problems.append(("empty-field", f"field {key!r} is an empty list"))
        return None
    role_key, content_key = ("from", "value") if sharegpt else ("role", "content")
    out = []
    for i, turn in enumerate(v, start=1):
        if not isinstance(turn, dict):
            c.problems.append(("wrong-type", f"{key}[{i}] is a {_typename(turn)}, expected an object"))
            return None
        role = turn.get(role_key)
        if sharegpt and isinstance(role, str):
            role = SHAREGPT_ROLES.get(role.lower(), role)
        if role not in ROLES:
            shown = f"{role!r}" if role is not None else "missing"
            c.problems.append(
                (
                    "wrong-type" if role is not None else "missing-field",
                    f"{key}[{i}] has role {shown}; expected one of "
                    f"{', '.join(SHAREGPT_ROLES) if sharegpt else ', '.join(ROLES)}",
                )
            )
            return None
        content = turn.get(content_key)
        msg = {"role": role, "content": content}
        if content is None and role == "assistant" and turn.get("tool_calls"):
            msg["tool_calls"] = turn["tool_calls"]
        elif not isinstance(content, str):
            what = "missing" if content is None else f"a {_typename(content)}"
            c.problems.append(
                (
                    "missing-field" if content is None else "wrong-type",
                    f"{key}[{i}] ({role}) content is {what}, expected a string",
                )
            )
            return None
        elif not content.strip():
            kind = "empty-assistant" if role == "assistant" else "empty-field"
            c.problems.append((kind, f"{key}[{i}] is an empty {role} turn"))
            return None
        out.append(msg)
    return out


def _check_order(
    msgs: list[dict], key: str, c: Checked, *, need_assistant: bool, trailing_note: bool = True
) -> None:
    """System first (if at all), then user first, then user and assistant taking turns."""
    prev = None
    for i, m in enumerate(msgs, start=1):
        role = m["role"]
        if role == "system" and i != 1:
            c.problems.append(("role-order", f"{key}[{i}] is a system turn; the system turn must come first"))
            return
        if role == "assistant" and prev in (None, "system"):
            c.problems.append(("role-order", f"{key}[{i}]: the conversation starts with the assistant"))
            return
        if role == "tool" and prev not in ("assistant", "tool"):
            c.problems.append(("role-order", f"{key}[{i}]: a tool turn must follow an assistant turn"))
            return
        if role in ("user", "assistant") and role == prev:
            c.problems.append(("role-order", f"{key}[{i - 1}] and [{i}] are two {role} turns in a row"))
            return
        prev = role
    if need_assistant and not any(m["role"] == "assistant" for m in msgs):
        c.problems.append(("no-assistant", f"{key} has no assistant turn: nothing to learn"))
    elif trailing_note and msgs[-1]["role"] != "assistant":
        c.notes.append(("trailing-turn", f"{key} ends with a {msgs[-1]['role']} turn that nothing answers"))


def _last_assistant(msgs: list[dict]) -> str | None:
    for m in reversed(msgs):
        if m["role"] == "assistant":
            return m.get("content")
    return None


def _prompt_completion(value: dict) -> Checked:
    c = Checked()
    p, comp = value.get("prompt"), value.get("completion")
    if isinstance(p, list) or isinstance(comp, list):  # conversational prompt-completion
        prompt = _message_list(p, "prompt", c, sharegpt=False)
        completion = _message_list(comp, "completion", c, sharegpt=False)
        if prompt is None or completion is None:
            return c
        _check_order(prompt + completion, "prompt+completion", c, need_assistant=True)
        c.row, c.target = {"prompt": prompt, "completion": completion}, _last_assistant(completion)
        return c
    prompt = _text_field(value, "prompt", c)
    completion = _text_field(value, "completion", c)
    if not c.problems:
        c.row, c.target = {"prompt": prompt, "completion": completion}, completion
    return c


def _preference(value: dict) -> Checked:
    c = Checked()
    chosen, rejected = value.get("chosen"), value.get("rejected")
    if isinstance(chosen, list) or isinstance(rejected, list):
        return _preference_messages(value, c)
    prompt = _text_field(value, "prompt", c, required=False)
    chosen = _text_field(value, "chosen", c)
    rejected = _text_field(value, "rejected", c)
    if c.problems:
        return c
    if chosen == rejected:
        c.problems.append(
            ("chosen-equals-rejected", "chosen and rejected are identical: no preference to learn")
        )
        return c
    if prompt is None:
        prompt, chosen, rejected = _common_prefix(chosen, rejected)
    c.row = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    return c


def _preference_messages(value: dict, c: Checked) -> Checked:
    chosen = _message_list(value.get("chosen"), "chosen", c, sharegpt=False)
    rejected = _message_list(value.get("rejected"), "rejected", c, sharegpt=False)
    prompt: list[dict] | None = None
    if value.get("prompt") is not None:
        prompt = _message_list(value.get("prompt"), "prompt", c, sharegpt=False)
    if chosen is None or rejected is None or c.problems:
        return c
    if chosen == rejected:
        c.problems.append(
            ("chosen-equals-rejected", "chosen and rejected are identical: no preference to learn")
        )
        return c
    if prompt is None:  # implicit prompt: the turns chosen and rejected share (TRL's extract_prompt)
        prompt, chosen, rejected = _common_prefix(chosen, rejected)
    for name, side in (("prompt+chosen", chosen), ("prompt+rejected", rejected)):
        _check_order(prompt + side, name, c, need_assistant=True, trailing_note=False)
        if c.problems:
            return c
    c.row = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    return c


def _common_prefix(a, b):
    """Split off the shared start of chosen/rejected as the prompt, as TRL's `extract_prompt` does."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    if isinstance(a, str) and n > 0 and a[n - 1] == " ":
        n -= 1  # keep the space with the answers, as TRL does
    return a[:n], a[n:], b[n:]


def _text(value: dict) -> Checked:
    c = Checked()
    text = _text_field(value, "text", c)
    if not c.problems:
        c.row = {"text": text}
    return c


_CHECKERS = {
    "alpaca": _alpaca,
    "messages": _messages,
    "sharegpt": _sharegpt,
    "prompt-completion": _prompt_completion,
    "preference": _preference,
    "text": _text,
}
