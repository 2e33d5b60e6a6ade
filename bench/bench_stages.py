"""Where the time goes for one 512x512xD CT phantom, per backend and precision, and what fewer phases cost.

Stages, in process, as the CLI runs them: read (SimpleITK + reorientation), normalize (each phase's HU as the phase
is cut), network (the seconds inside the network's calls), assembly (the rest of the strided patch engine: phase
inputs, sums, argmax, scatter), post-processing (the default rule), write (uint8 .nii.gz). "e2e / network" is the
in-process sum over the network seconds (goal <= 1.10 on the CPU). Peak RSS is the case's process high-water mark
(each row runs in a fresh child process; goal < 3 GB for D = 300 on the CPU). With --repeats N every configuration
runs N times, round after round (interleaved), and the row of its fastest run is kept.

Configurations: "before" (torch, the network as trained: batch norms, NCDHW, float32, the autograd-friendly
regularized softmax) and, per backend (torch: folded batch norms, channels-last-3d, the in-place regularized softmax;
openvino: that network converted) and precision (float32, bfloat16, auto), what the CLI runs. The conversion to
OpenVINO happens before the clock starts (the CLI keeps it in the user cache folder).

A second table times --phases 16, 4 and 1 on one depth and scores 4 and 1 against 16 (mean DSC over 4 organs),
and all three against the phantom's labels.

--cli times the whole command (``python -m inference.predict``, 16 phases, one process per case and configuration,
wall clock) on every ``<case>_0000.nii.gz`` of the given folders, for each backend and precision, interleaved, best
of --repeats, with a warm user cache (a first untimed run fills it) and, for auto, also a cold one (conversion and
precision measurement included); it reports each configuration's time against torch float32 and against the fastest
explicit setting, and the DSC per organ of its labels against torch float32's.

    python bench/bench_stages.py                         # D = 64, 128, 300 at --phases 1; phases table at D = 64
    python bench/bench_stages.py --phases 16 --depths 64 128 --compare-depth 0 --repeats 2
    python bench/bench_stages.py --cli ../shared/data --repeats 2
    python bench/bench_stages.py --quick                 # tiny volume and network (smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    REPO,
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
from inference.ct_io import read_ct, write_labels  # noqa: E402
from inference.device import precision_name, select_device  # noqa: E402
from inference.engine import Segmenter  # noqa: E402
from inference.engine_options import EngineOptions  # noqa: E402
from inference.plan import PlanOptions  # noqa: E402
from inference.postprocess import postprocess  # noqa: E402
from inference.preprocess import Normalization  # noqa: E402
from inference.task import INPUT_SUFFIX  # noqa: E402
from niftiio.command_line import UsageParser


def make_segmenter(
    variant: str, net: str, phases: int, device: str, window: int = 128, precision: str = "auto"
) -> Segmenter:
    """A Segmenter as the CLI builds it on the backend ``variant`` ("torch", also called "after", or "openvino") at
    ``precision`` (float32, bfloat16 or auto), or as it ran before the speed-ups ("before")."""
    from inference.checkpoint import DEFAULT_WEIGHTS, load_checkpoint

    if net == "checkpoint":
        ckpt = load_checkpoint(DEFAULT_WEIGHTS)
    else:
        model = network(net)
        ckpt = Checkpoint(model=model, config=model.config, normalization=Normalization(), label_names={})
    m = ckpt.config.size_multiple
    options = PlanOptions(phases=phases, stride=4, window=max(m, window - window % m))
    if variant == "before":
        rs.regularized_softmax_inplace = rs.regularized_softmax_graph  # the pre-speed-up layer (same values)
        return Segmenter(ckpt, select_device(device), options, 2, torch.float32, fuse=False, channels_last=False)
    rs.regularized_softmax_inplace = _INPLACE
    engine = EngineOptions(device, precision, backend="torch" if variant == "after" else variant)
    return Segmenter.from_options(ckpt, engine, options)


def run_case(
    image: str, variant: str, net: str, phases: int, device: str, window: int, precision: str = "auto"
) -> dict:
    """Time each stage of one case in this process; returns seconds per stage, peak RSS (MiB) and precision."""
    seg = make_segmenter(variant, net, phases, device, window, precision)
    timed = TimedFn(seg.predict_fn, device)
    t = {}
    t0 = time.perf_counter()
    volume = read_ct(Path(image))
    t["read"] = time.perf_counter() - t0
    seg.predict_fn = timed  # the engine's own network pass, with its two calls timed
    seg.normalize = normalize = TimedFn(seg.normalize)
    t0 = time.perf_counter()
    labels = seg.network_labels(volume.image, seg.plan_for(volume.spacing_zyx))
    t["normalize"] = normalize.seconds
    t["network"] = timed.seconds
    t["assembly"] = time.perf_counter() - t0 - timed.seconds - normalize.seconds
    t0 = time.perf_counter()
    labels = postprocess(labels, volume.spacing_zyx, seg.postprocess)
    t["postprocess"] = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_labels(Path(tmp) / "out.nii.gz", labels, volume)
        t["write"] = time.perf_counter() - t0
    t["windows"] = timed.calls * seg.batch_size
    t["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t["precision"] = precision_name(seg.precision) + (" (auto)" if precision == "auto" and variant != "before" else "")
    t["backend"] = seg.backend
    return t


def run_child(image: Path, variant: str, net: str, phases: int, device: str, window: int, precision: str) -> dict:
    """run_case in a fresh interpreter, so that its peak RSS is the case's own."""
    args = json.dumps([str(image), variant, net, phases, device, window, precision])
    out = subprocess.run(
        [sys.executable, __file__, "--child", args], capture_output=True, text=True, check=False, timeout=3600
    )
    if out.returncode != 0:
        raise RuntimeError(f"child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


_INPLACE = rs.regularized_softmax_inplace
STAGES = ("read", "normalize", "network", "assembly", "postprocess", "write")


def configurations(backends: list[str], precisions: list[str]) -> list[tuple[str, str]]:
    """(variant, precision) pairs: "before" at float32, then every backend at every precision."""
    return [("before", "float32")] + [(b, p) for b in backends for p in precisions]


def stage_rows(
    images: dict[int, Path],
    net: str,
    phases: int,
    device: str,
    window: int,
    size: int,
    configs: list[tuple[str, str]],
    repeats: int = 1,
    in_process: bool = False,
) -> list[list]:
    """One row per volume and configuration: the stages of its fastest of ``repeats`` interleaved runs."""
    best: dict[tuple, dict] = {}
    for _ in range(repeats):
        for depth, image in images.items():
            for variant, precision in configs:
                if in_process:  # smoke runs: no fresh interpreter, so the peak RSS is this process's
                    t = run_case(str(image), variant, net, phases, device, window, precision)
                    rs.regularized_softmax_inplace = _INPLACE
                else:
                    t = run_child(image, variant, net, phases, device, window, precision)
                t["e2e"] = sum(t[s] for s in STAGES)
                key = (depth, variant, precision)
                if key not in best or t["e2e"] < best[key]["e2e"]:
                    best[key] = t
    rows = []
    for (depth, variant, _), t in best.items():
        times = [t[s] for s in STAGES]
        backend = "torch" if variant == "before" else t["backend"]
        rss = f"{t['peak_rss_mb']:.0f}"
        rows.append(
            [f"{size}x{size}x{depth}", backend, variant, t["precision"], *times, t["e2e"], t["e2e"] / t["network"], rss]
        )
    return rows


def phase_rows(image: Path, label: Path, net: str, device: str, window: int, backend: str) -> list[list]:
    """Seconds per case (in process, read to labels) and DSC for --phases 16, 4, 1 as the CLI runs them on
    ``backend`` (auto precision)."""
    import SimpleITK as sitk

    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(label)))
    results = {}
    for phases in (16, 4, 1):
        seg = make_segmenter(backend, net, phases, device, window)
        t0 = time.perf_counter()
        volume = read_ct(image)
        labels = seg.segment(volume.image, volume.spacing_zyx)
        seconds = time.perf_counter() - t0
        canonical_truth = volume.orientation.to_canonical(truth)
        results[phases] = (seconds, labels, dice(labels, canonical_truth))
    ref = results[16][1]
    return [[p, s, s / results[16][0], dice(lab, ref), d] for p, (s, lab, d) in results.items()]


