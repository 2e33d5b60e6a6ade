"""U-Net against RUnet: the regularized softmax's ablation on equal budgets, seeds, data and network.

Arms (each trained with training.train on the same data, seeds and step budget; every other option shared):

- ``unet``: a plain softmax head (the U-Net);
- ``runet``: the regularized softmax with a learnable lambda (the paper), starting at ``lam_init``;
- ``fixed-<lam>``: the regularized softmax forced on with a fixed lambda;
- ``runet-it<n>``: ``runet`` with n primal-dual iterations instead of the paper's one;
- ``unet+layer-<lam>`` (no training): the ``unet`` arm's network with the regularized softmax applied at inference
  only, to see whether the layer is a free smoothing.

Every checkpoint (best.pt of each run) is scored on the held-out folders through the inference pipeline
(stride "auto", all phases): DSC and NSD (1 mm) per organ after the largest-component step, and before it the number
of connected components per organ (26-connectivity; the paper's "piece-wise constant" argument) and the
surface-to-volume ratio of the masks (exposed voxel faces' area / volume, 1/mm). The layer's cost at inference
(seconds and peak memory of one forward window, with and without it) is measured once on the shipped config.

    python -m training.ablation --data DIR --heldout DIR [DIR ...] --out RUNS --seeds 0 1 2 \
        --arms unet runet fixed-1 --infer-lams 0.5 1 2 -- [training.train options shared by every arm]

Runs resume where they stopped (training.train's own resume), so the same command continues an interrupted
ablation. Writes RUNS/ablation.csv (one row per arm, seed, case and organ; rows of the arms and seeds that earlier
invocations scored into RUNS are kept) and prints the summary table of every row.
"""

from __future__ import annotations

import copy
import csv
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cc3d
import numpy as np
import torch

from evaluation.metrics import score_labels
from inference.checkpoint import Checkpoint, load_checkpoint
from inference.engine import Segmenter
from inference.postprocess import keep_largest_components
from inference.regularized_softmax import RegularizedSoftmax
from inference.task import ORGANS
from niftiio.command_line import UsageParser
from training.config import parse_args as parse_train_args
from training.data import find_pairs, read_pair
from training.train import train


def arm_options(arm: str) -> list[str]:
    """training.train options of a trained arm: "unet", "runet", "fixed-<lambda>" or "runet-it<iterations>"."""
    if arm == "unet":
        return ["--no-regularized-softmax"]
    if arm == "runet":
        return ["--regularized-softmax", "--lam-learnable"]
    if arm.startswith("fixed-"):
        lam = float(arm.removeprefix("fixed-"))
        if lam <= 0:
            raise ValueError(f"{arm}: a fixed lambda must be > 0")
        return ["--regularized-softmax", "--no-lam-learnable", "--lam-init", str(lam)]
    if arm.startswith("runet-it") and arm.removeprefix("runet-it").isdigit():
        iterations = int(arm.removeprefix("runet-it"))
        if iterations < 1:
            raise ValueError(f"{arm}: at least one iteration")
        return arm_options("runet") + ["--tv-iterations", str(iterations)]
    raise ValueError(f"unknown arm {arm!r} (unet, runet, fixed-<lambda>, runet-it<iterations>)")


def with_layer(ckpt: Checkpoint, lam: float, step: float) -> Checkpoint:
    """A copy of a plain-softmax checkpoint whose head is the regularized softmax with a fixed ``lam``."""
    model = copy.deepcopy(ckpt.model)
    model.activation = RegularizedSoftmax(step=step, lam_init=lam, learnable=False)
    return replace(ckpt, model=model)


def surface_to_volume(mask: np.ndarray, spacing_zyx_mm: Sequence[float]) -> float:
    """Area of the exposed voxel faces of a boolean (z, y, x) mask over its volume, in 1/mm (nan when empty)."""
    n = int(np.count_nonzero(mask))
    if n == 0:
        return float("nan")
    sz, sy, sx = (float(s) for s in spacing_zyx_mm)
    padded = np.pad(mask, 1)
    area = 0.0
    for axis, face in ((0, sy * sx), (1, sz * sx), (2, sz * sy)):
        area += face * int(np.count_nonzero(np.diff(padded, axis=axis)))
    return area / (n * sz * sy * sx)


