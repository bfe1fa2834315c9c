#!/usr/bin/env bash
# One device call (lent H200): install the carried wheels, then bench/gpu_train.py for the 8B cases.
# Run through the device tool from the repo root, carrying .whl (trl, datasets, dill, multiprocess,
# bitsandbytes, liger-kernel for Python 3.12); results land in $OUT. Rehearse on CPU with
#   OUT=/tmp/out TINY=1 bash bench/device_run.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 3
else
  export PYTHONPATH=$PWD
fi
PY=${PY:-python3}
( nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; $PY -c "import torch, transformers, peft, trl, bitsandbytes; print(torch.__version__, transformers.__version__, peft.__version__, trl.__version__, bitsandbytes.__version__)" ) > "$OUT/env.txt" 2>&1
if [ -n "${TINY:-}" ]; then
  $PY bench/gpu_train.py --tiny --out "$OUT/gpu-train.json" --work /tmp/twb-tiny --budget "${BUDGET:-600}" \
    --only "${ONLY:-lora-8b,qlora-8b,spectrum-8b}" > "$OUT/gpu-train.log" 2>&1
else
  $PY bench/gpu_train.py --out "$OUT/gpu-train.json" --work /tmp/twb --budget "${BUDGET:-270}" \
    --only "${ONLY:-lora-8b,qlora-8b,spectrum-8b}" > "$OUT/gpu-train.log" 2>&1
fi
echo "exit $?" >> "$OUT/gpu-train.log"
tail -c 6000 "$OUT/gpu-train.log"
