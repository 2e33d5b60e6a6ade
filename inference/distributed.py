"""Several processes launched by torchrun, for inference and training alike: where this process stands
(:func:`launch_from_env`, values checked), the device it runs on (:func:`process_device`), and the process group
(:func:`join_group`, :func:`gather`, :func:`mean_across`, :func:`barrier`, :func:`leave_group`).

Without torchrun's variables a process is rank 0 of 1 and every function here is a no-op (or returns its input),
without importing torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

GATHER_TIMEOUT = timedelta(days=7)
"""How long an inference process waits for the others at the final gather (and at the group's start)."""


@dataclass(frozen=True)
class Launch:
    """Where this process stands in a torchrun launch: global rank, number of processes, rank on its machine.
    A single process is rank 0 of 1."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """Whether there are other processes (WORLD_SIZE > 1)."""
        return self.world > 1

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the process that writes logs and summaries."""
        return self.rank == 0


def env_int(env: Mapping[str, str], name: str) -> int | None:
    """An integer environment variable; None when unset or empty; ValueError naming it otherwise."""
    value = env.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an integer") from None


def launch_from_env(env: Mapping[str, str] = os.environ) -> Launch:
    """torchrun's RANK, WORLD_SIZE and LOCAL_RANK; rank 0 of 1 without either of RANK and WORLD_SIZE. ValueError
    (one line naming the variable) for a value that is not an integer or out of range, and for one of RANK and
    WORLD_SIZE set without the other (torchrun sets both: a half-set launch would run every case in every process)."""
    world = env_int(env, "WORLD_SIZE")
    if world is None:
        if env_int(env, "RANK") is not None:
            raise ValueError(f"RANK={env.get('RANK')!r} is set without WORLD_SIZE; set both (torchrun does) or neither")
        return Launch()
    rank, local = env_int(env, "RANK"), env_int(env, "LOCAL_RANK")
    if world < 1:
        raise ValueError(f"WORLD_SIZE={world} must be >= 1")
    if rank is None or not 0 <= rank < world:
        raise ValueError(f"RANK={env.get('RANK')!r} must be set to an integer in [0, WORLD_SIZE={world})")
    if local is not None and local < 0:
        raise ValueError(f"LOCAL_RANK={local} must be >= 0")
    return Launch(rank, world, rank if local is None else local)


def process_device(name: str, launch: Launch) -> str:
    """The device name this process runs on: under torchrun, "auto" and "cuda" become cuda:LOCAL_RANK (modulo the
    GPUs there are, so extra processes share them) when CUDA is available; "auto" is the CPU otherwise. Any
    other name (cpu, cuda:N) is kept, as is everything in a single process."""
    if not launch.distributed or name not in ("auto", "cuda"):
        return name
    import torch  # only under torchrun: a single process does not load torch to name its device

    if not torch.cuda.is_available():
        return name
    return f"cuda:{launch.local_rank % torch.cuda.device_count()}"


def join_group(launch: Launch, backend: str = "gloo", timeout: timedelta | None = GATHER_TIMEOUT) -> None:
    """Join torchrun's process group (its address from the environment torchrun sets) when WORLD_SIZE > 1.

    backend: "gloo" (CPU tensors and objects: inference's records) or "nccl" (CUDA tensors: training's gradients);
    timeout: how long a collective waits for the slowest process (None: torch's default)."""
    if not launch.distributed:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend, **({} if timeout is None else {"timeout": timeout}))


def gather(value: T, launch: Launch) -> list[T]:
    """Every process's ``value`` (picklable), in rank order, on every process; [value] in a single process."""
    if not launch.distributed:
        return [value]
    import torch.distributed as dist

    out: list = [None] * launch.world
    dist.all_gather_object(out, value)
    return out


def mean_across(value: float, launch: Launch, device: torch.device) -> float:
    """The mean of a float over all processes (the value itself in a single process); ``device``: where the
    group's backend reduces (the CUDA device under nccl)."""
    if not launch.distributed:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / launch.world


def barrier(launch: Launch) -> None:
    """Wait for every process (nothing in a single process)."""
    if launch.distributed:
        import torch.distributed as dist

        dist.barrier()


def leave_group(launch: Launch) -> None:
    """Leave the process group joined by :func:`join_group` (nothing in a single process)."""
    if not launch.distributed:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
