"""The GPU check: the end-to-end pipeline on 512x512x{64,128,300} phantoms, per precision, as FLARE times it.

Per case and precision (float32, and bfloat16 / float16 autocast):

- whole-process seconds: ``python -m inference.predict`` on a folder holding that case alone, launched and timed
  by evaluation/efficiency.py's ``run_command`` (start-up, CUDA initialization, reading and writing included, as the
  organizers time the container), with the GPU's used memory sampled through NVML every 0.1 s: its stable maximum
  and area under the curve (MiB, MiB*s);
- in-process seconds: read, segment (normalize, network, assembly, post-processing) and write in a process whose
  network is already loaded and warmed up; network seconds: the part spent in the network's calls; and
  torch.cuda.max_memory_allocated over the case (what PyTorch itself held, MiB).

Goals on an H100: in-process <= 1.0 s for 512x512x128, whole-process <= 4 s, stable maximum <= 1.2 GB (1229 MiB;
the FLARE 2021 winner reported 2269 MB). Writes <out>/gpu_check.md and <out>/gpu_check.json.

    python bench/gpu_check.py --out DIR                          # on a GPU machine (bench/gpu_check.sh)
    python bench/gpu_check.py --out DIR --device cpu --quick     # CPU dry run at tiny sizes
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, TimedFn, machine_line, markdown_table, phantom_case, publish  # noqa: E402

from evaluation.efficiency import run_command  # noqa: E402
from inference.checkpoint import load_checkpoint  # noqa: E402
from inference.ct_io import read_ct, write_labels  # noqa: E402
from inference.device import PRECISIONS  # noqa: E402
from inference.engine import Segmenter  # noqa: E402
from inference.engine_options import EngineOptions  # noqa: E402
from inference.plan import PlanOptions  # noqa: E402
from niftiio.command_line import UsageParser  # noqa: E402

GOAL_IN_PROCESS_S, GOAL_WHOLE_S, GOAL_STABLE_MIB = 1.0, 4.0, 1229.0


def in_process(
    images: list[Path], weights: Path, precision: str, device: str, phases: int, work: Path, batch: int = 2
) -> dict:
    """{image name: (in-process s, network s, max allocated MiB)} for one precision, network warmed up first."""
    ckpt = load_checkpoint(weights)
    engine = EngineOptions(device, precision, backend="torch", batch_size=batch)
    seg = Segmenter.from_options(ckpt, engine, PlanOptions(phases=phases, stride=4))
    dev = seg.device
    timed = TimedFn(seg.predict_fn, device)
    seg.predict_fn = timed  # the engine calls it through the instance attribute
    m = ckpt.config.size_multiple
    warm_up = torch.zeros((m, 4 * m, 4 * m), dtype=torch.int16).numpy()
    seg.segment(warm_up, (1.0, 1.0, 1.0))  # warm-up: CUDA, cuDNN, allocator
    out = {}
    for image in images:
        if dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        timed.seconds = 0.0
        t0 = time.perf_counter()
        volume = read_ct(image)
        labels = seg.segment(volume.image, volume.spacing_zyx)
        write_labels(work / f"{image.name}.labels.nii.gz", labels, volume)
        seconds = time.perf_counter() - t0
        allocated = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else float("nan")
        out[image.name] = (seconds, timed.seconds, allocated)
    del seg, ckpt
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return out


def whole_process(image: Path, weights: Path, precision: str, device: str, phases: int, work: Path, batch: int = 2):
    """The CLI on a folder holding only ``image``, timed and sampled by evaluation.efficiency.run_command."""
    case_dir = work / "whole"
    shutil.rmtree(case_dir, ignore_errors=True)
    (case_dir / "in").mkdir(parents=True)
    shutil.copy(image, case_dir / "in" / image.name)
    path = ":".join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    command = (
        f"PYTHONPATH={path} RUNET_WEIGHTS={weights} {sys.executable} -m inference.predict -i {{input}} -o {{output}} "
        f"--precision {precision} --device {device} --phases {phases} --batch-size {batch}"
    )
    record = run_command(command, case_dir / "in", case_dir / "out", case=image.name)
    if record.returncode != 0:
        raise RuntimeError(f"{image.name} {precision}: the CLI exited with {record.returncode}")
    return record


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = UsageParser(description=__doc__)
    p.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results", help="folder for the table (default: bench/results)"
    )
    p.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu for a dry run (default: cuda)")
    p.add_argument(
        "--precisions",
        nargs="+",
        default=["float32", "bfloat16", "float16"],
        choices=PRECISIONS,
        help="network arithmetic of each row (default: all three)",
    )
    p.add_argument(
        "--depths",
        type=int,
        nargs="+",
        default=[64, 128, 300],
        help="phantom slices, 512x512 each (default: 64 128 300)",
    )
    p.add_argument("--phases", type=int, default=16, choices=(16, 4, 1), help="in-plane phases (default: 16)")
    p.add_argument("--batch-size", type=int, default=2, help="windows per network call (default: 2, as the CLI)")
    p.add_argument(
        "--weights", type=Path, default=REPO / "weights" / "runet.pt", help="checkpoint (default: weights/runet.pt)"
    )
    p.add_argument("--work", type=Path, default=None, help="phantoms and outputs (default: a temporary folder)")
    p.add_argument("--quick", action="store_true", help="tiny phantoms and network (dry run of the script)")
    return p.parse_args(argv)


def check_rows(args: argparse.Namespace, images: list[Path], size: int, work: Path) -> tuple[list, list]:
    """(table rows, raw records): per precision and phantom, the whole-process run (the CLI, timed and sampled)
    beside the in-process one, and whether the goals are met."""
    rows, raw = [], []
    for precision in args.precisions:
        inside = in_process(images, args.weights, precision, args.device, args.phases, work, args.batch_size)
        for image, depth in zip(images, args.depths):
            rec = whole_process(image, args.weights, precision, args.device, args.phases, work, args.batch_size)
            seconds, network_s, allocated = inside[image.name]
            stable = rec.stable_max_mb if rec.stable_max_mb is not None else float("nan")
            auc = rec.auc_mb_s if rec.auc_mb_s is not None else float("nan")
            goals = [
                rec.seconds <= GOAL_WHOLE_S,
                stable <= GOAL_STABLE_MIB,
            ] + ([seconds <= GOAL_IN_PROCESS_S] if depth == 128 else [])
            rows.append(
                [
                    f"{size}x{size}x{depth}",
                    precision,
                    rec.seconds,
                    seconds,
                    network_s,
                    stable,
                    auc,
                    allocated,
                    f"{rec.peak_rss_mb:.0f}",
                    "yes" if all(goals) else "no",
                ]
            )
            raw.append(
                {
                    "case": image.name,
                    "precision": precision,
                    "whole_s": rec.seconds,
                    "in_process_s": seconds,
                    "network_s": network_s,
                    "stable_max_mib": rec.stable_max_mb,
                    "peak_mib": rec.peak_mb,
                    "auc_mib_s": rec.auc_mb_s,
                    "baseline_mib": rec.baseline_mb,
                    "max_allocated_mib": allocated,
                    "peak_rss_mib": rec.peak_rss_mb,
                }
            )
            print(f"{image.name} {precision}: whole {rec.seconds:.2f} s, in process {seconds:.2f} s", file=sys.stderr)
    return rows, raw


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    size = 512
    if args.quick:
        from bench_startup import tiny_weights

        args.depths, size = [16], 64
        (work / "tiny").mkdir(exist_ok=True)
        args.weights = tiny_weights(work / "tiny")
    t0 = time.perf_counter()
    images = [phantom_case(work / "phantoms", d, size)[0] for d in args.depths]
    print(f"phantoms ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

    rows, raw = check_rows(args, images, size, work)
    headers = [
        "volume",
        "precision",
        "whole-process (s)",
        "in-process (s)",
        "network (s)",
        "GPU stable max (MiB)",
        "GPU area (MiB*s)",
        "torch max allocated (MiB)",
        "peak RSS (MiB)",
        "goals met",
    ]
    title = (
        f"GPU check: --phases {args.phases}, batch {args.batch_size}, weights {args.weights.name}, "
        f"device {args.device}. "
        f"{machine_line(args.device)}. Goals (H100): whole-process <= {GOAL_WHOLE_S:g} s, GPU stable max <= "
        f"{GOAL_STABLE_MIB:g} MiB, in-process <= {GOAL_IN_PROCESS_S:g} s for 512x512x128."
    )
    args.out.mkdir(parents=True, exist_ok=True)
    publish(title, markdown_table(headers, rows), args.out / "gpu_check.md")
    (args.out / "gpu_check.json").write_text(json.dumps(raw, indent=1))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
