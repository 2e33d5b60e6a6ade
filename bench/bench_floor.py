"""The floor: a case's network FLOPs over the throughput that one large Conv3d reaches here, in this run.

For a 512x512xD case at --phases 16 the network runs on 16 x (windows per phase) windows of (window, 128, 128).
Its FLOPs (torch's counter, a multiply-add counts 2) divided by the FLOP/s of a large 3x3x3 Conv3d measured on the
same machine in the same run give the floor: the seconds the network would take if every FLOP ran as fast as the
best convolution. Reported: measured network seconds per case (one batch of 2 windows timed, best of N, times the
number of batches) over that floor, for float32 and bfloat16 autocast, for the network as trained ("before":
batch norms, NCDHW, autograd-friendly regularized softmax) and as the CLI runs it ("after": folded batch norms,
channels-last-3d, in-place regularized softmax).

    python bench/bench_floor.py                     # D = 64 case, default and checkpoint networks
    python bench/bench_floor.py --quick             # tiny network and windows (smoke test)
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, best_time, machine_line, markdown_table, network, publish  # noqa: E402

from inference import regularized_softmax as rs  # noqa: E402
from inference.checkpoint import CheckpointError  # noqa: E402
from inference.model import RUNet, count_flops, fuse_batchnorm  # noqa: E402
from inference.patching import PatchPlan, _round_up, _windows  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_INPLACE = rs._regularized_softmax_inplace


def conv_throughput(dtype: torch.dtype, shape: tuple[int, ...], channels: int, repeats: int, device: str) -> float:
    """FLOP/s of one Conv3d(channels, channels, 3, padding=1) on a (1, channels, *shape) input, best of N."""
    conv = torch.nn.Conv3d(channels, channels, 3, padding=1, bias=False).to(device).eval()
    x = torch.randn(1, channels, *shape, device=device)
    if dtype == torch.float32:
        conv, x = conv.to(memory_format=torch.channels_last_3d), x.contiguous(memory_format=torch.channels_last_3d)
    flops = 2 * channels * channels * 27 * x[0, 0].numel()
    ctx = torch.autocast(torch.device(device).type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
    with torch.inference_mode(), ctx:
        conv(x)  # warm-up (primitive creation)
        seconds = best_time(lambda: conv(x), repeats, device)
    return flops / seconds


def network_seconds(
    model: RUNet, variant: str, dtype: torch.dtype, x: torch.Tensor, repeats: int, device: str
) -> float:
    """Best seconds of one forward pass of ``model`` on ``x`` in the given variant and precision."""
    if variant == "after":
        rs._regularized_softmax_inplace = _INPLACE
        net = fuse_batchnorm(model).to(device).to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    else:
        rs._regularized_softmax_inplace = rs._regularized_softmax_graph
        net = model.to(device)
    kind = torch.device(device).type
    ctx = torch.autocast(kind, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
    try:
        with torch.inference_mode(), ctx:
            return best_time(lambda: net(x), repeats, device)
    finally:
        rs._regularized_softmax_inplace = _INPLACE


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny network and windows (smoke test)")
    p.add_argument("--depth", type=int, default=64, help="slices of the 512x512xD case")
    p.add_argument(
        "--networks", nargs="+", default=["default", "checkpoint"], choices=("default", "checkpoint", "tiny")
    )
    p.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"], choices=tuple(DTYPES))
    p.add_argument("--repeats", type=int, default=None, help="best of N (default 2, quick 1)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=RESULTS / "floor.md")
    args = p.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 2)
    size, window, conv_shape, channels = 512, 128, (64, 128, 128), 32
    if args.quick:
        args.networks, args.depth, size, window, conv_shape, channels = ["tiny"], 16, 64, 16, (16, 32, 32), 16

    rows = []
    throughput = {name: conv_throughput(dt, conv_shape, channels, repeats, args.device) for name, dt in DTYPES.items()}
    seen = set()
    for source in args.networks:
        try:
            model = network(source)
        except CheckpointError as exc:
            print(f"skipping the {source} network: {exc}", file=sys.stderr)
            continue
        key = repr(model.config.to_dict())
        if key in seen:
            continue
        seen.add(key)
        m = model.config.size_multiple
        plan = PatchPlan(phases=16, window=window, size_multiple=m)
        depth, starts = _windows(args.depth, plan)
        win = min(window, depth)
        hw = _round_up(-(-size // 4), m)
        n_windows = 16 * len(starts)
        batch = 2
        flops = count_flops(model, (1, 1, win, hw, hw)) * n_windows
        x = torch.randn(batch, 1, win, hw, hw, device=args.device)
        for prec in args.precisions:
            floor = flops / throughput[prec]
            for variant in ("before", "after"):
                per_batch = network_seconds(model, variant, DTYPES[prec], x, repeats, args.device)
                measured = per_batch * n_windows / batch
                rows.append(
                    [
                        f"{source} {list(model.config.widths)}",
                        prec,
                        variant,
                        f"{n_windows} x ({win},{hw},{hw})",
                        f"{flops / 1e12:.2f}",
                        f"{throughput[prec] / 1e9:.1f}",
                        floor,
                        measured,
                        measured / floor,
                    ]
                )
    headers = [
        "network",
        "precision",
        "variant",
        "windows",
        "TFLOP / case",
        "Conv3d GFLOP/s",
        "floor (s)",
        "network (s)",
        "network / floor",
    ]
    title = (
        f"Floor ({'quick' if args.quick else 'full'}): {size}x{size}x{args.depth} case at --phases 16, batch 2; "
        f"reference Conv3d({channels}, {channels}, 3) on {conv_shape}, channels-last, best of {repeats}; "
        f"device {args.device}. {machine_line(args.device)}."
    )
    publish(title, markdown_table(headers, rows), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
