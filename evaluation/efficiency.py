"""Running time and GPU memory per case, measured the way the FLARE 2021 organizers measure them.

Each case runs alone: its image is copied into a fresh, empty input folder, the command runs once on that
folder, and its wall-clock time is taken from launch to exit. While it runs, a sampler reads the used memory
of one GPU through NVML (nvidia-ml-py, ``nvmlDeviceGetMemoryInfo``: total - free, in whole MiB, as nvidia-smi
reports it) every 0.1 s, on a chosen device index (default 0; the organizers' script defaulted to 1), and the
resident memory of the command's process tree (from /proc). Per case it reports:

- seconds: wall clock of the command;
- stable_max_mb: the FLARE "stable maximum", the largest sampled value that occurs in more than 2 % of the
  samples (``stable_max``);
- peak_mb: the largest sample;
- auc_mb_s: the area under the memory-time curve, sum of samples x interval (the organizers' definition);
- peak_rss_mb: the largest resident memory of the process tree (for a container, the docker client's).

The command is a template with {input}, {output} and {gpu} placeholders, run by the shell; INPUT_DIR and
OUTPUT_DIR are also set in its environment. The container, as the organizers run it::

    python -m evaluation.efficiency --input IMAGES --out OUT --docker-image runet:latest

is the command ``docker container run --gpus "device={gpu}" --rm -v {input}:/workspace/inputs
-v {output}:/workspace/outputs runet:latest /bin/bash -c "sh predict.sh"``; in development, for example::

    python -m evaluation.efficiency --input IMAGES --out OUT --command 'sh predict.sh'

(predict.sh reading INPUT_DIR and OUTPUT_DIR). Without a GPU or NVML the runner says so once and still reports
time and resident memory. Writes OUT/efficiency.csv, OUT/memory/<case>.png (memory over time) and
OUT/memory/<case>.json (the samples), and moves the outputs to OUT/predictions/.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from evaluation.task import IMAGE_SUFFIX
from niftiio.command_line import UsageParser
from niftiio.wording import count

MIB = 1 << 20
INTERVAL_S = 0.1
STABLE_FRACTION = 0.02
DOCKER_TEMPLATE = (
    'docker container run --gpus "device={gpu}" --rm -v {input}:/workspace/inputs '
    '-v {output}:/workspace/outputs {image} /bin/bash -c "sh predict.sh"'
)

_said_no_gpu: set[str] = set()


def stable_max(samples_mb: Sequence[float], min_fraction: float = STABLE_FRACTION) -> float:
    """The FLARE "stable maximum" of a memory series.

    Args:
        samples_mb: sampled memory values (MB), in any order.
        min_fraction: a value must occur in strictly more than this fraction of the samples.

    Returns:
        The largest value occurring more than ``min_fraction * len(samples_mb)`` times; NaN if none does (only
        possible with at least 1 / min_fraction samples that rarely repeat).

    Raises:
        ValueError: on an empty series or a fraction outside [0, 1).
    """
    if len(samples_mb) == 0:
        raise ValueError("stable_max needs at least one sample")
    if not 0.0 <= min_fraction < 1.0:
        raise ValueError(f"min_fraction must lie in [0, 1), got {min_fraction}")
    counts = Counter(float(v) for v in samples_mb)
    threshold = min_fraction * len(samples_mb)
    frequent = [value for value, count in counts.items() if count > threshold]
    return max(frequent) if frequent else math.nan


def area_mb_s(samples_mb: Sequence[float], interval_s: float = INTERVAL_S) -> float:
    """Area under the memory-time curve in MB*s: the sum of the samples times the sampling interval."""
    return float(sum(samples_mb)) * interval_s


def docker_command(image: str) -> str:
    """The organizers' container command as a template ({input}, {output}, {gpu} left to fill)."""
    return DOCKER_TEMPLATE.replace("{image}", image)


