"""Per-rank memory of a 2-process FSDP training step on CPU, against the estimator's FSDP terms.

    OMP_NUM_THREADS=1 .venv/bin/python bench/memory_trace_fsdp.py --out bench/results/memory-trace-fsdp-cpu-DATE.txt
        [--only SUBSTRING] [--explain]

Two processes (torch.multiprocessing spawn, gloo, CPU) build the same small bf16 Llama and wrap it as
`accelerate launch` does with the job's accelerate.yaml (launcher/jobfiles.py `accelerate_yaml`):
FSDP1 (accelerate 1.15's `fsdp_version` default is 1 and the config does not set it), FULL_SHARD,
transformer-layer auto-wrap (one unit per decoder layer, the root holds embeddings, final norm and
lm_head), BACKWARD_PRE prefetch, `limit_all_gathers`, `use_orig_params` for spectrum/full, and the
mixed-precision policy accelerate derives from `mixed_precision: bf16` (param/reduce/buffer bf16).
accelerate's FSDP path cannot run on CPU (its state picks MULTI_CPU/DDP without a GPU), so the wrapping
is done here with the same arguments, including the step accelerate takes after wrapping: every
trainable flat parameter is upcast to fp32 (accelerator.py `prepare_model`, "FSDP upcast of low
precision parameters"), so the shards, their gradients and AdamW's states are fp32 while forward and
backward gather bf16 copies. The loop is the "plain" stack (`model(input_ids, labels).loss.backward()`,
fused AdamW, HF gradient checkpointing), two steps per rank.

`StepTrace` (bench/memory_trace.py) counts live tensor storages. FSDP1 reuses its gather buffers by
resizing their storage to 0 and back (`_free_storage`/`_alloc_storage`), which no op reports; the two
functions are wrapped here to tell the trace (`FsdpTrace.resync`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from memory_trace import StepTrace, aligned, estimator_phase, mark_phases, spectrum_layers  # noqa: E402

from advisor.memory import (  # noqa: E402
    MemoryConfig,
    estimate,
    step_parts,  # noqa: E402
)
from advisor.models import facts_from_config  # noqa: E402

MiB = 1024**2
WORLD = 2
SHAPE = dict(
    model_type="llama",
    vocab_size=8192,
    hidden_size=512,
    intermediate_size=1408,
    num_hidden_layers=4,
    num_attention_heads=8,
    num_key_value_heads=2,
    tie_word_embeddings=False,
    max_position_embeddings=4096,
)


@dataclass(frozen=True)
class Point:
    method: str
    seq: int
    bs: int
    ckpt: bool = True

    def label(self) -> str:
        return f"llama fsdp{WORLD} {self.method} {self.seq}x{self.bs} ckpt={self.ckpt}"


POINTS = [
    Point("full", 256, 2),
    Point("spectrum", 256, 2),
    Point("full", 512, 1, ckpt=False),
    Point("spectrum", 128, 4, ckpt=False),
    Point("lora", 256, 2),
    Point("lora", 512, 2, ckpt=False),
]


class FsdpTrace(StepTrace):
    """StepTrace that follows storages resized in place (FSDP1's gather and mixed-precision buffers)."""

    def __init__(self, explain: bool = False):
        super().__init__(explain)
        self._cur: dict[int, int] = {}  # id(storage) -> bytes counted now, for storages resized in place
        self.by_phase: dict[str, int] = {}  # the most bytes live during each traced moment (step 2)

    def add(self, t, op: str) -> None:
        super().add(t, op)
        self._note()

    def _note(self) -> None:
        if self.step >= 1 and self.live > self.by_phase.get(self.phase, 0):
            self.by_phase[self.phase] = self.live

    def resync(self, t) -> None:
        st = t.untyped_storage()
        if st not in self._sizes:
            self.add(t, "fsdp alloc")
            return
        n = aligned(st.nbytes())
        old = self._cur.get(id(st), self._sizes[st])
        self._cur[id(st)] = n
        self.live += n - old
        if self.explain and id(st) in self._info:  # --explain lists the size it has now
            self._info[id(st)] = (n, *self._info[id(st)][1:])
        if self.live > self.peak:
            self.peak, self.peak_phase, self.peak_step = self.live, self.phase, self.step
        self._note()

    def _free(self, n: int, key: int) -> None:
        super()._free(self._cur.pop(key, n), key)


def follow_fsdp_storage(trace: FsdpTrace) -> list:
    """Wrap FSDP1's storage alloc/free so the trace sees them; returns (module, name, original) to undo."""
    from torch.distributed.fsdp import _flat_param as fp

    undo = []
    for name in ("_alloc_storage", "_free_storage"):
        orig = getattr(fp, name)

        def wrapped(tensor, *a, _orig=orig):
            out = _orig(tensor, *a)
            trace.resync(tensor)
            return out

        setattr(fp, name, wrapped)
        undo.append((fp, name, orig))
    return undo


def build(p: Point):
    """The bf16 model, trainable parameters set as the method does (same seed on every rank)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        AutoConfig.for_model(**SHAPE), dtype=torch.bfloat16, attn_implementation="sdpa"
    )
    model.config.use_cache = False
    if p.method == "spectrum":
        chosen = spectrum_layers(SHAPE["num_hidden_layers"])
        for name, param in model.named_parameters():
            parts = name.split(".")
            param.requires_grad_(
                "layers" in parts
                and name.endswith("proj.weight")
                and int(parts[parts.index("layers") + 1]) in chosen
            )
    elif p.method == "lora":  # PEFT keeps the adapters fp32; dropout 0 as in bench/memory_trace.py
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
            ),
        )
    if p.ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return model


def wrap_like_accelerate(model, method: str):
    """FSDP1 with the arguments accelerate passes for the job's fsdp_config, then its fp32 upcast."""
    import functools

    import torch
    from torch.distributed.fsdp import BackwardPrefetch, MixedPrecision, ShardingStrategy
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    bf16 = torch.bfloat16
    policy = functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={LlamaDecoderLayer})
    if method == "lora":  # transformers' update_fsdp_plugin_peft: each LoRA leaf becomes its own unit
        from peft.utils.other import fsdp_auto_wrap_policy

        policy = fsdp_auto_wrap_policy(model)
    fsdp = FSDP(
        model,
        sharding_strategy=ShardingStrategy.FULL_SHARD,
        auto_wrap_policy=policy,
        mixed_precision=MixedPrecision(param_dtype=bf16, reduce_dtype=bf16, buffer_dtype=bf16),
        backward_prefetch=BackwardPrefetch.BACKWARD_PRE,
        limit_all_gathers=True,
        use_orig_params=method in ("spectrum", "full"),
        device_id=torch.device("cpu"),
    )
    # accelerate also passes sync_module_states=True (rank 0's weights broadcast once, before the step);
    # FSDP1 refuses it for CPU modules, and every rank here builds the same weights from the same seed.
    for unit in FSDP.fsdp_modules(fsdp):  # accelerate: "FSDP upcast of low precision parameters"
        if unit._has_params and unit._flat_param.dtype != torch.float32 and unit._flat_param.requires_grad:
            unit._flat_param.data = unit._flat_param.data.to(torch.float32)
            unit._handle._orig_param_dtype = torch.float32
    return fsdp


