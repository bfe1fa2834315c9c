"""Spectrum's signal-to-noise layer selection (docs/spectrum.md).

`weights` reads safetensors one matrix at a time, `score` computes a matrix's SNR, `cache` keeps
scores by file content, and `scanner` scans a model folder and writes/applies the
`unfrozen_parameters` list.
"""

from advisor.spectrum.scanner import (
    ScanResult,
    count_unfrozen_params,
    default_out_path,
    load_unfrozen_yaml,
    scan,
    scan_summary,
    select_unfrozen,
    to_plan_spec,
    write_unfrozen_yaml,
)

__all__ = [
    "ScanResult",
    "count_unfrozen_params",
    "default_out_path",
    "load_unfrozen_yaml",
    "scan",
    "scan_summary",
    "select_unfrozen",
    "to_plan_spec",
    "write_unfrozen_yaml",
]
