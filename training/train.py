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
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from inference.checkpoint import Sampling, load_checkpoint, save_checkpoint, write_sha256sums
from inference.cli import log
from inference.model import RUNet, UNetConfig, count_parameters
from inference.preprocess import Normalization
from inference.regularized_softmax import RegularizedSoftmax, lam_to_raw
from training import distributed
from training.config import TrainConfig, parse_args
from training.data import load_dataset, split_cases
from training.logs import append_row, plot_curves, truncate_rows
from training.losses import eq5_terms
from training.sampler import PatchDataset, PatchSpec, epoch_order, rank_positions, worker_init
from training.validate import summarize, summary_keys, validate

AMP = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for float32. "auto": bf16 on CUDA when supported (fp16 otherwise), else None."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return AMP.get(precision)


def build_model(cfg: TrainConfig) -> RUNet:
    torch.manual_seed(cfg.seed)
    return RUNet(
        UNetConfig(
            widths=cfg.widths,
            norm=cfg.norm,
            attention=cfg.attention,
            regularized_softmax=cfg.regularized_softmax,
            tv_step=cfg.tv_step,
            lam_init=cfg.lam_init,
            lam_learnable=cfg.lam_learnable,
            tv_iterations=cfg.tv_iterations,
        )
    )


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
        raise ValueError(f"{path}: --init checkpoint has config {ckpt.config}, this run builds {model.config}")
    if ckpt.normalization != norm:
        raise ValueError(f"{path}: --init checkpoint has window {ckpt.normalization}, this run uses {norm}")
    if ckpt.config != model.config:
        body = {k: v for k, v in ckpt.model.state_dict().items() if not k.startswith("activation.")}
        missing, unexpected = model.load_state_dict(body, strict=False)
        if unexpected or any(not k.startswith("activation.") for k in missing):
            raise ValueError(f"{path}: --init weights do not fit this network ({missing + unexpected})")
        print(f"{path}: network body loaded; the head starts as configured here", file=sys.stderr)
        return
    model.load_state_dict(ckpt.model.state_dict())
    act = model.activation
    if isinstance(act, RegularizedSoftmax) and act.lam_raw.requires_grad and act.lam_value < 1e-6:
        with torch.no_grad():
            act.lam_raw.fill_(lam_to_raw(model.config.lam_init))
        dead = ckpt.model.activation.lam_value
        print(f"{path}: lambda {dead:.1e} restarts at {model.config.lam_init}", file=sys.stderr)


