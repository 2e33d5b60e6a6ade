import numpy as np
import pytest
import torch

from inference.patching import predict_labels, z_window_starts
from inference.plan import PatchPlan
from inference.preprocess import Normalization

C = 5


def _voxelwise_probs(x: torch.Tensor) -> torch.Tensor:
    """A 'network' that is a per-voxel function: class scores depend on the voxel's own value only."""
    centers = torch.linspace(-1, 1, C, dtype=x.dtype, device=x.device).view(1, C, 1, 1, 1)
    return torch.softmax(-20 * (x - centers) ** 2, dim=1)


def _voxelwise_labels(volume: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(volume)[None, None]
    return _voxelwise_probs(x)[0].argmax(0).numpy().astype(np.uint8)


def _volume(shape, seed=0):
    return np.random.default_rng(seed).uniform(-1.2, 1.2, size=shape).astype(np.float32)


@pytest.mark.parametrize(
    "shape",
    [(1, 5, 7), (37, 130, 97), (127, 33, 21), (128, 20, 24), (300, 17, 40), (129, 8, 8)],
)
@pytest.mark.parametrize("short_volume", ["pad", "fit"])
def test_all_phases_reassemble_exactly(shape, short_volume):
    volume = _volume(shape)
    plan = PatchPlan(short_volume=short_volume)
    labels = predict_labels(volume, _voxelwise_probs, C, plan, batch_size=3, pad_value=-1.0)
    assert labels.dtype == np.uint8 and labels.shape == shape
    np.testing.assert_array_equal(labels, _voxelwise_labels(volume))


@pytest.mark.slow
def test_full_size_volume_reassembles_exactly():
    volume = _volume((200, 512, 512), seed=1)
    labels = predict_labels(volume, _voxelwise_probs, C, PatchPlan(overlap=0.25), batch_size=4)
    np.testing.assert_array_equal(labels, _voxelwise_labels(volume))


def test_each_window_sees_one_phase_with_the_training_layout():
    seen = []

    def spy(x):
        seen.append(x.clone())
        return _voxelwise_probs(x)

    volume = _volume((140, 64, 48), seed=2)
    predict_labels(volume, spy, C, PatchPlan(overlap=0.5), batch_size=1, pad_value=-7.0)
    windows = torch.cat(seen)
    assert windows.shape == (16 * 2, 1, 128, 16, 16)  # 2 z-windows per phase, 48/4=12 padded to 16
    # phase (1, 2), second window: I[k:k+128, 1::4, 2::4] padded with -7 in-plane
    phase = 1 * 4 + 2
    start = z_window_starts(140, 128, 0.5)[1]
    assert start == 12
    np.testing.assert_array_equal(windows[phase * 2 + 1, 0, :, :, :12].numpy(), volume[start : start + 128, 1::4, 2::4])
    assert torch.all(windows[:, :, :, :, 12:] == -7.0)


def test_short_volume_is_replicate_padded_along_z():
    seen = []

    def spy(x):
        seen.append(x.clone())
        return _voxelwise_probs(x)

    volume = _volume((5, 8, 8), seed=3)
    predict_labels(volume, spy, C, PatchPlan(short_volume="fit", phases=1), batch_size=1)
    window = seen[0][0, 0]
    assert window.shape == (16, 16, 16)
    for z in range(5, 16):
        np.testing.assert_array_equal(window[z, :2, :2].numpy(), volume[4, ::4, ::4])


def test_z_window_starts_cover_and_overlap():
    assert z_window_starts(128, 128, 0.5) == [0]
    assert z_window_starts(300, 128, 0.5) == [0, 57, 115, 172]
    assert z_window_starts(300, 128, 0.0) == [0, 86, 172]
    for depth in (128, 129, 200, 255, 1000):
        starts = z_window_starts(depth, 128, 0.5)
        assert starts[0] == 0 and starts[-1] == depth - 128
        assert all(b - a <= 64 for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("phases", [4, 1])
def test_fewer_phases_interpolate_a_smooth_field(phases):
    # a smooth volume: interpolating the class probabilities recovers nearly every label
    z, y, x = np.meshgrid(np.arange(20), np.arange(96), np.arange(80), indexing="ij")
    volume = (np.sin(y / 15.0) * np.cos(x / 13.0) + 0.01 * z).astype(np.float32)
    labels = predict_labels(volume, _voxelwise_probs, C, PatchPlan(phases=phases))
    expected = _voxelwise_labels(volume)
    assert labels.shape == volume.shape
    assert (labels == expected).mean() > 0.97
    # voxels that were computed directly are exact
    g = 4 // int(phases**0.5)
    np.testing.assert_array_equal(labels[:, ::g, ::g], expected[:, ::g, ::g])


@pytest.mark.parametrize("phases", [16, 4, 1])
@pytest.mark.parametrize("shape", [(37, 130, 97), (5, 9, 13)])
def test_numpy_arrays_give_the_labels_of_torch_tensors(phases, shape):
    """device None (the OpenVINO backend's numpy arrays, no torch) writes the labels of the torch path, byte for
    byte, whether every phase runs or fewer are interpolated."""
    volume = _volume(shape, seed=2)
    plan = PatchPlan(phases=phases)

    def numpy_probs(x):
        assert isinstance(x, np.ndarray)
        return _voxelwise_probs(torch.from_numpy(x)).numpy()

    expected = predict_labels(volume, _voxelwise_probs, C, plan, batch_size=3)
    labels = predict_labels(volume, numpy_probs, C, plan, batch_size=3, device=None)
    assert labels.tobytes() == expected.tobytes()


@pytest.mark.parametrize("device", ["cpu", None])
@pytest.mark.parametrize("shape,stride", [((37, 130, 97), 4), ((5, 9, 13), 1), ((140, 12, 10), 2)])
def test_raw_values_normalized_phase_by_phase_give_the_labels_of_the_normalized_volume(device, shape, stride):
    """normalize: each phase's HU are normalized as the phase is cut (no normalized copy of the whole volume is
    held), with the values, and so the labels, of the volume normalized first; the HU volume is not modified."""
    hu = np.random.default_rng(3).integers(-1100, 500, size=shape).astype(np.int16)
    before = hu.copy()
    norm = Normalization()
    plan = PatchPlan(stride=stride, phases=stride * stride, window=16, size_multiple=8)
    probs = _voxelwise_probs if device else (lambda x: _voxelwise_probs(torch.from_numpy(x)).numpy())
    expected = predict_labels(norm.apply(hu), probs, C, plan, batch_size=3, device=device, pad_value=norm.air_value)
    kw = {"device": device, "pad_value": norm.air_value, "normalize": norm.apply}
    labels = predict_labels(hu, probs, C, plan, batch_size=3, **kw)
    assert labels.tobytes() == expected.tobytes()
    np.testing.assert_array_equal(hu, before)


def test_plan_validation():
    with pytest.raises(ValueError, match="phases"):
        PatchPlan(phases=8)
    with pytest.raises(ValueError, match="overlap"):
        PatchPlan(overlap=1.0)
    with pytest.raises(ValueError, match="window"):
        PatchPlan(window=100)
    with pytest.raises(ValueError, match="volume"):
        predict_labels(np.zeros((4, 4)), _voxelwise_probs, C)


def test_wrong_network_output_shape_is_reported():
    with pytest.raises(ValueError, match="predict_fn returned"):
        predict_labels(_volume((4, 8, 8)), lambda x: x.repeat(1, 2, 1, 1, 1), C)
