"""The weights move: Spectrum and full fine-tuning through the real job at their learning rate (1e-5), at the
plan's precision, against an fp32 reference (bench/weights_move.py; figures in bench/results/weights-move-cpu.txt).

The job before precision was a decision (bf16 weights, torch AdamW, no master copy) runs as a negative
control: the same checks must fail on it, or they prove nothing."""

from __future__ import annotations

import sys

import pytest
from launchkit import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import weights_move  # noqa: E402

STEPS, LR, HIDDEN = 6, 1e-5, 64


def _moves_like_fp32(r: dict, ref: dict) -> bool:
    return r["changed"] >= 0.99 * ref["changed"] and 0.9 <= r["update"] <= 1.1 and r["error"] < 0.2


@pytest.mark.parametrize("method", ["spectrum", "full"])
def test_plan_precision_moves_the_weights_like_fp32_and_pure_bf16_does_not(method):
    res = weights_move.measure(
        STEPS,
        LR,
        HIDDEN,
        methods=(method,),
        precisions=("bf16-mixed", "bf16-pure") + (("bf16-compensated",) if method == "spectrum" else ()),
    )[method]
    ref = res["fp32"]
    assert ref["changed"] > 0.5 and ref["update"] == 1.0
    assert _moves_like_fp32(res["bf16-mixed"], ref), res["bf16-mixed"]  # fp32 master weights
    pure = res["bf16-pure"]
    assert not _moves_like_fp32(pure, ref), pure
    assert pure["changed"] < 0.5 * ref["changed"] and pure["update"] < 0.6  # most updates rounded away
    if method == "spectrum":  # the compensated optimizer: bf16 weights that still follow the fp32 updates
        comp = res["bf16-compensated"]
        assert comp["update"] >= 0.8 and comp["changed"] >= 2 * pure["changed"], comp
