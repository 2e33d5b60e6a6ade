#!/usr/bin/env bash
# The GPU check of issue 6: the end-to-end pipeline on 512x512x{64,128,300} phantoms in float32, bfloat16 and
# float16 autocast, timed and GPU-memory-sampled as FLARE does it (bench/gpu_check.py says what each column is).
#
#   bash bench/gpu_check.sh                  # on a machine with an NVIDIA GPU (finishes in under 8 minutes)
#   bash bench/gpu_check.sh --fetch-wheels   # on the development machine: download the wheels the GPU machine lacks
#   bash bench/gpu_check.sh --cpu-dry-run    # on the development machine: every step at tiny sizes on the CPU
#
# The lent GPU machine has torch, numpy, scipy, tqdm and nvidia-ml-py but not SimpleITK nor connected-components-3d:
# they travel in $WHEELS_DIR (default .whl/, git-ignored through .git/info/exclude), as runet-site.tar.xz (what
# --fetch-wheels makes: the unpacked wheels, xz-compressed to fit the device tool's 64 MiB) or as plain wheels, and
# are unpacked into /tmp/runet-site when the import fails. Device tool: run(command="bash bench/gpu_check.sh",
# carry=[".whl"], timeout_s=540). The table goes to $OUT (the device tool's output
# folder) or bench/results/, as gpu_check.md and gpu_check.json. Extra arguments go to bench/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${WHEELS_DIR:-.whl}
RESULTS=${OUT:-bench/results}

case "${1:-}" in
--fetch-wheels)
    # SimpleITK's wheel alone is 53 MB: unpacked and recompressed with xz the two packages take 32 MB, which leaves
    # room for the working tree (checkpoint included) under the device tool's 64 MiB. Takes a few minutes.
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
    tmp=$(mktemp -d)
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$tmp/wheels" \
        SimpleITK==2.5.7 connected-components-3d==4.1.1
    mkdir -p "$tmp/site" "$WHEELS"
    for w in "$tmp"/wheels/*.whl; do "$PY" -m zipfile -e "$w" "$tmp/site"; done
    tar -C "$tmp/site" -cf - . | xz -9 -T0 >"$WHEELS/runet-site.tar.xz"
    rm -rf "$tmp"
    tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
    packed=$(du -cb "$WHEELS"/* | tail -1 | cut -f1)
    echo "working tree $((tree / 1048576)) MiB + $WHEELS $((packed / 1048576)) MiB: must stay under 64 MiB to travel"
    exit 0
    ;;
--cpu-dry-run)
    shift
    exec "$PY" bench/gpu_check.py --out "$RESULTS" --device cpu --quick --precisions float32 bfloat16 "$@"
    ;;
esac

if ! "$PY" -c 'import SimpleITK, cc3d' 2>/dev/null; then
    if [ -f "$WHEELS/runet-site.tar.xz" ]; then
        mkdir -p /tmp/runet-site && tar -C /tmp/runet-site -xJf "$WHEELS/runet-site.tar.xz"
    elif compgen -G "$WHEELS/*.whl" >/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/runet-site \
            "$WHEELS"/*.whl
    else
        echo "SimpleITK/cc3d missing and neither $WHEELS/runet-site.tar.xz nor wheels in $WHEELS" >&2
        exit 2
    fi
    export PYTHONPATH="/tmp/runet-site${PYTHONPATH:+:$PYTHONPATH}"
    "$PY" -c 'import SimpleITK, cc3d'
fi
"$PY" -c 'import pynvml' 2>/dev/null || echo "warning: nvidia-ml-py missing: no GPU memory sampling" >&2
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
export PYTHONUNBUFFERED=1
timeout 460 "$PY" bench/gpu_check.py --out "$RESULTS" --device cuda "$@"
