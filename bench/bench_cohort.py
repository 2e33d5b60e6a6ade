"""A cohort in one process against two: wall time of the whole command on the same folder of phantoms.

Variants, run interleaved (one repeat of each in turn, so that load on a shared machine falls on all alike), each
into a fresh output folder:

- one process: ``python -m inference.predict`` (torch's default threads: one per core);
- one process, one thread: the same with OMP_NUM_THREADS=1 (what torchrun gives each of its processes);
- torchrun, 2 processes: ``python -m torch.distributed.run --standalone --nproc_per_node=2 -m inference.predict``
  (torchrun sets OMP_NUM_THREADS=1 in each process unless it is set);
- 2 parts at once: ``--part 0 --num-parts 2`` and ``--part 1 --num-parts 2`` started together, as two tasks of a
  batch system (each with torch's default threads).

The label maps of every run must equal those of the first one-process run byte for byte (checked; the script
fails otherwise). The table gives each variant's best wall time and its ratio to one process.

    python bench/bench_cohort.py                   # 6 phantoms of 256x256x48, shipped weights, --phases 4
    python bench/bench_cohort.py --quick           # 4 tiny phantoms and a tiny random network (smoke test)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, RESULTS, TINY_CONFIG, machine_line, markdown_table, publish  # noqa: E402

from inference.checkpoint import DEFAULT_WEIGHTS  # noqa: E402
from inference.task import INPUT_SUFFIX  # noqa: E402
from niftiio.command_line import UsageParser

PREDICT = [sys.executable, "-m", "inference.predict"]
TORCHRUN = [
    sys.executable,
    "-m",
    "torch.distributed.run",
    "--standalone",
    "--nproc_per_node=2",
    "-m",
    "inference.predict",
]


def make_cohort(folder: Path, cases: int, size: int, depth: int) -> Path:
    """``cases`` phantoms (generator version 2, size x size x depth, 0.8 x 0.8 x 1.5 mm), made once into
    ``folder``; returns the folder of images."""
    from phantom.generate import write_dataset

    images = folder / "imagesTr"
    if len(list(images.glob(f"*{INPUT_SUFFIX}"))) != cases:
        shutil.rmtree(folder, ignore_errors=True)
        write_dataset(
            folder,
            cases,
            seed=11,
            images_only=True,
            size_xy=size,
            slices=depth,
            spacing=(0.8, 0.8, 1.5),
            generator_version=2,
        )
    return images


def tiny_weights(folder: Path) -> Path:
    """A verified checkpoint of :data:`TINY_CONFIG` with random weights."""
    import torch

    from inference.checkpoint import save_checkpoint, write_sha256sums
    from inference.model import RUNet
    from inference.preprocess import Normalization

    torch.manual_seed(0)
    save_checkpoint(folder / "tiny.pt", RUNet(TINY_CONFIG), Normalization(), training={"init": "random, seed 0"})
    write_sha256sums(folder)
    return folder / "tiny.pt"


def run_variant(name: str, images: Path, out: Path, options: list[str]) -> float:
    """Wall seconds of one variant over the whole folder; RuntimeError when a command fails."""
    common = ["-i", str(images), "-o", str(out), *options]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "RUNET_PART")}
    env.pop("OMP_NUM_THREADS", None)
    if name == "one process":
        commands = [PREDICT + common]
    elif name == "one process, one thread":
        commands = [PREDICT + common]
        env["OMP_NUM_THREADS"] = "1"
    elif name == "torchrun, 2 processes":
        commands = [TORCHRUN + common]
    else:
        commands = [PREDICT + common + ["--part", str(k), "--num-parts", "2"] for k in range(2)]
    start = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in commands]
    results = [(p, *p.communicate()) for p in procs]
    seconds = time.perf_counter() - start
    for proc, _, err in results:
        if proc.returncode != 0:
            raise RuntimeError(f"{name}: exit code {proc.returncode}\n{err.decode()[-2000:]}")
    return seconds


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def main(argv: list[str] | None = None) -> int:
    p = UsageParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="4 tiny phantoms and a tiny random network (smoke test)")
    p.add_argument("--cases", type=int, default=6)
    p.add_argument("--size", type=int, default=256, help="in-plane voxels")
    p.add_argument("--depth", type=int, default=48, help="slices")
    p.add_argument("--phases", type=int, default=4, choices=(16, 4, 1))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--cache", type=Path, default=RESULTS / "phantoms")
    p.add_argument("--out", type=Path, default=RESULTS / "cohort.md")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_cohort_"))
    try:
        if args.quick:
            args.cases, args.size, args.depth, args.repeats = 4, 32, 16, 1
            args.weights = tiny_weights(work)
            args.cache = work
        cohort = args.cache / f"cohort_{args.cases}x{args.size}x{args.depth}"
        images = make_cohort(cohort, args.cases, args.size, args.depth)
        options = ["--weights", str(args.weights), "--device", "cpu", "--phases", str(args.phases)]
        variants = ("one process", "one process, one thread", "torchrun, 2 processes", "2 parts at once")
        times: dict[str, list[float]] = {v: [] for v in variants}
        reference: dict[str, str] | None = None
        for repeat in range(args.repeats):
            for variant in variants:
                out = work / f"out_{repeat}_{variants.index(variant)}"
                times[variant].append(run_variant(variant, images, out, options))
                got = digests(out)
                reference = reference or got
                if got != reference or len(got) != args.cases:
                    raise RuntimeError(f"{variant}: the label maps differ from the first one-process run's")
                shutil.rmtree(out)
        one = min(times["one process"])
        rows = [[v, ", ".join(f"{t:.1f}" for t in times[v]), min(times[v]), one / min(times[v])] for v in variants]
        title = (
            f"## A cohort of {args.cases} phantoms ({args.size}x{args.size}x{args.depth}, --phases {args.phases}, "
            f"{'tiny random network' if args.quick else args.weights.name}) in one process and in two\n\n"
            f"{machine_line()}. Every run's label maps equal the first one-process run's byte for byte."
        )
        body = markdown_table(["variant", "wall s (each repeat)", "best wall s", "speed-up over one process"], rows)
        publish(title, body, args.out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
