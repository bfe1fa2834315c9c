"""Spectrum: pick the layers worth training by their weights' signal-to-noise ratio.

The guide ("Essential Parameter-Efficient Fine-Tuning Methods") describes Spectrum as training only
the top ~30% most informative layers, found by signal-to-noise analysis. `scan` scores every 2-D
weight inside the decoder layers (see `advisor.spectrum.score` for the formula), groups them by
module type (`self_attn.q_proj`, `mlp.down_proj`, ...) and, within each type, keeps the top
`int(count * P / 100)` layers, `count` being the type's number of layers (`n_layers` for a uniform
decoder). Embeddings and `lm_head` are not scored; the reference tool always trains them, which
for Llama-3.2-1B (tied) adds 263M trainable parameters, more than its top-30% layers (243M), so
here they are opt-in (`include_embeddings`).

The selection is written as Axolotl's `unfrozen_parameters` list: one anchored regex per parameter,
e.g. `^model.layers.3.self_attn.q_proj.weight$`. `select_unfrozen` applies such a list to a
model's parameter names with Axolotl's semantics, so one file means the same thing in both tools.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from advisor.errors import UserError
from advisor.files import atomic_write
from advisor.spectrum.cache import cache_load, cache_store, files_signature, has_candidate
from advisor.spectrum.weights import (
    LayerMatrix,
    content_key,
    layer_matrices,
    list_tensors,
    read_matrices,
    weight_files,
)

SCORER_VERSION = 1  # part of the cache key: bump when the score or the cached record changes
EMBEDDING_NAMES = ("model.embed_tokens.weight", "lm_head.weight")
Progress = Callable[[str, int, int], None]  # (stage "hash" | "score", done, total)


@dataclass
class ScanResult:
    """What a scan found and what it selects at `top_percent`."""

    model_dir: str
    top_percent: float
    scores: dict[str, float]  # module name -> score, e.g. model.layers.3.self_attn.q_proj
    types: dict[str, str]  # module name -> module type
    layers: dict[str, int]  # module name -> layer index
    n_layers: int
    by_type: dict[str, list[tuple[int, float]]]  # every layer's (index, score), best first
    selected: dict[str, list[tuple[int, float]]]  # the unfrozen ones, best first
    unfrozen: list[str]  # Axolotl-dialect regexes, one per unfrozen parameter
    param_shapes: dict[str, list[int]]  # every tensor in the checkpoint
    seconds: float  # this call, reading and hashing included
    cache_hit: bool
    device: str  # where the scores were computed (on a cache hit: by the original scan)
    methods: dict[str, int] = field(default_factory=dict)  # "gram"/"svd" -> matrices scored that way
    hash_seconds: float = 0.0
    key: str = ""

    @property
    def trainable_params(self) -> int:
        return count_unfrozen_params(self.param_shapes, self.unfrozen)

    @property
    def total_params(self) -> int:
        return sum(math.prod(s) for s in self.param_shapes.values())

    def to_json(self) -> dict:
        """The `--format json` object: `scores` and `unfrozen` (the contract) plus context."""
        return {
            "model_dir": self.model_dir,
            "top_percent": self.top_percent,
            "n_layers": self.n_layers,
            "scores": self.scores,
            "unfrozen": self.unfrozen,
            "selected": {t: [[i, s] for i, s in v] for t, v in self.selected.items()},
            "trainable_params": self.trainable_params,
            "total_params": self.total_params,
            "seconds": round(self.seconds, 3),
            "hash_seconds": round(self.hash_seconds, 3),
            "cache_hit": self.cache_hit,
            "device": self.device,
            "methods": self.methods,
        }


def scan(
    model_dir: str | Path,
    *,
    top_percent: float = 30.0,
    device: str = "auto",
    progress: Progress | None = None,
    use_cache: bool = True,
    include_embeddings: bool = False,
    workers: int | None = None,
) -> ScanResult:
    """Score the model's layer weights (or reuse the cached scores) and select the top `top_percent`.

    Args:
        model_dir: local directory with `model.safetensors` or shards plus `model.safetensors.index.json`.
        top_percent: share of each module type's layers to unfreeze, 0 < P <= 100 (guide: ~30).
        device: "cpu", "cuda" (or "cuda:N"), or "auto" (CUDA when torch sees a GPU). Checked for
            availability only when scores must be computed: cached scores need no device.
        progress: called as progress(stage, done, total); stage "hash" counts bytes, "score" matrices.
        use_cache: reuse/store scores keyed by a hash of the weight files' bytes.
        include_embeddings: also unfreeze `model.embed_tokens` and `lm_head` (the reference tool's habit).
        workers: matrices scored at once; default 4 on CUDA (one stream each, so eigensolves overlap),
            1 on CPU (torch already uses every core for one matrix).
    """
    if not (isinstance(top_percent, int | float) and 0 < top_percent <= 100):
        raise UserError(
            f"--top-percent {top_percent!r} is out of range",
            "use a number in (0, 100]; the guide suggests 30",
        )
    if device not in ("auto", "cpu") and not re.fullmatch(r"cuda(:\d+)?", str(device)):
        raise UserError(f"--device {device!r} is not known", "use cpu, cuda or auto")
    t0 = time.perf_counter()
    d, files = weight_files(model_dir)
    tensors = list_tensors(d)
    matrices = layer_matrices(tensors)
    if not matrices:
        raise UserError(
            f"no 2-D weights inside numbered layers in {d}",
            "Spectrum scans decoder checkpoints (names like model.layers.0.self_attn.q_proj.weight)",
        )
    sig = files_signature(d, files)
    key, record, t_hash, hit = "", None, 0.0, False

    def hash_files() -> tuple[str, float]:
        t = time.perf_counter()
        k = content_key(
            d,
            files,
            extra=f"tunewise-spectrum-v{SCORER_VERSION}",
            progress=(lambda a, b: progress("hash", a, b)) if progress else None,
        )
        return k, time.perf_counter() - t

    dev = None
    if use_cache:
        if not has_candidate(d, sig):
            dev = _resolve_device(device)
        if dev is not None and _overlap_hashing(dev):
            # Nothing cached for files of these names and sizes: hash on the CPU while the GPU scores.
            with ThreadPoolExecutor(max_workers=1) as ex:
                fut = ex.submit(hash_files)
                record = _score_all(d, matrices, dev, progress, workers)
                key, t_hash = fut.result()
        else:
            key, t_hash = hash_files()
            record = cache_load(d, sig, key)
            hit = record is not None
    if record is None:
        record = _score_all(d, matrices, dev or _resolve_device(device), progress, workers)
    if use_cache and not hit:
        record["key"], record["files"] = key, sig
        cache_store(d, sig, key, record)
    shapes = {t.name: list(t.shape) for t in tensors}
    result = _select(str(d), record, shapes, top_percent, include_embeddings)
    result.seconds, result.cache_hit, result.hash_seconds, result.key = (
        time.perf_counter() - t0,
        hit,
        t_hash,
        key,
    )
    return result


def _overlap_hashing(device: str) -> bool:
    """Hash during a first scan only where scoring leaves the CPU free (on 2 CPU cores it would not)."""
    return device.startswith("cuda")


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cpu" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: torch sees no CUDA GPU here", "use --device cpu (or auto)")
    return device


def _score_all(
    d: Path, matrices: list[LayerMatrix], device: str, progress: Progress | None, workers: int | None = None
) -> dict:
    """Score every matrix; on CUDA several at once, each worker thread on its own stream."""
    import torch

    from advisor.spectrum import score as spectrum_score

    workers = max(1, workers or (4 if device.startswith("cuda") else 1))
    t0 = time.perf_counter()
    rows: dict[str, dict] = {}
    local = threading.local()

    def work(m: LayerMatrix, w) -> tuple[LayerMatrix, object]:
        try:
            with torch.inference_mode():
                if workers == 1 or not device.startswith("cuda"):
                    return m, spectrum_score.matrix_score(w, device)
                if not hasattr(local, "stream"):
                    local.stream = torch.cuda.Stream(device=device)
                with torch.cuda.stream(local.stream):
                    return m, spectrum_score.matrix_score(w, device)
        except ValueError as e:
            return m, e

    def collect(m: LayerMatrix, ms) -> None:
        if isinstance(ms, ValueError):
            raise UserError(
                f"weight {m.info.name} in {d / m.info.file} {ms}",
                "the checkpoint is corrupt or was saved mid-divergence; use a clean copy",
            )
        rows[m.module] = {"type": m.type, "layer": m.layer, "score": ms.score, "method": ms.method}
        if progress:
            progress("score", len(rows), len(matrices))

    if progress:
        progress("score", 0, len(matrices))
    if device.startswith("cuda"):
        # torch loads its CUDA linear-algebra backends lazily, and that first load is not
        # thread-safe ("lazy wrapper should be called at most once"): do it here, once.
        eye = torch.eye(4, dtype=torch.float64, device=device)
        torch.linalg.eigvalsh(eye), torch.linalg.svdvals(eye)
    if workers == 1:
        for m, w in read_matrices(d, matrices):
            collect(*work(m, w))
    else:
        with ThreadPoolExecutor(max_workers=workers) as ex:
            pending: set = set()
            for m, w in read_matrices(d, matrices, ahead=workers + 1):
                pending.add(ex.submit(work, m, w))
                if len(pending) >= 2 * workers:  # bound the matrices held in memory
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        collect(*f.result())
            for f in pending:
                collect(*f.result())
        rows = {m.module: rows[m.module] for m in matrices}  # file order, whatever finished first
    methods = {k: sum(r["method"] == k for r in rows.values()) for k in ("gram", "svd")}
    return {
        "version": SCORER_VERSION,
        "device": device,
        "workers": workers,
        "scan_seconds": time.perf_counter() - t0,
        "methods": methods,
        "modules": rows,
    }


def _select(
    model_dir: str, record: dict, shapes: dict[str, list[int]], top_percent: float, include_embeddings: bool
) -> ScanResult:
    rows = record["modules"]
    by_type: dict[str, list[tuple[int, float]]] = {}
    for r in rows.values():
        by_type.setdefault(r["type"], []).append((r["layer"], r["score"]))
    selected = {}
    for t, v in by_type.items():
        v.sort(key=lambda x: (-x[1], x[0]))  # best first; ties go to the lower layer, deterministically
        selected[t] = v[: int(len(v) * top_percent / 100)]
    if not any(selected.values()):
        fewest = min(len(v) for v in by_type.values())
        raise UserError(
            f"--top-percent {top_percent:g} of {fewest} layers rounds down to no layer at all",
            f"use --top-percent {math.ceil(100 / fewest)} or more for this model",
        )
    module_of = {(r["type"], r["layer"]): name for name, r in rows.items()}
    chosen = [module_of[(t, i)] for t in sorted(selected) for i, _ in selected[t]]
    names = [p for m in chosen for p in (f"{m}.weight", f"{m}.bias") if p in shapes]
    if include_embeddings:
        names = [p for p in EMBEDDING_NAMES if p in shapes] + names
    return ScanResult(
        model_dir=model_dir,
        top_percent=float(top_percent),
        scores={k: r["score"] for k, r in rows.items()},
        types={k: r["type"] for k, r in rows.items()},
        layers={k: r["layer"] for k, r in rows.items()},
        n_layers=max(len(v) for v in by_type.values()),
        by_type=by_type,
        selected=selected,
        unfrozen=[f"^{p}$" for p in names],
        param_shapes=shapes,
        seconds=0.0,
        cache_hit=False,
        device=record["device"],
        methods=dict(record.get("methods", {})),
    )


# ---------------------------------------------------------------------------------------------
# Applying a selection: Axolotl's pattern dialect, shared by the launcher and the memory estimate

_RANGE = re.compile(r"^(.+)\[([0-9]*)(?::([0-9]*))?\]$")


def select_unfrozen(param_names: Iterable[str], patterns: Sequence[str], *, strict: bool = True) -> list[str]:
    """The parameter names to leave trainable, in `param_names` order.

    Semantics are Axolotl's `unfrozen_parameters` (utils/freeze.py), so a file works the same in
    both: every `.` not followed by `+` is a literal dot, and each pattern is tried with
    `re.match`, i.e. anchored at the start only. Our scans write `^name$` patterns, so for them
    this is an exact-name match; a hand-written `model.layers.1.mlp` would also catch
    `model.layers.1.mlp.*` (and not `model.layers.10`). Axolotl's `[start:end]` row ranges are not
    supported and are refused rather than ignored.

    The launcher freezes every parameter and then sets `requires_grad=True` exactly for the
    returned names; pass `model.named_parameters()` names (tied weights appear once there).

    Raises:
        UserError: no patterns, a pattern that is not a valid regex or uses a range, or (when
            `strict`) a pattern that matches no parameter: the scan was made for another model.
    """
    patterns = list(patterns)
    if not patterns:
        raise UserError(
            "the Spectrum selection is empty (no unfrozen_parameters)",
            "run `tunewise spectrum scan MODEL_DIR`; an empty list would train nothing",
        )
    compiled = []
    for p in patterns:
        if not isinstance(p, str) or not p:
            raise UserError(f"unfrozen_parameters entry {p!r} is not a pattern string", "regenerate the scan")
        if _RANGE.match(p):
            raise UserError(
                f"unfrozen_parameters entry {p!r} uses a [start:end] row range",
                "tunewise unfreezes whole tensors; drop the range",
            )
        try:
            compiled.append(re.compile(re.sub(r"\.(?!\+)", r"\\.", p)))
        except re.error as e:
            raise UserError(
                f"unfrozen_parameters entry {p!r} is not a valid regex ({e})", "fix or regenerate it"
            ) from None
    names = list(param_names)
    used = [False] * len(compiled)
    keep = []
    for name in names:
        hits = [i for i, rx in enumerate(compiled) if rx.match(name)]
        for i in hits:
            used[i] = True
        if hits:
            keep.append(name)
    unused = [p for p, u in zip(patterns, used, strict=True) if not u]
    if strict and unused:
        raise UserError(
            f"{len(unused)} unfrozen_parameters pattern(s) match no parameter of this model, "
            f"e.g. {unused[0]!r}",
            "the scan belongs to another model: rerun `tunewise spectrum scan` on this one",
        )
    return keep


def count_unfrozen_params(
    model_dir_or_shapes: str | Path | Mapping[str, Sequence[int] | int], unfrozen: Sequence[str]
) -> int:
    """Trainable parameter count under `unfrozen` (for `MemoryConfig.spectrum_trainable_params`).

    `model_dir_or_shapes` is a checkpoint directory (only headers are read) or a mapping of
    parameter name to shape (or to element count). Tied `lm_head` weights are not in a checkpoint
    and so are never counted twice.
    """
    if isinstance(model_dir_or_shapes, str | Path):
        sizes = {t.name: t.numel for t in list_tensors(model_dir_or_shapes)}
    else:
        sizes = {k: v if isinstance(v, int) else math.prod(v) for k, v in model_dir_or_shapes.items()}
    return sum(sizes[n] for n in select_unfrozen(sizes, unfrozen))


# ---------------------------------------------------------------------------------------------
# The unfrozen_parameters YAML (the key Axolotl reads; the plan's spectrum.scan_file)


def default_out_path(model_dir: str | Path, top_percent: float) -> Path:
    """`<model_dir>/spectrum_<P>.yaml`, or the same name in the current directory when not writable."""
    name = f"spectrum_{top_percent:g}.yaml"
    d = Path(model_dir).expanduser()
    return d / name if os.access(d, os.W_OK) else Path.cwd() / name


def write_unfrozen_yaml(result: ScanResult, path: str | Path) -> Path:
    """Write `unfrozen_parameters:` with a comment per module type; returns the path written."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UserError(f"--out {p} is a directory", "give a file name, e.g. spectrum_30.yaml")
    total, train = result.total_params, result.trainable_params
    lines = [
        f"# Spectrum selection for {result.model_dir}: top {result.top_percent:g}% of layers per module type",
        "# by signal-to-noise ratio (tunewise spectrum scan). Patterns use Axolotl's dialect.",
        f"# trainable parameters: {train:,} of {total:,} ({100 * train / max(total, 1):.1f}%)",
        "unfrozen_parameters:",
    ]
    listed = set()
    for pat in result.unfrozen:
        if pat.strip("^$") in EMBEDDING_NAMES:
            lines.append(f"- {json.dumps(pat)}")
            listed.add(pat)
    module_pats: dict[str, list[str]] = {}
    for pat in result.unfrozen:
        if pat not in listed:
            module = pat.strip("^$").rsplit(".", 1)[0]
            module_pats.setdefault(result.types[module], []).append(pat)
    for t in sorted(module_pats):
        lines.append(f"# {t}: {len(result.selected[t])} of {len(result.by_type[t])} layers")
        lines += [f"- {json.dumps(pat)}" for pat in module_pats[t]]
    return atomic_write(p, "\n".join(lines) + "\n", fix="pass --out to a writable place")


def load_unfrozen_yaml(path: str | Path) -> list[str]:
    """The `unfrozen_parameters` list of a YAML file (ours or Axolotl's), validated as strings."""
    import yaml

    p = Path(path).expanduser()
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            f"no Spectrum scan file at {p}", "run `tunewise spectrum scan MODEL_DIR --out FILE`"
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(
            f"{p}: not valid YAML ({type(e).__name__})", "regenerate it with `tunewise spectrum scan`"
        ) from None
    pats = data.get("unfrozen_parameters") if isinstance(data, dict) else None
    if not isinstance(pats, list) or not pats or not all(isinstance(x, str) for x in pats):
        raise UserError(
            f"{p}: needs a non-empty 'unfrozen_parameters' list of strings",
            "regenerate it with `tunewise spectrum scan`",
        )
    return pats


def to_plan_spec(result: ScanResult, scan_file: str | Path | None = None):
    """The plan's `SpectrumSpec` for this selection (the launcher reads nothing else)."""
    from advisor.plan import SpectrumSpec

    return SpectrumSpec(
        top_percent=result.top_percent,
        unfrozen_parameters=list(result.unfrozen),
        scan_file=str(scan_file) if scan_file else None,
    )


def scan_summary(result: ScanResult) -> dict:
    """A plain dict for the report: which layers per type, their scores, and the cut-off."""
    out = {}
    for t, ranked in result.by_type.items():
        k = len(result.selected[t])
        out[t] = {
            "selected": [i for i, _ in result.selected[t]],
            "scores": dict(ranked),
            "cutoff": ranked[k - 1][1] if k else None,
            "best_rejected": ranked[k][1] if k < len(ranked) else None,
        }
    return out


__all__ = [
    "ScanResult",
    "scan",
    "select_unfrozen",
    "count_unfrozen_params",
    "write_unfrozen_yaml",
    "load_unfrozen_yaml",
    "default_out_path",
    "scan_summary",
    "to_plan_spec",
]
