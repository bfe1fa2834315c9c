"""`tunewise recommend --probe`: measure few-shot prompting on a sample of the user's data before deciding.

The data is split exactly as `recommend --out` splits it (same seed and share), the held-out side sampled
(deterministic, stratified for classification), and the base model prompted with k examples from the
training side. The figure and its interval go into the facts (advisor/task_metrics.py `probe_facts`), where
the rules TW121 and TW707 read them. For code whose rows carry tests, the figure is tests passed: the model's
code runs on this machine (launcher/evaluation/codetests.py), as in `tunewise eval`.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from advisor.answers import Answers
from advisor.errors import UserError

PROBE_EXAMPLES = 50  # held-out rows measured: ~15-25 s of greedy decoding for short answers on 2 CPU cores
PROBE_SHOTS = 5
PROBE_SEED = 0


def probe_few_shot(
    answers: Answers,
    *,
    examples: int = PROBE_EXAMPLES,
    shots: int = PROBE_SHOTS,
    max_new_tokens: int = 64,
    batch_size: int = 8,
) -> dict:
    """{metric, value, ci, n, k, wall_s} for k-shot prompting of `answers.model` on `answers.dataset`.

    Raises:
        UserError: no dataset or model in the answers, a model not on disk, or data without reference answers.
    """
    from advisor.data.split import write_split
    from launcher.evaluation import bootstrap, codetests, generation, heldout, metrics

    if not answers.dataset:
        raise UserError(
            "--probe needs a dataset to measure prompting on", "add `dataset: FILE` to the answers"
        )
    if not answers.model:
        raise UserError(
            "--probe needs the model to prompt", "add `model: DIR` (a local model directory) to the answers"
        )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tunewise-probe-") as tmp:
        split = write_split(answers.dataset, Path(tmp))
        held = heldout.read_examples(Path(split.validation), "held-out")
        train = heldout.read_examples(Path(split.train), "training")
    sample = heldout.cap(held, examples, PROBE_SEED, stratify=answers.task == "classification")
    shot_rows = heldout.pick_shots(train, shots, PROBE_SEED)
    refs = [e.reference for e in sample]
    tests = [e.tests for e in sample]
    # The success metric, else the task's headline as `tunewise eval` measures it on this data (tests passed
    # only where every row carries tests).
    metric = answers.success.metric if answers.success else metrics.metric_names(answers.task, refs, tests)[0]
    if metric == "tests_pass" and None in tests:
        raise UserError(
            f"the success metric is tests passed, but {tests.count(None)} of {len(sample)} sampled rows of "
            f"{answers.dataset} carry no tests",
            "give every row a `tests` column (Python assert statements, a string or a list), or choose "
            "another success metric",
        )
    print(
        f"[tunewise] probe: {len(shot_rows)}-shot prompting of {answers.model} on {len(sample)} held-out "
        f"examples ({metric})",
        file=sys.stderr,
        flush=True,
    )
    try:
        model, tok = generation.load(answers.model, trust_remote_code=answers.trust_remote_code)
    except OSError as e:
        raise UserError(
            f"--probe cannot load the model {answers.model!r} ({str(e).splitlines()[0]})",
            "set `model:` to a local model directory (with its tokenizer), or leave out --probe",
        ) from None
    prompts = [heldout.few_shot_messages(e, shot_rows) for e in sample]
    budget = generation.new_token_budget(tok, [e.reference for e in held + train], max_new_tokens)
    out = generation.generate(model, tok, prompts, max_new_tokens=budget, batch_size=batch_size)
    nll = (
        generation.reference_nll(model, tok, prompts, refs, batch_size=batch_size)
        if metric == "perplexity"
        else None
    )
    labels = (
        sorted({metrics.strip_answer(e.reference) for e in held + train}) if metric == "macro_f1" else None
    )
    if metric == "tests_pass":
        print(
            "[tunewise] probe: running the data's tests on the model's code on this machine "
            f"(python -I in a temporary directory, {codetests.TIMEOUT_S:g} s per example)",
            file=sys.stderr,
            flush=True,
        )
    scored = metrics.build(metric, out.texts, refs, labels=labels, nll=nll, tests=tests)
    ci = bootstrap.interval(scored, bootstrap.resamples(len(sample), PROBE_SEED))
    return {
        "metric": metric,
        "value": ci["value"],
        "ci": ci["ci"],
        "n": len(sample),
        "k": len(shot_rows),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
