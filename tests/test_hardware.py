"""GPU detection: real NVML where there is a driver; answers override detection."""

import pytest

from advisor.answers import parse_answers
from advisor.hardware import GPU, capability_from_name, detect_gpus, gpus_from_answers


def test_detect_never_raises_and_explains_an_empty_list():
    det = detect_gpus()
    if not det.gpus:
        assert det.reason  # "no NVIDIA driver found (...)" and the like, shown in the report
    for g in det.gpus:
        assert g.memory_gib > 0 and g.source == "nvml"


@pytest.mark.gpu
def test_nvml_agrees_with_torch_on_a_gpu_machine():
    import torch

    det = detect_gpus()
    assert len(det.gpus) == torch.cuda.device_count()
    props = torch.cuda.get_device_properties(0)
    assert abs(det.gpus[0].memory_gib - props.total_memory / 1024**3) < 0.5
    assert det.gpus[0].compute_capability == (props.major, props.minor)


@pytest.mark.parametrize(
    "name,cc,bf16",
    [
        ("Tesla T4", (7, 5), False),
        ("NVIDIA T4 (Colab)", (7, 5), False),
        ("Tesla V100-SXM2-32GB", (7, 0), False),
        ("NVIDIA GeForce RTX 4090", (8, 9), True),
        ("NVIDIA GeForce RTX 3090", (8, 6), True),
        ("NVIDIA A100-SXM4-80GB", (8, 0), True),
        ("NVIDIA H200", (9, 0), True),
        ("NVIDIA L4", (8, 9), True),
        ("NVIDIA A10G", (8, 6), True),
        ("My lab GPU", None, False),  # unknown: the conservative precision
    ],
)
def test_capability_and_bf16_from_answers(name, cc, bf16):
    assert capability_from_name(name) == cc
    answers = parse_answers({"gpus": [{"name": name, "memory_gib": 16}]})
    (gpu,) = gpus_from_answers(answers.gpus)
    assert gpu.source == "answers" and gpu.compute_capability == cc and gpu.bf16 is bf16


def test_gpu_to_dict_formats_capability():
    d = GPU(name="x", memory_gib=24, compute_capability=(8, 9)).to_dict()
    assert d["compute_capability"] == "8.9" and d["bf16"] is True


def test_bf16_stated_in_the_answers_wins_over_the_name_table():
    answers = parse_answers(
        {
            "gpus": [
                {"name": "My lab GPU", "memory_gib": 16, "bf16": True},
                {"name": "NVIDIA A100", "memory_gib": 16, "bf16": False},
            ]
        }
    )
    lab, a100 = gpus_from_answers(answers.gpus)
    assert lab.bf16 is True and a100.bf16 is False


def test_a_card_that_drives_a_display_keeps_a_desktop_reserve():
    from advisor.hardware import DISPLAY_RESERVE_GIB

    answers = parse_answers(
        {
            "gpus": [
                {"name": "NVIDIA GeForce RTX 4060", "memory_gib": 8, "display": True},
                {"name": "NVIDIA GeForce RTX 4060", "memory_gib": 8, "display": True, "reserve_gib": 0.6},
                {"name": "NVIDIA GeForce RTX 4060", "memory_gib": 8},
            ]
        }
    )
    shown, measured, headless = gpus_from_answers(answers.gpus)
    assert (
        shown.usable_gib == 8 - DISPLAY_RESERVE_GIB
        and measured.usable_gib == pytest.approx(7.4)
        and headless.usable_gib == 8
    )
