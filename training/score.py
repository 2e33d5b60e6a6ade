"""Score a checkpoint on a FLARE-layout folder through the inference pipeline (for model cards and comparisons).

    python -m training.score --data FOLDER [--weights W.pt] [--stride auto|4|2|1] [--out scores.json]

Each image is segmented by inference.runner.segment_cases (the reading, planning and per-case isolation of
`python -m inference.predict`) with the plan and engine that predict uses by default (README.md, "Options"), then
scored per organ with evaluation.metrics.score_labels (DSC, NSD at 1 mm) against its label in canonical
orientation: the numbers that predict followed by evaluate give. Organs absent from both the label and the
prediction are left out of the table. The table goes to stdout, progress to stderr; exit code 1 when a case
failed (it is left out of the table), 2 for usage errors and folders that are not FLARE-layout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from evaluation.metrics import score_labels
from inference.checkpoint import DEFAULT_WEIGHTS, load_checkpoint
from inference.cli import UsageParser, log
from inference.ct_io import CTVolume
from inference.engine import Segmenter
from inference.engine_options import EngineOptions, add_engine_options
from inference.options import OptionError
from inference.plan import STRIDE_CHOICES, PlanOptions
from inference.runner import segment_cases
from inference.task import ORGANS
from training.data import DataError, find_pairs, read_label


def score_folder(
    weights: Path,
    data: Path,
    plan: PlanOptions = PlanOptions(),
    engine: EngineOptions = EngineOptions(),
    verify: bool = True,
) -> dict:
    """{case: {"seconds": s, "stride": k, organ name: {"dsc", "nsd", "gt_voxels", "pred_voxels"}}}. A case that
    fails (unreadable, a label that does not fit) is logged and left out.

    plan, engine: predict's options (its defaults by default: the stride chosen per case from its spacing, every
    phase, the checkpoint's window; engine.postprocess "none" scores the network's label map). verify: check the
    checkpoint's sha256 against the SHA256SUMS beside it.
    """
    pairs = {pair.name: pair for pair in find_pairs(data)}
    segmenter = Segmenter.from_options(load_checkpoint(weights, verify=verify), engine, plan)
    out: dict = {}

    def score(name: str, volume: CTVolume, pred: np.ndarray) -> None:
        gt = read_label(pairs[name], volume)
        scores = score_labels(gt, pred, volume.spacing_zyx, labels=tuple(ORGANS))
        row: dict = {}
        for label, organ in ORGANS.items():
            n_gt, n_pred = int((gt == label).sum()), int((pred == label).sum())
            if n_gt or n_pred:
                dsc, nsd = scores[label]
                row[organ] = {"dsc": dsc, "nsd": nsd, "gt_voxels": n_gt, "pred_voxels": n_pred}
        out[name] = row

    records = segment_cases([pair.image for pair in pairs.values()], segmenter, on_labels=score)
    done = (r for r in records if r.name in out)
    return {r.name: {"seconds": round(r.seconds, 1), "stride": r.stride} | out[r.name] for r in done}


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
        choices=STRIDE_CHOICES,
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
    try:
        plan, engine = PlanOptions.from_args(args), EngineOptions.from_args(args)
    except OptionError as exc:
        p.error(exc.as_option())
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        scores = score_folder(args.weights, args.data, plan, engine)
    except (DataError, ValueError) as exc:  # a folder that is not FLARE-layout, a window the network cannot take
        log(f"error: {exc}")
        return 2
    print(table(scores))
    if args.out:
        args.out.write_text(json.dumps(scores, indent=1))
    return 0 if len(scores) == len(find_pairs(args.data)) else 1


if __name__ == "__main__":
    sys.exit(main())
