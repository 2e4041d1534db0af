#!/usr/bin/env bash
# The GPU check (issue 28): one call on a lent GPU machine proves dorl's CUDA paths and measures its GPU figures.
#
#   bash scripts/gpu/check.sh                      on the GPU machine, with .gpu-wheels carried (scripts/gpu/wheels.sh)
#   DORL_GPU_DRY_RUN=1 bash scripts/gpu/check.sh   here, on the CPU: tiny shapes, no installs, no nvidia-smi
#
# Writes $OUT/results.json (versions, nvidia-smi, each GPU test's outcome, the bench's figures with goals and
# verdicts, failures) and $OUT/check.log (everything printed); OUT defaults to build/gpu-check. The stages
# (install, versions, tests, bench) share one deadline, DORL_GPU_BUDGET_S (default 420 s) from the start: each
# has its own time limit under it, and one that fails or runs out of time is recorded while the next one runs.
# scripts/gpu/README.md says how to call it through the device tool.
set -uo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
OUT=${OUT:-build/gpu-check}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG=$OUT/check.log
: >"$LOG"
WHEELS=${DORL_GPU_WHEELS:-$REPO/.gpu-wheels}
PY=${PYTHON:-python3}
start=$(date +%s)
export DORL_GPU_DEADLINE=$((start + ${DORL_GPU_BUDGET_S:-420}))
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export DORL_CACHE=${DORL_CACHE:-$(mktemp -d /tmp/dorl-cache.XXXX)}

install_rc=skipped
if [ "${DORL_GPU_DRY_RUN:-0}" = 1 ]; then
  # the CPU: DeepSpeed's CPU accelerator, one thread per process (a shared machine), a nominal 1 TFLOP/s peak so
  # that the MFU arithmetic runs too
  export DS_ACCELERATOR=cpu OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} DORL_PEAK_TFLOPS=${DORL_PEAK_TFLOPS:-1}
  export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
else
  # The image's python3 holds torch (CUDA); the carried wheels go ahead of its packages, dorl runs from the tree.
  # a few CPU threads per process: the tests' tiny models run no faster on 16
  export DS_ACCELERATOR=cuda OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
  site=/tmp/dorl-site
  echo "==== install: $(ls "$WHEELS"/*.whl 2>/dev/null | wc -l) wheels from $WHEELS into $site" | tee -a "$LOG"
  t0=$(date +%s)
  timeout 90 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
    "$WHEELS"/*.whl >>"$LOG" 2>&1
  install_rc=$?
  if [ -f "$WHEELS/nltk_data.tar.xz" ]; then
    mkdir -p /tmp/nltk_data  # the archive holds corpora/wordnet
    timeout 30 tar -xJf "$WHEELS/nltk_data.tar.xz" -C /tmp/nltk_data >>"$LOG" 2>&1 || { [ "$install_rc" != 0 ] || install_rc=1; }
    export NLTK_DATA=/tmp/nltk_data
  fi
  install_s=$(($(date +%s) - t0))
  export PYTHONPATH=$site:$REPO PATH=$site/bin:$PATH DORL_GPU_TOKENIZER=$WHEELS/minilm
fi
# its progress and every stage's output go to the log; the summary table to stdout (and the log)
"$PY" scripts/gpu/check.py --out "$OUT" --install-rc "$install_rc" --install-s "${install_s:-0}" 2>>"$LOG" |
  tee -a "$LOG"
