#!/usr/bin/env bash
# One-shot check of a GPU machine with PyTorch and no internet (installs nothing):
#   (a) the unit tests that need CUDA (pytest -k cuda), if pytest is there;
#   (b) a 1-GPU torchrun (nccl) of train.py on the synthetic config for a few steps (bf16,
#       channels_last, gathered negatives; the synthetic data is rendered locally);
#   (c) bf16 vs fp32 loss terms of the paper model on the same batch;
#   (d) the training-step throughput table of the paper model at batch 128 (fp32, bf16,
#       bf16 + channels_last, encoders only, torch.compile when it finishes in time) and the
#       end-to-end rate with the real loader under AMP.
# Every step runs under a time limit and the script carries on after a failure; a summary ends it.
#
#   bash tools/gpu_check.sh 2>&1 | tee gpu_check.log          # about 6-8 minutes
#   GPU_CHECK_SECONDS=300 PYTHON=python3 bash tools/gpu_check.sh
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_CONFIG=configs/synthetic.yaml GPU_CHECK_BATCH=8 \
#       bash tools/gpu_check.sh                      # dry run of every piece on a CPU
set -u
cd "$(dirname "$0")/.." || exit 1
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python}
command -v "$PY" >/dev/null 2>&1 || PY=python3
BUDGET=${GPU_CHECK_SECONDS:-450}   # the whole script, seconds
BATCH=${GPU_CHECK_BATCH:-128}
DEV=${GPU_CHECK_DEVICE:-cuda}
CONFIG=${GPU_CHECK_CONFIG:-configs/paper.yaml}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/avgn_gpu_check.XXXXXX")
START=$(date +%s)
SUMMARY=()

have() { "$PY" -c "import $1" >/dev/null 2>&1; }

# step NAME LIMIT_SECONDS CMD...: run with min(limit, time left), record ok / FAILED / skipped
step() {
    local name=$1 limit=$2; shift 2
    local left=$((BUDGET - ($(date +%s) - START)))
    if [ "$left" -lt 20 ]; then
        echo; echo "=== $name: skipped (script budget of ${BUDGET}s spent)"
        SUMMARY+=("skipped  $name (no time left)"); return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo; echo "=== $name (limit ${limit}s)"
    local t0=$(date +%s)
    timeout -k 10 "$limit" "$@"
    local rc=$? dt=$(( $(date +%s) - t0 ))
    if [ $rc -eq 0 ]; then SUMMARY+=("ok       $name (${dt}s)")
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then SUMMARY+=("TIMEOUT  $name (${dt}s)")
    else SUMMARY+=("FAILED   $name (rc $rc, ${dt}s)"); fi
}
skip() { echo; echo "=== $1: skipped ($2)"; SUMMARY+=("skipped  $1 ($2)"); }

echo "=== machine"
date -u
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "nvidia-smi: not available"
"$PY" - <<'EOF'
import importlib, platform, os
import torch
print(f"python {platform.python_version()} | torch {torch.__version__} | cuda {torch.version.cuda} | "
      f"{os.cpu_count()} cpus")
print("cuda available:", torch.cuda.is_available(),
      "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
for m in ["numpy", "yaml", "scipy", "PIL", "soundfile", "av", "sklearn", "tqdm", "torchvision",
          "matplotlib", "pytest"]:
    try:
        mod = importlib.import_module(m)
        print(f"  import {m:12s} ok   {getattr(mod, '__version__', '')}")
    except Exception as e:
        print(f"  import {m:12s} MISSING ({type(e).__name__})")
EOF
if [ "$DEV" = cuda ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device visible: nothing to check"; exit 1
fi

DATA_OK=1
for m in numpy yaml scipy PIL soundfile tqdm; do have $m || { DATA_OK=0; echo "missing $m: train.py and the real loader cannot run"; }; done
BENCH=(tools/bench_train.py --device "$DEV" --config "$CONFIG")

# (c) bf16 vs fp32, same batch (paper model)
step "(c) bf16 vs fp32 loss terms, paper model, batch 32" 90 \
    "$PY" "${BENCH[@]}" --batch 32 --compare-amp

# (d) throughput table, paper model
step "(d) throughput, paper model, batch $BATCH" 150 \
    "$PY" "${BENCH[@]}" --batch "$BATCH" --steps 10 --warmup 3 \
    --variants fp32,enc+fp32,bf16,enc+bf16,bf16+cl,enc+bf16+cl --breakdown

# (d) real loader end to end under AMP (synthetic stream rendered at 224 px / 257x300 in the workers;
# it reads no files, so a missing soundfile is stubbed by bench_train.py)
LOADER_OK=1
for m in numpy yaml scipy PIL tqdm; do have $m || LOADER_OK=0; done
if [ $LOADER_OK -eq 1 ]; then
    W=$(( $("$PY" -c "import os; print(os.cpu_count())") - 2 )); [ $W -gt 12 ] && W=12; [ $W -lt 1 ] && W=1
    step "(d) real loader (synthetic stream, $W workers) + bf16 step, batch $BATCH" 100 \
        "$PY" "${BENCH[@]}" --batch "$BATCH" --steps 3 --variants bf16+cl --loader synthetic \
        --workers "$W" --items $((BATCH * 8 + 1))
else
    skip "(d) real loader" "missing imports (see above)"
fi

# (b') 1-GPU torchrun (nccl): DDP + gathered negatives of the paper config, random tensors
step "(b') torchrun 1 GPU (nccl), bench_train.py DDP, paper model bf16, batch 32" 90 \
    "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 "${BENCH[@]}" --batch 32 \
    --steps 5 --variants bf16+cl

# (b) 1-GPU torchrun, nccl, synthetic config
if [ $DATA_OK -eq 1 ]; then
    step "(b) torchrun 1 GPU (nccl), train.py synthetic, 30 steps" 150 \
        "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 train.py \
        --config configs/synthetic.yaml --device "$DEV" train.max_steps=30 train.epochs=1 \
        train.eval_every=0 eval.test_at_end=false train.log_every=10 train.amp=bf16 \
        train.channels_last=true loss.gather_negatives=true data.num_workers=4 \
        data.root="$WORK/synthetic" train.output_dir="$WORK/run"
else
    skip "(b) torchrun" "train.py needs numpy, yaml, scipy, PIL, soundfile, tqdm"
fi

# (a) CUDA unit tests
if have pytest; then
    step "(a) pytest -k cuda" 150 "$PY" -m pytest -q -k cuda -p no:cacheprovider \
        --continue-on-collection-errors tests/test_throughput_options.py
else
    skip "(a) pytest -k cuda" "pytest missing"
fi

# (d) torch.compile, when time is left
step "(d) throughput, paper model, bf16 + channels_last + compile, batch $BATCH" 200 \
    "$PY" "${BENCH[@]}" --batch "$BATCH" --steps 10 --variants bf16+cl+compile,bf16+cl

rm -rf "$WORK"
echo
echo "=== summary ($(( $(date +%s) - START ))s)"
for s in "${SUMMARY[@]}"; do echo "  $s"; done
