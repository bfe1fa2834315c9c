"""The resolved training plan: the single source of truth a run directory's `plan.yaml` holds.

The launcher reads nothing else to train. Each value's reason is kept in `reasons` (field -> why,
citing the guide section or the measurement) for the report.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from advisor.errors import UserError
from advisor.task_metrics import METRICS, TASK_METRICS

PLAN_VERSION = 1


@dataclass
class LoraSpec:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"


@dataclass
class QuantSpec:
    load_in_4bit: bool = True
    quant_type: str = "nf4"
    double_quant: bool = True
    compute_dtype: str = "bfloat16"


@dataclass
class SpectrumSpec:
    top_percent: float = 30.0
    unfrozen_parameters: list[str] = field(default_factory=list)  # regexes over parameter names
    scan_file: str | None = None


@dataclass
class DPOSpec:
    beta: float = 0.1
    learning_rate: float = 5e-6
    epochs: float = 1.0
    dataset: str | None = None  # preference data (train split); None = the main dataset
    source: str | None = None  # the user's preference file (`preference_dataset`), split into `dataset`
    validation: str | None = None  # its validation split
    # The DPO stage's own batch when the SFT micro-batch does not fit its step (chosen + rejected rows and a
    # reference forward, advisor/memory/dpo.py); None = the plan's micro_batch_size / grad_accum.
    micro_batch_size: int | None = None
    grad_accum: int | None = None
    # The DPO step's predicted memory at the batch it runs (the planner's; summary.json compares the DPO stage
    # with it): GiB allocated at peak, and what the GPU shows in use.
    predicted_peak_gib: float | None = None
    predicted_device_gib: float | None = None


@dataclass
class DataSpec:
    source: str | None = None  # the user's file as given
    train: str | None = None  # the split written into the run directory
    validation: str | None = None
    format: str | None = None  # alpaca | messages | sharegpt | prompt-completion | preference | text
    column_map: dict[str, str] | None = None
    validation_fraction: float = 0.2  # share held out when no separate validation file is given
    validation_max_rows: int | None = None  # cap on the held-out rows (large datasets); None = no cap


@dataclass
class SpeedSpec:
    """The throughput model's forecast for this plan (advisor/throughput): per stage (sft, dpo) the whole
    job's tokens/s, one optimizer step's seconds, the planned steps and the stage's seconds as [predicted,
    shortest, longest] (evaluations included); the whole run's likewise. The job compares its measured
    speed with these (summary.json) and the Slurm script's time limit is drawn from `run_s`."""

    gpu: str
    tokens_per_s: dict[str, float] = field(default_factory=dict)
    step_s: dict[str, float] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    stage_s: dict[str, list[float]] = field(default_factory=dict)
    run_s: list[float] = field(default_factory=list)
    n_gpus: int = 1
    usd_per_gpu_hour: float | None = None  # the answers' gpu_hour_price, else a dated market midpoint
    price_source: str | None = None
    cost_usd: list[float] | None = None  # [predicted, lowest, highest] for the run on all its GPUs