def blocks(t) -> int:
    """A tensor's (or storage's) bytes in 512-byte blocks."""
    st = t.untyped_storage() if hasattr(t, "untyped_storage") else t
    return aligned(st.nbytes())


def resident_split(fsdp, opt) -> dict:
    """Bytes (512-byte blocks) of the local flat-parameter shards and of the optimizer states."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    shards = sum(blocks(u._flat_param) for u in FSDP.fsdp_modules(fsdp) if u._has_params)
    states = sum(
        blocks(v)
        for s in opt.state.values()
        for v in s.values()
        if hasattr(v, "untyped_storage") and v.numel() > 1
    )
    return {"shards": shards, "states": states}


def worker(rank: int, port: int, p: Point, out: str, explain: bool) -> None:
    import gc

    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        model = build(p)
        fsdp = wrap_like_accelerate(model, p.method)
        fsdp.train()
        trainable = [q for q in fsdp.parameters() if q.requires_grad]
        n_train = sum(
            q.numel() for q in model.parameters() if q.requires_grad
        )  # this rank's part of the shards
        trace = FsdpTrace(explain=explain)
        handles = mark_phases(fsdp, trace)
        undo = follow_fsdp_storage(trace)
        flat = [u._flat_param for u in FSDP.fsdp_modules(fsdp) if u._has_params]
        trace.adopt(flat + list(fsdp.parameters()) + list(fsdp.buffers()))
        g = torch.Generator().manual_seed(0)
        try:
            with trace.mode():
                opt = torch.optim.AdamW(trainable, lr=2e-4, fused=True)
                for _ in range(2):
                    x = torch.randint(0, SHAPE["vocab_size"], (p.bs, p.seq), generator=g)
                    with torch.autocast("cpu", dtype=torch.bfloat16):  # accelerate's mixed_precision: bf16
                        loss = fsdp(input_ids=x, labels=x).loss
                    trace.phase = "loss bwd"
                    loss.backward()
                    grads = sum(
                        blocks(s)
                        for s in {q.grad.untyped_storage() for q in fsdp.parameters() if q.grad is not None}
                    )
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                del loss
                gc.collect()
                after = trace.live
                split = resident_split(fsdp, opt)
        finally:
            for mod, name, orig in undo:
                setattr(mod, name, orig)
            for h in handles:
                h.remove()
        row = {
            "rank": rank,
            "peak": trace.peak,
            "grads": grads,
            "by_phase": trace.by_phase,
            "start": trace.start,
            "after": after,
            **split,
            "phase_raw": trace.peak_phase,
            "step": trace.peak_step,
            "trainable_local": n_train,
            "phase": estimator_phase(trace.peak_phase, SHAPE["num_hidden_layers"]),
        }
        if explain:
            row["at_peak"] = [(round(b / MiB, 2), op, ph) for b, op, ph in trace.at_peak]
        Path(out, f"rank{rank}.json").write_text(json.dumps(row))
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_config(p: Point) -> MemoryConfig:
    n = SHAPE["num_hidden_layers"]
    return MemoryConfig(
        method=p.method,
        seq_len=p.seq,
        batch_size=p.bs,
        grad_ckpt=p.ckpt,
        liger=False,
        spectrum_fraction=len(spectrum_layers(n)) / n,
        lora_dropout=0.0,
        attn="sdpa",
        stack="plain",
        n_gpus=WORLD,
        rank=16,
        distributed="fsdp",
        spectrum_trainable_params=spectrum_params(p),
    )


def spectrum_params(p: Point) -> int | None:
    """Trainable parameters of the whole (unsharded) model for spectrum; None otherwise."""
    if p.method != "spectrum":
        return None
    h, i, kv = SHAPE["hidden_size"], SHAPE["intermediate_size"], SHAPE["hidden_size"] // 4  # 2 of 8 heads
    return len(spectrum_layers(SHAPE["num_hidden_layers"])) * (2 * h * h + 2 * h * kv + 3 * h * i)


def predict(p: Point) -> dict:
    m = facts_from_config(SHAPE, name="llama-fsdp", source="local")
    cfg = memory_config(p)
    e = estimate(m, cfg)
    parts = step_parts(m, cfg)
    return {
        "pred_mib": sum(parts.at_peak.values()) / MiB,
        "pred_phase": e.phase,
        "pred_parts_mib": {k: round(v / MiB, 2) for k, v in parts.at_peak.items()},
        "pred_resident_mib": parts.resident / MiB,
        "pred_by_phase_mib": {k: (parts.resident + v) / MiB for k, v in parts.phase_totals.items()},
    }


def trace_point(p: Point, explain: bool = False) -> dict:
    """Run the two ranks; rank 0's row with the prediction and the error."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as out:
        mp.spawn(worker, args=(free_port(), p, out, explain), nprocs=WORLD, join=True)
        ranks = [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(WORLD)]
    r0 = ranks[0]
    row = {
        **asdict(p),
        "traced_mib": r0["peak"] / MiB,
        "traced_phase": r0["phase"],
        "traced_phase_raw": r0["phase_raw"],
        "traced_step": r0["step"],
        "start_mib": r0["start"] / MiB,
        "after_mib": r0["after"] / MiB,
        "shards_mib": r0["shards"] / MiB,
        "states_mib": r0["states"] / MiB,
        "grads_mib": r0["grads"] / MiB,
        "rank1_mib": ranks[1]["peak"] / MiB,
        "resident_mib": (r0["shards"] + r0["states"]) / MiB,
    }
    row.update(predict(p))
    traced = {}
    for raw, b in r0["by_phase"].items():
        name = estimator_phase(raw, SHAPE["num_hidden_layers"])
        traced[name] = max(traced.get(name, 0), b / MiB)
    row["phases_mib"] = {
        k: (round(row["pred_by_phase_mib"][k], 1), round(traced[k], 1))
        for k in row["pred_by_phase_mib"]
        if k in traced
    }
    row["err"] = row["pred_mib"] / row["traced_mib"] - 1
    if explain:
        row["at_peak"] = r0["at_peak"]
    return row


