"""`tunewise eval RUN_DIR`: base zero-shot, base few-shot and the fine-tuned model(s) on the held-out split.

Reads plan.yaml (its `evaluation` section; defaults when an older plan has none), writes eval.json, the
Evaluation section of report.md, two PNG plots, and the headline numbers into summary.json. Every file is
written atomically at the end, so an interrupted evaluation leaves the previous ones (or none) intact.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from advisor.errors import UserError
from advisor.plan import EvalSpec, TrainingPlan
from launcher.evaluation import bootstrap, heldout, plots, section, verdict
from launcher.rundir import atomic_write, final_dir
from launcher.summary import write_summary

EVAL_JSON = "eval.json"
SIDE_BY_SIDE = 5  # held-out examples shown next to each other in the report


def _say(msg: str) -> None:
    print(f"[tunewise] eval: {msg}", file=sys.stderr, flush=True)


def tuned_variants(run_dir: Path, plan: TrainingPlan) -> list[tuple[str, str, Path]]:
    """(key, label, directory) of each fine-tuned result on disk: one per stage of an SFT + DPO run."""
    stages = ["sft", "dpo"] if plan.stage == "sft+dpo" else [plan.stage]
    out = []
    for i, stage in enumerate(stages):
        last = i == len(stages) - 1
        d = final_dir(run_dir, plan, stage, last=last)
        if d.is_dir() and any(d.iterdir()):
            key = "tuned" if last else f"tuned_{stage}"
            name = (
                "fine-tuned"
                if len(stages) == 1
                else ("fine-tuned (SFT)" if not last else "fine-tuned (SFT+DPO)")
            )
            out.append((key, name, d))
    return out


def _load(plan: TrainingPlan, tuned: Path | None = None):
    from launcher.evaluation.generation import load

    adapter = tuned if tuned is not None and (tuned / "adapter_config.json").is_file() else None
    model_dir = plan.model if tuned is None or adapter is not None else str(tuned)
    try:
        return load(model_dir, adapter, trust_remote_code=plan.trust_remote_code)
    except OSError as e:
        raise UserError(
            f"the base model {plan.model!r} is not on disk ({str(e).splitlines()[0]})",
            "download it (`hf download MODEL --local-dir DIR`) and set `model: DIR` in plan.yaml",
        ) from None


def code_tests_note(examples: list[heldout.Example], run_tests: bool, measured: bool) -> dict | None:
    """What eval.json says about running the data's tests (None when no held-out example carries any)."""
    from launcher.evaluation.codetests import TIMEOUT_S, WORKERS

    with_tests = sum(e.tests is not None for e in examples)
    if not with_tests:
        return None
    out = {"run": measured, "examples_with_tests": with_tests, "timeout_s": TIMEOUT_S, "workers": WORKERS}
    if measured:
        out["note"] = (
            f"the model's code was executed on this machine with the data's tests (python -I in a temporary "
            f"directory, {TIMEOUT_S:g} s per example; not a sandbox); turn it off with `evaluation.run_tests: "
            "false` in plan.yaml"
        )
    elif not run_tests:
        out["note"] = "not run: evaluation.run_tests is false in plan.yaml"
    elif with_tests < len(examples):
        out["note"] = (
            f"not run: only {with_tests} of {len(examples)} held-out examples carry tests; give every row "
            "`tests` to measure tests passed"
        )
    else:
        out["note"] = "not run: tests passed is measured for task `code` (or as the success metric)"
    return out


