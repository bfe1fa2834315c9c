#!/usr/bin/env bash
# tunewise run: ${summary}
# Runs the training job that plan.yaml (next to this file) describes. Edit plan.yaml, not this script.
# Extra flags pass through, e.g. `./launch.sh --smoke` (CPU dry run on a tiny stand-in model first)
# or `./launch.sh --max-steps 100`. Running it again resumes from the last checkpoint.
#
# What tunewise runs underneath (RUN_DIR is this directory):
#   ${command}
set -euo pipefail
RUN_DIR="$$(cd "$$(dirname "$${BASH_SOURCE[0]}")" && pwd)"
exec tunewise launch "$$RUN_DIR" "$$@"
