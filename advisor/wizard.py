"""The interactive wizard: asks only what the recommendation needs, then hands over to the report.

Questions whose answers are pre-filled (`--answers`), detected (GPUs) or implied by the data (the
number of examples when a dataset is given) are skipped. Prompts go through a small `Prompter`
interface so the question logic is testable without a terminal; `QuestionaryPrompter` is the real
one (questionary is imported only when the wizard runs).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from advisor.answers import Answers, GPUAnswer, SuccessAnswer
from advisor.hardware import Detection

Validator = Callable[[str], str | None]  # returns an error message, or None when the input is fine

TASKS = [
    ("chat", "chat — a conversational assistant (support, brand voice)"),
    ("question-answering", "question-answering — answer questions about a domain"),
    ("summarization", "summarization — condense documents"),
    ("classification", "classification — assign labels"),
    ("extraction", "extraction — pull fields out of text"),
    ("code", "code — generate or edit code in your patterns"),
    ("reasoning", "reasoning — multi-step problems, math"),
    ("generation", "generation — free-form writing"),
]
GOALS = [
    ("tone-style", "a tone or style for a specific audience (brand voice)"),
    ("privacy", "keep sensitive data in-house (privacy)"),
    ("low-resource-language", "a low-resource language"),
    ("cheaper-inference", "cheaper inference (distil a large model into a small one)"),
    ("new-capability", "a capability the base model lacks"),
    ("output-format", "a strict output format"),
]
MODELS = [
    "meta-llama/Llama-3.1-8B",
    "microsoft/Phi-3-mini-4k-instruct",
    "meta-llama/Llama-3.2-1B",
    "meta-llama/Llama-3.2-3B",
    "Qwen/Qwen2.5-7B",
    "mistralai/Mistral-7B-v0.3",
]
# Each name is a row of the GPU catalog (rules/gpus.yaml), so the plan can be timed on it; an A100 and an
# H100 of the same memory differ 3x in speed, so they are two choices.
GPU_PRESETS = [
    ("NVIDIA T4 (Colab)", 16.0),
    ("NVIDIA GeForce RTX 4090", 24.0),
    ("NVIDIA L40S", 48.0),
    ("NVIDIA A100 40GB", 40.0),
    ("NVIDIA A100 80GB", 80.0),
    ("NVIDIA H100 80GB", 80.0),
    ("NVIDIA H200", 141.0),
]
METHODS = [
    ("auto", "auto — let the rules choose (recommended)"),
    ("lora", "LoRA"),
    ("qlora", "QLoRA"),
    ("spectrum", "Spectrum"),
    ("full", "full fine-tuning (all parameters)"),
]
OTHER = "__other__"
# What a recommendation cannot do without; with an accepted answers file only these gaps are asked.
NEEDED = ("task", "dataset", "examples", "model", "gpus")


class Prompter(Protocol):
    """The four kinds of question the wizard asks. Each raises KeyboardInterrupt on Ctrl-C."""

    def select(self, message: str, choices: list[tuple[Any, str]], default: Any) -> Any: ...
    def checkbox(self, message: str, choices: list[tuple[str, str]], default: list[str]) -> list[str]: ...
    def confirm(self, message: str, default: bool) -> bool: ...
    def text(self, message: str, default: str, validate: Validator | None = None) -> str: ...


class QuestionaryPrompter:
    """Prompts in the terminal with questionary; `unsafe_ask` lets Ctrl-C raise KeyboardInterrupt."""

    def __init__(self):
        import questionary

        self.q = questionary

    def select(self, message, choices, default):
        cs = [self.q.Choice(title=label, value=value) for value, label in choices]
        dflt = next((c for c in cs if c.value == default), None)
        return self.q.select(message, choices=cs, default=dflt).unsafe_ask()

    def checkbox(self, message, choices, default):
        cs = [self.q.Choice(title=label, value=value, checked=value in default) for value, label in choices]
        return self.q.checkbox(message, choices=cs, instruction="(space selects, Enter accepts)").unsafe_ask()

    def confirm(self, message, default):
        return self.q.confirm(message, default=default, auto_enter=True).unsafe_ask()

    def text(self, message, default, validate=None):
        def check(s: str):
            err = validate(s) if validate else None
            return True if err is None else err

        # validate on Enter only: half-typed input is not an error yet
        return self.q.text(message, default=default, validate=check, validate_while_typing=False).unsafe_ask()


def int_validator(lo: int = 0, hi: int = 10**9) -> Validator:
    def check(s: str) -> str | None:
        try:
            v = int(s.replace(",", "").replace("_", "").strip())
        except ValueError:
            return f"{s!r} is not a whole number; type digits, e.g. 2500"
        return None if lo <= v <= hi else f"{v} is out of range; enter {lo:,} to {hi:,}"

    return check


def float_validator(lo: float, hi: float) -> Validator:
    def check(s: str) -> str | None:
        try:
            v = float(s.strip())
        except ValueError:
            return f"{s!r} is not a number; type e.g. 24"
        return None if lo < v <= hi else f"{v:g} is out of range; enter more than {lo:g} and at most {hi:g}"

    return check


def tokens_validator(s: str) -> str | None:
    """Tokens per example, or nothing (skipped: the guide's starting length is assumed)."""
    from advisor.answers import MAX_LENGTH

    return None if not s.strip() else int_validator(1, MAX_LENGTH)(s)


def price_validator(s: str) -> str | None:
    """A price per GPU-hour, or nothing (skipped: the report uses a dated market figure where it has one)."""
    return None if not s.strip() else float_validator(0, 1000)(s)


def dataset_validator(s: str) -> str | None:
    if not s.strip():
        return None  # no dataset yet: the number of examples is asked instead
    p = Path(s.strip()).expanduser()
    return None if p.exists() else f"no file or folder at {p}; give an existing path, or leave it empty"


def model_validator(s: str) -> str | None:
    s = s.strip()
    if not s:
        return "give a hub id (org/name), a catalog name, or a local directory with config.json"
    if s.startswith((".", "/", "~")):
        p = Path(s).expanduser()
        if not (p / "config.json").is_file():
            return f"{p} has no config.json; point at a model directory"
        return None
    from advisor.errors import UserError
    from advisor.models import resolve_model

    try:
        resolve_model(s)
    except UserError as e:
        return f"{e.message}; or give a local directory holding its config.json"
    return None


def _as_int(s: str) -> int:
    return int(s.replace(",", "").replace("_", "").strip())


def count_dataset(path: str) -> tuple[int | None, int | None, str]:
    """(examples, preference pairs, a one-line description) from the data inspector, if available."""
    try:
        from advisor.data import inspect_dataset
    except ImportError:
        return None, None, "the data inspector is not available; the recommendation will count the rows"
    report = inspect_dataset(path)
    pref = getattr(report, "preference_rows", None)
    valid = getattr(report, "valid", None)
    desc = f"{valid:,} usable rows, format {getattr(report, 'format', '?')}"
    if pref:
        desc += f", {pref:,} preference pairs"
    return valid, pref, desc


def _needs_custom_code(model: str | None) -> bool:
    """A local model whose config maps to its own Python classes (only then is trust_remote_code asked)."""
    if not model:
        return False
    cfg = Path(model).expanduser() / "config.json"
    try:
        return "auto_map" in json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


class Wizard:
    """One pass of questions. `skip` holds the keys answered by the file the user accepted."""

    def __init__(
        self,
        prefill: Answers,
        prompter: Prompter,
        say: Callable[[str], None],
        detection: Detection | None,
        *,
        approach_probe: Callable[[Answers], str | None] | None = None,
    ):
        self.a = prefill.model_copy()
        self.p = prompter
        self.say = say
        self.detection = detection
        self.skip: set[str] = set()
        self.given: set[str] = set()
        self.probe = approach_probe
        self.asked: list[str] = []

    def _want(self, key: str) -> bool:
        if key in self.skip:
            return False
        self.asked.append(key)
        return True

    def run(self) -> Answers:
        self._review_prefill()
        self._task()
        self._data()
        self._model_and_gpus()
        self._training()
        return self.a

    def _review_prefill(self) -> None:
        given = [k for k in Answers.model_fields if k in self.a.model_fields_set]
        self.given = set(given)
        if not given:
            return
        self.say("Pre-filled answers:")
        for k in given:
            self.say(f"  {k}: {_show(getattr(self.a, k))}")
        if self.p.confirm("Use these answers? (No: review each one, with these as defaults)", True):
            # Accepted: ask only for what the recommendation cannot do without; the rest keeps
            # its default (method auto) or stays unanswered (the rules treat it as a missing fact).
            missing = [k for k in NEEDED if k not in given]
            if "dataset" in given or "examples" in given:
                missing = [k for k in missing if k not in ("dataset", "examples")]
            self.skip = set(Answers.model_fields) - set(missing)

    def _task(self) -> None:
        a = self.a
        if self._want("task"):
            a.task = self.p.select("What should the model do?", TASKS, a.task or "chat")
        if self._want("goals"):
            a.goals = self.p.checkbox("Which of these do you need? (none is fine)", GOALS, list(a.goals))
        if self._want("needs_citations"):
            a.needs_citations = self.p.confirm(
                "Must answers cite or be grounded in your documents?", bool(a.needs_citations)
            )
        if self._want("knowledge_changes_often"):
            a.knowledge_changes_often = self.p.confirm(
                "Does the knowledge it needs change often?", bool(a.knowledge_changes_often)
            )
        if self._want("clear_task"):
            a.clear_task = self.p.confirm(
                "Do you have a clear task definition and success metrics?",
                True if a.clear_task is None else a.clear_task,
            )
        if a.clear_task and self._want("success"):
            self._success()
        if self._want("tried_prompting"):
            a.tried_prompting = self.p.confirm(
                "Have you tried prompt engineering on this task?", bool(a.tried_prompting)
            )

    def _success(self) -> None:
        """The success criterion: a task metric and its target (what `tunewise eval` and `--probe` measure)."""
        from advisor.task_metrics import METRICS, label, task_metrics

        a = self.a
        names = list(dict.fromkeys([*task_metrics(a.task), *([a.success.metric] if a.success else [])]))
        choices = [("none", "no target yet")] + [(m, label(m)) for m in names]
        metric = self.p.select(
            "Which metric says it works (your success criterion)?",
            choices,
            a.success.metric if a.success else "none",
        )
        if metric == "none":
            a.success = None
            return
        lower = not METRICS[metric].higher_is_better
        hi = 1e6 if not METRICS[metric].bounded else 1.0
        old = a.success.target if a.success and a.success.metric == metric else (20.0 if lower else 0.8)
        target = self.p.text(
            f"Target {label(metric)} ({'at most' if lower else 'at least'}; "
            f"{'e.g. 20' if lower else 'a share, e.g. 0.8'})?",
            f"{old:g}",
            float_validator(0, hi),
        )
        a.success = SuccessAnswer(metric=metric, target=float(target))

    def _data(self) -> None:
        a = self.a
        if a.dataset and not Path(a.dataset).expanduser().exists():
            self.say(f"The dataset {a.dataset} does not exist.")
            self.skip.discard("dataset")
        if self._want("dataset"):
            s = self.p.text(
                "Training data file or folder (Enter to skip if you have none yet):",
                a.dataset or "",
                dataset_validator,
            ).strip()
            a.dataset = str(Path(s).expanduser().resolve()) if s else None
        pairs_in_data = False
        if a.dataset:
            n, pref, desc = count_dataset(a.dataset)
            self.say(f"Data: {desc}.")
            # counted from the data: these questions are answered by the file (pairs only when it holds some)
            pairs_in_data = bool(pref)
            self.skip |= {"examples"} | (
                {"preference_pairs", "preference_dataset"} if pairs_in_data else set()
            )
            if n is not None:
                a.examples = None  # the dataset wins over a typed count (see DESIGN.md)
        if a.dataset is None and self._want("examples"):
            a.examples = _as_int(
                self.p.text(
                    "How many training examples do you have (or can you write)?",
                    str(a.examples if a.examples is not None else 0),
                    int_validator(),
                )
            )
        if a.preference_dataset and not Path(a.preference_dataset).expanduser().exists():
            self.say(f"The preference file {a.preference_dataset} does not exist.")
            self.skip.discard("preference_dataset")
        if self._want("preference_dataset"):
            s = self.p.text(
                "Preference pairs file (prompt, chosen, rejected) for DPO (Enter to skip if none):",
                a.preference_dataset or "",
                dataset_validator,
            ).strip()
            a.preference_dataset = str(Path(s).expanduser().resolve()) if s else None
        if a.preference_dataset:
            _, pref, desc = count_dataset(a.preference_dataset)
            self.say(f"Preference data: {desc}.")
            if not pref:
                self.say("That file holds no preference pairs (prompt, chosen, rejected); it is left out.")
                a.preference_dataset = None
            else:
                self.skip.add("preference_pairs")
                a.preference_pairs = None  # the file counts them
        if self._want("preference_pairs"):
            a.preference_pairs = _as_int(
                self.p.text(
                    "How many preference pairs (prompt, chosen, rejected)? 0 if none:",
                    str(a.preference_pairs or 0),
                    int_validator(),
                )
            )

    def _model_and_gpus(self) -> None:
        a = self.a
        if self._want("model"):
            choices = [(m, m) for m in MODELS] + [(OTHER, "another hub id or a local directory…")]
            current = a.model if a.model in MODELS else (OTHER if a.model else MODELS[0])
            pick = self.p.select("Which base model?", choices, current)
            if pick == OTHER:
                pick = self.p.text("Hub id or local directory:", a.model or "", model_validator).strip()
                if pick.startswith((".", "~")):
                    pick = str(Path(pick).expanduser().resolve())
            a.model = pick
        if "gpus" not in self.skip:
            self._gpus()

    def _gpus(self) -> None:
        found = self.detection.gpus if self.detection else []
        if found:
            self.say("Detected GPUs:")
            for g in found:
                self.say(f"  [{g.index}] {g.name}: {g.memory_gib:.1f} GiB ({g.free_gib or 0:.1f} GiB free)")
            self.asked.append("gpus")
            if self.p.confirm("Plan for these GPUs?", True):
                self.a.gpus = None  # detection is used again at recommendation time
                return
        else:
            why = (
                f"No GPU detected here ({self.detection.reason})"
                if self.detection
                else "GPU detection is off (--no-detect)"
            )
            self.say(f"{why}. Plan for the GPU you will train on:")
        self.asked.append("gpus")
        choices = [(i, f"{name} — {mem:g} GiB") for i, (name, mem) in enumerate(GPU_PRESETS)]
        choices.append((OTHER, "another GPU (type its memory)"))
        pick = self.p.select("Which GPU will you train on?", choices, 1)
        if pick == OTHER:
            mem = float(self.p.text("GPU memory in GiB:", "24", float_validator(0, 4096)))
            name = "GPU"
        else:
            name, mem = GPU_PRESETS[pick]
        n = _as_int(self.p.text("How many of them?", "1", int_validator(1, 64)))
        self.a.gpus = [GPUAnswer(name=name, memory_gib=mem) for _ in range(n)]

    def _training(self) -> None:
        a = self.a
        pending = {"zero_latency", "method"} - self.skip
        approach = self.probe(a) if self.probe and pending else None
        if approach is not None and "fine-tune" not in approach:
            self.say(f"Recommended approach so far: {approach}; skipping the training questions.")
            return
        if self._want("zero_latency"):
            a.zero_latency = self.p.confirm(
                "Must adapters merge into the weights (zero extra inference latency)?", bool(a.zero_latency)
            )
        if self._want("method"):
            a.method = self.p.select("Training method?", METHODS, a.method)
        if self._want(
            "gpu_hour_price"
        ):  # only on the way to fine-tuning: the report's cost = time x GPUs x this
            price = self.p.text(
                "What does one GPU-hour cost you, for the cost estimate? (Enter to skip)",
                f"{a.gpu_hour_price:g}" if a.gpu_hour_price else "",
                price_validator,
            )
            a.gpu_hour_price = float(price) if price.strip() else None
        self._tokens_per_example()
        # needed whenever the model ships code, unless the file said so explicitly
        if _needs_custom_code(a.model) and "trust_remote_code" not in self.given:
            self.asked.append("trust_remote_code")
            a.trust_remote_code = self.p.confirm(
                "This model ships its own Python code (auto_map). Run it (trust_remote_code)?", False
            )

    def _tokens_per_example(self) -> None:
        """Asked only when the data's lengths cannot be measured (no dataset, or no tokenizer for the model
        here) and no `max_length` was given: the plan's sequence length then covers the answer."""
        from advisor.facts import tokenizer_for

        a = self.a
        if a.max_length or "tokens_per_example" in self.skip:
            return
        why = "no dataset yet" if not a.dataset else tokenizer_for(a)[1]
        if why is None:  # measurable: the data sizes the length
            return
        self.say(f"Token lengths cannot be measured here ({why}).")
        self.asked.append("tokens_per_example")
        n = self.p.text(
            "How many tokens is a long example, prompt and answer together? (Enter to skip: the guide's starting length is assumed)",
            str(a.tokens_per_example) if a.tokens_per_example else "",
            tokens_validator,
        )
        a.tokens_per_example = _as_int(n) if n.strip() else None


def _show(v: Any) -> str:
    if isinstance(v, list):
        return ", ".join(_show(x) for x in v) or "(none)"
    if isinstance(v, GPUAnswer):
        return f"{v.name} {v.memory_gib:g} GiB"
    return str(v)
