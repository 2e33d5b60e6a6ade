"""Values checked against a hand computation rather than the code's own output: the HU window, the sums of
overlapping z-windows (a fake network whose output depends on the window's position) and the summary table."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evaluation.report import Row, summarize
from inference.patching import iter_phase_sums, predict_labels, window_coverage, z_window_starts
from inference.plan import PatchPlan
from inference.preprocess import Normalization


def test_hu_window_maps_onto_minus_one_to_one_by_hand():
    hu = np.array([[-3024, -1000, -200, -150], [0, 50, 175, 300], [301, 1000, 3071, 42]], dtype=np.int16)
    # clip to [-200, 300], then (v - 50) / 250
    expected = np.array([[-1.0, -1.0, -1.0, -0.8], [-0.2, 0.0, 0.5, 1.0], [1.0, 1.0, 1.0, -0.032]], dtype=np.float32)
    out = Normalization().apply(hu)
    assert out.dtype == np.float32 and out.shape == hu.shape
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
    assert Normalization().air_value == -1.0
    # another window: [-100, 100] -> (v - 0) / 100
    np.testing.assert_allclose(Normalization(-100, 100).apply(np.array([-150.0, -25.0, 60.0])), [-1.0, -0.25, 0.6])
    assert hu[0, 0] == -3024  # the input is not modified


def _window_index_network(depth: int, num_classes: int):
    """A fake network for a volume whose slice z holds the value z / depth everywhere: every voxel of a window gets
    the class scores ``scores(k)`` of the window's own start slice k, read back from its first slice."""

    def scores(k: int) -> torch.Tensor:
        return torch.tensor([1.0 + k, 100.0 - k, (k % 7) * 3.0][:num_classes])

    def net(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty((x.shape[0], num_classes, *x.shape[2:]))
        for b in range(x.shape[0]):
            k = int(round(float(x[b, 0, 0, 0, 0]) * depth))
            out[b] = scores(k).view(num_classes, 1, 1, 1)
        return out

    return net, scores


@pytest.mark.parametrize("depth,overlap", [(300, 0.5), (200, 0.25), (150, 0.9), (128, 0.5)])
def test_overlapping_windows_are_summed_by_position(depth, overlap):
    plan = PatchPlan(stride=2, phases=4, window=128, overlap=overlap, size_multiple=8)
    volume = np.broadcast_to((np.arange(depth, dtype=np.float32) / depth)[:, None, None], (depth, 6, 5)).copy()
    net, scores = _window_index_network(depth, 3)
    starts = z_window_starts(depth, 128, overlap)
    expected = torch.zeros(3, depth)
    for k in starts:
        expected[:, k : k + 128] += scores(k)[:, None]
    count = torch.zeros(depth)
    for k in starts:
        count[k : k + 128] += 1
    n = 0
    for _, sums in iter_phase_sums(volume, net, 3, plan, batch_size=3):
        n += 1
        assert sums.shape[:2] == (3, depth)
        torch.testing.assert_close(sums, expected[:, :, None, None].expand_as(sums), rtol=0, atol=1e-4)
    assert n == 4
    np.testing.assert_array_equal(window_coverage(depth, plan), count.numpy().astype(np.int64))


def test_labels_in_an_overlap_are_the_argmax_of_the_summed_windows():
    # two windows (starts 0 and 72 of 200 slices): the first says class 0 (0.6 vs 0.4), the second class 2 (0.55 vs
    # 0.45); where they overlap the sum (0.6, 0.85, 0.55) says class 1, which neither window alone gives
    depth = 200
    volume = np.broadcast_to((np.arange(depth, dtype=np.float32) / depth)[:, None, None], (depth, 4, 4)).copy()

    def net(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty((x.shape[0], 3, *x.shape[2:]))
        for b in range(x.shape[0]):
            first = float(x[b, 0, 0, 0, 0]) < 0.5 / depth
            p = [0.6, 0.4, 0.0] if first else [0.0, 0.45, 0.55]
            out[b] = torch.tensor(p).view(3, 1, 1, 1)
        return out

    plan = PatchPlan(stride=1, phases=1, window=128, overlap=0.25, size_multiple=4)
    assert z_window_starts(depth, 128, 0.25) == [0, 72]
    labels = predict_labels(volume, net, 3, plan, batch_size=1)
    per_slice = labels[:, 0, 0]
    assert (labels == per_slice[:, None, None]).all()
    np.testing.assert_array_equal(per_slice, [0] * 72 + [1] * 56 + [2] * 72)


def test_summary_mean_median_and_sample_std_by_hand():
    rows = [
        Row("a", "liver", 0.2, 0.1),
        Row("b", "liver", 0.4, 0.5),
        Row("c", "liver", 0.9, 0.6),
        Row("a", "kidney", 1.0, 0.8),
        Row("b", "kidney", math.nan, math.nan, "wrong_grid"),
        Row("c", "kidney", 0.0, 0.0, "missing"),
    ]
    summary = {e["organ"]: e for e in summarize(rows, ["liver", "kidney"])}
    assert list(summary) == ["liver", "kidney", "overall"]
    liver = summary["liver"]
    assert liver["n"] == 3
    assert liver["DSC_mean"] == pytest.approx(0.5) and liver["DSC_median"] == pytest.approx(0.4)
    # sample std of 0.2, 0.4, 0.9: deviations -0.3, -0.1, 0.4; (0.09 + 0.01 + 0.16) / 2 = 0.13
    assert liver["DSC_std"] == pytest.approx(math.sqrt(0.13))
    assert liver["NSD_mean"] == pytest.approx(0.4) and liver["NSD_median"] == pytest.approx(0.5)
    kidney = summary["kidney"]  # the NaN row is left out and not counted
    assert kidney["n"] == 2 and kidney["DSC_mean"] == pytest.approx(0.5) and kidney["DSC_median"] == pytest.approx(0.5)
    assert kidney["DSC_std"] == pytest.approx(math.sqrt(0.5))
    overall = summary["overall"]  # 0.2, 0.4, 0.9, 1.0, 0.0
    assert (
        overall["n"] == 5 and overall["DSC_mean"] == pytest.approx(0.5) and overall["DSC_median"] == pytest.approx(0.4)
    )
    one = summarize([Row("a", "liver", 0.7, 0.3)], ["liver"])[0]
    assert one["n"] == 1 and one["DSC_mean"] == 0.7 and math.isnan(one["DSC_std"])
