#!/usr/bin/env bash
# The checks that need a CUDA machine, in one run of under 8 minutes (issue 15):
#   1. install cnnlab (editable, with its test extras) into the Python that has torch;
#   2. the tests on CUDA: tests/test_cuda.py (marker `cuda`) and the fast training/data tests;
#   3. the speed table (engine vs plain loop vs torch.compile, bf16, channels_last) of
#      fmnist_cnn, vgg6 and squeezenet_flowers at GPU batch sizes (benchmarks/train_speed.py);
#   4. a 2-process DDP run (nccl; needs 2 GPUs, else said and skipped) and its resume;
#   5. the in-memory data pipeline's images/s with the data resident on the GPU.
#
# Usage (from anywhere; PYTHON picks the interpreter, default .venv/bin/python or python3):
#   benchmarks/gpu_check.sh               # on a CUDA machine
#   benchmarks/gpu_check.sh --cpu-smoke   # the same steps, tiny and on the CPU (no CUDA needed)
# Each step has its own time limit; a failed step is reported and the others still run; the
# exit status is the number of failed steps.
set -uo pipefail

MODE=cuda
case "${1:-}" in
--cpu-smoke) MODE=cpu ;;
"") ;;
*) echo "usage: $0 [--cpu-smoke]" >&2 && exit 2 ;;
esac
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
[[ -z "$PY" && -x .venv/bin/python ]] && PY=.venv/bin/python
export PY="${PY:-python3}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" CNNLAB_HOME="${CNNLAB_HOME:-$(mktemp -d)}"
FAILED=0
START=$SECONDS

step() { # step LIMIT_S TITLE COMMAND...: run one step (a command or a function of this
    # script) under a time limit, report it
    local limit=$1 title=$2
    shift 2
    echo
    echo "== $title (limit ${limit}s, at $((SECONDS - START))s)"
    local run=("$@")
    if declare -F "$1" >/dev/null; then # timeout runs programs: a function goes through bash
        run=(bash -c "$(declare -f "$1"); \"\$@\"" _ "$@")
    fi
    if ! timeout "$limit" "${run[@]}"; then
        echo "!! FAILED: $title"
        FAILED=$((FAILED + 1))
    fi
}

install_cnnlab() { # torch itself must be there: its wheel depends on the machine's CUDA
    "$PY" -c "import torch" || { echo "$PY has no torch: install the build for this CUDA" && return 1; }
    "$PY" -c "import cnnlab, pytest" 2>/dev/null && return 0
    "$PY" -m pip install -q -e ".[test]" || "$PY" -m pip install -q --no-deps -e .
}

device_info() {
    "$PY" - <<'EOF'
import torch
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
for i in range(torch.cuda.device_count()):
    print(f"  cuda:{i} {torch.cuda.get_device_name(i)}, bf16: {torch.cuda.is_bf16_supported()}")
EOF
}

ddp() { # ddp DEVICE: 2 processes for 30 steps, then --resume to the end
    local run
    run="$(mktemp -d)/ddp"
    local args=(-m cnnlab.cli train lenet5 --nproc-per-node 2 --device "$1" --batch-size 32
        --epochs 2 --run-dir "$run" --progress lines --seed 1)
    "$PY" "${args[@]}" --max-steps 30 | tail -3 || return 1
    "$PY" "${args[@]}" --resume | tail -3 || return 1
    test "$(wc -l <"$run/history.csv")" -eq 3 # header + 2 epochs
}

step 300 "install ($PY)" install_cnnlab
step 30 "device" device_info
if [[ $MODE == cuda ]]; then
    "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" ||
        { echo "no CUDA here: run with --cpu-smoke" && exit 1; }
    step 150 "tests on CUDA" "$PY" -m pytest -q -x -p no:cacheprovider -m "not slow" \
        tests/test_cuda.py tests/test_train_fit.py tests/test_data_memory.py
    step 210 "speed table (GPU batch sizes)" "$PY" benchmarks/train_speed.py --device cuda \
        --compile --repeats 3 --batch fmnist_cnn=512,vgg6=256,squeezenet_flowers=256 --limit 50000
    if [[ "$("$PY" -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]]; then
        step 90 "DDP: 2 nccl processes, train + resume" ddp cuda
    else
        echo && echo "== DDP (nccl) skipped: one GPU here, nccl needs one per process"
    fi
    step 60 "data pipeline, data resident on the GPU" "$PY" benchmarks/data_pipeline.py \
        --device cuda --limit 10000 --skip c,d,e,f --repeats 3
else
    # the CPU-safe parts: the CUDA tests must collect and skip; the rest runs tiny on the CPU
    step 120 "tests (CUDA ones skip)" "$PY" -m pytest -q -p no:cacheprovider -m "not slow" \
        tests/test_cuda.py tests/test_train_parts.py
    step 200 "speed table (tiny, CPU)" "$PY" benchmarks/train_speed.py --device cpu \
        --models fmnist_cnn,squeezenet_flowers --limit 1000 --steps 2 --warmup 1 --repeats 1 \
        --no-nchw
    OMP_NUM_THREADS=1 step 200 "DDP: 2 gloo processes, train + resume" ddp cpu
    step 120 "data pipeline (tiny, CPU)" "$PY" benchmarks/data_pipeline.py --device cpu \
        --limit 1000 --skip c,d,e,f --repeats 1
fi
echo
echo "== done in $((SECONDS - START))s, $FAILED failed step(s)"
exit "$FAILED"