class NvmlMemory:
    """Used memory (total - free, whole MiB) of one GPU through NVML. Raises RuntimeError if unavailable."""

    def __init__(self, index: int = 0) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception as err:  # ImportError, NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded, ...
            raise RuntimeError(f"NVML unavailable ({type(err).__name__}: {err})") from None
        self._nvml = pynvml
        try:
            devices = pynvml.nvmlDeviceGetCount()
            if not 0 <= index < devices:
                raise RuntimeError(f"GPU index {index} out of range: NVML sees {count(devices, 'device')}")
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.name = str(pynvml.nvmlDeviceGetName(self._handle))
        except Exception:
            pynvml.nvmlShutdown()
            raise

    def __call__(self) -> float:
        info = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
        return float((int(info.total) - int(info.free)) // MIB)

    def close(self) -> None:
        self._nvml.nvmlShutdown()


def process_tree_rss_mb(root_pid: int) -> float:
    """Summed resident memory (MiB) of a process and all its descendants, read from /proc (0 elsewhere)."""
    children: dict[int, list[int]] = {}
    rss_pages: dict[int, int] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0.0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss_pages[pid] = int(fields[21])
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss_pages.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total * os.sysconf("SC_PAGE_SIZE") / MIB


@dataclass
class EfficiencyRecord:
    """One command run: wall-clock seconds, memory samples (MiB) every interval_s, and their summaries.

    GPU fields are None when no GPU memory could be sampled (no GPU, no NVML).
    """

    case: str
    command: str
    returncode: int
    seconds: float
    gpu_index: int
    gpu_available: bool
    interval_s: float
    sample_times_s: list[float] = field(default_factory=list)
    samples_mb: list[float] = field(default_factory=list)
    rss_samples_mb: list[float] = field(default_factory=list)
    baseline_mb: float | None = None
    stable_max_mb: float | None = None
    peak_mb: float | None = None
    auc_mb_s: float | None = None
    peak_rss_mb: float = 0.0


class _Sampler(threading.Thread):
    def __init__(self, interval_s: float, read_gpu: Callable[[], float] | None, pid: int, t0: float) -> None:
        super().__init__(daemon=True)
        self.interval_s, self.read_gpu, self.pid, self.t0 = interval_s, read_gpu, pid, t0
        self.times: list[float] = []
        self.gpu: list[float] = []
        self.rss: list[float] = []
        self.stop = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        tick = time.perf_counter()
        while True:
            self.times.append(time.perf_counter() - self.t0)
            self.rss.append(process_tree_rss_mb(self.pid))
            if self.read_gpu is not None:
                try:
                    self.gpu.append(float(self.read_gpu()))
                except Exception as err:  # a failing read ends GPU sampling, not the run
                    self.error, self.read_gpu = f"{type(err).__name__}: {err}", None
            tick += self.interval_s
            if self.stop.wait(max(0.0, tick - time.perf_counter())):
                return


def _say_no_gpu_once(reason: str) -> None:
    if reason not in _said_no_gpu:
        _said_no_gpu.add(reason)
        print(
            f"efficiency: no GPU memory sampling ({reason}); reporting time and resident memory only",
            file=sys.stderr,
        )


def run_command(
    command: str,
    input_dir: str | Path,
    output_dir: str | Path,
    gpu_index: int = 0,
    interval_s: float = INTERVAL_S,
    timeout_s: float | None = None,
    case: str = "",
    read_gpu: Callable[[], float] | None = None,
) -> EfficiencyRecord:
    """Run one command, timing it and sampling memory every ``interval_s`` seconds.

    Args:
        command: shell command; {input}, {output} and {gpu} are replaced by the absolute input folder, output
            folder and GPU index. INPUT_DIR and OUTPUT_DIR are set in its environment as well.
        input_dir, output_dir: folders the command reads and writes (created if missing).
        gpu_index: NVML index of the GPU whose used memory is sampled.
        interval_s: sampling interval in seconds (FLARE: 0.1).
        timeout_s: kill the command's process group after this many seconds (returncode -9).
        case: a name for the record.
        read_gpu: a callable returning used GPU memory in MiB, instead of NVML (for tests or other probes).

    Returns:
        An EfficiencyRecord; GPU fields are None if no GPU memory could be sampled.
    """
    if interval_s <= 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s}")
    input_dir, output_dir = Path(input_dir).resolve(), Path(output_dir).resolve()
    input_dir.mkdir(parents=True, exist_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    cmd = command.replace("{input}", str(input_dir)).replace("{output}", str(output_dir))
    cmd = cmd.replace("{gpu}", str(gpu_index))
    env = dict(os.environ, INPUT_DIR=str(input_dir), OUTPUT_DIR=str(output_dir))

    nvml = None
    if read_gpu is None:
        try:
            nvml = NvmlMemory(gpu_index)
            read_gpu = nvml
        except RuntimeError as err:
            _say_no_gpu_once(str(err))
    baseline = None
    if read_gpu is not None:
        try:
            baseline = float(read_gpu())
        except Exception as err:
            _say_no_gpu_once(f"{type(err).__name__}: {err}")
            read_gpu = None

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, shell=True, env=env, start_new_session=True)
    sampler = _Sampler(interval_s, read_gpu, proc.pid, t0)
    sampler.start()
    try:
        returncode = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        returncode = proc.wait()
    seconds = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    if nvml is not None:
        nvml.close()
    if sampler.error:
        _say_no_gpu_once(sampler.error)

    record = EfficiencyRecord(
        case=case,
        command=cmd,
        returncode=returncode,
        seconds=seconds,
        gpu_index=gpu_index,
        gpu_available=bool(sampler.gpu),
        interval_s=interval_s,
        sample_times_s=sampler.times,
        samples_mb=sampler.gpu,
        rss_samples_mb=sampler.rss,
        baseline_mb=baseline,
        peak_rss_mb=max(sampler.rss, default=0.0),
    )
    if sampler.gpu:
        record.stable_max_mb = stable_max(sampler.gpu)
        record.peak_mb = max(sampler.gpu)
        record.auc_mb_s = area_mb_s(sampler.gpu, interval_s)
    return record


