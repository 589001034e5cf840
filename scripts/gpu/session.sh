#!/usr/bin/env bash
# A lent GPU's session, as few device calls as CIFAR-10's size allows (README: "On a GPU"). CIFAR-10 (178 MB) travels in
# parts (../shared/tools/cifar-parts.sh split ../shared/data . 46: four git-ignored .cifar-part-N folders), one carried a
# call. A carried folder is gone from the repository there at the next call (seen on the H200, 2026-12-04), so each call
# copies its part to /tmp/cifar-parts, which lasts while the machine is warm; the checks write to /tmp/gpucheck for the
# same reason. The last call packs the new records (records.tgz) and the logs (logs.tgz) into $OUT.
#   1st call:  run(command="bash scripts/gpu/session.sh start", carry=[".whl", ".cifar-part-1"])   the GPU checks start in the background
#              (keep helpers off the device: its 15 minutes are the session's, all calls together)
#   2nd-4th:   run(command="bash scripts/gpu/session.sh part", carry=[".cifar-part-N"])           nothing else: the data arrives
#   last:      run(command="VQBA_CODE_VERSION=<commit> bash scripts/gpu/session.sh runs 150 sweeps/rd.yaml sweeps/study.yaml", carry=[".cifar-part-4"], timeout_s=290)
#              (2026-12-04: 16 runs shared the H200, 91-243 s a 10-epoch run; 23 runs in 270 s with a budget of 150 s)
#              waits for the checks (at most $CHECK_WAIT s, default 90), joins the data, runs every pending run of the
#              sweeps (scripts/full_tier.py: one measured epoch, then several runs sharing the GPU, none started after
#              BUDGET s), then packs the new records (records.tgz) and the checks' and tier's logs (logs.tgz) into $OUT.
#   here, dry: DRY=1 bash scripts/gpu/session.sh start; DRY=1 bash scripts/gpu/session.sh runs 60 <a tiny synthetic sweep>
#              (CPU, synthetic data, one epoch: tests/test_full_tier.py runs it)
set -euo pipefail
cmd=${1:-}; shift || true
OUT=${OUT:-$(mktemp -d)}; G=${GPU_STATE:-/tmp/gpucheck}; P=${GPU_PARTS:-/tmp/cifar-parts}; mkdir -p "$G" "$P" "$OUT"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
for d in .cifar-part-*; do [ -d "$d" ] && cp -r "$d" "$P/"; done   # this call's part, kept outside the repository
if compgen -G ".whl/*.whl" >/dev/null && [ ! -d /tmp/site ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
[ -d /tmp/site ] && export PYTHONPATH=$PYTHONPATH:/tmp/site
PY=${PYTHON:-python3}
case "$cmd" in
  start)
    date +%s > "$G/t0"; rm -f "$G/check.done"
    # a new session: it outlives this call and runs on while the data arrives
    setsid bash -c "OUT='$G/check' bash scripts/gpu/check.sh > '$G/check.log' 2>&1; echo \$? > '$G/check.done'" < /dev/null > /dev/null 2>&1 &
    echo "checks started in the background (log: $G/check.log)"; nvidia-smi -L 2>/dev/null || true ;;
  part)
    ls -d "$P"/.cifar-part-* 2>/dev/null | while read -r d; do echo "$(du -sm "$d" | cut -f1) MiB  $d"; done
    tail -n 3 "$G/check.log" 2>/dev/null || true ;;
  runs)
    budget=${1:?budget in seconds}; shift; [ $# -gt 0 ] || { echo "name the sweeps" >&2; exit 2; }
    for _ in $(seq "${CHECK_WAIT:-90}"); do [ -f "$G/check.done" ] && break; sleep 1; done
    if [ -f "$G/check.done" ]; then echo "checks finished, exit status $(cat "$G/check.done")"; else echo "checks still running: the runs start beside them"; fi
    data=/tmp/vqba_data
    if [ -z "${DRY:-}" ]; then
      [ -f "$data/cifar-10-batches-py/test_batch" ] || { mkdir -p "$data"; cat "$P"/.cifar-part-*/p* | tar -C "$data" -xf -
        if [ -f "$P/.cifar-part-1/MD5SUMS" ]; then (cd "$data" && md5sum --quiet -c "$P/.cifar-part-1/MD5SUMS"); fi; echo "CIFAR-10 joined and checked"; }
      export VQBA_DATA=$data; dev=cuda; extra=()
    else dev=cpu; extra=(--max-parallel 2); fi
    touch "$G/runs.start"
    set +e
    $PY scripts/full_tier.py --sweep "$@" --device "$dev" --budget-s "$budget" "${extra[@]}" 2>&1 | tee "$G/tier.log"
    rc=${PIPESTATUS[0]}; set -e
    find results -name record.json -newer "$G/runs.start" -printf '%h\n' | sort > "$G/new_records.txt"
    echo "$(wc -l < "$G/new_records.txt") new record(s)"
    tar -czf "$OUT/records.tgz" -T "$G/new_records.txt"
    nvidia-smi > "$G/nvidia-smi.txt" 2>&1 || true
    tar -czf "$OUT/logs.tgz" -C "$G" --exclude='*.pt' .
    exit $rc ;;
  *) sed -n '2,15p' "$0" >&2; exit 2 ;;
esac
