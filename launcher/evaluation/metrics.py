"""Task metrics, computed so a bootstrap can resample them.

Each metric turns (predictions, references) into per-example values, and aggregates any resample of them
to one figure: a mean for most, macro-F1 over the label set (scikit-learn) for classification, and
exp(summed NLL / summed tokens) for perplexity. Maintained implementations, nothing downloaded at run
time: ROUGE-L from `rouge-score`, chrF from `sacrebleu`, F1 from scikit-learn. `tests_pass` runs the data's
own tests on the answer's code (launcher/evaluation/codetests.py).
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Callable

import numpy as np

from advisor.task_metrics import task_metrics
from launcher.evaluation import codetests

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalise(text: str) -> str:
    """Lowercase, no punctuation, no articles, single spaces (the SQuAD normalisation)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    return " ".join(_ARTICLES.sub(" ", text).split())


def strip_answer(text: str) -> str:
    """What an exact-match check compares: surrounding space and one pair of wrapping quotes/backticks gone."""
    t = text.strip()
    if len(t) > 1 and t[0] == t[-1] and t[0] in "'\"`":
        t = t[1:-1].strip()
    return t


def exact_match(preds: list[str], refs: list[str]) -> np.ndarray:
    return np.array([float(strip_answer(p) == strip_answer(r)) for p, r in zip(preds, refs, strict=True)])


def _token_f1(pred: str, ref: str) -> float:
    p, r = normalise(pred).split(), normalise(ref).split()
    if not p or not r:
        return float(p == r)
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def token_f1(preds, refs) -> np.ndarray:
    return np.array([_token_f1(p, r) for p, r in zip(preds, refs, strict=True)])


def _json(text: str):
    t = text.strip()
    if t.startswith("```"):  # a fenced block, as chat models like to answer
        t = t.strip("`").removeprefix("json").strip()
    else:
        t = strip_answer(t)
    try:
        return json.loads(t)
    except ValueError:
        return None


def is_json_object(text: str) -> bool:
    return isinstance(_json(text), dict | list)


def json_valid(preds, refs) -> np.ndarray:
    return np.array([float(_json(p) is not None) for p in preds])


def _fields(value, prefix="") -> set[tuple[str, str]]:
    if isinstance(value, dict):
        return set().union(*(_fields(v, f"{prefix}{k}.") for k, v in value.items())) if value else set()
    if isinstance(value, list):
        return {(prefix.rstrip("."), json.dumps(v, sort_keys=True)) for v in value}
    return {(prefix.rstrip("."), json.dumps(value, sort_keys=True))}


def _field_f1(pred: str, ref: str) -> float:
    r = _json(ref)
    if r is None:  # a reference that is not JSON: fall back to token overlap
        return _token_f1(pred, ref)
    p = _json(pred)
    pf, rf = _fields(p) if p is not None else set(), _fields(r)
    if not pf or not rf:
        return float(pf == rf)
    common = len(pf & rf)
    return 0.0 if common == 0 else 2 * common / (len(pf) + len(rf))


def field_f1(preds, refs) -> np.ndarray:
    return np.array([_field_f1(p, r) for p, r in zip(preds, refs, strict=True)])


def rouge_l(preds, refs) -> np.ndarray:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return np.array([scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs, strict=True)])


def chrf(preds, refs) -> np.ndarray:
    from sacrebleu.metrics import CHRF

    metric = CHRF()
    return np.array([metric.sentence_score(p, [r]).score / 100 for p, r in zip(preds, refs, strict=True)])


class Metric:
    """Per-example values and how to aggregate a resample of them (rows of `values` = examples)."""

    def __init__(self, values: np.ndarray, aggregate: Callable[[np.ndarray], float] | None = None):
        self.values = values
        self._aggregate = aggregate or (lambda v: float(np.mean(v)))

    def __call__(self, idx: np.ndarray | None = None) -> float:
        v = self.values if idx is None else self.values[idx]
        return float(self._aggregate(v))


def macro_f1_metric(preds, refs, labels: list[str]) -> Metric:
    """Macro-F1 over the label set; a prediction outside the set counts as wrong for its reference's label."""
    from sklearn.metrics import f1_score

    ids = {lab: i for i, lab in enumerate(labels)}
    pairs = np.array(
        [[ids.get(strip_answer(p), -1), ids[strip_answer(r)]] for p, r in zip(preds, refs, strict=True)]
    )
    return Metric(
        pairs,
        lambda v: f1_score(
            v[:, 1], v[:, 0], labels=list(range(len(labels))), average="macro", zero_division=0
        ),
    )


def perplexity_metric(nll_and_tokens: np.ndarray) -> Metric:
    """exp(sum of NLL / sum of reference tokens) over the examples (rows of [nll_sum, n_tokens])."""
    return Metric(nll_and_tokens, lambda v: float(np.exp(v[:, 0].sum() / max(1.0, v[:, 1].sum()))))


PER_EXAMPLE = {
    "exact_match": exact_match,
    "accuracy": exact_match,
    "token_f1": token_f1,
    "json_valid": json_valid,
    "field_f1": field_f1,
    "rouge_l": rouge_l,
    "chrf": chrf,
}


def build(
    name: str,
    preds: list[str],
    refs: list[str],
    *,
    labels: list[str] | None = None,
    nll: np.ndarray | None = None,
    tests: list[list[str]] | None = None,
) -> Metric | None:
    """The metric `name` for one model's outputs, or None when it cannot be measured (perplexity without NLL,
    tests passed without tests)."""
    if name == "tests_pass":
        return Metric(codetests.tests_pass(preds, tests)) if tests is not None else None
    if name == "macro_f1":
        return macro_f1_metric(preds, refs, labels or sorted({strip_answer(r) for r in refs}))
    if name == "perplexity":
        return perplexity_metric(nll) if nll is not None else None
    return Metric(PER_EXAMPLE[name](preds, refs))


def metric_names(task: str | None, refs: list[str], tests: list[list[str] | None] | None = None) -> list[str]:
    """The task's metrics; JSON validity and field F1 only where the references are JSON (else token F1);
    tests passed only where every example carries tests (`tests`, one entry per example; None: not run)."""
    names = list(task_metrics(task))
    if {"json_valid", "field_f1"} & set(names) and sum(map(is_json_object, refs)) * 2 < len(refs):
        names = [n for n in names if n not in ("json_valid", "field_f1")] + ["token_f1"]
    if "tests_pass" in names and (not tests or any(t is None for t in tests)):
        names.remove("tests_pass")
    return names
