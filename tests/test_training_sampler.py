"""The paper's patch sampler against slicing by hand; epoch order and the split over processes."""

from __future__ import annotations

import numpy as np
import pytest

from inference.preprocess import Normalization
from training.data import CachedCase
from training.sampler import Draw, PatchDataset, PatchSpec, cut_patch, draw_patch, epoch_order, rank_positions


def _volume(shape):
    return np.arange(np.prod(shape), dtype=np.int32).reshape(shape)


def test_patch_is_strided_slice_of_paper():
    vol = _volume((200, 512, 512))
    spec = PatchSpec(depth=128, height=128, width=128, stride=4)
    d = Draw(k=37, i=2, j=3, y0=0, x0=0)
    np.testing.assert_array_equal(cut_patch(vol, d, spec, -1), vol[37:165, 2::4, 3::4])


def test_short_volume_replicates_last_slice_and_small_plane_is_padded():
    vol = _volume((50, 200, 120))  # D < 128, H and W not 512
    spec = PatchSpec(depth=128, height=64, width=48, stride=4)
    d = Draw(k=0, i=1, j=2, y0=0, x0=0)
    patch = cut_patch(vol, d, spec, -7)
    sub = vol[:, 1::4, 2::4]  # (50, 50, 30)
    expected = np.full((128, 64, 48), -7, dtype=vol.dtype)
    expected[:50, :50, :30] = sub
    expected[50:] = expected[49]
    np.testing.assert_array_equal(patch, expected)


def test_large_plane_is_cropped_at_drawn_offset():
    vol = _volume((40, 300, 260))
    spec = PatchSpec(depth=16, height=32, width=32, stride=2)
    d = Draw(k=5, i=1, j=0, y0=11, x0=60)
    np.testing.assert_array_equal(cut_patch(vol, d, spec, 0), vol[5:21, 1::2, 0::2][:, 11:43, 60:92])


def test_draws_cover_their_ranges():
    rng = np.random.default_rng(0)
    spec = PatchSpec(depth=128, height=128, width=128, stride=4)
    draws = [draw_patch((140, 512, 512), spec, rng) for _ in range(400)]
    assert {d.k for d in draws} == set(range(13))
    assert {d.i for d in draws} == {d.j for d in draws} == set(range(4))
    assert {d.y0 for d in draws} == {0}  # 512 / 4 = 128: no crop
    short = draw_patch((30, 512, 512), spec, rng)
    assert short.k == 0


def test_dataset_item_matches_hand_cut_and_normalizes():
    rng = np.random.default_rng(1)
    image = rng.integers(-1000, 1000, (20, 40, 36)).astype(np.int16)
    label = rng.integers(0, 5, (20, 40, 36)).astype(np.uint8)
    case = CachedCase("c", image, label, (2.0, 1.0, 1.0))
    spec = PatchSpec(depth=32, height=16, width=16, stride=2)
    norm = Normalization(-200, 300)
    order = epoch_order(1, 4, 2, seed=3, epoch=5)
    ds = PatchDataset([case], spec, norm, order, [0, 1, 2, 3], seed=3, epoch=5)
    x, y = ds[2]
    draw = draw_patch(image.shape, spec, np.random.default_rng([3, 5, 2]))
    hand = (np.clip(cut_patch(image, draw, spec, -1024).astype(np.float64), -200, 300) - 50) / 250  # by hand
    np.testing.assert_allclose(x[0].numpy(), hand, rtol=0, atol=1e-6)
    assert x.min() >= -1 and x.max() <= 1 and x.min() < -0.99 and x.max() > 0.99
    np.testing.assert_array_equal(y.numpy(), cut_patch(label, draw, spec, 0))
    assert x.shape == (1, 32, 16, 16) and y.dtype.is_floating_point is False


def test_epoch_order_and_rank_split():
    order = epoch_order(5, 5, 4, seed=0, epoch=0)
    assert len(order) == 8 and sorted(order[:5]) == list(range(5))
    assert not np.array_equal(order, epoch_order(5, 5, 4, seed=0, epoch=1))
    one = rank_positions(len(order), 4, 0, 1)
    two = [rank_positions(len(order), 2, r, 2) for r in range(2)]
    for t in range(2):  # step t of two processes of batch 2 == step t of one process of batch 4
        assert sorted(two[0][2 * t : 2 * t + 2] + two[1][2 * t : 2 * t + 2]) == one[4 * t : 4 * t + 4]


def test_spec_validation():
    with pytest.raises(ValueError):
        PatchSpec(depth=0)