@dataclass(frozen=True)
class CaseOrgan:
    """One arm, seed, case and organ."""

    arm: str
    seed: int
    case: str
    organ: str
    dsc: float
    nsd: float
    components: int  # before post-processing
    surface_to_volume: float  # 1/mm, before post-processing
    seconds: float  # the case's segmentation time


def score_checkpoint(ckpt: Checkpoint, folders: Sequence[Path], arm: str, seed: int) -> list[CaseOrgan]:
    """Rows for every case (organ present in the reference or the prediction) of the FLARE-layout folders."""
    seg = Segmenter(ckpt, torch.device("cpu"), batch_size=2, postprocess="none")
    rows = []
    for folder in folders:
        for pair in find_pairs(folder):
            volume, gt = read_pair(pair)
            t0 = time.perf_counter()
            raw = seg.segment(volume.image, volume.spacing_zyx)
            labels = keep_largest_components(raw)
            seconds = time.perf_counter() - t0
            scores = score_labels(gt, labels, volume.spacing_zyx)
            components = cc3d.connected_components(raw, connectivity=26)
            for label, organ in ORGANS.items():
                if not (gt == label).any() and not (labels == label).any():
                    continue
                n_comp = len(np.unique(components[raw == label]))
                dsc, nsd = scores[label]
                s2v = surface_to_volume(raw == label, volume.spacing_zyx)
                rows.append(CaseOrgan(arm, seed, pair.name, organ, dsc, nsd, n_comp, s2v, seconds))
    return rows


_HEAD_RSS = """
import resource, sys, torch
torch.set_num_threads(1)
from inference.regularized_softmax import RegularizedSoftmax
logits = torch.randn({shape})
head = RegularizedSoftmax({step}, 1.0, learnable=False) if sys.argv[1] == "regularized" else torch.nn.Softmax(dim=1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with torch.inference_mode():
    head(logits)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def layer_cost(ckpt: Checkpoint, window: tuple[int, int, int] = (128, 128, 128), repeats: int = 3) -> dict[str, float]:
    """The head's cost at inference on a (1, C, *window) float32 logits tensor, with and without the layer.

    Returns {"network_s", "softmax_s", "regularized_s"}: best-of-``repeats`` seconds of the network up to the logits
    and of each head; {"softmax_mib", "regularized_mib"}: the head's own peak resident memory above the logits (MiB),
    each measured in a fresh process (ru_maxrss before and after the head).
    """
    model = copy.deepcopy(ckpt.model).eval()
    x = torch.randn(1, 1, *window)
    heads = {"softmax": torch.nn.Softmax(dim=1), "regularized": RegularizedSoftmax(ckpt.config.tv_step, 1.0, False)}
    out: dict[str, float] = {}
    with torch.inference_mode():
        out["network_s"] = _best_time(lambda: model.logits(x), repeats)
        logits = model.logits(x)
        for name, head in heads.items():
            out[f"{name}_s"] = _best_time(lambda h=head: h(logits), repeats)
    shape = (1, ckpt.config.num_classes, *window)
    code = _HEAD_RSS.format(shape=shape, step=ckpt.config.tv_step)
    root = Path(__file__).resolve().parents[1]
    for name in heads:
        done = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True, cwd=root, check=True)
        out[f"{name}_mib"] = int(done.stdout.strip()) / 1024  # ru_maxrss is in KiB on Linux
    return out


def _best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def summary(rows: Sequence[CaseOrgan]) -> str:
    """Markdown: per arm, mean over seeds and cases of DSC / NSD / components / surface-to-volume per organ."""
    arms = list(dict.fromkeys(r.arm for r in rows))
    lines = [
        "| arm | seeds | " + " | ".join(f"{o} DSC / NSD / comp. / S:V" for o in ORGANS.values()) + " |",
        "|---" * (2 + len(ORGANS)) + "|",
    ]
    for arm in arms:
        mine = [r for r in rows if r.arm == arm]
        cells = []
        for organ in ORGANS.values():
            rs = [r for r in mine if r.organ == organ]
            if not rs:
                cells.append("-")
                continue
            cells.append(
                f"{np.mean([r.dsc for r in rs]):.3f} / {np.mean([r.nsd for r in rs]):.3f} / "
                f"{np.mean([r.components for r in rs]):.1f} / {_finite_mean([r.surface_to_volume for r in rs]):.3f}"
            )
        lines.append(f"| {arm} | {len({r.seed for r in mine})} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _finite_mean(values: Sequence[float]) -> float:
    """Mean of the finite values; nan when there is none."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def read_rows(path: Path) -> list[CaseOrgan]:
    """The rows of an ablation.csv that :func:`write_rows` wrote; [] when there is no such file."""
    if not path.is_file():
        return []
    types = {name: f.type for name, f in CaseOrgan.__dataclass_fields__.items()}
    cast = {"int": int, "float": float, "str": str}
    with open(path, newline="") as f:
        return [CaseOrgan(**{k: cast[types[k]](v) for k, v in row.items()}) for row in csv.DictReader(f)]


