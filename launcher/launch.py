"""`tunewise launch`: run a run directory's plan as a training process, watch it, step down on OOM.

One GPU: `python -m launcher.train RUN_DIR`. Several: `accelerate launch` with the run's
accelerate.yaml. `--cpu` (tiny models, tests) and smoke runs of multi-GPU plans use torchrun with the
gloo backend: the same multi-process code without GPUs. Processes are started from argument lists,
never shell strings. The job's own output goes to RUN_DIR/train.log.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.markup import escape

from advisor.errors import CheckFailed, UserError
from advisor.plan import TrainingPlan
from launcher import checkpoints, fingerprint, jobcontrol, jobfiles, oom
from launcher.progress import MetricsFollower, ProgressView, is_live
from launcher.rundir import atomic_write, is_secret_name, secret_values
from launcher.safefiles import open_append, refuse_links
from launcher.summary import SPEED_LARGE_DIFFERENCE, read_summary, write_summary

EXIT_OOM, EXIT_STOPPED = 75, 130
PROJECT_ROOT = Path(__file__).resolve().parents[1]
LOCK_FILE = jobcontrol.LOCK_FILE  # held by the launcher and every process of its job (launcher/jobcontrol.py)
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def job_env(allow_network: bool, *, attempt: int = 1, cpu: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    # The job imports only from the installation: never from the run directory (its working directory)
    # or any relative folder, so a `yaml.py` or `torch.py` left there cannot run as code. PYTHONSAFEPATH
    # keeps the run directory off sys.path in every process a multi-GPU launcher starts as well.
    inherited = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and os.path.isabs(p)]
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *inherited])
    env["PYTHONSAFEPATH"] = "1"
    env[jobcontrol.LAUNCHED_BY] = str(os.getpid())
    env["TUNEWISE_ATTEMPT"] = str(attempt)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if allow_network:
        env["TUNEWISE_ALLOW_NETWORK"] = "1"
    else:
        env.update(OFFLINE)
        env.pop("TUNEWISE_ALLOW_NETWORK", None)
        # Offline, the job needs no token or API key; one it does not have cannot end up in train.log.
        for name in [k for k in env if is_secret_name(k)]:
            del env[name]
    if cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def has_checkpoints(run_dir: Path) -> bool:
    """True when a stage has a checkpoint a resume can use (incomplete ones are not counted)."""
    out = run_dir / "output"
    return out.is_dir() and any(
        checkpoints.newest_complete(d, set_aside=False)[0] for d in out.iterdir() if d.is_dir()
    )


def launch(
    run_dir,
    *,
    smoke: bool = False,
    max_steps: int | None = None,
    save_steps: int | None = None,
    console: Console | None = None,
    allow_network: bool = False,
    cpu: bool = False,
) -> int:
    """Run (or resume) the plan in `run_dir`. Returns the exit code: 0 done, 1 failed / out of memory,
    2 bad input, 130 stopped (a checkpoint was saved; launch again to resume)."""
    console = console or Console(soft_wrap=True)
    run_dir = Path(run_dir).expanduser().resolve()
    if not (run_dir / "plan.yaml").is_file() and (run_dir / "report.json").is_file():
        approach = _approach(run_dir / "report.json")
        raise UserError(
            f"{run_dir} holds a recommendation of {approach}, not fine-tuning: there is no training "
            "job to launch (no plan.yaml)",
            f"read {run_dir / 'report.md'}; it says what would change the decision (e.g. more examples)",
        )
    if not (run_dir / "plan.yaml").is_file():
        raise UserError(
            f"{run_dir} is not a run directory (no plan.yaml)",
            "create one with `tunewise recommend --answers FILE --out RUN_DIR`",
        )
    plan = TrainingPlan.load(run_dir / "plan.yaml")
    if smoke:
        return _smoke(run_dir, plan, max_steps=max_steps, console=console, allow_network=allow_network)
    if not cpu:
        _require_gpus(plan)
    refuse_links(run_dir)
    lock = jobcontrol.acquire(run_dir)
    try:
        if has_checkpoints(run_dir):
            fingerprint.check(run_dir, plan)
        summary = read_summary(run_dir)
        if summary.get("status") == "completed":
            console.print(
                f"[green]{escape(str(run_dir))} already completed[/] ({summary.get('steps')} steps); "
                f"result in {escape(str(summary.get('adapter_dir') or summary.get('model_dir')))}"
            )
            return 0
        return _run_with_ladder(
            run_dir,
            plan,
            max_steps=max_steps,
            save_steps=save_steps,
            console=console,
            allow_network=allow_network,
            cpu=cpu,
            lock=lock,
        )
    finally:
        os.close(lock)


def _approach(report_json: Path) -> str:
    try:
        return str(json.loads(report_json.read_text(encoding="utf-8")).get("approach") or "no training")
    except (OSError, ValueError, AttributeError):
        return "no training"


def _require_gpus(plan: TrainingPlan) -> None:
    from advisor.hardware import detect_gpus

    det = detect_gpus()
    if not det.gpus:
        raise UserError(
            f"this plan needs {plan.n_gpus} GPU(s) and none was found ({det.reason})",
            "run `tunewise launch RUN_DIR --smoke` to check the data, template and pipeline on CPU "
            "with a tiny stand-in model, then launch on a GPU machine",
        )
    if len(det.gpus) < plan.n_gpus:
        raise UserError(
            f"this plan needs {plan.n_gpus} GPUs and {len(det.gpus)} were found",
            "set n_gpus in plan.yaml to the GPUs you have (then re-check memory with "
            "`tunewise estimate`), or use --smoke",
        )


def _smoke(run_dir: Path, plan: TrainingPlan, *, max_steps, console: Console, allow_network: bool) -> int:
    from launcher import smoke

    saved = {k: os.environ.get(k) for k in OFFLINE}
    if not allow_network:
        os.environ.update(OFFLINE)  # building the stand-in must not reach the hub either
    try:
        smoke_dir, info = smoke.prepare(run_dir, plan, max_steps=max_steps)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    console.print(
        f"[bold]smoke run[/] on CPU in {escape(str(smoke_dir))}: tiny {info['family']} stand-in "
        f"({info['params']:,} parameters, config from {escape(str(info['config_from']))}, {escape(str(info['tokenizer']))} "
        "tokenizer). Its loss says nothing about the real model; it proves data, template and pipeline."
    )
    code = launch(smoke_dir, console=console, allow_network=allow_network, cpu=True)
    if code == 0:
        console.print(
            f"[green]smoke run passed[/]: the plan's pipeline works. Next: `tunewise launch {escape(str(run_dir))}` "
            "on a GPU machine."
        )
    return code


def _run_with_ladder(
    run_dir: Path,
    plan: TrainingPlan,
    *,
    max_steps,
    save_steps,
    console: Console,
    allow_network: bool,
    cpu: bool,
    lock: int,
) -> int:
    steps: list[str] = list(read_summary(run_dir).get("oom_steps") or [])
    attempt = 1
    while True:
        rc = _run_once(
            run_dir,
            plan,
            attempt=attempt,
            max_steps=max_steps,
            save_steps=save_steps,
            console=console,
            allow_network=allow_network,
            cpu=cpu,
            lock=lock,
        )
        if rc != EXIT_OOM:
            return _finish(run_dir, rc, console, again=_again(run_dir, cpu=cpu, allow_network=allow_network))
        step = oom.next_step(plan)
        if step is None:
            msg = oom.exhausted_message(plan, steps)
            write_summary(run_dir, status="failed", error=msg, oom_steps=steps)
            _note_in_report(run_dir, f"- attempt {attempt}: out of memory; the ladder is exhausted. Stopped.")
            raise CheckFailed(
                msg,
                "use a GPU with more memory, a smaller model, or a shorter max_length "
                "(`tunewise estimate` shows what fits)",
            )
        steps.append(step.change)
        console.print(
            f"[yellow]out of memory in the first steps[/] (attempt {attempt}); stepping down: {escape(step.change)}"
        )
        plan = step.plan
        atomic_write(run_dir / "plan.yaml", jobfiles.plan_yaml(plan))  # the plan records what actually ran
        fingerprint.save(run_dir, plan)
        write_summary(run_dir, oom_steps=steps)
        _note_in_report(run_dir, f"- attempt {attempt}: out of memory in the first steps; {step.change}")
        attempt += 1


def _note_in_report(run_dir: Path, line: str) -> None:
    """Append an OOM-ladder line to report.md (a section is added the first time)."""
    report = run_dir / "report.md"
    text = report.read_text(encoding="utf-8") if report.exists() else ""
    if "## Out-of-memory fallback" not in text:
        text += (
            "\n\n## Out-of-memory fallback\n\nThe job ran out of GPU memory in its first steps; tunewise "
            "stepped down (smaller micro-batch, then checkpointing, then QLoRA) and updated plan.yaml:\n\n"
        )
    atomic_write(report, text + line + "\n")


def _set_parent_death_signal() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: if the launcher dies (even by kill -9), the job gets SIGTERM and checkpoints."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run_once(
    run_dir: Path,
    plan: TrainingPlan,
    *,
    attempt: int,
    max_steps,
    save_steps,
    console: Console,
    allow_network: bool,
    cpu: bool,
    lock: int,
) -> int:
    extra = [
        *(["--max-steps", str(max_steps)] if max_steps else []),
        *(["--save-steps", str(save_steps)] if save_steps else []),
    ]
    cpu_procs = plan.n_gpus if cpu and plan.n_gpus > 1 else None
    cmd = jobfiles.train_command(run_dir, plan, extra=extra, cpu_processes=cpu_procs)
    multi = bool(cpu_procs) or plan.n_gpus > 1  # torchrun / accelerate start the training processes
    console.print(f"[dim]$ {escape(' '.join(cmd))}[/]")
    follower = MetricsFollower(run_dir / "metrics.jsonl")
    view = ProgressView(
        f"{plan.model} · {plan.method} · {plan.stage}",
        forecast_step_s=plan.speed.step_s if plan.speed and not cpu else None,
    )
    log_path = run_dir / "train.log"
    env = job_env(allow_network, attempt=attempt, cpu=cpu)
    if plan.gpu_indices and not cpu:  # the planner chose these GPUs of the box (e.g. the larger card alone)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, plan.gpu_indices))
    env[jobcontrol.INHERITED_FD] = str(lock)
    secrets = secret_values(env)
    log_fd = open_append(log_path)  # never through a symlink planted as train.log
    start = os.fstat(log_fd).st_size  # train.log keeps every launch's output
    stopping: list[int] = []
    with open(log_fd, "ab", closefd=True) as log:
        # A job that keeps tokens (--allow-network) writes through a pump that redacts them, in case a
        # library prints one; offline jobs have none (job_env dropped them) and write straight to the log.
        # The job inherits the run lock (pass_fds) and each of its processes takes a share of its own,
        # so the run stays locked until the last of them ends, even if this launcher is killed.
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE if secrets else log,
            stderr=subprocess.STDOUT,
            cwd=str(run_dir),
            env=env,
            start_new_session=True,
            pass_fds=(lock,),
            # Several processes: each watches the launcher itself (jobcontrol), since
            # torchrun would answer a SIGTERM by killing its workers before they save.
            preexec_fn=None if multi else _set_parent_death_signal,
        )
        pump = None
        if secrets:
            pump = threading.Thread(target=redacting_pump, args=(proc.stdout, log, secrets), daemon=True)
            pump.start()

        def forward(signum, frame):
            # One SIGTERM to each training process: it finishes the step, saves a checkpoint and exits.
            # More signals change nothing: a second one must not cut the save short.
            if stopping:
                console.print(
                    "[yellow]already stopping[/]: the job is saving a checkpoint (to stop it without "
                    f"saving: kill -9 -{proc.pid})"
                )
                return
            console.print("[yellow]stopping: the job saves a checkpoint first (launch again to resume)[/]")
            stopping.append(signum)
            _signal_job(proc, multi=multi)

        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            if is_live(console):
                with Live(view, console=console, refresh_per_second=2, transient=False) as live:
                    while proc.poll() is None:
                        _feed(follower, view, None)
                        live.update(view)
                        time.sleep(0.5)
                    _feed(follower, view, None)
            else:
                while proc.poll() is None:
                    _feed(follower, view, console)
                    time.sleep(0.5)
                _feed(follower, view, console)
            rc = proc.wait()
            _wait_for_job(console)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        if pump is not None:
            pump.join(timeout=30)  # a grandchild still holding the pipe must not hang the launcher
    if stopping and rc != 0:
        rc = EXIT_STOPPED  # a stop asked for at any moment (even before the first step) is a stop
    _final_status(run_dir, rc)
    if rc not in (0, 2, EXIT_OOM, EXIT_STOPPED):  # 2: the job named the bad input; _finish repeats it
        with open(log_path, "rb") as f:
            f.seek(start)
            tail = f.read().decode("utf-8", errors="replace").splitlines()[-25:]
        console.print("[red]the training job failed[/]; last lines of train.log:")
        console.print("\n".join(tail), markup=False, highlight=False)
    return rc


def _signal_job(proc: subprocess.Popen, *, multi: bool) -> None:
    """SIGTERM to the job's training processes. With torchrun/accelerate, to the workers only: their
    launcher would answer a SIGTERM by killing them before they save."""
    targets = [p for p in jobcontrol.job_members(os.getpid()) if not (multi and p == proc.pid)]
    for pid in targets or [proc.pid]:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def _wait_for_job(console: Console, grace_s: float = 120.0) -> None:
    """The job's first process has ended; wait for every other one (workers of a multi-process job whose
    own launcher died), asking stragglers to save and stop, then killing what is left after `grace_s`.
    The result is reported only once no process of the job is left."""
    left = jobcontrol.job_members(os.getpid())
    if not left:
        return
    console.print(f"[yellow]waiting for the job's {len(left)} remaining process(es) to save and stop[/]")
    for pid in left:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while (left := jobcontrol.job_members(os.getpid())) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _final_status(run_dir: Path, rc: int) -> None:
    """summary.json always ends in a final status: a job killed (or failing) before it could write one
    leaves `running`, which would read as still training. Never raises (the disk may be full)."""
    try:
        summary = read_summary(run_dir)
        if summary.get("status") not in (None, "running") or rc in (0, EXIT_OOM):
            return
        if rc == EXIT_STOPPED:
            write_summary(run_dir, status="stopped")
        elif rc != 0:
            write_summary(
                run_dir,
                status="failed",
                error=summary.get("error") or f"the training job ended with exit code {rc}",
            )
    except Exception as e:  # noqa: BLE001 - the result is reported either way
        print(f"tunewise: could not update {run_dir / 'summary.json'}: {e}", file=sys.stderr)


def redacting_pump(source, sink, secrets: list[str]) -> None:
    """Copy the job's output to train.log line by line, each secret value replaced by "[redacted]"."""
    needles = [v.encode() for v in secrets]
    for line in iter(source.readline, b""):
        for needle in needles:
            line = line.replace(needle, b"[redacted]")
        sink.write(line)
        sink.flush()
    source.close()


