"""--precision auto on the CPU: the faster of float32 and bfloat16 by measurement, remembered per machine."""

from __future__ import annotations

import json

import pytest
import torch

from inference import device, precision_choice
from inference.precision_choice import choice_key, choose, measure, pick


@pytest.fixture(autouse=True)
def _fresh_memo(monkeypatch):
    monkeypatch.setattr(precision_choice, "_MEMO", {})


def test_pick_takes_bfloat16_only_when_clearly_faster():
    assert pick({"float32": 1.0, "bfloat16": 0.90}) == "bfloat16"
    assert pick({"float32": 1.0, "bfloat16": 0.96}) == "float32"  # within the 5% margin: the exact one
    assert pick({"float32": 1.0, "bfloat16": 1.50}) == "float32"
    assert pick({"float32": 1.0}) == "float32"


def test_measure_warms_up_then_times_interleaved_rounds():
    calls = []
    candidates = {"float32": lambda: calls.append("f"), "bfloat16": lambda: calls.append("b")}
    clock = iter([3.0, 2.0, 1.0, 4.0])
    seconds = measure(candidates, rounds=2, timer=lambda fn: (fn(), next(clock))[1])
    assert calls == ["f", "b", "f", "b", "f", "b"]
    assert seconds == {"float32": 1.0, "bfloat16": 2.0}


def test_choice_is_measured_once_and_remembered_in_the_cache(tmp_path, monkeypatch):
    measured = []
    monkeypatch.setattr(precision_choice, "measure", lambda c: measured.append(1) or {"float32": 2.0, "bfloat16": 1.0})
    candidates = {"float32": lambda: None, "bfloat16": lambda: None}
    key = choice_key("openvino 1.0", 2, (8, 16), (1, 1, 128, 128, 128))
    lines = []
    assert choose(candidates, key, tmp_path, lines.append) == "bfloat16"
    stored = json.loads((tmp_path / "precision.json").read_text())["content"]
    assert stored[key]["choice"] == "bfloat16" and stored[key]["seconds"] == {"float32": 2.0, "bfloat16": 1.0}
    monkeypatch.setattr(precision_choice, "_MEMO", {})  # a new process: the cache file answers
    assert choose(candidates, key, tmp_path, lines.append) == "bfloat16"
    assert measured == [1] and len(lines) == 2 and "measured earlier" in lines[1]
    other = choice_key("openvino 1.0", 2, (8, 16), (1, 1, 32, 128, 128))  # another window shape: measured again
    assert choose(candidates, other, tmp_path, lines.append) == "bfloat16" and measured == [1, 1]


def test_without_a_cache_the_choice_is_remembered_for_the_process(monkeypatch):
    measured = []
    monkeypatch.setattr(precision_choice, "measure", lambda c: measured.append(1) or {"float32": 1.0, "bfloat16": 2.0})
    candidates = {"float32": lambda: None, "bfloat16": lambda: None}
    for _ in range(2):
        assert choose(candidates, "k", None, lambda line: None) == "float32"
    assert measured == [1]


def test_only_float32_to_choose_from_is_not_timed(tmp_path, monkeypatch):
    monkeypatch.setattr(precision_choice, "measure", lambda c: pytest.fail("nothing to measure"))
    assert choose({"float32": lambda: None}, "k", tmp_path, lambda line: None) == "float32"


def test_auto_precision_is_measured_on_the_cpu_and_bfloat16_on_cuda(monkeypatch):
    assert device.resolve_precision("auto", torch.device("cpu")) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert device.resolve_precision("auto", torch.device("cuda")) == torch.bfloat16
    assert device.resolve_precision("float32", torch.device("cpu")) == torch.float32
    assert device.precision_name(None) == "auto" and device.precision_name(torch.bfloat16) == "bfloat16"
