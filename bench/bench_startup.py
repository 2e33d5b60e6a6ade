"""Start-up: the time line of one CLI process on one case, and the import time of the CLI.

The CLI runs in a fresh interpreter through a small wrapper that stamps the wall clock when the CLI's imports are
done (those of ``inference.predict``; the engine, and torch with it, is imported after that stamp, as a run imports
it before reading its checkpoint), when the checkpoint is read (loaded, or from its record in the user cache), and
when the first window reaches the network (its first predict_fn call); "last file written" is the output's
modification time and "exit" the moment the process ended, all counted from just before the process was launched.
``python -X importtime -c "import inference.predict"`` then lists what the CLI imports: the table gives the self
time per top-level package and flags any package the container does not need (:data:`NOT_NEEDED`).

    python bench/bench_startup.py                 # 512x512x64 phantom, --phases 1
    python bench/bench_startup.py --quick         # tiny volume and network (smoke test)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, RESULTS, TINY_CONFIG, machine_line, markdown_table, phantom_case, publish  # noqa: E402

from niftiio.command_line import UsageParser  # noqa: E402

NOT_NEEDED = (
    "scipy",
    "matplotlib",
    "pandas",
    "evaluation",
    "training",
    "phantom",
    "bench",
    "monai",
    "surface_distance",
    "PIL",
)
"""Top-level packages the container must not import (evaluation, training and benchmark code and their deps)."""

WRAPPER = r"""
import json, os, sys, time
stamps = {}
import inference.predict as cli
stamps["imports done"] = time.time()
import inference.engine as engine  # loaded by the run before its checkpoint anyway (without torch on OpenVINO)
load = engine._read_checkpoint
def timed_load(*a, **k):
    out = load(*a, **k)
    stamps["checkpoint read"] = time.time()
    return out
engine._read_checkpoint = timed_load
predict_fn = engine.Segmenter.predict_fn
def first_window(self, x):
    stamps.setdefault("first window on the device", time.time())
    return predict_fn(self, x)
engine.Segmenter.predict_fn = first_window
code = cli.main(sys.argv[1:])
print("STAMPS " + json.dumps(stamps), file=sys.stderr)
if os.environ.get("RUNET_BENCH_EXIT") == "teardown":
    sys.exit(code)  # how the CLI ended before: the interpreter's full tear-down
cli.exit_now(code)  # as python -m inference.predict ends now
"""


def timeline(
    image: Path, weights: Path, phases: int, device: str, exit_mode: str = "now"
) -> tuple[list[tuple[str, float]], str]:
    """[(event, seconds since launch)] for one case through the CLI, and the CLI's stderr.

    exit_mode: "now" ends the process as the CLI does (inference.predict.exit_now), "teardown" through the
    interpreter's normal tear-down (as it did before).
    """
    work = Path(tempfile.mkdtemp(prefix="bench_startup_"))
    try:
        (work / "in").mkdir()
        shutil.copy(image, work / "in" / image.name)
        env = {**os.environ, "PYTHONPATH": str(REPO), "RUNET_WEIGHTS": str(weights), "RUNET_BENCH_EXIT": exit_mode}
        cmd = [sys.executable, "-c", WRAPPER, "-i", str(work / "in"), "-o", str(work / "out")]
        cmd += ["--phases", str(phases), "--device", device]
        t0 = time.time()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        t_exit = time.time()
        if proc.returncode != 0:
            raise RuntimeError(f"CLI failed ({proc.returncode}): {proc.stderr[-2000:]}")
        line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("STAMPS "))
        stamps = json.loads(line.removeprefix("STAMPS "))
        outputs = list((work / "out").iterdir())
        stamps["last file written"] = max(p.stat().st_mtime for p in outputs)
        stamps["process exit"] = t_exit
        events = sorted(((k, v - t0) for k, v in stamps.items()), key=lambda kv: kv[1])
        return events, proc.stderr
    finally:
        shutil.rmtree(work, ignore_errors=True)


def import_times() -> tuple[float, dict[str, float]]:
    """(total seconds, self seconds per top-level package) of ``import inference.predict``, by -X importtime."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import inference.predict"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    per_top: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)", line)
        if m:
            top = m[3].split(".")[0]
            per_top[top] = per_top.get(top, 0.0) + int(m[1]) / 1e6
    return sum(per_top.values()), per_top


def tiny_weights(folder: Path) -> Path:
    """A checkpoint of the tiny config (random weights) with its SHA256SUMS, for the smoke run."""
    import torch

    from inference.checkpoint import save_checkpoint, write_sha256sums
    from inference.model import RUNet
    from inference.preprocess import Normalization

    torch.manual_seed(0)
    path = folder / "tiny.pt"
    save_checkpoint(path, RUNet(TINY_CONFIG).eval(), Normalization())
    write_sha256sums(folder)
    return path


def main(argv: list[str] | None = None) -> int:
    p = UsageParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny volume and network (smoke test)")
    p.add_argument("--depth", type=int, default=64)
    p.add_argument("--phases", type=int, default=1, choices=(16, 4, 1))
    p.add_argument("--device", default="cpu")
    p.add_argument("--weights", type=Path, default=REPO / "weights" / "runet.pt")
    p.add_argument("--cache", type=Path, default=RESULTS / "phantoms")
    p.add_argument("--out", type=Path, default=RESULTS / "startup.md")
    args = p.parse_args(argv)
    size = 512
    if args.quick:
        args.cache = Path(tempfile.mkdtemp(prefix="bench_startup_"))
        args.depth, size, args.weights = 16, 64, tiny_weights(args.cache)
    image = phantom_case(args.cache, args.depth, size)[0]
    before, _ = timeline(image, args.weights, args.phases, args.device, "teardown")
    events, _ = timeline(image, args.weights, args.phases, args.device, "now")
    events += [(f"before: {k} (exit through the interpreter's tear-down)", v) for k, v in before[-2:]]
    total, per_top = import_times()
    flagged = sorted(t for t in per_top if t in NOT_NEEDED)
    body = markdown_table(["event (one case, one process)", "seconds since launch"], events)
    top = sorted(per_top.items(), key=lambda kv: -kv[1])[:8]
    body += "\n\n`python -X importtime -c 'import inference.predict'` (self time per top-level package):\n\n"
    body += markdown_table(["package", "seconds"], top + [("total", total)])
    body += f"\n\nImported but not needed by the container: {', '.join(flagged) if flagged else 'none'}"
    body += f" (checked: {', '.join(NOT_NEEDED)})."
    title = (
        f"Start-up ({'quick' if args.quick else 'full'}): {size}x{size}x{args.depth} phantom, --phases "
        f"{args.phases}, device {args.device}, weights {args.weights.name}. {machine_line(args.device)}."
    )
    publish(title, body, args.out)
    return 0 if not flagged else 1


if __name__ == "__main__":
    sys.exit(main())