def merge_rows(earlier: Sequence[CaseOrgan], new: Sequence[CaseOrgan]) -> list[CaseOrgan]:
    """``earlier`` rows of the (arm, seed) pairs that ``new`` does not score, then ``new``: an ablation run in
    several invocations into one folder keeps every arm's rows, and a rescored pair replaces its old rows."""
    scored = {(r.arm, r.seed) for r in new}
    return [r for r in earlier if (r.arm, r.seed) not in scored] + list(new)


def write_rows(rows: Sequence[CaseOrgan], path: Path) -> None:
    fields = list(CaseOrgan.__dataclass_fields__)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        w.writerows([getattr(r, k) for k in fields] for r in rows)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    shared = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    p = UsageParser(prog="python -m training.ablation", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="FLARE-layout training folder shared by every arm")
    p.add_argument("--heldout", type=Path, nargs="+", required=True, help="FLARE-layout folders to score on")
    p.add_argument("--out", type=Path, required=True, help="folder of the runs (<arm>-s<seed>/) and ablation.csv")
    p.add_argument(
        "--arms", nargs="+", default=["unet", "runet", "fixed-1"], help="trained arms (default: %(default)s)"
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds of every arm (default: 0)")
    p.add_argument(
        "--infer-lams", type=float, nargs="*", default=[0.5, 1.0, 2.0],
        help="lambdas applied at inference only to the unet arm (default: %(default)s)",
    )  # fmt: skip
    p.add_argument("--score-only", action="store_true", help="score the runs already in --out, train nothing")
    p.add_argument(
        "--cost-window", type=int, nargs=3, default=None, metavar=("D", "H", "W"),
        help="also time the head with and without the layer on one window of this size (default: not measured)",
    )  # fmt: skip
    args = p.parse_args(own)
    rows: list[CaseOrgan] = []
    lams: list[str] = []
    for arm in args.arms:
        for seed in args.seeds:
            run = args.out / f"{arm}-s{seed}"
            if not args.score_only:
                opts = ["--data", str(args.data), "--out", str(run), "--seed", str(seed)] + shared + arm_options(arm)
                train(parse_train_args(opts))
            best = run / "best.pt"
            ckpt = load_checkpoint(best if best.is_file() else run / "last.pt", verify=False)
            rows += score_checkpoint(ckpt, args.heldout, arm, seed)
            if isinstance(ckpt.model.activation, RegularizedSoftmax):
                lams.append(f"{arm} seed {seed}: lambda {ckpt.model.activation.lam_value:.4f}")
            if arm == "unet":
                for lam in args.infer_lams:
                    layered = with_layer(ckpt, lam, ckpt.config.tv_step)
                    rows += score_checkpoint(layered, args.heldout, f"unet+layer-{lam:g}", seed)
            print(summary(rows), file=sys.stderr)
    rows = merge_rows(read_rows(args.out / "ablation.csv"), rows)
    write_rows(rows, args.out / "ablation.csv")
    print(summary(rows))
    print("\n".join(lams))
    if args.cost_window:
        print(f"layer cost on one {tuple(args.cost_window)} window: {layer_cost(ckpt, tuple(args.cost_window))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
