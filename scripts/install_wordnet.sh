#!/usr/bin/env bash
# Install WordNet 3.0 for nltk (METEOR) without reaching nltk's downloader:
# Debian's wordnet-base + wordnet-sense-index, copied (nltk refuses symlinks out of its root)
# into DEST/corpora/wordnet together with the `lexnames` file Debian does not ship.
#   usage: scripts/install_wordnet.sh DEST   (e.g. .venv/nltk_data, found by nltk via sys.prefix)
set -euo pipefail
dest=${1:?usage: install_wordnet.sh NLTK_DATA_DIR}
src=/usr/share/wordnet
target="$dest/corpora/wordnet"

if [ -f "$target/lexnames" ] && [ -f "$target/data.noun" ]; then
  exit 0
fi
if [ ! -f "$src/data.noun" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages wordnet-base wordnet-sense-index" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      wordnet-base wordnet-sense-index >/dev/null
  else
    echo "WordNet is not installed: METEOR needs it. Run as root: apt-get install wordnet-base wordnet-sense-index," >&2
    echo "then: $0 $dest   (or set metrics.wordnet to an nltk_data folder holding corpora/wordnet)" >&2
    exit 0
  fi
fi
mkdir -p "$target"
for f in adj.exc adv.exc cntlist.rev data.adj data.adv data.noun data.verb index.adj index.adv \
         index.noun index.sense index.verb noun.exc verb.exc; do
  [ -f "$src/$f" ] && cp "$src/$f" "$target/$f"
done
# Lexicographer files (wninput(5) / lexnames(5)): number, name, syntactic category.
python3 - "$target/lexnames" <<'PY'
import sys
names = ("adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
         "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
         "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
         "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
         "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
         "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather "
         "adj.ppl").split()
pos = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
with open(sys.argv[1], "w") as f:
    for i, n in enumerate(names):
        f.write(f"{i:02d}\t{n}\t{pos[n.split('.')[0]]}\n")
PY
echo "WordNet installed for nltk in $target" >&2
