"""Convert a checkpoint's network for the OpenVINO backend ahead of its first case:

    python -m inference.warm_cache [--weights W.pt]

It builds the network exactly as ``python -m inference.predict --backend openvino`` does (batch norms folded) and
stores its conversion in the user cache folder (:func:`inference.user_cache.user_cache_dir`, ``$RUNET_CACHE_DIR``),
where predict finds it instead of converting again. The image runs it when it is built, with ``$RUNET_CACHE_DIR``
set to a folder inside the image, so that a fresh container (``docker run --rm``) starts on the CPU without the
conversion. Prints the folder; exit code 1 when the conversion could not be stored (no cache folder, not writable,
no openvino package), 2 for usage errors.
"""

from __future__ import annotations

import sys
from pathlib import Path

from inference.checkpoint import CheckpointError, default_weights, load_checkpoint
from inference.cli import UsageParser, log
from inference.engine import Segmenter
from inference.engine_options import EngineOptions
from inference.openvino_backend import import_openvino


def main(argv: list[str] | None = None) -> int:
    p = UsageParser(prog="python -m inference.warm_cache", description=__doc__)
    p.add_argument(
        "--weights",
        type=Path,
        default=default_weights(),
        metavar="PATH",
        help="checkpoint to convert (default: $RUNET_WEIGHTS or %(default)s)",
    )
    args = p.parse_args(argv)
    if not args.weights.is_file():
        p.error(f"--weights {args.weights}: checkpoint file not found")
    if import_openvino() is None:
        log("openvino is not installed: nothing to convert")
        return 1
    try:
        checkpoint = load_checkpoint(args.weights)
    except CheckpointError as exc:
        log(f"error: {exc}")
        return 1
    seg = Segmenter.from_options(checkpoint, EngineOptions(device="cpu", precision="float32", backend="openvino"))
    folder = seg.openvino_cache_folder
    if folder is None:
        log("the converted network could not be stored: no writable cache folder ($RUNET_CACHE_DIR)")
        return 1
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