def _cli_seconds(case: Path, out: Path, backend: str, precision: str, cache: Path, phases: int) -> float:
    """Wall-clock seconds of one ``python -m inference.predict`` process on the single case ``case``."""
    inputs = out.parent / f"in-{case.name}"
    inputs.mkdir(parents=True, exist_ok=True)
    link = inputs / case.name
    if not link.exists():
        link.symlink_to(case.resolve())
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "inference.predict", "-i", str(inputs), "-o", str(out), "--device", "cpu"]
    cmd += ["--backend", backend, "--precision", precision, "--phases", str(phases)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "RUNET_CACHE_DIR": str(cache), "RUNET_BACKEND": backend}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=3600)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
    return seconds


CLI_CONFIGS = [(b, p) for b in ("torch", "openvino") for p in ("float32", "bfloat16", "auto")]


def cli_rows(folders: list[Path], repeats: int, phases: int, work: Path) -> list[list]:
    """Whole-command seconds (best of ``repeats`` interleaved rounds) and DSC per organ against torch float32, for
    every case of ``folders`` and every configuration of :data:`CLI_CONFIGS`, plus auto with a cold cache."""
    import SimpleITK as sitk

    from evaluation.metrics import dice as mask_dice
    from evaluation.task import ORGANS

    cases = sorted(c for f in folders for c in f.glob(f"*{INPUT_SUFFIX}"))
    warm = work / "cache-warm"
    configs = [(b, p, "warm") for b, p in CLI_CONFIGS] + [(b, "auto", "cold") for b in ("torch", "openvino")]
    outputs = {(c, cfg): work / "out" / c.name / "-".join(cfg) for c in cases for cfg in configs}
    for case in cases:  # untimed: fills the warm cache (converted network, measured precision choices)
        for b, p in CLI_CONFIGS:
            _cli_seconds(case, work / "out" / "warm-up", b, p, warm, phases)
    best: dict[tuple, float] = {}
    for r in range(repeats):
        for case in cases:
            for cfg in configs:
                cache = warm if cfg[2] == "warm" else work / f"cache-cold-{r}-{case.name}-{cfg[0]}"
                seconds = _cli_seconds(case, outputs[case, cfg], cfg[0], cfg[1], cache, phases)
                best[case, cfg] = min(best.get((case, cfg), float("inf")), seconds)
    rows = []
    for case in cases:
        name = case.name.removesuffix(INPUT_SUFFIX)
        labels = {
            cfg: sitk.GetArrayFromImage(sitk.ReadImage(str(outputs[case, cfg] / f"{name}.nii.gz"))) for cfg in configs
        }
        ref_cfg = ("torch", "float32", "warm")
        ref, ref_s = labels[ref_cfg], best[case, ref_cfg]
        fastest = min(best[case, cfg] for cfg in configs if cfg[1] != "auto")
        size = "x".join(str(v) for v in reversed(ref.shape))
        for cfg in configs:
            organs = [v for v in ORGANS if (ref == v).any() or (labels[cfg] == v).any()]
            dsc = ", ".join(f"{ORGANS[v]} {mask_dice(labels[cfg] == v, ref == v):.4f}" for v in organs)
            s = best[case, cfg]
            setting = cfg[1] + (" (cold cache)" if cfg[2] == "cold" else "")
            rows.append([name, size, cfg[0], setting, s, s / ref_s, s / fastest, dsc or "no organ"])
    return rows


