"""Train RUnet: python -m training.train --data FOLDER --out RUN [options]; several GPUs or machines through
torchrun --nproc_per_node=N -m training.train ... (distributed data parallel).

One epoch = ``samples_per_epoch`` patches (default: one per training case), cut by training/sampler.py and
loaded by DataLoader workers. Loss: the paper's equation 5 on the regularized softmax's output (training/losses.py).
After every epoch, <out>/last.pt (with optimizer and RNG state: a restart continues from it and gives the same
results as an uninterrupted run) and, when the validation DSC improves, <out>/best.pt; both are inference
checkpoints (python -m inference.predict --weights <out>/best.pt), verified by <out>/SHA256SUMS. Logs: <out>/log.csv
(per epoch: loss, lambda, validation DSC/NSD per organ), <out>/steps.csv (per step), <out>/curves.png at the end.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from inference.checkpoint import load_checkpoint, save_checkpoint, write_sha256sums
from inference.cli import log
from inference.device import autocast_dtype, autocast_name, select_device
from inference.distributed import Launch, barrier, join_group, launch_from_env, leave_group, mean_across, process_device
from inference.model import RUNet, count_parameters
from inference.plan import Sampling
from inference.preprocess import Normalization
from inference.regularized_softmax import RegularizedSoftmax, lam_to_raw
from niftiio.wording import count
from training.config import TrainConfig, options_for, parse_args
from training.data import CachedCase, load_dataset, split_cases
from training.logs import append_row, plot_curves, truncate_rows
from training.losses import eq5_terms
from training.sampler import PatchDataset, PatchSpec, epoch_order, rank_positions, worker_init
from training.state import TrainingProgress, load_training_state, save_training_state
from training.validate import summarize, summary_keys, validate


def build_model(cfg: TrainConfig) -> RUNet:
    """The run's network with its initial weights (seeded with --seed)."""
    torch.manual_seed(cfg.seed)
    return RUNet(cfg.network)


def lam_of(model: RUNet) -> float:
    act = model.activation
    return float(act.lam_value) if hasattr(act, "lam_value") else 0.0


HEAD_FIELDS = ("regularized_softmax", "tv_step", "lam_init", "lam_learnable", "tv_iterations")
"""UNetConfig fields of the last activation only: --init may change them (the weights of the body are the same)."""


def init_weights(model: RUNet, norm: Normalization, path: Path) -> None:
    """Load the weights of checkpoint `path` into `model` (in place), for fine-tuning.

    The checkpoint must hold the same network body (UNetConfig apart from HEAD_FIELDS) and intensity window as this
    run; otherwise ValueError naming the file and the difference. The sha256 is not required (a run's last.pt has no
    SHA256SUMS entry). When the head's config differs (a plain softmax fine-tuned with the regularized softmax, a
    fixed lambda, ...), only the body is loaded and the head starts as this run's config says. A learnable lambda
    that arrives below 1e-6 (a checkpoint of the clamped parametrization, where lambda died at 0) restarts at the
    config's lam_init: softplus's gradient there, sigmoid(-14) ~ 1e-6, would keep it at 0.
    """
    ckpt = load_checkpoint(path, verify=False)
    head = {f: getattr(model.config, f) for f in HEAD_FIELDS}
    if replace(ckpt.config, **head) != model.config:
        raise ValueError(
            f"{path}: --init checkpoint has config {ckpt.config}, this run builds {model.config}; "
            f"pass {options_for(replace(ckpt.config, **head), model.config)} to build the checkpoint's network"
        )
    if ckpt.normalization != norm:
        raise ValueError(
            f"{path}: --init checkpoint has window {ckpt.normalization}, this run uses {norm}; "
            f"pass {options_for(ckpt.normalization, norm)}"
        )
    if ckpt.config != model.config:
        body = {k: v for k, v in ckpt.model.state_dict().items() if not k.startswith("activation.")}
        missing, unexpected = model.load_state_dict(body, strict=False)
        if unexpected or any(not k.startswith("activation.") for k in missing):
            raise ValueError(f"{path}: --init weights do not fit this network ({missing + unexpected})")
        log(f"{path}: network body loaded; the head starts as configured here")
        return
    model.load_state_dict(ckpt.model.state_dict())
    act = model.activation
    if isinstance(act, RegularizedSoftmax) and act.lam_raw.requires_grad and act.lam_value < 1e-6:
        with torch.no_grad():
            act.lam_raw.fill_(lam_to_raw(model.config.lam_init))
        dead = ckpt.model.activation.lam_value
        log(f"{path}: lambda {dead:.1e} restarts at {model.config.lam_init}")


