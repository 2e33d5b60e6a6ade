"""Where the time goes for one 512x512xD CT phantom, before and after the speed-ups, and what fewer phases cost.

Stages, in process, as the CLI runs them: read (SimpleITK + reorientation), normalize, network (the seconds inside
the network's calls), assembly (the rest of the strided patch engine: phase inputs, sums, argmax, scatter),
post-processing (largest components), write (uint8 .nii.gz). "e2e / network" is the in-process sum over the network
seconds (goal <= 1.10 on the CPU). Peak RSS is the case's process high-water mark (each row runs in a fresh child
process; goal < 3 GB for D = 300 on the CPU).

"before": the network as trained (batch norms, NCDHW, float32, the autograd-friendly regularized softmax);
"after": what the CLI runs now (folded batch norms, channels-last-3d, bf16 autocast where the CPU supports it,
the in-place regularized softmax).

A second table times --phases 16, 4 and 1 on one depth and scores 4 and 1 against 16 (mean DSC over 4 organs),
and all three against the phantom's labels.

    python bench/bench_stages.py                         # D = 64, 128, 300 at --phases 1; phases table at D = 64
    python bench/bench_stages.py --phases 16 --depths 64 # the full 16 phases (slow on the CPU)
    python bench/bench_stages.py --quick                 # tiny volume and network (smoke test)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    RESULTS,
    TimedFn,
    dice,
    machine_line,
    markdown_table,
    network,
    phantom_case,
    publish,
)

from inference import regularized_softmax as rs  # noqa: E402
from inference.checkpoint import Checkpoint  # noqa: E402
from inference.engine import Segmenter, resolve_precision, select_device  # noqa: E402
from inference.io import read_ct, write_labels  # noqa: E402
from inference.patching import PatchPlan, predict_labels  # noqa: E402
from inference.postprocess import keep_largest_components  # noqa: E402
from inference.preprocess import Normalization  # noqa: E402


def make_segmenter(variant: str, net: str, phases: int, device: str, window: int = 128) -> Segmenter:
    """A Segmenter as the CLI builds it ("after") or as it ran before the speed-ups ("before")."""
    from inference.checkpoint import DEFAULT_WEIGHTS, load_checkpoint

    if net == "checkpoint":
        ckpt = load_checkpoint(DEFAULT_WEIGHTS)
    else:
        model = network(net)
        ckpt = Checkpoint(model=model, config=model.config, normalization=Normalization(), label_names={})
    dev = select_device(device)
    m = ckpt.config.size_multiple
    plan = PatchPlan(phases=phases, window=max(m, window - window % m), size_multiple=m)
    if variant == "before":
        rs._regularized_softmax_inplace = rs._regularized_softmax_graph  # the pre-speed-up layer (same values)
        return Segmenter(ckpt, dev, plan, 2, torch.float32, fuse=False, channels_last=False)
    rs._regularized_softmax_inplace = _INPLACE
    return Segmenter(ckpt, dev, plan, 2, resolve_precision("auto", dev))


def run_case(image: str, variant: str, net: str, phases: int, device: str, window: int) -> dict:
    """Time each stage of one case in this process; returns seconds per stage, peak RSS (MiB) and precision."""
    seg = make_segmenter(variant, net, phases, device, window)
    timed = TimedFn(seg._predict_fn, device)
    t = {}
    t0 = time.perf_counter()
    volume = read_ct(Path(image))
    t["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    norm = seg.checkpoint.normalization
    x = norm.apply(volume.image)
    t["normalize"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels = predict_labels(
        x, timed, seg.checkpoint.config.num_classes, seg.plan, seg.batch_size, seg.device, norm.air_value
    )
    t["network"] = timed.seconds
    t["assembly"] = time.perf_counter() - t0 - timed.seconds
    t0 = time.perf_counter()
    labels = keep_largest_components(labels)
    t["postprocess"] = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_labels(Path(tmp) / "out.nii.gz", labels, volume)
        t["write"] = time.perf_counter() - t0
    t["windows"] = timed.calls * seg.batch_size
    t["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t["precision"] = str(seg.precision).removeprefix("torch.")
    return t


def run_child(image: Path, variant: str, net: str, phases: int, device: str, window: int) -> dict:
    """run_case in a fresh interpreter, so that its peak RSS is the case's own."""
    args = json.dumps([str(image), variant, net, phases, device, window])
    out = subprocess.run(
        [sys.executable, __file__, "--child", args], capture_output=True, text=True, check=False, timeout=3600
    )
    if out.returncode != 0:
        raise RuntimeError(f"child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


_INPLACE = rs._regularized_softmax_inplace
STAGES = ("read", "normalize", "network", "assembly", "postprocess", "write")


def stage_rows(
    images: dict[int, Path], net: str, phases: int, device: str, window: int, size: int, in_process: bool = False
) -> list[list]:
    rows = []
    for depth, image in images.items():
        for variant in ("before", "after"):
            if in_process:  # smoke runs: no fresh interpreter, so the peak RSS is this process's
                t = run_case(str(image), variant, net, phases, device, window)
                rs._regularized_softmax_inplace = _INPLACE
            else:
                t = run_child(image, variant, net, phases, device, window)
            total = sum(t[s] for s in STAGES)
            times = [t[s] for s in STAGES]
            ratio = total / t["network"]
            rss = f"{t['peak_rss_mb']:.0f}"
            rows.append([f"{size}x{size}x{depth}", variant, t["precision"], *times, total, ratio, rss])
    return rows


def phase_rows(image: Path, label: Path, net: str, device: str, window: int) -> list[list]:
    """Seconds per case (in process, read to labels) and DSC for --phases 16, 4, 1 with the "after" Segmenter."""
    import SimpleITK as sitk

    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(label)))
    results = {}
    for phases in (16, 4, 1):
        seg = make_segmenter("after", net, phases, device, window)
        t0 = time.perf_counter()
        volume = read_ct(image)
        labels = seg.segment(volume)
        seconds = time.perf_counter() - t0
        canonical_truth = volume.orientation.to_canonical(truth)
        results[phases] = (seconds, labels, dice(labels, canonical_truth))
    ref = results[16][1]
    return [[p, s, s / results[16][0], dice(lab, ref), d] for p, (s, lab, d) in results.items()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny volume and network, seconds (smoke test)")
    p.add_argument("--depths", type=int, nargs="+", default=[64, 128, 300])
    p.add_argument("--phases", type=int, default=1, choices=(16, 4, 1), help="phases for the stage table")
    p.add_argument("--compare-depth", type=int, default=64, help="depth of the phases table (0: skip it)")
    p.add_argument("--network", default="checkpoint", choices=("checkpoint", "default", "tiny"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache", type=Path, default=RESULTS / "phantoms", help="where phantoms are made and kept")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=RESULTS / "stages.md")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(run_case(*json.loads(args.child))))
        return 0
    size, window = 512, 128
    if args.quick:
        args.depths, args.network, args.compare_depth, size, window = [12], "tiny", 12, 48, 16
        args.cache = Path(tempfile.mkdtemp(prefix="bench_stages_"))
    images = {d: phantom_case(args.cache, d, size)[0] for d in args.depths}
    header = [
        "volume",
        "variant",
        "precision",
        *(f"{s} (s)" for s in STAGES),
        "e2e (s)",
        "e2e / network",
        "peak RSS (MiB)",
    ]
    rows = stage_rows(images, args.network, args.phases, args.device, window, size, in_process=args.quick)
    body = markdown_table(header, rows)
    if args.compare_depth:
        image, label = phantom_case(args.cache, args.compare_depth, size)
        prow = phase_rows(image, label, args.network, args.device, window)
        body += (
            f"\n\nPhases, {size}x{size}x{args.compare_depth}, 'after' variant, in process (read to labels):\n\n"
            + markdown_table(["--phases", "seconds", "time vs 16", "DSC vs 16 phases", "DSC vs phantom labels"], prow)
        )
    title = (
        f"Stages ({'quick' if args.quick else 'full'}): network '{args.network}', stage table at --phases "
        f"{args.phases}, window {window}, overlap 0.5, batch 2, device {args.device}. {machine_line(args.device)}."
    )
    publish(title, body, args.out)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
