"""What the engine returns: the decision and the trace of every rule.

Pure data; renderers (report) and the plan builder read it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

Status = Literal["fired", "not_fired", "skipped"]


@dataclass
class RuleResult:
    """One rule's outcome on one set of facts (OPA-style explain trace)."""

    id: str
    title: str
    status: Status
    message: str = ""  # filled with observed values when fired
    why: str = ""
    source: str = ""  # guide section heading, or "measurement"
    then: dict = field(default_factory=dict)  # what the rule does when it fires
    observed: dict = field(default_factory=dict)  # fact name -> value the expression read
    missing: list[str] = field(default_factory=list)  # facts that were absent (status "skipped")
    applied: bool = True  # False when fired but its effects do not apply (e.g. a method rule, no fine-tune)
    priority: int = 0
    error: str | None = None  # evaluation error other than a missing fact (a rule bug), when skipped


@dataclass
class Candidate:
    """One training method's fit on the GPU(s)."""

    method: str
    peak_gib: float
    device_gib: float
    fits: bool
    excluded_by: list[str] = field(default_factory=list)  # rule ids
    distributed: str | None = None  # None (one GPU) | ddp | fsdp: the layout the estimate assumed
    micro_batch: int | None = None  # the configuration the figures are for (largest that fits)
    grad_accum: int | None = None
    seq_len: int | None = None
    note: str = ""  # the memory search's one-line summary
    cpu_offload: bool = False  # FSDP with the shards, gradients and optimizer in host RAM
    gpu_indices: list[int] | None = None  # the GPUs of the box the layout uses (None: all of them)
    host_gib: float | None = None  # host RAM the offloaded state needs, all processes together
    tried: list[str] = field(default_factory=list)  # every layout the search tried, with its figure
    precision: str | None = None  # what the figures assume (advisor/precision.py)


@dataclass
class Decision:
    approach: str  # prompting | rag | fine-tune | rag+fine-tune
    method: str | None = None  # lora | qlora | spectrum | full
    stage: str | None = None  # sft | dpo | sft+dpo
    model: str | None = None
    fired: list[str] = field(default_factory=list)
    trace: list[RuleResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    excluded: dict[str, list[str]] = field(default_factory=dict)  # option -> rule ids that ruled it out
    would_change: list[str] = field(default_factory=list)  # "with 1,000+ examples ..." lines
    candidates: dict[str, Candidate] = field(default_factory=dict)
    eval_plan: list[str] = field(default_factory=list)
    checklist: list[dict] = field(default_factory=list)  # {"item", "status", "detail"}
    suggestions: list[str] = field(default_factory=list)  # base models, tools, mitigations
    method_by_rules: str | None = None  # what the rules chose when the user overrode the method
    notes: list[str] = field(default_factory=list)  # informational messages of fired rules
    settings: dict[str, dict] = field(default_factory=dict)  # plan field -> {value, rule, reason, source}

    def to_dict(self) -> dict:
        return asdict(self)