@dataclass
class Run:
    """One process's view of a run: its config and folder, process group and device, cases, network (``net``: the
    model, or its distributed-data-parallel wrapper), optimizer, gradient scaler and autocast dtype (None: float32),
    and the record and the Sampling that every checkpoint of the run holds (``run_record``, ``run_sampling``)."""

    cfg: TrainConfig
    d: Launch
    device: torch.device
    train_cases: list[CachedCase]
    val_cases: list[CachedCase]
    model: RUNet
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp: torch.dtype | None
    net: torch.nn.Module | None = None
    record: dict = field(default_factory=dict)
    sampling: Sampling = field(default_factory=Sampling)

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    @property
    def norm(self) -> Normalization:
        return self.cfg.window


def load_cases(cfg: TrainConfig, d: Launch) -> tuple[list[CachedCase], list[CachedCase]]:
    """(training cases, validation cases). The main process checks every pair and fills the cache; the others then
    map it."""
    cache = Path(cfg.cache) if cfg.cache else Path(cfg.out) / "cache"
    if d.main:
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        cases = load_dataset(Path(cfg.data), cache, check=True)
    barrier(d)
    if not d.main:
        cases = load_dataset(Path(cfg.data), cache, check=False)
    train_names, val_names = split_cases([c.name for c in cases], cfg.val_fraction, cfg.seed, cfg.val_cases)
    train_cases = [c for c in cases if c.name in set(train_names)]
    val_cases = [c for c in cases if c.name in set(val_names)]
    if cfg.val_max_cases:
        val_cases = val_cases[: cfg.val_max_cases]
    return train_cases, val_cases


def join(device_name: str) -> tuple[Launch, torch.device]:
    """This process's place in a torchrun launch (rank 0 of 1 without one) and its device (inference.device's
    names; under torchrun a CUDA process takes cuda:LOCAL_RANK); joins the process group (NCCL on CUDA, gloo on
    the CPU) when there are several processes."""
    launch = launch_from_env()
    device = select_device(process_device(device_name, launch))
    if device.type == "cuda":
        if device.index is None:  # plain "cuda": the current GPU, named by its index (set_device needs one)
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
        # every step has the same patch shape: let cuDNN time its 3D convolution algorithms once and keep the fastest
        torch.backends.cudnn.benchmark = True
    join_group(launch, "nccl" if device.type == "cuda" else "gloo", timeout=None)
    return launch, device