def evaluate_run(run_dir: str | Path, *, max_examples: int | None = None) -> dict:
    """Evaluate a run directory; returns the eval.json object (also written).

    Raises:
        UserError: no plan, no held-out split, no reference answers, or a base model not on disk.
    """
    from launcher.evaluation import generation, metrics

    t0 = time.perf_counter()
    run_dir = Path(run_dir).resolve()
    plan = TrainingPlan.load(run_dir / "plan.yaml")
    spec = plan.evaluation or EvalSpec()
    if not plan.data.validation:
        raise UserError(
            f"the run {run_dir} has no held-out split (plan.yaml data.validation is empty)",
            "recreate the run with `tunewise recommend --out RUN_DIR` so a validation split is written, "
            "or set data.validation to a held-out JSONL file",
        )
    everything = heldout.read_examples(run_dir / plan.data.validation, "held-out")
    train = heldout.read_examples(run_dir / plan.data.train, "training") if plan.data.train else []
    n_cap = max_examples or spec.max_examples
    examples = heldout.cap(everything, n_cap, spec.seed, stratify=spec.task == "classification")
    shots = heldout.pick_shots(train, spec.few_shot, spec.seed)
    refs = [e.reference for e in examples]
    zero = [e.prompt for e in examples]
    few = [heldout.few_shot_messages(e, shots) for e in examples]
    tests = [e.tests for e in examples] if spec.run_tests else None
    names = metrics.metric_names(spec.task, refs, tests)
    if spec.target_metric == "tests_pass" and (not tests or None in tests):
        missing = sum(e.tests is None for e in examples)
        raise UserError(
            f"the success metric is tests passed, but {missing} of the {len(examples)} held-out examples "
            f"carry no tests ({run_dir / plan.data.validation})",
            "give every row a `tests` column (Python assert statements) and write the split again with "
            "`tunewise recommend --out`, or set evaluation.target_metric in plan.yaml to another metric",
        )
    if spec.target_metric and spec.target_metric not in names:
        names.append(spec.target_metric)
    code_tests = code_tests_note(examples, spec.run_tests, "tests_pass" in names)
    labels = (
        sorted({metrics.strip_answer(e.reference) for e in everything + train})
        if "macro_f1" in names
        else None
    )

    runs: list[tuple[str, str, Path | None, list]] = [("base_zero_shot", "base, zero-shot", None, zero)]
    if shots:
        runs.append(("base_few_shot", f"base, {len(shots)}-shot", None, few))
    tuned = tuned_variants(run_dir, plan)
    runs += [(k, name, d, zero) for k, name, d in tuned]

    outputs: dict[str, generation.Outputs] = {}
    label_of: dict[str, str] = {}
    loaded = None  # (directory, model, tokenizer): the base model serves zero- and few-shot
    budget = None
    for key, name, directory, prompts in runs:
        if loaded is None or loaded[0] != directory:
            loaded = None  # release the previous model before loading the next
            loaded = (directory, *_load(plan, directory))
        _, model, tok = loaded
        if budget is None:
            budget = generation.new_token_budget(
                tok, [e.reference for e in everything + train], spec.max_new_tokens
            )
        _say(f"{name}: {len(prompts)} examples")
        out = generation.generate(model, tok, prompts, max_new_tokens=budget, batch_size=spec.batch_size)
        if "perplexity" in names:
            out.nll = generation.reference_nll(model, tok, prompts, refs, batch_size=spec.batch_size)
        outputs[key], label_of[key] = out, name
    loaded = model = tok = None

    if code_tests and code_tests["run"]:
        _say(f"running the data's tests on each model's code ({code_tests['note']})")
    elif code_tests:
        _say(f"the data's tests: {code_tests['note']}")
    idx = bootstrap.resamples(len(examples), spec.seed)
    scored = {
        k: {m: metrics.build(m, o.texts, refs, labels=labels, nll=o.nll, tests=tests) for m in names}
        for k, o in outputs.items()
    }
    models = {
        k: {
            "label": label_of[k],
            "system": outputs[k].system,
            "metrics": {m: bootstrap.interval(s, idx) for m, s in scored[k].items() if s is not None},
        }
        for k in outputs
    }
    pairs = [(t, b) for t, _, _ in tuned for b in ("base_zero_shot", "base_few_shot") if b in outputs]
    if "base_few_shot" in outputs:
        pairs.append(("base_few_shot", "base_zero_shot"))
    comparisons = [
        {"a": a, "b": b, "metric": m, **bootstrap.paired_difference(scored[a][m], scored[b][m], idx)}
        for a, b in pairs
        for m in names
        if scored[a][m] is not None and scored[b][m] is not None
    ]
    headline = spec.target_metric or names[0]
    result = {
        "version": 1,
        "task": spec.task,
        "task_metrics": [m for m in names if m in models["base_zero_shot"]["metrics"]],
        "n_examples": len(examples),
        "n_available": len(everything),
        "max_new_tokens": budget,
        "few_shot": len(shots),
        "confidence": bootstrap.CONFIDENCE,
        "resamples": len(idx),
        "seed": spec.seed,
        "models": models,
        "comparisons": comparisons,
        "verdict": verdict.decide(
            headline,
            models,
            comparisons,
            [t for t, _, _ in tuned],
            target=spec.target,
            confidence=bootstrap.CONFIDENCE,
        ),
        **({"code_tests": code_tests} if code_tests else {}),
        "examples": [
            {
                "prompt": e.prompt[-1]["content"],
                "reference": e.reference,
                "outputs": {k: o.texts[i] for k, o in outputs.items()},
            }
            for i, e in enumerate(examples[:SIDE_BY_SIDE])
        ],
    }
    try:
        result["plots"] = {
            k: v
            for k, v in (
                ("loss curves", plots.loss_curves(run_dir)),
                ("metric comparison", plots.metric_bars(run_dir, result)),
            )
            if v
        }
    except ImportError as e:  # a broken install must not throw away minutes of generation: the numbers stand
        result["plots"] = {}
        result["plots_missing"] = f"no plots: {e} (reinstall tunewise, which depends on matplotlib)"
        print(f"[tunewise] eval: {result['plots_missing']}", file=sys.stderr, flush=True)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    atomic_write(run_dir / EVAL_JSON, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    section.update_report(run_dir, result)
    write_summary(run_dir, evaluation=headline_numbers(result))
    return result


def headline_numbers(result: dict) -> dict:
    """What summary.json carries: the headline metric per model, and the verdict."""
    v = result["verdict"]
    m = v["metric"]
    return {
        "metric": m,
        "outcome": v["outcome"],
        "verdict": v["text"],
        "diff": v.get("diff"),
        "ci": v.get("ci"),
        **{k: x["metrics"][m]["value"] for k, x in result["models"].items() if m in x["metrics"]},
    }
