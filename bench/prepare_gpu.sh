#!/usr/bin/env bash
# Get the GPU benchmarks (bench/gpu_dped.py, bench/gpu_media.py, bench/gpu_pipeline.py) ready
# for a GPU machine that has JAX with CUDA but no network access to PyPI, from a machine that
# has it. (With network access on the GPU machine, `pip install keras av pydantic` there is all
# this does.)
#
#   * .whl/           wheels of keras, av (PyAV) and pydantic with their requirements, for the
#                     GPU machine's Python (GPU_PYTHON, default 3.12) on manylinux x86_64;
#                     git-ignored through .git/info/exclude.
#   * bench/_weights/ the DPED iphone checkpoint (git-ignored by .gitignore), so that the
#                     benchmarks use the real model (they fall back to random weights, with a
#                     note, without it).
#
# Copy the checkout (with .whl/ and bench/_weights/) to the GPU machine, then there:
#   python3 -m pip install --no-index --find-links .whl keras av pydantic
# pip takes what the machine already has (numpy, JAX's requirements) and the rest from .whl/.
#
# Usage (repo root or anywhere):
#   bash bench/prepare_gpu.sh        # GPU_PYTHON=3.11 KERAS_VERSION=... NHANCE_MODELS=... to override
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

GPU_PYTHON="${GPU_PYTHON:-3.12}"
KERAS_VERSION="${KERAS_VERSION:-3.15.1}"
MODELS="${NHANCE_MODELS:-../shared/models/dped}"
PY="${PYTHON:-python3}"
AV_SPEC="av"
if "$PY" -c "import av" 2>/dev/null; then  # the PyAV this checkout was tested with
  AV_SPEC="av==$("$PY" -c 'import av; print(av.__version__)')"
fi

# 1. git-ignore .whl/
GIT_DIR="$(git rev-parse --git-dir)"
mkdir -p "$GIT_DIR/info"
touch "$GIT_DIR/info/exclude"
grep -qxF '/.whl/' "$GIT_DIR/info/exclude" || echo '/.whl/' >> "$GIT_DIR/info/exclude"

# 2. wheels, with their requirements, for the GPU machine's Python and platform
mkdir -p .whl
"$PY" -m pip download -q --only-binary=:all: --python-version "$GPU_PYTHON" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl "keras==${KERAS_VERSION}" "$AV_SPEC" "pydantic>=2"

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
echo "total: $(du -shc .whl bench/_weights | tail -1 | cut -f1)"
cat <<'NEXT'

On the GPU machine, in the checkout:

  python3 -m pip install --no-index --find-links .whl keras av pydantic
  KERAS_BACKEND=jax python3 bench/gpu_pipeline.py --out gpu_pipeline.json
  KERAS_BACKEND=jax python3 bench/gpu_dped.py --out gpu_dped.json
  python3 bench/gpu_media.py --out gpu_media.json
NEXT
