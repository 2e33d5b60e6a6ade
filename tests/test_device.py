"""One device choice and one precision policy for inference and training (inference/device.py): the table of what
each name gives on the CPU and on CUDA devices with and without bfloat16 (CUDA simulated), and training's process
set-up going through it."""

from __future__ import annotations

import pytest
import torch

from inference.device import autocast_dtype, precision_name, resolve_precision, select_device
from training.train import join

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_select_device_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == CPU and select_device("cpu") == CPU
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match="no CUDA device"):
            select_device(name)
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        select_device("gpu")


def test_select_device_with_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto") == CUDA and select_device("cuda:1") == torch.device("cuda:1")
    assert select_device("cpu") == CPU


@pytest.mark.parametrize("bf16", [True, False])
def test_precision_policy_of_inference_and_training(monkeypatch, bf16):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
    # inference: auto is measured on the CPU (None); bfloat16 on CUDA where supported, float32 where not
    assert resolve_precision("auto", CPU) is None
    assert resolve_precision("auto", CUDA) == (torch.bfloat16 if bf16 else torch.float32)
    # training: the same, except float16 (with loss scaling) on CUDA without bfloat16, and float32 on the CPU
    assert autocast_dtype("auto", CPU) is None
    assert autocast_dtype("auto", CUDA) == (torch.bfloat16 if bf16 else torch.float16)
    for device in (CPU, CUDA):  # a precision asked for by name is the same on both sides
        assert resolve_precision("float32", device) == torch.float32 and autocast_dtype("float32", device) is None
        for name, dtype in (("bfloat16", torch.bfloat16), ("float16", torch.float16)):
            assert resolve_precision(name, device) == dtype == autocast_dtype(name, device)


def test_unknown_precision_and_names():
    for fn in (resolve_precision, autocast_dtype):
        with pytest.raises(ValueError, match="unknown precision 'half'"):
            fn("half", CPU)
    assert precision_name(None) == "auto" and precision_name(torch.float16) == "float16"


def test_training_processes_take_their_device_from_select_device(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    d, device = join("cpu")
    assert device == CPU and (d.rank, d.world, d.main, d.distributed) == (0, 1, True, False)
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        join("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert join("auto")[1] == CPU
    monkeypatch.setenv("WORLD_SIZE", "2")  # the launch's values are checked as inference checks them
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK='2' must be set to an integer in"):
        join("cpu")


@pytest.mark.parametrize("name", ["auto", "cuda"])
def test_a_single_cuda_process_names_its_gpu_by_index(monkeypatch, name):
    """torch.cuda.set_device refuses a device without an index: a one-process run on "cuda" takes the current GPU."""
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    chosen = []

    def set_device(device):
        if not isinstance(device, int) and torch.device(device).index is None:
            raise ValueError(f"Expected a torch.device with a specified index or an integer, but got:{device}")
        chosen.append(torch.device(device))

    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    d, device = join(name)
    assert device == torch.device("cuda", 1) and chosen == [device] and not d.distributed
    assert torch.backends.cudnn.benchmark  # fixed patch shapes: cuDNN picks its convolution algorithms once
