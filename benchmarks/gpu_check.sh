#!/usr/bin/env bash
# train.py and test.py end to end on a GPU at paper size, in one self-contained run.
#
#   bash benchmarks/gpu_check.sh wheels     # where the package registry is reachable: ./wheelhouse holds
#                                      # the wheels (CPython 3.12, manylinux x86-64) of the
#                                      # requirements a bare GPU machine lacks (soundfile, av)
#   bash benchmarks/gpu_check.sh            # on the GPU machine: installs what is missing from
#                                      # ./wheelhouse offline, runs every stage, writes
#                                      # $GPU_CHECK_OUT (default: gpu_check_out/) gpu_check.json
#                                      # and one log per stage
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_TINY=1 bash benchmarks/gpu_check.sh     # dry run on a CPU
#   GPU_CHECK_SECONDS (420): the whole run's budget; each stage gets at most what is left
#
# Stages (each under a time limit; a failed stage is recorded and the next one runs):
#   tests     pytest -k cuda
#   bench     model-only rate of benchmarks.bench_train at the training settings and in fp32 (the
#             paper configs' precision), and a profile of one step (top 10 kernels by device time)
#   train     torchrun --nproc_per_node=1 train.py on the synthetic benchmark at paper size
#             (224 px, configs/paper.yaml's model and spectrogram: the released model, 257x276,
#             D 512, L 3, batch 128, bf16, channels_last), without and with
#             torch.compile, through the real loader: samples/s, its share of the model-only rate
#             and of the bf16 peak, and the share of time spent waiting for data
#   resume    SIGTERM mid-epoch, then --resume auto: the resumed run continues from the saved step
#   test      test.py on the result, bf16 and fp32 evaluation of the same checkpoint
set -u
cd "$(dirname "$0")/.." || exit 1
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python}
command -v "$PY" >/dev/null 2>&1 || PY=python3
WHEELS=wheelhouse
WHEEL_PACKAGES=(soundfile av cffi pycparser)

if [ "${1:-}" = wheels ]; then
    rm -rf "$WHEELS" && mkdir -p "$WHEELS"
    "$PY" -m pip download --quiet --only-binary=:all: --no-deps --python-version 3.12 \
        --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux_2_28_x86_64 -d "$WHEELS" "${WHEEL_PACKAGES[@]}" || exit 1
    du -sh "$WHEELS"; ls "$WHEELS"
    exit 0
fi

DEV=${GPU_CHECK_DEVICE:-cuda}
OUT=${GPU_CHECK_OUT:-${OUT:-gpu_check_out}}
STEPS=${GPU_CHECK_STEPS:-60}
BATCH=${GPU_CHECK_BATCH:-128}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/avgn_gpu_check.XXXXXX")
# paper size on the synthetic benchmark (no ImageNet file here); GPU_CHECK_TINY: CPU-sized
CFG=(--config configs/paper.yaml model.pretrained=none data.dataset=synthetic
     "data.root=$WORK/synthetic" data.num_workers=${GPU_CHECK_WORKERS:-8})
if [ -n "${GPU_CHECK_TINY:-}" ]; then
    CFG+=(model.dim=32 model.heads=4 model.width=8 model.depth=1 model.visual_stride=8
          data.image_size=32 data.audio.sample_rate=8000 data.audio.seconds=1.0
          data.audio.n_fft=256 data.audio.hop=125 data.audio.frames=64 data.num_workers=1)
    STEPS=${GPU_CHECK_STEPS:-4}; BATCH=${GPU_CHECK_BATCH:-8}
fi
AMP=(train.amp=bf16 train.channels_last=true)
VARIANT=bf16+cl
[ "$DEV" = cpu ] && VARIANT=fp32+cl
COMPILED=",$VARIANT+compile"
[ -n "${GPU_CHECK_TINY:-}" ] && COMPILED=""  # the dry run checks the script, not the compiler
TRAIN=(train.py "${CFG[@]}" --device "$DEV" "${AMP[@]}" train.batch_size_per_gpu="$BATCH"
       data.synthetic_train=$((BATCH * (STEPS + 2))) train.epochs=1 train.eval_every=0
       eval.test_at_end=false train.log_every=2)
TORCHRUN=("$PY" -m torch.distributed.run --standalone --nproc_per_node=1)
STATUS=()
BUDGET=${GPU_CHECK_SECONDS:-420}  # the whole run, so that one device call holds it
START=$(date +%s)

