"""Work per useful token on variable-length data: TRL's SFTTrainer with its defaults vs the launched job.

    .venv/bin/python bench/padding_waste.py --out bench/results/padding-waste-cpu-DATE.txt

No timing, no GPU: the real trainers' data loaders run on CPU over the data of gpu_train.py's `varlen`
case (log-normal lengths, median ~200 tokens, capped at 1,024; the same generator and seed) and every
batch is counted:
  positions    token positions the model runs (`input_ids.numel()`): what the linear layers, norms,
               MLP and LM head cost, per useful token;
  useful       tokens that are not padding (`attention_mask`, or every position of a padding-free row);
  score pairs  query-key pairs the attention kernel computes: rows × row length² (SDPA's kernels apply
               a padding or block-diagonal mask, they do not skip the masked pairs), so the flattened
               padding-free row of micro-batch × max_length costs micro-batch times more than the same
               rows kept as rows (launcher/packing.py); a per-document kernel (flash varlen) would
               compute Σ length² (half of each, causally, in every case alike).
It bounds what packing buys on a GPU (issue 7's variable-length goal: >= 2x the useful tokens/s of
TRL's defaults) and what each batch layout costs in attention; it does not measure speed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import gpu_train  # noqa: E402

SEQ = 1024


def count(loader, pad_id: int | None) -> dict:
    """Positions, useful tokens and attention score pairs over every batch of a data loader."""
    positions = useful = pairs_kernel = pairs_doc = batches = 0
    for batch in loader:
        ids = batch["input_ids"]
        batches += 1
        positions += ids.numel()
        pairs_kernel += ids.shape[0] * ids.shape[1] ** 2  # every (row, query, key) the kernel computes
        if "position_ids" not in batch:  # padded rows of one example each (TRL's defaults)
            lengths = batch["attention_mask"].sum(-1).tolist()
            useful += sum(lengths)
            pairs_doc += sum(n * n for n in lengths)
            continue
        # Packed rows (one flattened row, or rows kept as rows): documents start where the position ids
        # restart; a row's right padding is pad tokens at position 0.
        for pos, tok in zip(batch["position_ids"].tolist(), ids.tolist(), strict=True):
            n = len(pos)
            while n and pos[n - 1] == 0 and tok[n - 1] == pad_id:
                n -= 1
            starts = [i for i in range(n) if pos[i] == 0] + [n]
            useful += n
            pairs_doc += sum((b - a) ** 2 for a, b in zip(starts, starts[1:], strict=False))
    return {
        "batches": batches,
        "positions": positions,
        "useful": useful,
        "pairs_kernel": pairs_kernel,
        "pairs_doc": pairs_doc,
    }


def trl_defaults(ckpt: Path, data: Path, out: Path, batch: int) -> dict:
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(ckpt)
    cfg = SFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=batch,
        max_length=SEQ,
        report_to=[],
        use_cpu=True,
        bf16=False,
        seed=0,
    )
    tr = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(ckpt),
        args=cfg,
        processing_class=tok,
        train_dataset=load_dataset("json", data_files=str(data), split="train"),
    )
    return count(tr.get_train_dataloader(), tok.pad_token_id)


def job(ckpt: Path, data: Path, out: Path, batch: int, padding_free: bool = False) -> dict:
    import argparse as ap

    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    from launcher import train
    from launcher.packing import use_packed_rows

    spec = dict(arch="tiny", method="lora", seq=SEQ, bs=batch, steps=1, padding_free=padding_free)
    plan = gpu_train.tunewise_plan(spec, ckpt, tiny=True)
    ds = load_dataset("json", data_files=str(data), split="train")
    config = train.trainer_config(
        plan, "sft", out, ds, None, ap.Namespace(max_steps=None, save_steps=None), cuda=False
    )
    tok = AutoTokenizer.from_pretrained(ckpt)
    tr = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(ckpt), args=config, processing_class=tok, train_dataset=ds
    )
    use_packed_rows(tr, plan, "sft")  # the job's layout, as launcher/train.py sets it
    return count(tr.get_train_dataloader(), tok.pad_token_id)


def render(rows: list[dict], command: str, n_rows: int, lengths: dict) -> str:
    lines = [
        f"$ {command}",
        f"# {datetime.date.today().isoformat()}  {n_rows:,} examples of gpu_train.py's varlen data "
        f"(tokens: median {lengths['median']}, mean {lengths['mean']:.0f}, p95 {lengths['p95']}, "
        f"max {lengths['max']}); max_length {SEQ}; counted from the trainers' data loaders, one epoch",
        "",
        f"{'loader':<38}{'batches':>8}{'positions':>11}{'useful':>10}{'pos/useful':>11}"
        f"{'pairs/useful':>13}{'per-doc pairs/useful':>21}",
    ]
    lines.append("-" * len(lines[-1]))
    for r in rows:
        lines.append(
            f"{r['name']:<38}{r['batches']:>8,}{r['positions']:>11,}{r['useful']:>10,}"
            f"{r['positions'] / r['useful']:>11.2f}{r['pairs_kernel'] / r['useful']:>13,.0f}"
            f"{r['pairs_doc'] / r['useful']:>21,.0f}"
        )
    lines += [
        "",
        "pos/useful: token positions run per useful token (linear layers, MLP, norms, LM head scale "
        "with it).",
        "pairs/useful: attention query-key pairs the kernel computes per useful token; "
        "per-doc: what a per-document kernel (flash varlen) would compute.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=2000, help="examples of varlen data (default 2000)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/tw-padding"))
    ap.add_argument("--out", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        os.environ.setdefault(k, "1")
    from transformers import AutoTokenizer

    args.work.mkdir(parents=True, exist_ok=True)
    ckpt = gpu_train.make_checkpoint("tiny", args.work)
    tok = AutoTokenizer.from_pretrained(ckpt)
    data = args.work / "varlen.jsonl"
    gpu_train.write_text_data(data, tok, rows=args.rows, lengths="varlen")
    n = sorted(min(SEQ, len(tok(json.loads(line)["text"])["input_ids"]) + 1) for line in data.open())
    lengths = {"median": n[len(n) // 2], "mean": sum(n) / len(n), "p95": n[int(0.95 * len(n))], "max": n[-1]}
    rows = []
    for i, (name, fn, kw) in enumerate(
        (
            ("TRL defaults, batch 8 (its default)", trl_defaults, {"batch": 8}),
            ("TRL defaults, batch 4", trl_defaults, {"batch": 4}),
            ("job, 4 packed rows (its layout)", job, {"batch": 4}),
            ("job, 4 rows flattened (padding-free)", job, {"batch": 4, "padding_free": True}),
        )
    ):
        rows.append({"name": name, **kw, **fn(ckpt, data, args.work / f"loader-{i}", **kw)})
    command = "python bench/padding_waste.py" + "".join(
        f" --{k} {v}"
        for k, v in (
            ("rows", args.rows if args.rows != 2000 else None),
            ("out", args.out),
            ("json", args.json),
        )
        if v
    )
    text = render(rows, command, args.rows, lengths)
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"lengths": lengths, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
