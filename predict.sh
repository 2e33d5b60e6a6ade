#!/bin/sh
# The container's entry point: segment every <case>_0000.nii.gz in $INPUT_DIR into $OUTPUT_DIR.
# The organizers run it as `sh predict.sh`; extra arguments go to the CLI (python -m inference.predict --help).
# $PYTHON picks the interpreter (default python3); the exit code is the CLI's, or 2 with one line on stderr when
# the interpreter or one of the packages the CLI needs is missing.
here=$(cd "$(dirname "$0")" && pwd) || exit 2
py="${PYTHON:-python3}"
if ! command -v "$py" >/dev/null 2>&1; then
    echo "predict.sh: no Python interpreter '$py' (set PYTHON to the one that has requirements.txt installed)" >&2
    exit 2
fi
missing=$("$py" -c 'import importlib.util as u
print(" ".join(m for m in ("torch", "SimpleITK", "numpy", "scipy", "cc3d", "tqdm") if u.find_spec(m) is None))') || {
    echo "predict.sh: '$py' does not run Python" >&2
    exit 2
}
if [ -n "$missing" ]; then
    echo "predict.sh: '$py' lacks the packages $missing (pip install -r $here/requirements.txt, or set PYTHON to the environment's python)" >&2
    exit 2
fi
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH
exec "$py" -m inference.predict \
    -i "${INPUT_DIR:-/workspace/inputs}" \
    -o "${OUTPUT_DIR:-/workspace/outputs}" \
    "$@"