def render(rows: list[dict], command: str) -> str:
    head = (
        f"{'method':<9}{'seq':>5}{'bs':>3}{'ckpt':>6}  {'predicted':>9}{'traced':>9}{'err':>8}{'rank1':>8}"
        f"  {'start':>7}{'after':>7}{'shards':>7}{'states':>7}  predicted phase / traced phase"
    )
    lines = [
        f"$ {command}",
        f"# {datetime.date.today().isoformat()}  CPU trace, 2 ranks (gloo), FSDP1 as accelerate "
        "wraps the job; MiB of live tensor storage on rank 0 (512-byte blocks). predicted = estimate("
        "n_gpus=2, distributed='fsdp', stack='plain').peak_allocated; err = predicted / traced - 1; rank1 = "
        "rank 1's traced peak; start = before the step (shards + buffers); after = after two optimizer steps; "
        "shards = local flat-parameter shards; states = AdamW states; 'each moment' traces the second step",
        "",
        head,
        "-" * len(head),
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['method']:<9}{r['seq']:>5}{r['bs']:>3} ERROR {r['error']}")
            continue
        lines.append(
            f"{r['method']:<9}{r['seq']:>5}{r['bs']:>3}{r['ckpt']!s:>6}  {r['pred_mib']:>9.1f}"
            f"{r['traced_mib']:>9.1f}{r['err']:>+8.1%}{r['rank1_mib']:>8.1f}  {r['start_mib']:>7.1f}"
            f"{r['after_mib']:>7.1f}{r['shards_mib']:>7.1f}{r['states_mib']:>7.1f}  "
            f"{r['pred_phase']} / {r['traced_phase']} (step {r['traced_step'] + 1})"
        )
        lines.append(f"    predicted parts (MiB): {r['pred_parts_mib']}")
        lines.append(
            f"    each moment, (predicted, traced) MiB: {r['phases_mib']}; resident (shards + states) "
            f"predicted {r['pred_resident_mib']:.1f}, traced {r['resident_mib']:.1f}; sharded grads traced "
            f"{r['grads_mib']:.1f}"
        )
        for b, op, ph in r.get("at_peak", []):
            lines.append(f"    at peak: {b:>8.2f} MiB  {op:<28} {ph}")
    ok = [abs(r["err"]) for r in rows if "error" not in r]
    if ok:
        lines += ["", f"points {len(ok)}  |error| median {statistics.median(ok):.1%}, worst {max(ok):.1%}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="also write the table here")
    ap.add_argument("--only", default="", help="trace only points whose label contains this")
    ap.add_argument("--explain", action="store_true", help="list rank 0's largest live storages at its peak")
    args = ap.parse_args(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    rows = []
    for p in POINTS:
        if args.only and args.only not in p.label():
            continue
        try:
            r = trace_point(p, args.explain)
        except Exception as e:  # one broken point must not lose the others
            r = {**asdict(p), "error": f"{type(e).__name__}: {str(e)[-400:]}"}
        rows.append(r)
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}), flush=True)
    command = (
        "OMP_NUM_THREADS=1 python bench/memory_trace_fsdp.py"
        + "".join(f" --{k} {v}" for k, v in (("out", args.out), ("only", args.only)) if v)
        + (" --explain" if args.explain else "")
    )
    text = render(rows, command)
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
