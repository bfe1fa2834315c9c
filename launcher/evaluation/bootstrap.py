"""Paired bootstrap confidence intervals over the held-out examples (deterministic for a seed).

Every model is scored on the same examples, so a comparison resamples example indices once and scores
both models on the same resample (paired): the interval of the difference is much tighter than two
separate intervals would suggest, and honest about what the held-out set can tell apart.
"""

from __future__ import annotations

import numpy as np

from launcher.evaluation.metrics import Metric

RESAMPLES = 1000
CONFIDENCE = 0.95


def resamples(n: int, seed: int, count: int = RESAMPLES) -> np.ndarray:
    """`count` index vectors of length `n`, drawn with replacement (the same for every metric and model)."""
    return np.random.default_rng(seed).integers(0, n, size=(count, n))


def _interval(samples: np.ndarray, confidence: float) -> list[float]:
    lo, hi = np.percentile(samples, [50 * (1 - confidence), 50 * (1 + confidence)])
    return [round(float(lo), 4), round(float(hi), 4)]


def interval(metric: Metric, idx: np.ndarray, confidence: float = CONFIDENCE) -> dict:
    """The metric's value and its percentile interval over the resamples."""
    samples = np.array([metric(i) for i in idx])
    return {"value": round(metric(), 4), "ci": _interval(samples, confidence)}


def paired_difference(a: Metric, b: Metric, idx: np.ndarray, confidence: float = CONFIDENCE) -> dict:
    """a - b on the full set and its paired interval: both scored on each same resample."""
    diffs = np.array([a(i) - b(i) for i in idx])
    return {"diff": round(a() - b(), 4), "ci": _interval(diffs, confidence)}
