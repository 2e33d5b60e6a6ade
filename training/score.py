"""Score a checkpoint on a FLARE-layout folder through the inference pipeline (for model cards and comparisons).

python -m training.score --weights W.pt --data FOLDER [--stride 4] [--window 128] [--out scores.json] [--no-postprocess]

Each image is read with inference.io.read_ct, segmented by inference.engine.Segmenter (all stride**2 phases,
z-windows overlapping by half, largest-component post-processing) and scored per organ with
evaluation.metrics.score_labels (DSC, NSD at 1 mm) against its label in canonical orientation. Organs absent
from both the label and the prediction are left out of the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from evaluation.metrics import ORGANS, score_labels
from inference.checkpoint import load_checkpoint
from inference.engine import Segmenter
from training.data import find_pairs, read_pair
from training.validate import validation_plan


def score_folder(
    weights: Path, data: Path, stride: int = 4, window: int = 128, verify: bool = True, postprocess: bool = True
) -> dict:
    """{case: {organ name: {"dsc", "nsd", "gt_voxels", "pred_voxels"}, "seconds": s}}.

    postprocess=False scores the network's label map before the largest-component step.
    """
    ckpt = load_checkpoint(weights, verify=verify)
    plan = validation_plan(stride, window, ckpt.config.size_multiple)
    seg = Segmenter(ckpt, torch.device("cpu"), plan, batch_size=2, postprocess=postprocess)
    out: dict = {}
    for pair in find_pairs(data):
        t0 = time.perf_counter()
        volume, gt = read_pair(pair)
        pred = seg.segment(volume)
        scores = score_labels(gt, pred, volume.spacing_zyx, labels=tuple(ORGANS))
        row: dict = {"seconds": round(time.perf_counter() - t0, 1)}
        for label, name in ORGANS.items():
            n_gt, n_pred = int((gt == label).sum()), int((pred == label).sum())
            if n_gt or n_pred:
                row[name] = {"dsc": scores[label][0], "nsd": scores[label][1], "gt_voxels": n_gt, "pred_voxels": n_pred}
        out[pair.name] = row
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
    p = argparse.ArgumentParser(prog="python -m training.score", description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--window", type=int, default=128)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the scores as JSON here")
    p.add_argument("--no-postprocess", action="store_true", help="score before the largest-component step")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    scores = score_folder(args.weights, args.data, args.stride, args.window, postprocess=not args.no_postprocess)
    print(table(scores))
    if args.out:
        args.out.write_text(json.dumps(scores, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
