#!/usr/bin/env bash
# The GPU checks (issue 18), one script, under 8 minutes on one GPU:
#   1. bench/train_throughput.py --gpu  gpt2-small (124M) in bf16 with torch.compile and SDPA
#      (flash) attention: tokens/s, MFU against the GPU's bf16 matmul peak measured in the same
#      run (target MFU >= 40%);
#   2. bench/eval_throughput.py --gpu   eval bench's batched scoring against the published
#      batch-1 loop on the same items (target >= 10x, NLLs within 1e-5, identical choices);
#   3. with two or more GPUs, a DDP training step (torchrun, 20 steps of gpt2-small in bf16 on
#      shards of the synthetic world); skipped on one GPU.
#
# The GPU machine has torch, transformers, tokenizers, safetensors, numpy, scipy, click and rich
# but not pydantic or datasketch: fetch their wheels here first (python 3.12, manylinux):
#   bash bench/gpu.sh --fetch-wheels            (writes .whl/, ignored by git)
#   mkdir -p bench/_work/gpu-data && cp ../shared/data/neuromancer_neuro_review_abstracts.jsonl.gz bench/_work/gpu-data/
# then run there, from the repository root (device tool: carry .whl and bench/_work/gpu-data):
#   bash bench/gpu.sh                           (figures in bench/_work/gpu/ and on stdout)
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0
        datasketch==2.0.0)
if [ "${1:-}" = "--fetch-wheels" ]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl "${WHEELS[@]}"
  exit 0
fi

if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/expertlm-site .whl/*.whl
  export PYTHONPATH=/tmp/expertlm-site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1 EXPERTLM_NO_PROGRESS=1 HF_HUB_OFFLINE=1
# ../shared/data does not travel to a GPU machine: eval_throughput's abstracts can (carry bench/_work/gpu-data)
if [ -d bench/_work/gpu-data ]; then export EXPERTLM_SHARED_DATA=$PWD/bench/_work/gpu-data; fi
python3 -c "import expertlm, expertlm.train, expertlm.eval.scoring" || { echo "expertlm does not import here"; exit 1; }
LOG=${OUT:-bench/_work/gpu}
mkdir -p "$LOG"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$LOG/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$LOG/gpu.txt"

timeout 300 python3 bench/train_throughput.py --gpu 2>&1 | tee "$LOG/train.txt" || true
timeout 180 python3 bench/eval_throughput.py --gpu 2>&1 | tee "$LOG/eval.txt" || true

GPUS=$(nvidia-smi -L | wc -l)
if [ "$GPUS" -ge 2 ]; then
  W=bench/_work/gpu-ddp
  rm -rf "$W"
  python3 -m expertlm corpus synth --out "$W/synth" --papers 1200
  python3 -m expertlm corpus build "$W/synth/literature.jsonl.gz" --out "$W/corpus" --min-chars 50
  python3 -m expertlm tokenizer train "$W/corpus" --out "$W/tok" --vocab-size 4000
  python3 -m expertlm data prepare "$W/corpus" --tokenizer "$W/tok" --out "$W/shards"
  timeout 240 torchrun --standalone --nproc-per-node "$GPUS" -m expertlm train "$W/shards" \
    --out "$W/run" --preset gpt2-small --context 256 --micro-batch 8 --max-steps 20 --bf16 \
    --log-every-steps 5 --ckpt-every-steps 20 2>&1 | tee "$LOG/ddp.txt"
  python3 -c "import json; r=[json.loads(l) for l in open('$W/run/metrics.jsonl')]; print('ddp: %d processes, %d steps, %.0f tokens/s, loss %.3f' % ($GPUS, r[-1]['step'], r[-1]['tokens_per_s'], r[-1]['loss']))" | tee -a "$LOG/ddp.txt"
else
  echo "ddp: skipped (one GPU)" | tee "$LOG/ddp.txt"
fi
grep -h -E '^(train_throughput_gpu|eval_throughput_gpu|ddp):' "$LOG"/*.txt
