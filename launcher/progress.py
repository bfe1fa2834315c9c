"""Follow metrics.jsonl while the job writes it: a rich live view on a terminal, plain lines otherwise."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


class MetricsFollower:
    """Reads only complete new lines of a file another process is appending to."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.offset = self.path.stat().st_size if self.path.exists() else 0  # only this launch's events
        self.partial = b""

    def poll(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        data = self.partial + chunk
        *lines, self.partial = data.split(b"\n")
        rows = []
        for line in lines:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
        return rows


class ProgressView:
    """Latest step, loss, eval loss, tokens/s, GPU memory and ETA; renders as a table or a log line."""

    def __init__(self, title: str, forecast_step_s: dict[str, float] | None = None) -> None:
        self.title = title
        self.state: dict = {}
        self.t0 = time.monotonic()
        self.step0: int | None = None
        self.forecast_step_s = forecast_step_s or {}  # the plan's predicted seconds per step, per stage
        self.measured_step_s: dict[str, float] = {}  # wall seconds per step after warm-up, per stage
        self.eta_kind = ""

    def update(self, row: dict) -> None:
        if self.step0 is None:
            self.step0 = row.get("step", 0)
        self.state.update({k: v for k, v in row.items() if v is not None})
        if "eval_loss" not in row and "loss" in row:
            self.state["last_loss"] = row["loss"]
        left = (row.get("max_steps") or 0) - (row.get("step") or 0)
        if row.get("event") == "speed" and row.get("eta_s") is not None and left > 0:
            self.measured_step_s[row.get("stage", "")] = row["eta_s"] / left

    def eta_s(self) -> float | None:
        """Remaining steps × the measured step (after warm-up) once the job has measured it; before that
        the plan's forecast; with neither, the rate since the launch began."""
        step, total, stage = self.state.get("step"), self.state.get("max_steps"), self.state.get("stage", "")
        if step is None or not total:
            return None
        for kind, per_step in (
            ("measured", self.measured_step_s.get(stage)),
            ("forecast", self.forecast_step_s.get(stage)),
        ):
            if per_step:
                self.eta_kind = kind
                return (total - step) * per_step
        self.eta_kind = ""
        if not step or self.step0 is None or step <= self.step0:
            return None
        rate = (step - self.step0) / (time.monotonic() - self.t0)
        return (total - step) / rate if rate > 0 else None

    def cells(self) -> list[tuple[str, str]]:
        s = self.state
        eta = self.eta_s()

        def num(v, fmt="{:.4f}"):
            return fmt.format(v) if isinstance(v, int | float) else "-"

        return [
            ("stage", str(s.get("stage", "-"))),
            ("step", f"{s.get('step', 0)}/{s.get('max_steps', '?')}"),
            ("loss", num(s.get("last_loss"))),
            ("eval loss", num(s.get("eval_loss"))),
            ("tokens/s", num(s.get("tokens_per_s"), "{:,.0f}")),
            ("GPU mem", num(s.get("gpu_mem_gib"), "{:.1f} GiB") if "gpu_mem_gib" in s else "cpu"),
            (
                "ETA",
                f"{int(eta // 60)}m{int(eta % 60):02d}s" + (f" ({self.eta_kind})" if self.eta_kind else "")
                if eta is not None
                else "-",
            ),
        ]

    def line(self) -> str:
        return "  ".join(f"{k}={v}" for k, v in self.cells())

    def __rich__(self) -> Table:
        table = Table(title=self.title, show_header=True, header_style="bold")
        cells = self.cells()
        for name, _ in cells:
            table.add_column(name, justify="right")
        table.add_row(*[v for _, v in cells])
        return table


def is_live(console: Console) -> bool:
    return console.is_terminal and not console.is_dumb_terminal
