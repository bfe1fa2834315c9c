"""Peak GPU memory of one training step, before anything is launched (docs/memory.md).

`config` holds what a step runs (`MemoryConfig`), `parts` the SFT step's byte counts, `dpo` the DPO
step's, and `estimator` puts them together: `estimate()`, `fit_search()`, `config_for_plan()`.
Pure arithmetic: no torch.
"""

from advisor.memory.config import (
    ATTENTION,
    DISTRIBUTED,
    METHODS,
    OPTIMIZERS,
    STACKS,
    STAGES,
    GiB,
    MemoryConfig,
    validate,
)
from advisor.memory.estimator import (
    FitResult,
    MemoryEstimate,
    carry_prediction,
    config_for_plan,
    estimate,
    fit_search,
    step_parts,
)

__all__ = [
    "ATTENTION",
    "DISTRIBUTED",
    "METHODS",
    "OPTIMIZERS",
    "STACKS",
    "STAGES",
    "FitResult",
    "GiB",
    "MemoryConfig",
    "MemoryEstimate",
    "carry_prediction",
    "config_for_plan",
    "estimate",
    "fit_search",
    "step_parts",
    "validate",
]
