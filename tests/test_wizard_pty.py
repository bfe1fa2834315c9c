"""The wizard driven through a real pseudo-terminal, keys and all, as a person would use it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from advisor.answers import load_answers

ROOT = Path(__file__).resolve().parents[1]
DOWN, ENTER, CTRL_C, CLEAR_LINE = "\x1b[B", "\r", "\x03", "\x15"

pytestmark = pytest.mark.slow


def _env() -> dict:
    env = dict(
        os.environ,
        TERM="xterm",
        COLUMNS="100",
        LINES="40",
        PROMPT_TOOLKIT_NO_CPR="1",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    env.pop("NO_COLOR", None)
    return env


def spawn(*args: str, cwd: Path = ROOT) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "tunewise", "wizard", "--no-detect", *args],
        cwd=str(cwd),
        env=_env(),
        dimensions=(40, 100),
        encoding="utf-8",
        timeout=60,
    )
    child.logfile_read = _Log()
    return child


class _Log:
    """Keeps everything the terminal showed, for the assertions and for a readable failure."""

    def __init__(self):
        self.parts: list[str] = []

    def write(self, s: str) -> None:
        self.parts.append(s)

    def flush(self) -> None:
        pass

    @property
    def text(self) -> str:
        return "".join(self.parts)


def finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


def test_enter_through_the_demo_reaches_the_report():
    child = spawn("--demo")
    child.expect("Pre-filled answers")
    child.expect("Use these answers")
    child.send(ENTER)
    child.expect("usable rows")  # the dataset answered the number of examples
    child.expect("Which GPU will you train on")
    child.send(ENTER)
    child.expect("How many of them")
    child.send(ENTER)
    child.expect("tunewise recommendation")
    for part in ("Decision:", "Why", "Memory per GPU", "Plan", "Warnings", "Full report: answer y below"):
        child.expect(part)
    child.expect("Show the full report here")
    child.send(ENTER)  # default No: the brief view is enough
    child.expect("Write the run directory and launch now")
    child.send("n")
    child.expect("Not launched")
    child.expect("Full report: rerun the wizard with --save-answers")  # a GPU was added to the demo answers
    assert finish(child) == 0
    shown = child.logfile_read.text
    assert "Traceback" not in shown and "How many training examples" not in shown
    for full_only in ("Ruled out", "What would change the decision", "Getting-started checklist", "Sources"):
        assert full_only not in shown, full_only


def test_yes_to_the_full_report_shows_it_before_the_launch_offer():
    child = spawn("--demo")
    child.expect("Use these answers")
    child.send(ENTER)
    child.expect("Which GPU will you train on")
    child.send(ENTER)
    child.expect("How many of them")
    child.send(ENTER)
    child.expect("tunewise recommendation \\(brief\\)")
    child.expect("Show the full report here")
    child.send("y")
    for part in (
        "Ruled out",
        "What would change the decision",
        "Estimated peak memory per method",
        "Training plan",
        "Evaluation plan",
        "Getting-started checklist",
        "Sources",
    ):
        child.expect(part)
    child.expect("Write the run directory and launch now")
    child.send("n")
    child.expect("Not launched")
    assert finish(child) == 0
    shown = child.logfile_read.text
    assert "Traceback" not in shown
    assert "Full report: tunewise recommend" not in shown  # it was just shown: no pointer to it


def test_from_scratch_with_arrow_keys_typing_and_a_rejected_number(tmp_path):
    saved = tmp_path / "answers.yaml"
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps({"prompt": f"Q{i}?", "chosen": f"Answer {i}.", "rejected": "No."}) + "\n"
            for i in range(120)
        ),
        encoding="utf-8",
    )
    child = spawn("--save-answers", str(saved))
    child.expect("What should the model do")
    child.send(DOWN)  # chat -> question-answering
    child.send(ENTER)
    child.expect("Which of these")
    child.send(DOWN + DOWN + " ")  # tick the third goal: low-resource-language
    child.send(ENTER)
    child.expect("cite")
    child.send("n")
    child.expect("change often")
    child.send("n")
    child.expect("clear task")
    child.send("y")
    child.expect("success criterion")
    child.send(DOWN + ENTER)  # no target yet -> exact match (the first question-answering metric)
    child.expect("Target exact match")
    child.send(CLEAR_LINE + "0.75" + ENTER)
    child.expect("tried prompt")
    child.send("y")
    child.expect("Training data")
    child.send(ENTER)
    child.expect("How many training examples")
    child.send(CLEAR_LINE + "lots" + ENTER)
    child.expect("not a whole number")  # re-asked inline, nothing lost
    child.send(CLEAR_LINE + "3,000" + ENTER)
    child.expect("Preference pairs file")
    child.send(str(pairs) + ENTER)
    child.expect("Preference data: 120 usable rows, format preference, 120 preference pairs")
    child.expect("Which base model")  # the file counts the pairs: the count is not asked
    child.send(DOWN + DOWN + ENTER)  # meta-llama/Llama-3.2-1B
    child.expect("Which GPU will you train on")
    child.send(DOWN + ENTER)  # the RTX 4090 is the default; one down is the L40S (48 GiB)
    child.expect("How many of them")
    child.send(CLEAR_LINE + "0" + ENTER)
    child.expect("out of range")
    child.send(CLEAR_LINE + "2" + ENTER)
    child.expect("zero extra inference latency")  # asked: the answers so far lead to fine-tuning
    child.send(ENTER)
    child.expect("Training method")
    child.send(DOWN + DOWN + ENTER)  # auto -> lora -> qlora
    child.expect("GPU-hour cost you")
    child.send("2.5" + ENTER)
    child.expect("Token lengths cannot be measured here \\(no dataset yet\\)")
    child.expect("How many tokens is a long example")
    child.send("2,500" + ENTER)
    child.expect("Answers saved to")
    child.expect("tunewise recommendation")
    child.expect("Show the full report here")
    child.send("n")
    child.expect("Write the run directory and launch now")
    child.send("n")
    child.expect("Full report: tunewise recommend --answers " + str(saved))
    assert finish(child) == 0
    a = load_answers(saved)
    assert a.task == "question-answering" and a.goals == ["low-resource-language"]
    assert a.examples == 3000 and a.preference_pairs is None and a.preference_dataset == str(pairs)
    assert a.model == "meta-llama/Llama-3.2-1B"
    assert [g.memory_gib for g in a.gpus] == [48.0, 48.0]
    assert a.method == "qlora" and a.zero_latency is False and a.gpu_hour_price == 2.5
    assert a.tokens_per_example == 2500 and a.max_length is None
    assert (a.needs_citations, a.knowledge_changes_often, a.clear_task, a.tried_prompting) == (
        False,
        False,
        True,
        True,
    )
    assert (a.success.metric, a.success.target) == ("exact_match", 0.75)
    # the saved file, given back to the wizard, is accepted as it is
    child = spawn("--answers", str(saved))
    child.expect("Use these answers")
    child.send(ENTER)
    child.expect("tunewise recommendation")
    child.expect("Show the full report here")
    child.send(ENTER)
    child.expect("Write the run directory and launch now")
    child.send("n")
    assert finish(child) == 0
    assert "Which GPU" not in child.logfile_read.text


def test_tokens_per_example_is_asked_when_the_models_tokenizer_is_not_here(tmp_path):
    """A dataset with a hub model whose tokenizer is in no local folder or cache: the lengths cannot be measured,
    so the wizard asks for the expected tokens per example (a rejected value first); the answer sizes max_length."""
    data = tmp_path / "docs.jsonl"
    data.write_text(
        "".join(
            json.dumps({"prompt": f"Document {i}: ...", "completion": "30 days."}) + "\n" for i in range(400)
        ),
        encoding="utf-8",
    )
    answers = tmp_path / "answers.yaml"
    answers.write_text(
        f"task: question-answering\ngoals: [privacy]\nclear_task: true\ntried_prompting: true\n"
        f"dataset: {data}\nmodel: meta-llama/Llama-3.1-8B\ngpus: [{{memory_gib: 80, bf16: true}}]\n",
        encoding="utf-8",
    )
    saved = tmp_path / "saved.yaml"
    child = spawn("--answers", str(answers), "--save-answers", str(saved))
    child.expect("Use these answers")
    child.send("n")  # review each one: Enter keeps the file's value
    for question in ("What should the model do", "Which of these"):
        child.expect(question)
        child.send(ENTER)
    for question in ("cite", "change often", "clear task"):
        child.expect(question)
        child.send(ENTER)
    child.expect("success criterion")
    child.send(ENTER)
    child.expect("tried prompt")
    child.send(ENTER)
    child.expect("Training data")
    child.send(ENTER)
    child.expect("400 usable rows")
    child.expect("Preference pairs file")
    child.send(ENTER)
    child.expect("How many preference pairs")
    child.send(ENTER)
    child.expect("Which base model")
    child.send(ENTER)
    child.expect("Which GPU will you train on")
    child.send(ENTER)
    child.expect("How many of them")
    child.send(ENTER)
    child.expect("zero extra inference latency")
    child.send(ENTER)
    child.expect("Training method")
    child.send(ENTER)
    child.expect("GPU-hour cost you")
    child.send(ENTER)
    child.expect("Token lengths cannot be measured here \\(no tokenizer for meta-llama/Llama-3.1-8B")
    child.expect("How many tokens is a long example")
    child.send("0" + ENTER)
    child.expect("out of range")
    child.send(CLEAR_LINE + "9,000" + ENTER)
    child.expect("Answers saved to")
    child.expect("Show the full report here")
    child.send("n")
    child.expect("Write the run directory and launch now")
    child.send("n")
    assert finish(child) == 0
    assert load_answers(saved).tokens_per_example == 9000


def test_ctrl_c_exits_130_without_a_traceback(tmp_path):
    saved = tmp_path / "answers.yaml"
    child = spawn("--save-answers", str(saved))
    child.expect("What should the model do")
    child.send(CTRL_C)
    assert finish(child) == 130
    shown = child.logfile_read.text
    assert "cancelled (nothing was written)" in shown and "Traceback" not in shown
    assert not saved.exists()


def test_no_tty_is_a_clear_error():
    r = subprocess.run(
        [sys.executable, "-m", "tunewise", "wizard", "--demo"],
        cwd=ROOT,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "needs an interactive terminal" in r.stderr and "tunewise recommend --answers FILE" in r.stderr
    assert "Traceback" not in r.stderr
