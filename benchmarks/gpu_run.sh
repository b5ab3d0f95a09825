#!/usr/bin/env bash
# Everything this project checks and measures on a CUDA GPU, in one go (the README's GPU figures come
# from here). Run from the repository root, with tinyllm installed or importable:
#     OUT=gpu_out TINYLLM_DATA_DIR=/path/to/data bash benchmarks/gpu_run.sh
# Each stage has its own time limit, so that one stuck stage cannot eat the others.
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

stage() { echo; echo "=== $1 ($(date +%T))"; }

stage "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/machine.txt"
$PY -c "import torch, transformers; print('torch', torch.__version__, '| transformers', transformers.__version__)" \
    | tee -a "$OUT/machine.txt"

stage "GPT-2 small training speed: bf16 + torch.compile"
timeout 300 $PY benchmarks/train_speed.py --device cuda --dtype bfloat16 --compile --configs gpt2-small \
    >"$OUT/train_speed_compile.json" 2>"$OUT/train_speed_compile.err"
echo "exit $?"; cat "$OUT/train_speed_compile.json"; tail -3 "$OUT/train_speed_compile.err"

stage "GPT-2 small training speed: bf16, eager"
timeout 90 $PY benchmarks/train_speed.py --device cuda --dtype bfloat16 --configs gpt2-small --windows 3 \
    >"$OUT/train_speed_eager.json" 2>"$OUT/train_speed_eager.err"
echo "exit $?"; cat "$OUT/train_speed_eager.json"; tail -3 "$OUT/train_speed_eager.err"

stage "tests on the GPU"
timeout 180 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_engine.py tests/test_compiled_decode.py \
    >"$OUT/tests.log" 2>&1
echo "exit $?"; tail -5 "$OUT/tests.log"

stage "the command line on the GPU"
{
    timeout 60 $PY -m tinyllm train shakespeare --device cuda --dtype bfloat16 --max-iters 300 \
        --eval-interval 100 --out /tmp/gpu_run --overwrite --no-progress &&
        $PY -m tinyllm sample /tmp/gpu_run --device cuda --prompt "romeo: " --max-new-tokens 80 --seed 1
} >"$OUT/cli.log" 2>&1
echo "exit $?"; tail -12 "$OUT/cli.log"
