"""A peer engine on identical work: MONAI's sliding_window_inference against our strided patch engine.

Both run the same network callable (the CLI's: folded batch norms, channels-last-3d, bf16 autocast where the CPU
supports it) over the same phase sub-volumes (vol[:, i::4, j::4], padded in-plane to the network's multiple, as
our engine builds them) with the same z-windows, batch and overlap; MONAI with mode="constant" (plain average of
overlapping windows). Our per-phase sums divided by the window coverage must equal MONAI's probabilities; reported:
the largest absolute difference, both times (best of N, interleaved), and ours over MONAI's (goal <= 1.0).
Window starts are checked to coincide (MONAI places them every int(window * (1 - overlap)) slices, we spread them
evenly; they agree for D = 64, 128, 192, 256, ...).

    python bench/bench_monai.py                   # 512x512x256 phantom, --phases 1 (3 windows per phase)
    python bench/bench_monai.py --phases 4        # 4 phases
    python bench/bench_monai.py --quick           # tiny volume and network (smoke test)
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine_line, markdown_table, phantom_case, publish  # noqa: E402
from bench_stages import make_segmenter  # noqa: E402

from inference.ct_io import read_ct  # noqa: E402
from inference.patching import iter_phase_sums, phase_input, round_up, window_coverage, z_windows  # noqa: E402
from niftiio.command_line import UsageParser


def monai_starts(depth: int, window: int, overlap: float) -> list[int]:
    """z-window starts that MONAI's sliding_window_inference uses along an axis of ``depth`` >= ``window``."""
    interval = int(window * (1 - overlap)) if window < depth else window
    interval = max(interval, 1)
    n = math.ceil((depth - window) / interval) + 1 if depth > window else 1
    return sorted({min(k * interval, depth - window) for k in range(n)})


def ours(volume: np.ndarray, seg, plan, pad_value: float) -> dict:
    """Mean probabilities per phase offset from our engine: (C, D, hi, wj) float32 tensors."""
    cover = torch.from_numpy(window_coverage(volume.shape[0], plan)).float()[None, :, None, None]
    c = seg.checkpoint.config.num_classes
    return {
        off: acc / cover
        for off, acc in iter_phase_sums(volume, seg.predict_fn, c, plan, seg.batch_size, seg.device, pad_value)
    }


def peer(volume: np.ndarray, seg, plan, pad_value: float) -> dict:
    """The same from MONAI's sliding_window_inference, one call per phase sub-volume."""
    from monai.inferers import sliding_window_inference

    d, h, w = volume.shape
    s = plan.stride
    depth, _ = z_windows(d, plan)
    hw = (round_up(-(-h // s), plan.size_multiple), round_up(-(-w // s), plan.size_multiple))
    win = min(plan.window, depth)
    out = {}
    for i, j in plan.offsets():
        x = torch.from_numpy(phase_input(volume, (i, j), plan, depth, hw, pad_value))[None, None]
        with torch.inference_mode():
            probs = sliding_window_inference(
                x.to(seg.device), (win, *hw), seg.batch_size, seg.predict_fn, overlap=plan.overlap, mode="constant"
            )
        out[(i, j)] = probs[0, :, :d, : len(range(i, h, s)), : len(range(j, w, s))].float()
    return out


def main(argv: list[str] | None = None) -> int:
    p = UsageParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny volume and network (smoke test)")
    p.add_argument("--depth", type=int, default=256)
    p.add_argument("--phases", type=int, default=1, choices=(16, 4, 1))
    p.add_argument("--network", default="checkpoint", choices=("checkpoint", "default", "tiny"))
    p.add_argument("--repeats", type=int, default=None, help="best of N, interleaved (default 2, quick 1)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache", type=Path, default=RESULTS / "phantoms")
    p.add_argument("--out", type=Path, default=RESULTS / "monai.md")
    args = p.parse_args(argv)
    import monai

    repeats = args.repeats or (1 if args.quick else 2)
    size, window = 512, 128
    if args.quick:
        args.depth, args.network, size, window, args.phases = 32, "tiny", 64, 16, 4
        args.cache = Path(tempfile.mkdtemp(prefix="bench_monai_"))
    seg = make_segmenter("after", args.network, args.phases, args.device, window)
    volume = read_ct(phantom_case(args.cache, args.depth, size)[0])
    norm = seg.checkpoint.normalization
    x = norm.apply(volume.image)
    plan = seg.plan_for(volume.spacing_zyx)
    depth, starts = z_windows(x.shape[0], plan)
    win = min(plan.window, depth)
    same_windows = starts == monai_starts(depth, win, plan.overlap)

    t_ours, t_peer = float("inf"), float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a = ours(x, seg, plan, norm.air_value)
        t_ours = min(t_ours, time.perf_counter() - t0)
        t0 = time.perf_counter()
        b = peer(x, seg, plan, norm.air_value)
        t_peer = min(t_peer, time.perf_counter() - t0)
    diff = max(float((a[k].cpu() - b[k].cpu()).abs().max()) for k in a)
    row = [
        f"{size}x{size}x{args.depth}",
        args.phases,
        f"{len(starts)} x {win}: {starts}",
        "yes" if same_windows else "NO",
        str(seg.precision).removeprefix("torch."),
        t_ours,
        t_peer,
        t_ours / t_peer,
        f"{diff:.1e}",
    ]
    headers = [
        "volume",
        "phases",
        "z-windows per phase",
        "same windows",
        "precision",
        "ours (s)",
        "MONAI (s)",
        "ours / MONAI",
        "max abs. prob. difference",
    ]
    title = (
        f"Peer engine ({'quick' if args.quick else 'full'}): MONAI {monai.__version__} sliding_window_inference "
        f"vs iter_phase_sums, network '{args.network}' {list(seg.checkpoint.config.widths)}, overlap "
        f"{plan.overlap}, batch {seg.batch_size}, best of {repeats}, device {args.device}. "
        f"{machine_line(args.device)}."
    )
    publish(title, markdown_table(headers, [row]), args.out)
    tol = 1e-5 if seg.precision == torch.float32 else 2e-2
    return 0 if same_windows and diff <= tol else 1


if __name__ == "__main__":
    sys.exit(main())
