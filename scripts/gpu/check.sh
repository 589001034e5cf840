#!/usr/bin/env bash
# The GPU checks of the GPU path, as one prepared script for a session that is lent a GPU (the device tool runs it
# from the repository root; its files land in $OUT). On the device machine, python3 holds PyTorch but not fastcore:
# carry its wheel (.whl/, see below). What it measures:
#   1. no host synchronisation inside a training step: torch.cuda.set_sync_debug_mode('error') around 6 steps
#      of VQ-EMA, VQ-EMA + restart and BA-VQ (fp32 and bf16), after the first step;
#   2. the benchmark on the GPU: images/s of the project's step (fp32, bf16, compiled) next to the reference-style
#      pipeline (PIL + DataLoader) in the same process;
#   3. the 60 s goal: a 30-epoch K=512 VQ-EMA run in bf16, timed.
# Real CIFAR-10 (178 MB) cannot travel with a call (64 MiB), so 2 and 3 run on CIFAR-shaped synthetic images
# (50,000 + 10,000: the same shapes and steps; the time of a step does not depend on the pixels) unless $VQBA_DATA
# holds cifar-10-batches-py; then the full tier's plan (scripts/full_tier.py --plan-only) is printed too.
#   on the device:  echo /.whl/ >> .git/info/exclude; python3 -m pip download --no-deps --only-binary=:all: -d .whl fastcore
#                   run(command="bash scripts/gpu/check.sh", carry=[".whl"], timeout_s=540)
#   here, dry:      DRY=1 bash scripts/gpu/check.sh      (CPU, tiny sizes: tests/test_full_tier.py runs it)
set -euo pipefail
OUT=${OUT:-$(mktemp -d)}; DEV=${DEV:-cuda}; mkdir -p "$OUT"
if [ -n "${DRY:-}" ]; then DEV=cpu; EPOCHS=1; N=512; NT=256; BENCH="--images 256 --steps 2 --repeats 1 --warmup 1 --eval-images 256 --quantizers vqema --no-compile --threads 1"
else EPOCHS=30; N=50000; NT=10000; BENCH="--images 5120"; fi
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
PY=${PYTHON:-python3}
echo "== device"; $PY -c "import torch, vqba_nb.runs as r; print(r.machine('$DEV'))" | tee "$OUT/device.txt"

echo "== 1. no host synchronisation inside a training step"
$PY - "$DEV" <<'PY' 2>&1 | tee "$OUT/no_sync.txt"
import sys, torch
from vqba_nb.config import config_from_dict
from vqba_nb.data import synthetic_cifar
from vqba_nb.train import Trainer
dev = sys.argv[1]
x = synthetic_cifar(1024, 1)[0]
for q in ({'type': 'vqema'}, {'type': 'vqema', 'restart_threshold': 1.0}, {'type': 'ba'}):
    for precision in ('fp32', 'bf16'):
        cfg = config_from_dict({'name': 'sync', 'quantizer': {**q, 'K': 512, 'dim': 64}, 'train': {'device': dev, 'precision': precision}, 'wandb': {'mode': 'disabled'}})
        tr = Trainer(cfg, '/dev/null', data=(x, x[:256]))
        it = tr.train_batches.epoch(0)
        tr.train_step(next(it))                       # the first step initialises the codebook from the data (one read)
        if dev.startswith('cuda'): torch.cuda.synchronize(); torch.cuda.set_sync_debug_mode('error')
        try:
            for _ in range(6): tr.train_step(next(it))
        finally:
            if dev.startswith('cuda'): torch.cuda.set_sync_debug_mode(0)
        tr.poll()
        print(f"{q['type']}{' + restart' if 'restart_threshold' in q else ''} {precision}: 6 steps without a host sync", flush=True)
PY

echo "== 2. benchmark"
$PY scripts/bench.py --device "$DEV" $BENCH --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt"

echo "== 3. the goal: $EPOCHS epochs of K=512 VQ-EMA in bf16"
DATA="data.synthetic=true data.subset=$N data.test_subset=$NT"
if [ -z "${DRY:-}" ] && [ -f "${VQBA_DATA:-/nonexistent}/cifar-10-batches-py/test_batch" ]; then DATA=""; fi
PREC=bf16; [ "$DEV" = cpu ] && PREC=fp32   # bf16 autocast on this CPU is ~10x slower (measured); the dry run checks the plumbing
t0=$(date +%s)
$PY scripts/train.py --config configs/vqema.yaml --epochs $EPOCHS --name goal --device "$DEV" --quiet $DATA train.precision=$PREC out_dir="$OUT/exp" 2>&1 | tee "$OUT/goal.txt"
echo "wall: $(( $(date +%s) - t0 )) s (the import of torch and the data's upload included)" | tee -a "$OUT/goal.txt"
cp "$OUT/exp/goal/metrics.jsonl" "$OUT/goal_metrics.jsonl"; rm -rf "$OUT/exp"

if [ -z "$DATA" ]; then echo "== 4. the full tier's plan"; $PY scripts/full_tier.py --device "$DEV" --plan-only 2>&1 | tee "$OUT/tier_plan.txt"; fi
echo "== done: $OUT"
