#!/usr/bin/env bash
# One device call (lent H200): install the carried wheels, then bench/gpu_train.py.
# Run through the device tool from the repo root, carrying .whl (trl, datasets, dill, multiprocess,
# bitsandbytes, liger-kernel for Python 3.12); results land in $OUT.
#   PROFILE_ONLY=lora-8b   first, these cases under the profiler -> $OUT/gpu-profile.json, $OUT/profile/
#   ONLY=a,b,c             then these cases measured -> $OUT/gpu-train.json   (ONLY=none skips the pass)
#   BUDGET / PROFILE_BUDGET  seconds for each pass (later cases are skipped past it)
# Rehearse on CPU with
#   OUT=/tmp/out TINY=1 PY=.venv/bin/python bash bench/device_run.sh
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
TINYFLAG=""; WORK=/tmp/twb
if [ -n "${TINY:-}" ]; then TINYFLAG="--tiny"; WORK=/tmp/twb-tiny; fi
if [ -n "${PROFILE_ONLY:-}" ]; then
  $PY bench/gpu_train.py $TINYFLAG --out "$OUT/gpu-profile.json" --work "$WORK" --budget "${PROFILE_BUDGET:-240}" \
    --only "$PROFILE_ONLY" --profile "$OUT/profile" > "$OUT/gpu-profile.log" 2>&1
  echo "exit $?" >> "$OUT/gpu-profile.log"
  tail -c 3000 "$OUT/gpu-profile.log"
fi
if [ "${ONLY:-}" != "none" ]; then
  $PY bench/gpu_train.py $TINYFLAG --out "$OUT/gpu-train.json" --work "$WORK" --budget "${BUDGET:-270}" \
    --only "${ONLY:-lora-8b,qlora-8b,spectrum-8b}" > "$OUT/gpu-train.log" 2>&1
  echo "exit $?" >> "$OUT/gpu-train.log"
  tail -c 6000 "$OUT/gpu-train.log"
fi
