"""The guide's getting-started checklist ("Your Learning Path"), each item with a status from the facts.

Statuses: `done` (the facts show it), `todo` (the facts show it is missing), `planned` (this
recommendation covers it), `unknown` (no fact to tell).
"""

from __future__ import annotations

from typing import Any


def build_checklist(values: dict[str, Any], decision, th: dict[str, float]) -> list[dict]:
    """Six items, in the guide's order, as `{"item", "status", "detail"}` dicts."""
    items = []

    clear = values.get("clear_task")
    items.append(
        {
            "item": "Define a clear task and success criteria, with target metrics",
            "status": {True: "done", False: "todo"}.get(clear, "unknown"),
            "detail": {
                True: "answers say a clear task definition exists",
                False: "answers say the task is not yet clearly defined",
            }.get(clear, "not answered (clear_task)"),
        }
    )

    n_eval = len(decision.eval_plan)
    items.append(
        {
            "item": "Choose 1-2 task metrics and 2-3 system metrics (at most 5)",
            "status": "planned" if n_eval else "todo",
            "detail": f"{n_eval} metrics proposed in the evaluation plan" if n_eval else "no task given",
        }
    )

    n, n_min = values.get("examples"), th.get("min_examples_finetune", 1000)
    if n is None:
        status, detail = "unknown", "number of examples not given"
    else:
        status = "done" if n >= n_min else "todo"
        detail = f"{int(n):,} examples (the guide suggests ~{int(n_min):,}); 80/20 train/validation split"
    items.append(
        {
            "item": "Prepare ~1,000+ quality examples with an 80/20 train/validation split",
            "status": status,
            "detail": detail,
        }
    )

    items.append(
        {
            "item": "Set up the evaluation framework before training",
            "status": "todo",
            "detail": "run the evaluation plan on the base model or prompt baseline first",
        }
    )

    ft = decision.method is not None
    items.append(
        {
            "item": "Start with a PEFT method and proven hyperparameters",
            "status": "planned" if ft and decision.method != "full" else ("todo" if ft else "n/a"),
            "detail": f"method {decision.method}, see the training plan"
            if ft
            else f"approach is {decision.approach}; no training planned",
        }
    )

    items.append(
        {
            "item": "Monitor training and validation loss continuously",
            "status": "planned" if ft else "n/a",
            "detail": "the plan evaluates on the validation split and stops early when it stops improving"
            if ft
            else "no training planned",
        }
    )
    return items