@dataclass
class EvalSpec:
    """The held-out evaluation (`tunewise eval`, and at the end of the job unless `enabled: false`)."""

    enabled: bool = True
    task: str | None = None  # decides the task metrics (advisor/task_metrics.py)
    max_examples: int = 200  # held-out rows evaluated (stratified by reference for classification)
    few_shot: int = 5  # k training examples in the few-shot prompt
    max_new_tokens: int = 64
    batch_size: int = 8
    target_metric: str | None = None  # the success criterion from the answers
    target: float | None = None
    seed: int = 0
    # Code tasks: run the data's tests on the model's code (a subprocess on this machine, 10 s per example)
    run_tests: bool = True

    def problems(self) -> list[str]:
        out = []
        for name, lo in (
            ("max_examples", 1),
            ("few_shot", 0),
            ("max_new_tokens", 1),
            ("batch_size", 1),
            ("seed", 0),
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                out.append(f"evaluation.{name} must be an integer of at least {lo} (got {v!r})")
        if self.task is not None and self.task not in TASK_METRICS:
            out.append(f"evaluation.task {self.task!r} (allowed: {', '.join(TASK_METRICS)}, or empty)")
        if self.target_metric is not None and self.target_metric not in METRICS:
            out.append(
                f"evaluation.target_metric {self.target_metric!r} (allowed: {', '.join(METRICS)}, or empty)"
            )
        if self.target is not None and (
            not isinstance(self.target, int | float) or isinstance(self.target, bool)
        ):
            out.append(f"evaluation.target must be a number (got {self.target!r})")
        for name in ("enabled", "run_tests"):
            if not isinstance(getattr(self, name), bool):
                out.append(f"evaluation.{name} must be true or false (got {getattr(self, name)!r})")
        if self.target_metric == "tests_pass" and self.run_tests is False:
            out.append(
                "evaluation.target_metric tests_pass needs evaluation.run_tests: true (or another target_metric)"
            )
        return out


# Attention implementations that mask packed documents per row (from the position ids transformers sees).
ROW_ATTENTION = ("sdpa", "eager")
ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")


@dataclass
class TrainingPlan:
    model: str
    method: str  # lora | qlora | spectrum | full
    stage: str  # sft | dpo | sft+dpo
    data: DataSpec = field(default_factory=DataSpec)
    model_family: str | None = None
    trust_remote_code: bool = False
    max_length: int = 1024
    packing: bool = True
    # TRL's padding-free layout: the micro-batch's packed rows flattened into one row (what FlashAttention-2's
    # varlen kernel wants). Off: packed rows stay rows, so SDPA/eager attention spans max_length, not
    # micro-batch x max_length (launcher/packing.py). The job flattens under any other attention regardless.
    padding_free: bool = False
    completion_only_loss: bool = True  # loss on completions / assistant turns only
    micro_batch_size: int = 4
    grad_accum: int = 4
    learning_rate: float = 2e-4
    epochs: float = 3.0
    max_steps: int | None = None
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    lora: LoraSpec | None = None
    quantization: QuantSpec | None = None
    spectrum: SpectrumSpec | None = None
    dpo: DPOSpec | None = None
    evaluation: EvalSpec | None = None
    gradient_checkpointing: bool = True
    liger: bool = False
    torch_compile: bool = (
        False  # torch.compile the model (TrainingArguments.torch_compile); off until measured
    )
    attn_implementation: str = "sdpa"
    optimizer: str = "adamw_torch"
    bf16: bool = True  # the GPU computes in bfloat16
    # What the job keeps in which format (advisor/precision.py): bf16-mixed (fp32 master weights) |
    # bf16-compensated (Kahan-compensated AdamW) | fp32 | fp16-mixed; None: a plan from before this field,
    # run from `bf16` (launcher/precision.py).
    precision: str | None = None
    eval_steps: int = 50
    early_stopping_patience: int | None = 3
    save_steps: int = 50
    save_total_limit: int = 3
    logging_steps: int = 5
    seed: int = 42
    n_gpus: int = 1
    distributed: str | None = None  # None | ddp | fsdp | zero3
    # FSDP only: parameter shards, gradients and the optimizer step in host RAM (accelerate's fsdp_offload_params)
    cpu_offload: bool = False
    # The GPUs the job uses (CUDA_VISIBLE_DEVICES) when the planner chose a subset of the box; None = all
    gpu_indices: list[int] | None = None
    predicted_peak_gib: float | None = None
    predicted_device_gib: float | None = (
        None  # what the GPU will show in use (allocator reserve + CUDA context)
    )
    speed: SpeedSpec | None = (
        None  # predicted tokens/s, step and run time; None when unknown (reasons say why)
    )
    reasons: dict[str, str] = field(default_factory=dict)
    version: int = PLAN_VERSION

    @property
    def flat_packing(self) -> bool:
        """Packed rows flattened into one padding-free row (TRL's layout, for FlashAttention-2's varlen
        kernel) rather than kept as rows: asked for, or forced by an attention that cannot mask per row."""
        return self.padding_free or self.attn_implementation not in ROW_ATTENTION

    @property
    def own_validation(self) -> bool:
        """A validation file of the user's rather than the split tunewise writes from `data.source` (whose
        `data/validation.jsonl` holds the `validation_fraction` share of that source)."""
        return bool(self.data.validation) and not self.data.source

    def train_examples(self, examples: int) -> int:
        """Examples left for training: all of them beside a separate validation file, else the split's share."""
        if self.own_validation:
            return examples
        held = examples - math.floor(examples * (1 - self.data.validation_fraction))
        if self.data.validation_max_rows:
            held = min(held, self.data.validation_max_rows)
        return int(examples - held)

    def sequences_per_epoch(self, train_examples: int, mean_tokens: float | None) -> int:
        """Sequences an epoch feeds: packed, the examples' tokens over max_length (BFD fills the rows); one per
        example without packing or without token counts (then an upper bound)."""
        if self.packing and mean_tokens:
            return max(1, math.ceil(train_examples * mean_tokens / self.max_length))
        return train_examples

    @property
    def distributed_mode(self) -> str | None:
        """How several GPUs share the work; None on one GPU. The one place this is decided: the launcher's
        accelerate config, the job's quantisation storage and the memory estimate all read it.

        The planner's `distributed` when it set one; otherwise by method: LoRA runs DDP (each GPU holds the
        whole base and the small adapter is all-reduced), QLoRA, Spectrum and full fine-tuning run FSDP
        (the model is sharded; FSDP+QLoRA for 4-bit bases)."""
        if self.n_gpus <= 1:
            return None
        return self.distributed or ("ddp" if self.method == "lora" else "fsdp")

    @property
    def effective_batch(self) -> int:
        return self.micro_batch_size * self.grad_accum * max(1, self.n_gpus)

    def stage_batch(self, stage: str) -> tuple[int, int]:
        """(micro-batch, accumulation) a stage runs with. DPO takes its own batch when the plan gives one,
        never above the plan's micro-batch (the OOM ladder lowers that one), keeping its effective batch."""
        mb, accum = self.micro_batch_size, self.grad_accum
        d = self.dpo
        if stage == "dpo" and d is not None and d.micro_batch_size:
            effective = d.micro_batch_size * (d.grad_accum or 1)
            mb = min(mb, d.micro_batch_size)
            accum = max(1, math.ceil(effective / mb))
        return mb, accum

    def to_dict(self) -> dict:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_dict(cls, d: dict, source: str = "plan") -> TrainingPlan:
        if not isinstance(d, dict):
            raise UserError(f"{source}: expected a mapping", "regenerate it with `tunewise recommend --out`")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(
                f"{source}: unknown key(s) {', '.join(unknown)}", f"known keys: {', '.join(sorted(known))}"
            )
        d = dict(d)
        subs = {
            "data": DataSpec,
            "lora": LoraSpec,
            "quantization": QuantSpec,
            "spectrum": SpectrumSpec,
            "dpo": DPOSpec,
            "speed": SpeedSpec,
            "evaluation": EvalSpec,
        }
        try:
            for k, typ in subs.items():
                if d.get(k) is not None:
                    if not isinstance(d[k], dict):
                        raise TypeError(f"'{k}' must be a mapping")
                    d[k] = typ(**d[k])
            plan = cls(**d)
        except TypeError as e:
            raise UserError(f"{source}: {e}", "regenerate it with `tunewise recommend --out`") from None
        plan.validate(source)
        return plan

    @classmethod
    def load(cls, path: str | Path) -> TrainingPlan:
        p = Path(path)
        from advisor.safeyaml import load_yaml

        try:
            text = p.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):  # the latter: RUN_DIR is a file
            raise UserError(
                f"no plan at {p}", "create a run directory with `tunewise recommend --out DIR`"
            ) from None
        except OSError as e:
            raise UserError(
                f"cannot read {p}: {e.strerror or e}", "check the path and its permissions"
            ) from None
        except UnicodeDecodeError:
            raise UserError(
                f"{p}: not a valid plan file (not UTF-8 text)",
                "regenerate it with `tunewise recommend --out`",
            ) from None
        # A duplicated key, an alias bomb or a 5,000-digit number is refused with a message.
        data = load_yaml(text, p, what="a plan file", fix="regenerate it with `tunewise recommend --out`")
        return cls.from_dict(data, source=str(p))

    def validate(self, source: str = "plan") -> None:
        problems = []
        if self.method not in ("lora", "qlora", "spectrum", "full"):
            problems.append(f"method {self.method!r} (allowed: lora, qlora, spectrum, full)")
        if self.stage not in ("sft", "dpo", "sft+dpo"):
            problems.append(f"stage {self.stage!r} (allowed: sft, dpo, sft+dpo)")
        if self.method in ("lora", "qlora") and self.lora is None:
            problems.append(f"method {self.method} needs a 'lora' section")
        if self.method == "qlora" and self.quantization is None:
            problems.append("method qlora needs a 'quantization' section")
        if self.method == "spectrum" and (self.spectrum is None or not self.spectrum.unfrozen_parameters):
            problems.append(
                "method spectrum needs 'spectrum.unfrozen_parameters' from a scan "
                "(run `tunewise spectrum scan MODEL_DIR`); refusing to fall back to full fine-tuning"
            )
        for name in (
            "max_length",
            "micro_batch_size",
            "grad_accum",
            "eval_steps",
            "save_steps",
            "logging_steps",
            "n_gpus",
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                problems.append(f"{name} must be a positive integer (got {v!r})")
        for name in ("micro_batch_size", "grad_accum"):
            v = getattr(self.dpo, name, None) if self.dpo else None
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                problems.append(f"dpo.{name} must be a positive integer or empty (got {v!r})")
        if not (isinstance(self.learning_rate, int | float) and 0 < self.learning_rate < 1):
            problems.append(f"learning_rate must be in (0, 1) (got {self.learning_rate!r})")
        if self.precision is not None:
            from advisor.precision import check

            bad = check(self.method, self.precision)
            if bad:
                problems.append(bad)
        if self.attn_implementation not in ATTENTION_IMPLEMENTATIONS:
            problems.append(
                f"attn_implementation {self.attn_implementation!r} (allowed: "
                f"{', '.join(ATTENTION_IMPLEMENTATIONS)})"
            )
        if self.cpu_offload and self.distributed != "fsdp":
            problems.append("cpu_offload needs distributed: fsdp")
        if self.gpu_indices is not None and (
            not isinstance(self.gpu_indices, list)
            or len(self.gpu_indices) != self.n_gpus
            or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in self.gpu_indices)
        ):
            problems.append(
                f"gpu_indices must list n_gpus ({self.n_gpus}) GPU indices, or be empty "
                f"(got {self.gpu_indices!r})"
            )
        if self.distributed not in (None, "ddp", "fsdp", "zero3"):
            problems.append(f"distributed {self.distributed!r} (allowed: ddp, fsdp, zero3, or empty)")
        if self.evaluation is not None:
            problems += self.evaluation.problems()
        if problems:
            raise UserError(
                f"{source}: invalid plan:\n  - " + "\n  - ".join(problems),
                "fix these keys or regenerate the plan with `tunewise recommend --out`",
            )