def _feed(follower: MetricsFollower, view: ProgressView, console: Console | None) -> None:
    for row in follower.poll():
        view.update(row)
        if console is not None:
            console.print(view.line(), markup=False, highlight=False, soft_wrap=True)


def _job_fix(run_dir: Path) -> str | None:
    """The `fix:` line the job printed with its last error (launcher/train.py main), if any."""
    try:
        lines = (run_dir / "train.log").read_text(encoding="utf-8", errors="replace").splitlines()[-40:]
    except OSError:
        return None
    fixes = [ln.strip()[len("fix:") :].strip() for ln in lines if ln.strip().startswith("fix:")]
    return fixes[-1] if fixes else None


def _again(run_dir: Path, *, cpu: bool, allow_network: bool) -> str:
    """The command that resumes this run: a CPU run (a smoke run included) needs --cpu again."""
    return " ".join(
        [
            "tunewise launch",
            str(run_dir),
            *(["--cpu"] if cpu else []),
            *(["--allow-network"] if allow_network else []),
        ]
    )


def speed_comparison(summary: dict) -> str | None:
    """Measured vs predicted speed and time of a GPU run's last stage, flagged when far apart."""
    measured, predicted = summary.get("tokens_per_s_measured"), summary.get("tokens_per_s_predicted")
    if not measured or not predicted:
        return None
    diff = measured / predicted - 1
    text = f"speed: measured {measured:,.0f} tokens/s, predicted {predicted:,.0f} ({diff:+.0%})"
    if summary.get("wall_s_measured") and summary.get("wall_s_predicted"):
        text += (
            f"; time: {summary['wall_s_measured'] / 60:,.1f} min measured, "
            f"{summary['wall_s_predicted'] / 60:,.1f} min predicted"
        )
    if abs(diff) > SPEED_LARGE_DIFFERENCE:
        text = (
            f"[yellow]{text}[/]: a large difference — the forecast (rules/throughput.yaml) assumed the plan's "
            "GPU and settings; summary.json keeps both"
        )
    return text


