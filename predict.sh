#!/bin/sh
# The container's entry point: segment every <case>_0000.nii.gz in $INPUT_DIR into $OUTPUT_DIR.
# The organizers run it as `sh predict.sh`; extra arguments go to the CLI (python -m inference.predict --help).
# $PYTHON picks the interpreter (default python3); the exit code is the CLI's.
here=$(cd "$(dirname "$0")" && pwd) || exit 2
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH
exec "${PYTHON:-python3}" -m inference.predict \
    -i "${INPUT_DIR:-/workspace/inputs}" \
    -o "${OUTPUT_DIR:-/workspace/outputs}" \
    "$@"
