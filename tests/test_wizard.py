"""The wizard's question logic with a scripted prompter (the pty tests drive the real terminal)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from advisor.answers import Answers, dump_answers, load_answers, parse_answers
from advisor.hardware import GPU, Detection
from advisor.wizard import (
    Wizard,
    dataset_validator,
    float_validator,
    int_validator,
    model_validator,
)
from tunewise.commands.wizard import demo_answers_path, save_answers


class Script:
    """Answers questions from a dict keyed by a word in the question; records what was asked."""

    def __init__(self, replies: dict[str, object]):
        self.replies = replies
        self.asked: list[str] = []

    def _reply(self, message, default, validate=None):
        self.asked.append(message)
        for key, value in self.replies.items():
            if key in message:
                if validate is not None:
                    assert validate(str(value)) is None, (message, value)
                return value
        return default

    def select(self, message, choices, default):
        value = self._reply(message, default)
        assert value in [v for v, _ in choices], (message, value)
        return value

    def checkbox(self, message, choices, default):
        return self._reply(message, default)

    def confirm(self, message, default):
        return self._reply(message, default)

    def text(self, message, default, validate=None):
        return self._reply(message, default, validate)


NO_GPU = Detection([], reason="no NVIDIA driver found")


def run(prefill: Answers, replies: dict, detection=NO_GPU, probe=None) -> tuple[Answers, Script, list[str]]:
    said: list[str] = []
    script = Script(replies)
    answers = Wizard(prefill, script, said.append, detection, approach_probe=probe).run()
    return answers, script, said


def test_from_scratch_asks_everything_and_builds_valid_answers():
    replies = {
        "What should the model do": "code",
        "Which of these": ["new-capability"],
        "cite": False,
        "change often": False,
        "clear task": True,
        "tried prompt": True,
        "Training data": "",
        "How many training examples": "3,000",
        "preference pairs": "0",
        "Which base model": "meta-llama/Llama-3.1-8B",
        "Which GPU": 0,
        "How many of them": "1",
        "zero extra": False,
        "Training method": "auto",
        "success criterion": "exact_match",
        "Target exact match": "0.7",
    }
    answers, script, said = run(Answers(), replies)
    assert answers.task == "code" and answers.examples == 3000 and answers.goals == ["new-capability"]
    assert (answers.success.metric, answers.success.target) == ("exact_match", 0.7)
    assert answers.gpus[0].memory_gib == 16.0 and answers.gpus[0].name.startswith("NVIDIA T4")
    assert any("No GPU detected" in s for s in said)
    # the success criterion (metric, target), the price per GPU-hour, the preference file and the tokens per
    # example (no dataset to measure) last: the three skipped with Enter
    assert len(script.asked) == 19 and answers.tokens_per_example is None
    assert answers.preference_dataset is None and answers.preference_pairs == 0
    # what the wizard built is a valid answers file
    assert parse_answers(__import__("yaml").safe_load(dump_answers(answers))) == answers


def test_success_criterion_is_asked_only_with_a_clear_task_and_checks_the_target():
    base = {
        "What should the model do": "classification",
        "clear task": True,
        "success criterion": "macro_f1",
        "Target macro-F1": "0.85",
    }
    answers, script, _ = run(Answers(), base)
    assert (answers.success.metric, answers.success.target) == ("macro_f1", 0.85)
    menu = next(q for q in script.asked if "success criterion" in q)
    assert menu.startswith("Which metric says it works")
    with pytest.raises(AssertionError):  # a share above 1 is refused by the validator
        run(Answers(), {**base, "Target macro-F1": "85"})
    answers, script, _ = run(Answers(), {**base, "clear task": False})
    assert answers.success is None and not any("success criterion" in q for q in script.asked)
    answers, _, _ = run(Answers(), {**base, "success criterion": "none"})
    assert answers.success is None


def test_accepted_prefill_is_not_asked_again():
    prefill = parse_answers(
        {
            "task": "chat",
            "goals": ["tone-style"],
            "needs_citations": False,
            "knowledge_changes_often": False,
            "clear_task": True,
            "tried_prompting": True,
            "examples": 2000,
            "preference_pairs": 0,
            "model": "meta-llama/Llama-3.1-8B",
            "gpus": [{"name": "RTX 4090", "memory_gib": 24}],
            "zero_latency": False,
        }
    )
    answers, script, _ = run(prefill, {"Use these answers": True})
    # only the confirmation was asked; the method keeps its default
    assert script.asked == ["Use these answers? (No: review each one, with these as defaults)"]
    assert answers.model_dump() == prefill.model_dump()


def test_accepted_prefill_still_asks_what_the_recommendation_needs():
    prefill = parse_answers({"goals": ["privacy"], "tried_prompting": True})
    answers, script, _ = run(
        prefill,
        {
            "Use these answers": True,
            "What should the model": "extraction",
            "How many training examples": "800",
            "Which GPU": 4,
        },
    )
    asked = [q.split("?")[0] for q in script.asked]
    assert asked == [
        "Use these answers",
        "What should the model do",
        "Training data file or folder (Enter to skip if you have none yet):",
        "How many training examples do you have (or can you write)",
        "Which base model",
        "Which GPU will you train on",
        "How many of them",
    ]
    assert answers.task == "extraction" and answers.examples == 800 and answers.gpus[0].memory_gib == 80


def test_rejected_prefill_is_asked_with_the_file_values_as_defaults():
    prefill = parse_answers({"task": "summarization", "examples": 42, "method": "qlora"})
    answers, script, _ = run(prefill, {"Use these answers": False, "Which GPU": 1})
    # Enter everywhere: the defaults are the file's values
    assert answers.task == "summarization" and answers.examples == 42 and answers.method == "qlora"
    assert any("What should the model do" in q for q in script.asked)


def test_detected_gpus_are_confirmed_not_asked():
    det = Detection([GPU("NVIDIA H100 80GB HBM3", 79.6, free_gib=79.0, compute_capability=(9, 0))])
    answers, script, said = run(parse_answers({"task": "chat"}), {"Use these answers": True}, detection=det)
    assert "Plan for these GPUs?" in script.asked and not any("Which GPU" in q for q in script.asked)
    assert answers.gpus is None  # detection is used again when recommending
    assert any("NVIDIA H100 80GB HBM3: 79.6 GiB" in s for s in said)


def test_planning_for_another_machine_when_detection_is_declined():
    det = Detection([GPU("NVIDIA GeForce RTX 3060", 12.0, free_gib=11.0)])
    answers, _, _ = run(
        Answers(),
        {
            "Plan for these GPUs": False,
            "Which GPU": "__other__",
            "GPU memory in GiB": "48",
            "How many of them": "2",
            "How many training examples": "10",
        },
        detection=det,
    )
    assert [g.memory_gib for g in answers.gpus] == [48.0, 48.0]


def test_dataset_answers_the_example_count(tmp_path, monkeypatch):
    data = tmp_path / "train.jsonl"
    data.write_text('{"text": "a"}\n')
    fake = SimpleNamespace(
        inspect_dataset=lambda p: SimpleNamespace(valid=1234, format="text", preference_rows=0)
    )
    monkeypatch.setitem(sys.modules, "advisor.data", fake)
    answers, script, said = run(Answers(), {"Training data": str(data), "Which GPU": 1})
    assert not any("How many training examples" in q for q in script.asked)
    # a dataset without pairs leaves the preference questions open (a file beside it, or a count)
    assert any("Preference pairs file" in q for q in script.asked)
    assert answers.dataset == str(data) and answers.examples is None
    assert "Data: 1,234 usable rows, format text." in said


def test_training_questions_are_skipped_when_no_fine_tuning_is_coming():
    answers, script, said = run(
        Answers(), {"How many training examples": "20", "Which GPU": 1}, probe=lambda a: "prompting"
    )
    assert not any("Training method" in q or "zero extra" in q for q in script.asked)
    assert any("skipping the training questions" in s for s in said)


def test_trust_remote_code_is_asked_only_for_custom_code(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "x", "auto_map": {"AutoModel": "m.M"}}')
    prefill = parse_answers(
        {
            "task": "chat",
            "examples": 2000,
            "model": str(model),
            "gpus": [{"memory_gib": 24}],
            "method": "lora",
        }
    )
    answers, script, _ = run(prefill, {"Use these answers": True, "trust_remote_code": True})
    assert answers.trust_remote_code is True
    (model / "config.json").write_text('{"model_type": "llama"}')
    _, script, _ = run(prefill, {"Use these answers": True})
    assert not any("trust_remote_code" in q for q in script.asked)


@pytest.mark.parametrize(
    ("check", "good", "bad", "says"),
    [
        (int_validator(), "2,500", "lots", "not a whole number"),
        (int_validator(1, 64), "8", "0", "out of range"),
        (float_validator(0, 4096), "24", "-3", "out of range"),
        (float_validator(0, 4096), "80.5", "big", "not a number"),
        (model_validator, "meta-llama/Llama-3.1-8B", "./nowhere", "has no config.json"),
        (model_validator, "Qwen/Qwen2.5-7B", "acme/unknown-7b", "not in the offline catalog"),
        (dataset_validator, "", "/no/such/file.jsonl", "no file or folder"),
    ],
)
def test_validators_accept_and_reject(check, good, bad, says):
    assert check(good) is None
    assert says in check(bad)


def test_save_answers_round_trips_with_a_relative_dataset(tmp_path):
    data = tmp_path / "d" / "train.jsonl"
    data.parent.mkdir()
    data.write_text("{}\n")
    answers = parse_answers(
        {"task": "chat", "dataset": str(data), "gpus": [{"name": "A", "memory_gib": 24}], "method": "lora"}
    )
    out = save_answers(answers, str(tmp_path / "answers.yaml"))
    assert "dataset: d/train.jsonl" in out.read_text()
    assert load_answers(out) == answers


def test_demo_answers_exist_and_load():
    demo = load_answers(demo_answers_path())
    assert demo.task == "chat" and demo.dataset and demo.dataset.endswith("train.jsonl")
    assert __import__("pathlib").Path(demo.dataset).is_file()


class _Console:
    def __init__(self):
        self.out: list[str] = []

    def print(self, *args, **kwargs):
        self.out.append(" ".join(map(str, args)))


def _rec(plan=True, problems=()):
    return SimpleNamespace(plan=object() if plan else None, problems=list(problems))


def test_launch_offer_calls_the_launcher_when_accepted(monkeypatch):
    from tunewise.commands.wizard import _offer_launch

    calls = []
    fake = SimpleNamespace(offer_launch=lambda rec, console: calls.append(rec) or 7)
    monkeypatch.setitem(sys.modules, "launcher.launch", fake)
    rec, con = _rec(), _Console()
    assert _offer_launch(rec, con, Script({"launch now": True}), "a.yaml") == 7
    assert calls == [rec]
    assert _offer_launch(rec, con, Script({"launch now": False}), "a.yaml") == 0 and len(calls) == 1


def test_launch_offer_without_a_launcher_prints_the_command(monkeypatch):
    from tunewise.commands.wizard import _offer_launch

    monkeypatch.setitem(sys.modules, "launcher.launch", None)  # import fails
    con = _Console()
    assert _offer_launch(_rec(), con, Script({}), "my answers.yaml") == 0
    assert any("tunewise recommend --answers 'my answers.yaml' --out runs/my-run" in line for line in con.out)


def test_no_launch_offer_for_a_misfit_or_no_training():
    from tunewise.commands.wizard import _offer_launch

    script, con = Script({}), _Console()
    assert _offer_launch(_rec(problems=["full fine-tuning does not fit"]), con, script, None) == 1
    assert _offer_launch(_rec(plan=False), con, script, None) == 0
    assert script.asked == []


def test_wizard_shows_the_brief_view_and_the_full_report_only_on_request(monkeypatch):
    from rich.console import Console
    from test_report import make_rec

    from tunewise.commands.wizard import WHERE, show_recommendation

    for reply, full in ((None, False), (False, False), (True, True)):
        con = Console(record=True, width=100, color_system=None)
        script = Script({} if reply is None else {"full report": reply})
        assert show_recommendation(make_rec(), con, script) is full
        text = con.export_text()
        assert script.asked == ["Show the full report here?"]  # default No: Enter keeps it brief
        assert "tunewise recommendation (brief)" in text and WHERE in text
        # sections only the full report has
        assert ("Getting-started checklist" in text) is full and ("Ruled out" in text) is full


def test_not_launching_says_how_to_get_the_full_report(monkeypatch):
    from tunewise.commands.wizard import _offer_launch

    con = _Console()
    assert _offer_launch(_rec(), con, Script({"launch now": False}), "my answers.yaml") == 0
    assert con.out[-1] == "Full report: tunewise recommend --answers 'my answers.yaml'"
    con = _Console()
    assert _offer_launch(_rec(plan=False), con, Script({}), None) == 0
    assert "--save-answers ANSWERS.yaml, then tunewise recommend --answers ANSWERS.yaml" in con.out[-1]
    con = _Console()  # already shown in full: no pointer to it
    assert _offer_launch(_rec(), con, Script({"launch now": False}), "a.yaml", shown=True) == 0
    assert not any("Full report" in line for line in con.out)


def test_launching_points_at_the_run_directorys_report(monkeypatch, tmp_path):
    from tunewise.commands.wizard import _offer_launch

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "old-run").mkdir(parents=True)
    (tmp_path / "runs" / "old-run" / "report.md").write_text("old")

    def fake_launch(rec, console):
        run = tmp_path / "runs" / "Llama-3.2-1B-lora"
        run.mkdir()
        (run / "report.md").write_text("# tunewise recommendation\n")
        return 0

    monkeypatch.setitem(sys.modules, "launcher.launch", SimpleNamespace(offer_launch=fake_launch))
    con = _Console()
    assert _offer_launch(_rec(), con, Script({"launch now": True}), "a.yaml") == 0
    assert con.out[-1] == "Full report: runs/Llama-3.2-1B-lora/report.md"
    # a launcher that fails before writing anything: the answers file is the way back to the report
    monkeypatch.setitem(sys.modules, "launcher.launch", SimpleNamespace(offer_launch=lambda rec, console: 3))
    con = _Console()
    assert _offer_launch(_rec(), con, Script({"launch now": True}), "a.yaml") == 3
    assert con.out[-1] == "Full report: tunewise recommend --answers a.yaml"


def test_the_price_per_gpu_hour_is_asked_on_the_way_to_fine_tuning_and_can_be_skipped():
    replies = {"Which GPU": 1, "What does one GPU-hour cost": "1.9"}
    answers, script, _ = run(Answers(), replies, probe=lambda a: "fine-tune")
    assert answers.gpu_hour_price == 1.9
    skipped, _, _ = run(Answers(), {"Which GPU": 1}, probe=lambda a: "fine-tune")  # Enter: the default ""
    assert skipped.gpu_hour_price is None
    _, script, _ = run(Answers(), {"Which GPU": 1}, probe=lambda a: "rag")  # no training, no cost to ask
    assert not any("GPU-hour" in q for q in script.asked)


def test_a_preference_file_is_asked_beside_the_dataset_and_counts_the_pairs(tmp_path):
    import json

    pref = tmp_path / "pairs.jsonl"
    pref.write_text(
        "".join(
            json.dumps({"prompt": f"Q{i}?", "chosen": f"Good answer {i}.", "rejected": "No."}) + "\n"
            for i in range(150)
        ),
        encoding="utf-8",
    )
    replies = {
        "What should the model do": "chat",
        "Which of these": ["tone-style"],
        "cite": False,
        "change often": False,
        "clear task": True,
        "tried prompt": True,
        "Training data": "",
        "How many training examples": "3,000",
        "Preference pairs file": str(pref),
        "Which base model": "meta-llama/Llama-3.1-8B",
        "Which GPU": 0,
        "How many of them": "1",
        "zero extra": False,
        "Training method": "auto",
    }
    answers, script, said = run(Answers(), replies)
    assert answers.preference_dataset == str(pref) and answers.preference_pairs is None
    assert not any("How many preference pairs" in q for q in script.asked)
    assert any("Preference data: 150 usable rows, format preference, 150 preference pairs" in s for s in said)


def test_tokens_per_example_is_asked_only_when_lengths_cannot_be_measured(tmp_path):
    """No dataset, or no tokenizer for the model here: asked (Enter skips); a local tokenizer: not asked."""
    import shutil

    q = "How many tokens is a long example"
    answers, script, said = run(Answers(), {"Which GPU": 1, q: "3,000"}, probe=lambda a: "fine-tune")
    assert answers.tokens_per_example == 3000 and any("no dataset yet" in s for s in said)
    skipped, _, _ = run(Answers(), {"Which GPU": 1}, probe=lambda a: "fine-tune")
    assert skipped.tokens_per_example is None
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "q?", "completion": "a."}\n' * 20, encoding="utf-8")
    hub = {"dataset": str(data), "model": "meta-llama/Llama-3.2-1B"}
    answers, script, said = run(
        Answers(), {"Training data": str(data), "Which GPU": 1, q: "900"}, probe=lambda a: "fine-tune"
    )
    assert answers.tokens_per_example == 900
    assert any("no tokenizer for meta-llama/Llama-3.1-8B" in s for s in said)  # the default model
    local = tmp_path / "model"
    shutil.copytree("examples/demo/tokenizer", local)
    (local / "config.json").write_text("{}")
    prefill = parse_answers({**hub, "model": str(local)})
    _, script, _ = run(prefill, {"Use these answers": False, "Which GPU": 1}, probe=lambda a: "fine-tune")
    assert not any(q in m for m in script.asked)
    _, script, _ = run(
        parse_answers({**hub, "max_length": 2048}),
        {"Use these answers": False, "Which GPU": 1},
        probe=lambda a: "fine-tune",
    )
    assert not any(q in m for m in script.asked)  # a stated max_length needs no estimate