def train(cfg: TrainConfig) -> dict:
    """Run (or continue) training; returns the last epoch's log row (main process), or {} (other processes, or a
    finished run: nothing to do)."""
    d, device = distributed.setup(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    cache = Path(cfg.cache) if cfg.cache else out / "cache"
    norm = Normalization(cfg.hu_min, cfg.hu_max)
    spec = PatchSpec(*cfg.patch, stride=cfg.stride)

    # data: the main process checks every pair and fills the cache; the others then map it
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        cases = load_dataset(Path(cfg.data), cache, check=True)
    distributed.barrier(d)
    if not d.main:
        cases = load_dataset(Path(cfg.data), cache, check=False)
    train_names, val_names = split_cases([c.name for c in cases], cfg.val_fraction, cfg.seed, cfg.val_cases)
    train_cases = [c for c in cases if c.name in set(train_names)]
    val_cases = [c for c in cases if c.name in set(val_names)]
    if cfg.val_max_cases:
        val_cases = val_cases[: cfg.val_max_cases]

    model = build_model(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    amp = amp_dtype(cfg.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)

    start_epoch, step, best, wall = 0, 0, -math.inf, 0.0
    last = out / "last.pt"
    resuming = cfg.resume and last.is_file()
    if cfg.init and not resuming:
        init_weights(model, norm, Path(cfg.init))
    if resuming:
        payload = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(payload["state_dict"])
        state = payload["training"]
        opt.load_state_dict(state["resume"]["optimizer"])
        for group in opt.param_groups:  # a resumed run takes --lr as given (a no-op when it is unchanged)
            group["lr"] = cfg.lr
        scaler.load_state_dict(state["resume"]["scaler"])
        torch.set_rng_state(state["resume"]["torch_rng"])
        start_epoch, step, best, wall = state["epoch"] + 1, state["step"], state["best_dsc"], state["wall_s"]
        if start_epoch >= cfg.epochs or (cfg.max_steps and step >= cfg.max_steps):
            if d.main:
                limit = (
                    f"--max-steps (now {cfg.max_steps})" if start_epoch < cfg.epochs else f"--epochs (now {cfg.epochs})"
                )
                log(
                    f"nothing to do: {start_epoch} epochs already done ({step} steps) in {out}; pass a larger {limit} "
                    f"to train on, or --no-resume to start over"
                )
            distributed.cleanup(d)
            return {}
        if d.main:
            truncate_rows(out / "log.csv", lambda r: int(r["epoch"]) <= state["epoch"])
            truncate_rows(out / "steps.csv", lambda r: int(r["step"]) <= step)
            log(f"resumed from {last} after epoch {start_epoch} (step {step})")
    net = model
    if d.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    samples = cfg.samples_per_epoch or len(train_cases)
    global_batch = cfg.batch_size * d.world
    # the in-plane voxel size (mm) of the patches the network sees: inference picks its stride to match it
    voxels = [cfg.stride * 0.5 * (c.spacing_zyx[1] + c.spacing_zyx[2]) for c in train_cases]
    sampling = Sampling((min(voxels), max(voxels)), train_stride=cfg.stride, train_patch_zyx=tuple(cfg.patch))
    record = {
        "train_config": cfg.to_dict(),
        "parameters": count_parameters(model),
        "world_size": d.world,
        "data": {"folder": str(cfg.data), "train_cases": train_names, "val_cases": [c.name for c in val_cases]},
        "patch_sampling": f"I[k:k+{spec.depth}, i::{spec.stride}, j::{spec.stride}], in-plane crop/pad to "
        f"{spec.height}x{spec.width}",
    }
    if d.main:
        log(
            f"{len(train_cases)} training / {len(val_cases)} validation cases, {count_parameters(model):,} parameters, "
            f"{d.world} process(es) x batch {cfg.batch_size}, device {device}, amp {amp}"
        )
    row: dict = {}
    started, epochs_run = time.perf_counter(), 0
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.max_steps and step >= cfg.max_steps:
            break
        t0 = time.perf_counter()
        order = epoch_order(len(train_cases), samples, global_batch, cfg.seed, epoch)
        positions = rank_positions(len(order), cfg.batch_size, d.rank, d.world)
        dataset = PatchDataset(train_cases, spec, norm, order, positions, cfg.seed, epoch)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            shuffle=False,
            num_workers=cfg.workers,
            worker_init_fn=worker_init,
            pin_memory=device.type == "cuda",
        )
        net.train()
        sums = np.zeros(3)
        n = 0
        # the bar on a terminal only (disable=None), in the main process: a log file holds the epoch lines alone
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=None if d.main else True,
            file=sys.stderr,
            leave=False,
        )
        for x, y in bar:
            if cfg.max_steps and step >= cfg.max_steps:
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            ctx = torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
            with ctx:
                probs = net(x)
            ce, dice = eq5_terms(probs, y, cfg.eps, cfg.dice)
            loss = ce + dice
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            step += 1
            vals = [distributed.mean_across(v.item(), d, device) for v in (loss, ce, dice)]
            sums += vals
            n += 1
            if d.main:
                append_row(
                    out / "steps.csv",
                    {
                        "epoch": epoch,
                        "step": step,
                        "loss": vals[0],
                        "ce": vals[1],
                        "dice": vals[2],
                        "lam": lam_of(model),
                    },
                )
                bar.set_postfix(loss=f"{vals[0]:.4f}", lam=f"{lam_of(model):.3f}")
        wall += time.perf_counter() - t0
        row = {"epoch": epoch, "step": step, "loss": sums[0] / max(n, 1), "ce": sums[1] / max(n, 1)}
        row |= {"dice": sums[2] / max(n, 1), "lam": lam_of(model), "lr": cfg.lr, "train_s": round(wall, 1)}
        last_epoch = epoch == cfg.epochs - 1 or bool(cfg.max_steps and step >= cfg.max_steps)
        if d.main:
            summary = {}
            if val_cases and ((epoch + 1) % cfg.val_every == 0 or last_epoch):
                summary = summarize(validate(model, norm, val_cases, sampling, device))
                model.train()
            row |= summary or dict.fromkeys(summary_keys(), float("nan"))
            training = record | {"epoch": epoch, "step": step, "wall_s": wall, "lam": lam_of(model), "val": summary}
            improved = bool(summary) and summary["dsc_mean"] > best
            if improved:
                best = summary["dsc_mean"]
            training["best_dsc"] = best
            if improved or not val_cases:
                save_checkpoint(out / "best.pt", model, norm, training=training, sampling=sampling)
            resume = {"optimizer": opt.state_dict(), "scaler": scaler.state_dict(), "torch_rng": torch.get_rng_state()}
            save_checkpoint(last, model, norm, training=training | {"resume": resume}, sampling=sampling)
            write_sha256sums(out)
            append_row(out / "log.csv", row)
            val_txt = f" val DSC {summary['dsc_mean']:.3f}" if summary else ""
            log(f"epoch {epoch + 1}: loss {row['loss']:.4f} lambda {row['lam']:.4f}{val_txt} ({wall:.0f} s)")
        epochs_run += 1
        distributed.barrier(d)
    if d.main and (out / "log.csv").is_file():
        plot_curves(out / "log.csv", out / "curves.png")
    if d.main and epochs_run:
        took = time.perf_counter() - started
        log(
            f"done: {epochs_run} epoch(s) in {took:.0f} s (mean {took / epochs_run:.1f} s per epoch, validation "
            f"included); checkpoints and logs in {out}"
        )
    distributed.cleanup(d)
    return row if d.main else {}


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    train(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