def plot_memory(record: EfficiencyRecord, path: Path) -> None:
    """PNG of memory over time: GPU used memory (if sampled) and the process tree's resident memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    if record.samples_mb:
        ax.plot(record.sample_times_s[: len(record.samples_mb)], record.samples_mb, "b-", label="GPU used (MiB)")
        if record.stable_max_mb is not None and not math.isnan(record.stable_max_mb):
            ax.axhline(record.stable_max_mb, color="b", ls="--", lw=0.8, label="stable max")
    ax.plot(
        record.sample_times_s[: len(record.rss_samples_mb)],
        record.rss_samples_mb,
        "g-",
        label="process tree RSS (MiB)",
    )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("memory (MiB)")
    gpu = f"GPU {record.gpu_index}" if record.gpu_available else "no GPU sampled"
    ax.set_title(f"{record.case or 'run'}: {record.seconds:.1f} s, {gpu}")
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


CSV_COLUMNS = (
    "case",
    "seconds",
    "returncode",
    "gpu_index",
    "gpu_available",
    "n_samples",
    "baseline_mb",
    "stable_max_mb",
    "peak_mb",
    "auc_mb_s",
    "peak_rss_mb",
)


def write_csv(records: Sequence[EfficiencyRecord], path: Path) -> None:
    """efficiency.csv: one row per case; GPU columns empty when no GPU memory was sampled."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for r in records:
            values = asdict(r) | {"n_samples": len(r.samples_mb) or len(r.rss_samples_mb)}
            writer.writerow(["" if values[c] is None else values[c] for c in CSV_COLUMNS])


