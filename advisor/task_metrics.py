"""Which metrics measure a task, and how to read a measured figure against a target (pure, no I/O).

The guide's getting-started checklist ("Your Learning Path") asks for a clear task with success
criteria and target metrics, one or two task metrics and two or three system metrics, five at most,
and the evaluation set up before training. The launcher's evaluation (`tunewise eval`) measures the
metrics named here; the answers key `success` (metric and target) and `recommend --probe` use them too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    label: str  # how reports name it
    higher_is_better: bool = True
    bounded: bool = True  # a share in [0, 1]


METRICS: dict[str, MetricInfo] = {
    "exact_match": MetricInfo("exact match"),
    "accuracy": MetricInfo("accuracy"),
    "macro_f1": MetricInfo("macro-F1"),
    "token_f1": MetricInfo("token F1"),
    "json_valid": MetricInfo("JSON validity"),
    "field_f1": MetricInfo("field F1"),
    "rouge_l": MetricInfo("ROUGE-L"),
    "chrf": MetricInfo("chrF"),  # sacrebleu's 0-100 scale divided by 100, like the others
    "perplexity": MetricInfo("perplexity", higher_is_better=False, bounded=False),
    "tests_pass": MetricInfo("tests passed"),  # pass@1: the data's own tests on the answer's code
}

# Task metrics per task type (the reference-based ones first: the first is the headline). `tests_pass` is
# measured only where the held-out rows carry tests (else exact match leads), as JSON validity and field F1
# only where the references are JSON.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "macro_f1"),
    "extraction": ("exact_match", "json_valid", "field_f1"),
    "question-answering": ("exact_match", "token_f1"),
    "summarization": ("rouge_l",),
    "chat": ("rouge_l", "perplexity"),
    "generation": ("chrf", "perplexity"),
    "code": ("tests_pass", "exact_match"),
    "reasoning": ("exact_match", "token_f1"),
}
DEFAULT_TASK_METRICS = ("exact_match", "token_f1")  # task not given: works on any reference answer

SYSTEM_METRICS = ("latency_p50_s", "latency_p95_s", "tokens_per_s", "peak_memory_gib", "output_tokens_mean")


def task_metrics(task: str | None) -> tuple[str, ...]:
    return TASK_METRICS.get(task or "", DEFAULT_TASK_METRICS)


def label(metric: str) -> str:
    return METRICS[metric].label if metric in METRICS else metric


def meets(metric: str, value: float, target: float) -> bool:
    """True when `value` reaches `target` in the metric's good direction."""
    return value >= target if METRICS.get(metric, MetricInfo(metric)).higher_is_better else value <= target


def shortfall(metric: str, value: float, target: float) -> float:
    """How far `value` is from `target`, positive when it falls short, negative when it beats it."""
    gap = target - value
    return gap if METRICS.get(metric, MetricInfo(metric)).higher_is_better else -gap


def probe_facts(probe: dict | None, target_metric: str | None, target: float | None) -> dict:
    """Facts for the rules from a `recommend --probe` measurement: {metric, value, ci, n, k}.

    `probe_score` is the measured few-shot figure of the success metric (or the task's headline metric);
    with a target, `probe_meets_target` and `probe_shortfall` (target minus score in the good direction).
    """
    if not probe:
        return {}
    out = {
        "probe_metric": label(probe["metric"]),
        "probe_score": round(float(probe["value"]), 4),
        "probe_examples": float(probe["n"]),
        "probe_shots": float(probe["k"]),
    }
    if target is not None and target_metric == probe["metric"]:
        out["probe_meets_target"] = meets(probe["metric"], probe["value"], target)
        out["probe_shortfall"] = round(shortfall(probe["metric"], probe["value"], target), 4)
    return out