def main(argv: list[str] | None = None) -> int:
    p = UsageParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny volume and network, seconds (smoke test)")
    p.add_argument("--depths", type=int, nargs="+", default=[64, 128, 300])
    p.add_argument("--phases", type=int, default=1, choices=(16, 4, 1), help="phases for the stage table")
    p.add_argument("--compare-depth", type=int, default=64, help="depth of the phases table (0: skip it)")
    p.add_argument("--network", default="checkpoint", choices=("checkpoint", "default", "tiny"))
    p.add_argument("--backends", nargs="+", default=["torch", "openvino"], choices=("torch", "openvino"))
    p.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"], choices=("float32", "bfloat16", "auto"))
    p.add_argument("--repeats", type=int, default=1, help="best of N interleaved runs per configuration")
    p.add_argument("--cli", type=Path, nargs="+", help="time the whole command on the cases of these folders")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache", type=Path, default=RESULTS / "phantoms", help="where phantoms are made and kept")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=RESULTS / "stages.md")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(run_case(*json.loads(args.child))))
        return 0
    if args.device != "cpu" and "openvino" in args.backends:
        args.backends.remove("openvino")
    if args.cli:
        with tempfile.TemporaryDirectory(prefix="bench_cli_") as tmp:
            rows = cli_rows(args.cli, args.repeats, 16, Path(tmp))
        header = ["case", "size (xyz)", "backend", "precision", "seconds", "vs torch float32", "vs fastest explicit"]
        title = (
            f"Whole command (python -m inference.predict, --phases 16, one process per case), best of {args.repeats} "
            f"interleaved rounds, warm user cache unless marked cold. {machine_line('cpu')}."
        )
        publish(title, markdown_table([*header, "DSC per organ vs torch float32"], rows), args.out)
        return 0
    size, window = 512, 128
    if args.quick:
        args.depths, args.network, args.compare_depth, size, window = [12], "tiny", 12, 48, 16
        args.cache = Path(tempfile.mkdtemp(prefix="bench_stages_"))
    images = {d: phantom_case(args.cache, d, size)[0] for d in args.depths}
    header = [
        "volume",
        "backend",
        "variant",
        "precision",
        *(f"{s} (s)" for s in STAGES),
        "e2e (s)",
        "e2e / network",
        "peak RSS (MiB)",
    ]
    configs = configurations(args.backends, args.precisions)
    rows = stage_rows(
        images, args.network, args.phases, args.device, window, size, configs, args.repeats, in_process=args.quick
    )
    body = markdown_table(header, rows)
    if args.compare_depth:
        image, label = phantom_case(args.cache, args.compare_depth, size)
        backend = args.backends[-1]
        prow = phase_rows(image, label, args.network, args.device, window, backend)
        body += (
            f"\n\nPhases, {size}x{size}x{args.compare_depth}, {backend} backend, auto precision, in process "
            "(read to labels):\n\n"
            + markdown_table(["--phases", "seconds", "time vs 16", "DSC vs 16 phases", "DSC vs phantom labels"], prow)
        )
    title = (
        f"Stages ({'quick' if args.quick else 'full'}): network '{args.network}', stage table at --phases "
        f"{args.phases}, window {window}, overlap 0.5, batch 2, best of {args.repeats} interleaved runs, device "
        f"{args.device}. {machine_line(args.device)}."
    )
    publish(title, body, args.out)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