def run_cases(
    images_dir: Path,
    out_dir: Path,
    command: str,
    gpu_index: int = 0,
    interval_s: float = INTERVAL_S,
    pause_s: float = 0.0,
    timeout_s: float | None = None,
    progress: bool = True,
) -> list[EfficiencyRecord]:
    """Run the command once per image ``<case>_0000.nii.gz``, each alone in a fresh input folder."""
    from tqdm import tqdm

    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir}: input folder not found")
    entries = sorted(p for p in images_dir.iterdir() if p.is_file())
    images = [p for p in entries if p.name.endswith(IMAGE_SUFFIX)]
    for p in entries:
        if p not in images:
            print(f"efficiency: skipping {p.name} (not <case>{IMAGE_SUFFIX})", file=sys.stderr)
    if not images:
        raise FileNotFoundError(f"{images_dir}: no <case>{IMAGE_SUFFIX} images found")
    out_dir = out_dir.resolve()
    for sub in ("predictions", "memory"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    work = out_dir / "work"
    records = []
    for i, image in enumerate(
        tqdm(images, desc="cases", unit="case", disable=None if progress else True, file=sys.stderr)
    ):
        case = image.name[: -len(IMAGE_SUFFIX)]
        shutil.rmtree(work, ignore_errors=True)
        (work / "inputs").mkdir(parents=True)
        (work / "outputs").mkdir()
        shutil.copy2(image, work / "inputs" / image.name)
        record = run_command(command, work / "inputs", work / "outputs", gpu_index, interval_s, timeout_s, case)
        if record.returncode != 0:
            print(f"efficiency: {case}: command exited with {record.returncode}", file=sys.stderr)
        for produced in (work / "outputs").iterdir():
            shutil.move(str(produced), out_dir / "predictions" / produced.name)
        plot_memory(record, out_dir / "memory" / f"{case}.png")
        with open(out_dir / "memory" / f"{case}.json", "w") as f:
            json.dump(asdict(record), f)
        records.append(record)
        write_csv(records, out_dir / "efficiency.csv")
        if pause_s > 0 and i + 1 < len(images):
            time.sleep(pause_s)
    shutil.rmtree(work, ignore_errors=True)
    return records


def main(argv: list[str] | None = None) -> int:
    parser = UsageParser(
        prog="python -m evaluation.efficiency",
        description=__doc__,
    )
    parser.add_argument("--input", type=Path, required=True, help=f"folder of <case>{IMAGE_SUFFIX} images")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--command", help="shell command template with {input}, {output}, {gpu}")
    how.add_argument("--docker-image", help="run this image as the organizers do (docker, --gpus device)")
    parser.add_argument("--gpu-index", type=int, default=0, help="NVML index of the GPU to sample (default 0)")
    parser.add_argument("--interval", type=float, default=INTERVAL_S, help="sampling interval in s (0.1)")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds to wait between cases (default: 0)")
    parser.add_argument(
        "--timeout", type=float, default=None, help="kill a case after this many seconds (default: no limit)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    args = parser.parse_args(argv)
    command = args.command if args.command else docker_command(args.docker_image)
    try:
        records = run_cases(
            args.input,
            args.out,
            command,
            args.gpu_index,
            args.interval,
            args.pause,
            args.timeout,
            not args.no_progress,
        )
    except (FileNotFoundError, ValueError) as err:
        return parser.fail(str(err))
    for r in records:
        gpu = (
            f"stable max {r.stable_max_mb:.0f} MiB, peak {r.peak_mb:.0f} MiB, area {r.auc_mb_s:.0f} MiB*s"
            if r.gpu_available
            else "no GPU sampled"
        )
        print(f"{r.case}: {r.seconds:.2f} s, {gpu}, peak RSS {r.peak_rss_mb:.0f} MiB, exit {r.returncode}")
    print(
        f"efficiency.csv and memory plots in {args.out}; the outputs in {args.out / 'predictions'} (a folder the "
        f"command names, {args.out / 'work'}, is scratch space, emptied for each case and removed)"
    )
    return 0 if all(r.returncode == 0 for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
