#!/usr/bin/env bash
# Everything this project checks and measures on a CUDA GPU, in one go (docs/performance.md's GPU figures
# come from here). Run from the repository root, with tinyllm installed or importable:
#     OUT=gpu_out TINYLLM_DATA_DIR=/path/to/data bash benchmarks/gpu_run.sh
#     STAGES="shakespeare" NANOGPT=/path/to/nanoGPT OUT=gpu_out TINYLLM_DATA_DIR=... bash benchmarks/gpu_run.sh
# STAGES picks among speed, muon, tests, cli, shakespeare (default: all; a short GPU lease may not
# hold them all in one call). Each stage has its own time limit, so that one stuck stage cannot eat
# the others. NANOGPT: a checkout of karpathy/nanoGPT, to time its own train.py in the shakespeare stage.
set -u
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then sed -n "2,8p" "$0" | sed "s/^# \{0,1\}//"; exit 0; fi
STAGES=${STAGES:-speed muon tests cli shakespeare}
wanted() { [[ " $STAGES " == *" $1 "* ]]; }
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

stage() { echo; echo "=== $1 ($(date +%T))"; }

stage "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/machine.txt"
$PY -c "import torch, transformers; print('torch', torch.__version__, '| transformers', transformers.__version__)" \
    | tee -a "$OUT/machine.txt"

if wanted speed; then
stage "GPT-2 small training speed: bf16 + torch.compile"
timeout 300 $PY benchmarks/train_speed.py --device cuda --dtype bfloat16 --compile --configs gpt2-small \
    >"$OUT/train_speed_compile.json" 2>"$OUT/train_speed_compile.err"
echo "exit $?"; cat "$OUT/train_speed_compile.json"; tail -3 "$OUT/train_speed_compile.err"

stage "GPT-2 small training speed: bf16, eager"
timeout 90 $PY benchmarks/train_speed.py --device cuda --dtype bfloat16 --configs gpt2-small --windows 3 \
    >"$OUT/train_speed_eager.json" 2>"$OUT/train_speed_eager.err"
echo "exit $?"; cat "$OUT/train_speed_eager.json"; tail -3 "$OUT/train_speed_eager.err"
fi

if wanted muon; then
stage "Muon's Newton-Schulz on the GPU: float32 (what --muon-dtype auto keeps there) against bfloat16"
timeout 60 $PY benchmarks/micro.py muon --device cuda --repeats 20 \
    >"$OUT/micro_muon.json" 2>"$OUT/micro_muon.err"
echo "exit $?"; cat "$OUT/micro_muon.json"; tail -3 "$OUT/micro_muon.err"
fi

if wanted tests; then
stage "tests on the GPU"
timeout 180 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_engine.py tests/test_compiled_decode.py \
    >"$OUT/tests.log" 2>&1
echo "exit $?"; tail -5 "$OUT/tests.log"
fi

if wanted cli; then
stage "the command line on the GPU"
{
    timeout 60 $PY -m tinyllm train shakespeare --device cuda --dtype bfloat16 --max-iters 300 \
        --eval-interval 100 --out /tmp/gpu_run --overwrite --no-progress &&
        $PY -m tinyllm sample /tmp/gpu_run --device cuda --prompt "romeo: " --max-new-tokens 80 --seed 1
} >"$OUT/cli.log" 2>&1
echo "exit $?"; tail -12 "$OUT/cli.log"
fi

if wanted shakespeare; then
stage "nanoGPT's Shakespeare recipe (6 x 384, context 256, batch 64): training time to val loss 1.47"
timeout 420 $PY benchmarks/gpu_shakespeare.py --device cuda --dtype bfloat16 --compile \
    --recipes muon-wsd-2000 nanogpt ${NANOGPT:+--nanogpt "$NANOGPT"} \
    >"$OUT/shakespeare.json" 2>"$OUT/shakespeare.err"
echo "exit $?"; tail -8 "$OUT/shakespeare.err"
fi