def _finish(run_dir: Path, rc: int, console: Console, *, again: str | None = None) -> int:
    again = again or f"tunewise launch {run_dir}"
    summary = read_summary(run_dir)
    if rc == 0:
        console.print(
            f"[green]done[/]: {summary.get('steps')} steps, loss {_num(summary.get('loss_first'))} -> "
            f"{_num(summary.get('loss_last'))}, eval loss {_num(summary.get('eval_loss'))}; result in "
            f"{escape(str(summary.get('adapter_dir') or summary.get('model_dir')))}"
        )
        if summary.get("peak_gib_measured") is not None:
            console.print(
                f"peak GPU memory: measured {summary['peak_gib_measured']} GiB, predicted "
                f"{summary.get('peak_gib_predicted')} GiB allocated; the GPU showed "
                f"{summary.get('device_gib_measured')} GiB in use, predicted "
                f"{summary.get('device_gib_predicted')} GiB"
            )
            speed = speed_comparison(summary)
            if speed:
                console.print(speed)
        if summary.get("evaluation"):  # the end-of-job evaluation (launcher/evaluation)
            console.print(
                f"Verdict: {summary['evaluation']['verdict']} (table in {run_dir / 'report.md'}; "
                f"`tunewise eval {run_dir}` measures again)",
                markup=False,
                highlight=False,
            )
        return 0
    if rc == EXIT_STOPPED:
        console.print(f"[yellow]stopped[/] at step {summary.get('steps')}; run `{escape(again)}` to resume")
        return EXIT_STOPPED
    if rc == 2:
        raise UserError(
            f"the training job rejected its input: {summary.get('error') or 'see train.log'}",
            _job_fix(run_dir) or f"see {run_dir / 'train.log'}",
        )
    raise CheckFailed(
        f"training failed (exit code {rc}): {summary.get('error') or 'see train.log'}",
        f"see {run_dir / 'train.log'}; fix and run `{again}` again",
    )


def offer_launch(rec, console: Console, *, out_dir=None) -> int:
    """The wizard's "Launch now?": write the run directory as `recommend --out` does, then launch it
    (a CPU smoke run first when this machine has no GPU)."""
    from advisor.hardware import detect_gpus
    from launcher.rundir import write_recommendation

    plan = rec.plan
    if out_dir is None:
        name = plan.model.rstrip("/").split("/")[-1] if plan else "recommendation"
        out_dir = Path("runs") / (f"{name}-{plan.method}" if plan else name)
    run_dir = write_recommendation(rec, out_dir)
    console.print(f"wrote {escape(str(run_dir))}")
    if plan is None:
        console.print("nothing to launch: the recommendation does not include fine-tuning")
        return 0
    if not detect_gpus().gpus:
        console.print("no GPU on this machine: running the smoke test on CPU instead")
        return launch(run_dir, smoke=True, console=console)
    return launch(run_dir, console=console)


def _num(v) -> str:
    """A loss for people: 4 significant digits (summary.json keeps full precision)."""
    return f"{v:.4g}" if isinstance(v, int | float) else "-"
