#!/usr/bin/env bash
# Prepare what bench/gpu_dped.py needs on the GPU machine (device tool), from this machine.
#
#   * .whl/           Keras 3 and those of its requirements the GPU image lacks (it has JAX,
#                     numpy, absl-py, rich, h5py, ml-dtypes, packaging; not keras, namex, optree),
#                     as CPython 3.12 manylinux x86_64 wheels. Git-ignored via .git/info/exclude.
#   * bench/_weights/ the DPED iphone checkpoint (git-ignored by .gitignore).
#
# Then prints the device `run` call to use. Usage (repo root or anywhere):
#   bash bench/prepare_gpu.sh            # KERAS_VERSION=3.15.1 NHANCE_MODELS=... to override
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

KERAS_VERSION="${KERAS_VERSION:-3.15.1}"
MODELS="${NHANCE_MODELS:-../shared/models/dped}"
PY="${PYTHON:-python3}"
# Packages the GPU image already holds (KINDS.md, "Python packages already there"), normalised.
PRESENT="absl-py numpy rich h5py ml-dtypes packaging jax jaxlib typing-extensions pygments markdown-it-py mdurl"

# 1. git-ignore .whl/
GIT_DIR="$(git rev-parse --git-dir)"
mkdir -p "$GIT_DIR/info"
touch "$GIT_DIR/info/exclude"
grep -qxF '/.whl/' "$GIT_DIR/info/exclude" || echo '/.whl/' >> "$GIT_DIR/info/exclude"

# 2. wheels
mkdir -p .whl
download() {
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl "$@"
}
norm() { echo "$1" | tr 'A-Z_.' 'a-z--'; }

rm -f .whl/keras-*.whl
download "keras==${KERAS_VERSION}"
KERAS_WHL="$(ls .whl/keras-"${KERAS_VERSION}"-*.whl)"
# Requirements of keras (no extras, no environment markers that exclude Linux/3.12 are used by keras)
REQS="$("$PY" - "$KERAS_WHL" <<'PYEOF'
import re, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    for line in z.read(meta).decode().splitlines():
        if line.startswith("Requires-Dist:") and "extra ==" not in line:
            print(re.match(r"Requires-Dist:\s*([A-Za-z0-9_.\-]+)", line).group(1))
PYEOF
)"
for req in $REQS; do
  name="$(norm "$req")"
  if [[ " $PRESENT " == *" $name "* ]]; then
    echo "  $name: already on the GPU image"
    continue
  fi
  # one version of each: drop older downloads of this name first
  rm -f .whl/"$(echo "$name" | tr '-' '_')"-*.whl .whl/"$name"-*.whl
  echo "  $name: downloading"
  download "$name"
done

# 3. weights
mkdir -p bench/_weights
for f in iphone_orig.index iphone_orig.data-00000-of-00001; do
  if [[ ! -f "$MODELS/$f" ]]; then
    echo "missing $MODELS/$f (set NHANCE_MODELS to the folder holding the DPED checkpoints)" >&2
    exit 2
  fi
  cp -f "$MODELS/$f" bench/_weights/
  chmod u+w "bench/_weights/$f"
done

echo
echo "wheels:"; ls -l .whl
echo "carried size: $(du -shc .whl bench/_weights | tail -1 | cut -f1) (limit 64 MiB with the working tree)"
cat <<'RUN'

Device call (tool `run`), carry [".whl", "bench/_weights"], timeout_s 420:

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; PYTHONUNBUFFERED=1 KERAS_BACKEND=jax python3 bench/gpu_dped.py --out $OUT/gpu_dped.json 2>&1 | tee $OUT/gpu_dped.log
RUN
