#!/usr/bin/env bash
# The GPU check: the end-to-end pipeline on 512x512x{64,128,300} phantoms in float32, bfloat16 and float16
# autocast, timed and GPU-memory-sampled as FLARE does it (bench/gpu_check.py says what each column is).
#
#   bash bench/gpu_check.sh [--out DIR] [ARGS]     # on a machine with an NVIDIA GPU (about 8 minutes on one GPU)
#   bash bench/gpu_check.sh --fetch-wheels [--python-version X.Y]
#                                                  # on a machine with internet: wheels for a GPU machine without
#   bash bench/gpu_check.sh --cpu-dry-run [--out DIR] [ARGS]
#                                                  # every step at tiny sizes on the CPU, to try the script anywhere
#
# The GPU machine needs a copy of this tree and Python with torch (CUDA), numpy, scipy and tqdm; nvidia-ml-py for
# the memory columns. SimpleITK and connected-components-3d, when it lacks them and has no internet, come from
# $WHEELS_DIR (default .whl/, git-ignored): --fetch-wheels downloads their manylinux x86_64 wheels for Python X.Y
# (default 3.12) and packs them unpacked as $WHEELS_DIR/runet-site.tar.xz (32 MB instead of 58 MB of wheels);
# plain wheels in $WHEELS_DIR work too. They are unpacked into a temporary folder only when the import fails.
# The table goes to --out DIR, else $GPU_CHECK_OUT, else bench/results/, as gpu_check.md and gpu_check.json.
# ARGS go to bench/gpu_check.py (--precisions, --depths, --phases, --batch-size). $PYTHON picks the interpreter
# (default python3); $GPU_CHECK_TIMEOUT_S (default 460) stops a run that hangs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${WHEELS_DIR:-.whl}
RESULTS=${GPU_CHECK_OUT:-bench/results}
MODE=gpu
WHEEL_PYTHON=3.12
ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
    --fetch-wheels) MODE=fetch ;;
    --cpu-dry-run) MODE=cpu ;;
    --out)
        [ $# -ge 2 ] || { echo "gpu_check.sh: --out needs a folder" >&2; exit 2; }
        RESULTS=$2
        shift
        ;;
    --out=*) RESULTS=${1#--out=} ;;
    --python-version)
        [ $# -ge 2 ] || { echo "gpu_check.sh: --python-version needs X.Y" >&2; exit 2; }
        WHEEL_PYTHON=$2
        shift
        ;;
    *) ARGS+=("$1") ;;
    esac
    shift
done

case "$MODE" in
fetch)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$WHEEL_PYTHON" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$tmp/wheels" \
        SimpleITK==2.5.7 connected-components-3d==4.1.1
    mkdir -p "$tmp/site" "$WHEELS"
    for w in "$tmp"/wheels/*.whl; do "$PY" -m zipfile -e "$w" "$tmp/site"; done
    tar -C "$tmp/site" -cf - . | xz -9 -T0 >"$WHEELS/runet-site.tar.xz.part"
    mv "$WHEELS/runet-site.tar.xz.part" "$WHEELS/runet-site.tar.xz"
    echo "$WHEELS/runet-site.tar.xz: SimpleITK and connected-components-3d for Python $WHEEL_PYTHON," \
        "$(($(du -b "$WHEELS/runet-site.tar.xz" | cut -f1) / 1048576)) MiB; copy it with the tree to the GPU machine"
    exit 0
    ;;
cpu)
    exec "$PY" bench/gpu_check.py --out "$RESULTS" --device cpu --quick --precisions float32 bfloat16 ${ARGS[@]+"${ARGS[@]}"}
    ;;
esac

if ! "$PY" -c 'import SimpleITK, cc3d' 2>/dev/null; then
    site=$(mktemp -d)
    trap 'rm -rf "$site"' EXIT
    if [ -f "$WHEELS/runet-site.tar.xz" ]; then
        tar -C "$site" -xJf "$WHEELS/runet-site.tar.xz"
    elif compgen -G "$WHEELS/*.whl" >/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$WHEELS"/*.whl
    else
        echo "gpu_check.sh: SimpleITK or connected-components-3d is missing, and $WHEELS holds neither" \
            "runet-site.tar.xz nor wheels (make them with: bash bench/gpu_check.sh --fetch-wheels)" >&2
        exit 2
    fi
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    "$PY" -c 'import SimpleITK, cc3d'
fi
"$PY" -c 'import pynvml' 2>/dev/null || echo "warning: nvidia-ml-py missing: no GPU memory sampling" >&2
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
export PYTHONUNBUFFERED=1
timeout "${GPU_CHECK_TIMEOUT_S:-460}" "$PY" bench/gpu_check.py --out "$RESULTS" --device cuda ${ARGS[@]+"${ARGS[@]}"}