def set_up(cfg: TrainConfig) -> Run:
    """Join the process group, load the cases, build the network (seeded), its optimizer and gradient scaler."""
    d, device = join(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train_cases, val_cases = load_cases(cfg, d)
    model = build_model(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    amp = autocast_dtype(cfg.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    return Run(cfg, d, device, train_cases, val_cases, model, opt, scaler, amp)


def start(run: Run) -> TrainingProgress | None:
    """A new run (from --init's weights when given), or the state of <out>/last.pt with the logs cut back to it;
    None (logged) when that run has nothing left to do."""
    cfg, last = run.cfg, run.out / "last.pt"
    if not (cfg.resume and last.is_file()):
        if cfg.init:
            init_weights(run.model, run.norm, Path(cfg.init))
        return TrainingProgress(epoch=-1, step=0, best_dsc=-math.inf, wall_s=0.0)
    progress = load_training_state(last, run.model, run.opt, run.scaler)
    for group in run.opt.param_groups:  # a resumed run takes --lr as given (a no-op when it is unchanged)
        group["lr"] = cfg.lr
    done, step = progress.epoch + 1, progress.step
    if done >= cfg.epochs or (cfg.max_steps and step >= cfg.max_steps):
        if run.d.main:
            limit = f"--max-steps (now {cfg.max_steps})" if done < cfg.epochs else f"--epochs (now {cfg.epochs})"
            log(
                f"nothing to do: {count(done, 'epoch')} already done ({count(step, 'step')}) in {run.out}; pass a "
                f"larger {limit} to train on, or --no-resume to start over"
            )
        return None
    if run.d.main:
        truncate_rows(run.out / "log.csv", lambda r: int(r["epoch"]) <= progress.epoch)
        truncate_rows(run.out / "steps.csv", lambda r: int(r["step"]) <= step)
        log(f"resumed from {last} after epoch {done} (step {step})")
    return progress


def run_record(run: Run) -> dict:
    """What every checkpoint of the run holds besides its progress and its Sampling: the config, the network's size,
    the processes, the cases and the patch sampling."""
    cfg, spec = run.cfg, PatchSpec(*run.cfg.patch, stride=run.cfg.stride)
    return {
        "train_config": cfg.to_dict(),
        "parameters": count_parameters(run.model),
        "world_size": run.d.world,
        "data": {
            "folder": str(cfg.data),
            "train_cases": [c.name for c in run.train_cases],
            "val_cases": [c.name for c in run.val_cases],
        },
        "patch_sampling": f"I[k:k+{spec.depth}, i::{spec.stride}, j::{spec.stride}], in-plane crop/pad to "
        f"{spec.height}x{spec.width}",
    }


def run_sampling(run: Run) -> Sampling:
    """How the network sees CT in this run: the in-plane voxel size (mm) of its patches over the training cases
    (inference picks its stride to match it), the training stride and patch (validation cuts with them)."""
    cfg = run.cfg
    voxels = [cfg.stride * 0.5 * (c.spacing_zyx[1] + c.spacing_zyx[2]) for c in run.train_cases]
    return Sampling((min(voxels), max(voxels)), train_stride=cfg.stride, train_patch_zyx=tuple(cfg.patch))


def epoch_loader(run: Run, epoch: int) -> torch.utils.data.DataLoader:
    """This process's share of the epoch's patches (drawn from --seed and the epoch), in batches."""
    cfg = run.cfg
    samples = cfg.samples_per_epoch or len(run.train_cases)
    order = epoch_order(len(run.train_cases), samples, cfg.batch_size * run.d.world, cfg.seed, epoch)
    positions = rank_positions(len(order), cfg.batch_size, run.d.rank, run.d.world)
    spec = PatchSpec(*cfg.patch, stride=cfg.stride)
    dataset = PatchDataset(run.train_cases, spec, run.norm, order, positions, cfg.seed, epoch)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=False,
        num_workers=cfg.workers,
        worker_init_fn=worker_init,
        pin_memory=run.device.type == "cuda",
    )


def train_step(run: Run, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """One optimizer step on a batch; returns [loss, ce, dice], each the mean over the processes."""
    x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
    ctx = torch.autocast(run.device.type, dtype=run.amp) if run.amp is not None else contextlib.nullcontext()
    with ctx:
        probs = run.net(x)
    ce, dice = eq5_terms(probs, y, run.cfg.eps, run.cfg.dice)
    loss = ce + dice
    run.opt.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.opt)
    run.scaler.update()
    return [mean_across(v.item(), run.d, run.device) for v in (loss, ce, dice)]


def train_epoch(run: Run, epoch: int, step: int) -> tuple[dict, int]:
    """One epoch, or its steps up to --max-steps: every step a row of steps.csv (main process). Returns the epoch's
    row of log.csv without validation (mean loss, ce, dice over its steps; lambda; lr) and the step count after it."""
    cfg = run.cfg
    run.net.train()
    sums, n = np.zeros(3), 0
    # the bar on a terminal only (disable=None), in the main process: a log file holds the epoch lines alone
    bar = tqdm(
        epoch_loader(run, epoch),
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        disable=None if run.d.main else True,
        file=sys.stderr,
        leave=False,
    )
    for x, y in bar:
        if cfg.max_steps and step >= cfg.max_steps:
            break
        vals = train_step(run, x, y)
        step, sums, n = step + 1, sums + vals, n + 1
        if run.d.main:
            lam = lam_of(run.model)
            append_row(
                run.out / "steps.csv",
                {"epoch": epoch, "step": step, "loss": vals[0], "ce": vals[1], "dice": vals[2], "lam": lam},
            )
            bar.set_postfix(loss=f"{vals[0]:.4f}", lam=f"{lam:.3f}")
    row = {"epoch": epoch, "step": step, "loss": sums[0] / max(n, 1), "ce": sums[1] / max(n, 1)}
    row |= {"dice": sums[2] / max(n, 1), "lam": lam_of(run.model), "lr": cfg.lr}
    return row, step


def end_epoch(run: Run, row: dict, progress: TrainingProgress, last_epoch: bool) -> tuple[dict, TrainingProgress]:
    """Main process, after an epoch: validate when due (every --val-every epochs and after the last), save best.pt
    (when the validation DSC improved, or every epoch without validation cases) and last.pt, append the row to
    log.csv and log it. Returns the row with its validation columns and the progress with the best DSC so far."""
    cfg, model = run.cfg, run.model
    summary = {}
    if run.val_cases and ((progress.epoch + 1) % cfg.val_every == 0 or last_epoch):
        summary = summarize(validate(model, run.norm, run.val_cases, run.sampling, run.device))
        model.train()
    row = row | (summary or dict.fromkeys(summary_keys(), float("nan")))
    improved = bool(summary) and summary["dsc_mean"] > progress.best_dsc
    if improved:
        progress = replace(progress, best_dsc=summary["dsc_mean"])
    training = run.record | {"epoch": progress.epoch, "step": progress.step, "wall_s": progress.wall_s}
    training |= {"lam": lam_of(model), "val": summary, "best_dsc": progress.best_dsc}
    if improved or not run.val_cases:
        save_checkpoint(run.out / "best.pt", model, run.norm, training=training, sampling=run.sampling)
    save_training_state(run.out / "last.pt", model, run.norm, training, run.opt, run.scaler, run.sampling)
    write_sha256sums(run.out)
    append_row(run.out / "log.csv", row)
    val_txt = f" val DSC {summary['dsc_mean']:.3f}" if summary else ""
    log(
        f"epoch {progress.epoch + 1}: loss {row['loss']:.4f} lambda {row['lam']:.4f}{val_txt} ({progress.wall_s:.0f} s)"
    )
    return row, progress


def train(cfg: TrainConfig) -> dict:
    """Run (or continue) training; returns the last epoch's log row (main process), or {} (other processes, or a
    finished run: nothing to do)."""
    run = set_up(cfg)
    progress = start(run)
    if progress is None:
        leave_group(run.d)
        return {}
    run.net = run.model
    if run.d.distributed:
        ids = [run.device.index] if run.device.type == "cuda" else None
        run.net = torch.nn.parallel.DistributedDataParallel(run.model, device_ids=ids)
    run.record, run.sampling = run_record(run), run_sampling(run)
    if run.d.main:
        log(
            f"{len(run.train_cases)} training / {len(run.val_cases)} validation cases, "
            f"{count_parameters(run.model):,} parameters, {count(run.d.world, 'process')} x batch {cfg.batch_size}, "
            f"device {run.device}, precision {autocast_name(run.amp)}"
        )
    row: dict = {}
    started, epochs_run = time.perf_counter(), 0
    for epoch in range(progress.epoch + 1, cfg.epochs):
        if cfg.max_steps and progress.step >= cfg.max_steps:
            break
        t0 = time.perf_counter()
        row, step = train_epoch(run, epoch, progress.step)
        progress = replace(progress, epoch=epoch, step=step, wall_s=progress.wall_s + time.perf_counter() - t0)
        row["train_s"] = round(progress.wall_s, 1)
        if run.d.main:
            last_epoch = epoch == cfg.epochs - 1 or bool(cfg.max_steps and step >= cfg.max_steps)
            row, progress = end_epoch(run, row, progress, last_epoch)
        epochs_run += 1
        barrier(run.d)
    finish(run, time.perf_counter() - started, epochs_run)
    return row if run.d.main else {}


def finish(run: Run, seconds: float, epochs_run: int) -> None:
    """Main process: the curves of log.csv and a last log line; every process: leave the process group."""
    if run.d.main and (run.out / "log.csv").is_file():
        plot_curves(run.out / "log.csv", run.out / "curves.png")
    if run.d.main and epochs_run:
        log(
            f"done: {count(epochs_run, 'epoch')} in {seconds:.0f} s (mean {seconds / epochs_run:.1f} s per epoch, "
            f"validation included); checkpoints and logs in {run.out}"
        )
    leave_group(run.d)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    train(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
