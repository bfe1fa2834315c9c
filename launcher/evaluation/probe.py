"""`tunewise recommend --probe`: measure few-shot prompting on a sample of the user's data before deciding.

The data is split exactly as `recommend --out` splits it (same seed and share), the held-out side sampled
(deterministic, stratified for classification), and the base model prompted with k examples from the
training side. The figure and its interval go into the facts (advisor/task_metrics.py `probe_facts`), where
the rules TW121 and TW707 read them.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from advisor.answers import Answers
from advisor.errors import UserError
from advisor.task_metrics import headline_metric

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
    from launcher.evaluation import bootstrap, generation, heldout, metrics

    if not answers.dataset:
        raise UserError(
            "--probe needs a dataset to measure prompting on", "add `dataset: FILE` to the answers"
        )
    if not answers.model:
        raise UserError(
            "--probe needs the model to prompt", "add `model: DIR` (a local model directory) to the answers"
        )
    t0 = time.perf_counter()
    metric = headline_metric(answers.task, answers.success.metric if answers.success else None)
    with tempfile.TemporaryDirectory(prefix="tunewise-probe-") as tmp:
        split = write_split(answers.dataset, Path(tmp))
        held = heldout.read_examples(Path(split.validation), "held-out")
        train = heldout.read_examples(Path(split.train), "training")
    sample = heldout.cap(held, examples, PROBE_SEED, stratify=answers.task == "classification")
    shot_rows = heldout.pick_shots(train, shots, PROBE_SEED)
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
    refs = [e.reference for e in sample]
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
    scored = metrics.build(metric, out.texts, refs, labels=labels, nll=nll)
    ci = bootstrap.interval(scored, bootstrap.resamples(len(sample), PROBE_SEED))
    return {
        "metric": metric,
        "value": ci["value"],
        "ci": ci["ci"],
        "n": len(sample),
        "k": len(shot_rows),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
