"""Distributed data parallel set-up from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK).

Without those variables everything is a single process (rank 0 of 1). With them: NCCL on CUDA, gloo on the CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from inference.device import select_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup(device_name: str) -> tuple[Dist, torch.device]:
    """Join the process group when launched by torchrun; pick this process's device (inference.device's names:
    "auto", "cpu", "cuda", "cuda:N"). Under torchrun a CUDA process takes cuda:LOCAL_RANK."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_name)
    use_cuda = device.type == "cuda"
    if use_cuda and world > 1:
        device = torch.device(f"cuda:{local}")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(rank, world, local), device


def mean_across(value: float, d: Dist, device: torch.device) -> float:
    """The mean of a float over all processes (the value itself in a single process)."""
    if not d.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / d.world


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def cleanup(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