# stage NAME LIMIT CMD...: runs CMD under min(LIMIT, what is left of BUDGET), its output in
# $OUT/NAME.log; with under 20 s left the stage is skipped (recorded with exit 124)
stage() {
    local name=$1 limit=$2; shift 2
    local left=$(( BUDGET - ($(date +%s) - START) ))
    [ "$limit" -gt "$left" ] && limit=$left
    if [ "$limit" -lt 20 ]; then
        STATUS+=("$name 124 0"); echo "=== $name: skipped, the budget is spent"; return 124
    fi
    echo "=== $name (limit ${limit}s): $*"
    local t0=$(date +%s)
    timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    STATUS+=("$name $rc $(( $(date +%s) - t0 ))")
    tail -n 3 "$OUT/$name.log"
    return $rc
}

# what a bare machine lacks, from the wheelhouse, offline
for m in soundfile av; do
    if ! "$PY" -c "import $m" 2>/dev/null; then
        [ -d "$WHEELS" ] || { echo "missing $m and no $WHEELS/ (bash benchmarks/gpu_check.sh wheels)"; exit 1; }
        "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" "$m" || exit 1
    fi
done
"$PY" - > "$OUT/environment.json" <<'EOF'
import json, platform, torch
print(json.dumps({"python": platform.python_version(), "torch": torch.__version__,
                  "cuda": torch.version.cuda, "device": torch.cuda.get_device_name(0)
                  if torch.cuda.is_available() else "cpu"}))
EOF

stage tests 300 "$PY" -m pytest -q -k cuda -p no:cacheprovider tests/test_throughput_options.py
stage bench 400 "$PY" -m benchmarks.bench_train "${CFG[@]}" --device "$DEV" --batch "$BATCH" \
    --steps 10 --variants "$VARIANT$COMPILED,fp32" --profile  # fp32: the paper configs' precision
stage train 500 "${TORCHRUN[@]}" "${TRAIN[@]}" train.max_steps="$STEPS" \
    train.output_dir="$WORK/run"
[ -n "$COMPILED" ] && stage train_compile 500 "${TORCHRUN[@]}" "${TRAIN[@]}" \
    train.max_steps="$STEPS" train.compile=true train.output_dir="$WORK/run_compile"

# SIGTERM to the training process once it has logged about half the steps (log_every is 2, so
# an even step), then --resume auto
RESUME=("${TORCHRUN[@]}" "${TRAIN[@]}" data.synthetic_train=$((BATCH * STEPS * 20))
        train.output_dir="$WORK/run_resume")
echo "=== resume"
"${RESUME[@]}" train.max_steps=$((STEPS * 10)) > "$OUT/resume_stopped.log" 2>&1 &
PID=$!
for _ in $(seq $(( BUDGET - ($(date +%s) - START) - 60 ))); do  # leave time to resume
    grep -q "step $(( STEPS / 4 * 2 > 2 ? STEPS / 4 * 2 : 2 )) " "$OUT/resume_stopped.log" && break
    kill -0 $PID 2>/dev/null || break
    sleep 1
done
pkill -TERM -P $PID  # the worker: it saves at its next log step and leaves
wait $PID
STATUS+=("resume_stopped $? 0")  # train.py's 3 (stopped, saved); torchrun reports it as 1
SAVED=$(grep -o "saved .* at step [0-9]*" "$OUT/resume_stopped.log" | grep -o "[0-9]*$")
stage resume 500 "${RESUME[@]}" --resume auto train.max_steps=$(( ${SAVED:-0} + 4 ))

for amp in bf16 none; do
    stage "test_$amp" 300 "$PY" test.py --ckpt "$WORK/run/checkpoint.pth" --device "$DEV" \
        --out "$WORK/test_$amp" train.amp=$amp \
        "eval.test_sets=[synthetic:test,synthetic:test_pairs]"
    cp "$WORK/test_$amp/results.json" "$OUT/results_$amp.json" 2>/dev/null
done

printf '%s\n' "${STATUS[@]}" > "$OUT/status.txt"
for d in "$WORK"/run*; do cp "$d/log.jsonl" "$OUT/$(basename "$d").jsonl" 2>/dev/null; done
"$PY" -m benchmarks.gpu_report "$OUT"
rm -rf "$WORK"
