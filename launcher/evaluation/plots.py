"""PNG pictures for the run directory: loss curves and the metric comparison (matplotlib, Agg, lazily)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from launcher.rundir import atomic_write

LOSS_PNG, METRICS_PNG = "eval_loss.png", "eval_metrics.png"


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def loss_curves(run_dir: Path) -> str | None:
    """Training and validation loss against step from metrics.jsonl; None when nothing was logged."""
    train, val = [], []
    try:
        lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        step = e.get("step")
        if step is None:
            continue
        if isinstance(e.get("loss"), int | float):
            train.append((step, e["loss"]))
        if isinstance(e.get("eval_loss"), int | float):
            val.append((step, e["eval_loss"]))
    if not train and not val:
        return None
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for pts, name in ((train, "training loss"), (val, "validation loss")):
        if pts:
            ax.plot(
                [p[0] for p in pts], [p[1] for p in pts], marker="o" if len(pts) < 30 else None, label=name
            )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    _save(plt, fig, run_dir / LOSS_PNG)
    return LOSS_PNG


def metric_bars(run_dir: Path, result: dict) -> str | None:
    """One panel per task metric: each model's value with its confidence interval as an error bar."""
    from advisor.task_metrics import label

    metrics = result["task_metrics"]
    models = result["models"]
    if not metrics or not models:
        return None
    plt = _figure()
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics) + 1, 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        keys = [k for k in models if metric in models[k]["metrics"]]
        vals = [models[k]["metrics"][metric]["value"] for k in keys]
        err = [
            [v - models[k]["metrics"][metric]["ci"][0] for k, v in zip(keys, vals, strict=True)],
            [models[k]["metrics"][metric]["ci"][1] - v for k, v in zip(keys, vals, strict=True)],
        ]
        ax.bar(
            range(len(keys)),
            vals,
            yerr=err,
            capsize=4,
            color=["#999999", "#6699cc", "#dd7733", "#cc3333"][: len(keys)],
        )
        ax.set_xticks(range(len(keys)), [models[k]["label"] for k in keys], rotation=20, ha="right")
        ax.set_title(label(metric))
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"held-out evaluation ({result['n_examples']} examples, {result['confidence']:.0%} CI)")
    _save(plt, fig, run_dir / METRICS_PNG)
    return METRICS_PNG
