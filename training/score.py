"""Score a checkpoint on a FLARE-layout folder through the inference pipeline (for model cards and comparisons).

    python -m training.score --data FOLDER [--weights W.pt] [--stride auto|4|2|1] [--out scores.json]

Each image is read with inference.ct_io.read_ct and segmented by inference.engine.Segmenter with the plan that
`python -m inference.predict` uses by default (the stride chosen from the spacing, all of its phases, z-windows
of 128 slices overlapping by half, short volumes run at their own depth, largest-component post-processing, the
same device, backend and precision choice), then scored per organ with evaluation.metrics.score_labels (DSC, NSD
at 1 mm) against its label in canonical orientation: the numbers that predict followed by evaluate give. Organs
absent from both the label and the prediction are left out of the table. The table goes to stdout, progress to
stderr.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from evaluation.metrics import score_labels
from inference.checkpoint import DEFAULT_WEIGHTS, load_checkpoint
from inference.cli import UsageParser, bar, log
from inference.device import resolve_precision, select_device
from inference.engine import Segmenter
from inference.plan import PlanOptions
from inference.postprocess import DEFAULT_RULE
from inference.predict import add_engine_options
from inference.task import ORGANS
from training.data import DataError, find_pairs, read_pair


def score_folder(
    weights: Path,
    data: Path,
    stride: int | str = "auto",
    window: int | None = None,
    verify: bool = True,
    postprocess: str = DEFAULT_RULE,
    device: str = "auto",
    precision: str = "auto",
    backend: str = "auto",
) -> dict:
    """{case: {organ name: {"dsc", "nsd", "gt_voxels", "pred_voxels"}, "seconds": s}}.

    stride: "auto" (predict's default: chosen per case from its spacing) or a fixed 4, 2 or 1; every phase of
    the stride runs. window: z-window depth in slices; None: the checkpoint's (predict's default).
    postprocess: predict's rule (inference.postprocess.RULES); "none" scores the network's label map.
    device, precision and backend are predict's options, with its defaults.
    """
    ckpt = load_checkpoint(weights, verify=verify)
    on = select_device(device)
    options = PlanOptions(stride=stride if stride == "auto" else int(stride), window=window)
    dtype = resolve_precision(precision, on)
    seg = Segmenter(ckpt, on, options, batch_size=2, precision=dtype, postprocess=postprocess, backend=backend)
    out: dict = {}
    pairs = find_pairs(data)
    for pair in bar(iterable=pairs, desc="cases", unit="case"):
        t0 = time.perf_counter()
        volume, gt = read_pair(pair)
        plan = seg.plan_for(volume.spacing_zyx)
        pred = seg.segment(volume.image, volume.spacing_zyx, plan=plan)
        scores = score_labels(gt, pred, volume.spacing_zyx, labels=tuple(ORGANS))
        row: dict = {"seconds": round(time.perf_counter() - t0, 1), "stride": plan.stride}
        for label, name in ORGANS.items():
            n_gt, n_pred = int((gt == label).sum()), int((pred == label).sum())
            if n_gt or n_pred:
                row[name] = {"dsc": scores[label][0], "nsd": scores[label][1], "gt_voxels": n_gt, "pred_voxels": n_pred}
        out[pair.name] = row
        log(f"{pair.name}: stride {row['stride']}, {row['seconds']:.1f} s")
    return out


def table(scores: dict) -> str:
    """Markdown table: one row per case, DSC / NSD per organ ('-' where the organ is in neither map)."""
    lines = ["| case | " + " | ".join(ORGANS.values()) + " |", "| --- |" + " --- |" * len(ORGANS)]
    for case, row in scores.items():
        cells = [f"{row[o]['dsc']:.3f} / {row[o]['nsd']:.3f}" if o in row else "-" for o in ORGANS.values()]
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    means = []
    for o in ORGANS.values():
        vals = [r[o] for r in scores.values() if o in r and r[o]["gt_voxels"] > 0]
        means.append(
            f"{np.mean([v['dsc'] for v in vals]):.3f} / {np.mean([v['nsd'] for v in vals]):.3f}" if vals else "-"
        )
    lines.append("| mean (cases with the organ) | " + " | ".join(means) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = UsageParser(prog="python -m training.score", description=__doc__)
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, metavar="PATH", help="checkpoint to score")
    p.add_argument("--data", type=Path, required=True, metavar="DIR", help="FLARE-layout folder of images and labels")
    p.add_argument(
        "--stride",
        default="auto",
        choices=("auto", "4", "2", "1"),
        help="in-plane stride of the phase split; auto: chosen per case from its spacing, as predict does",
    )
    p.add_argument(
        "--window", type=int, default=None, metavar="N", help="z-window depth in slices; default: the checkpoint's"
    )
    add_engine_options(p)
    p.add_argument("--threads", type=int, default=0, metavar="N", help="torch CPU threads; 0: torch's default")
    p.add_argument("--out", type=Path, default=None, metavar="PATH", help="also write the scores as JSON here")
    args = p.parse_args(argv)
    if not args.weights.is_file():
        p.error(f"--weights {args.weights}: checkpoint file not found")
    if args.window is not None and args.window < 1:
        p.error(f"--window must be >= 1, got {args.window}")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        scores = score_folder(
            args.weights,
            args.data,
            args.stride,
            args.window,
            postprocess=args.postprocess,
            device=args.device,
            precision=args.precision,
            backend=args.backend,
        )
    except (DataError, ValueError) as exc:  # a folder that is not FLARE-layout, a window the network cannot take
        log(f"error: {exc}")
        return 2
    print(table(scores))
    if args.out:
        args.out.write_text(json.dumps(scores, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
