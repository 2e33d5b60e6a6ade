"""The preview PNG (inference.outputs.preview): written and not empty for a real case, a row per organ present
whose three views each cut the organ, and a volume without organs still previewed."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from inference.outputs.preview import organ_slices, preview_png, to_lps_arrays
from inference.task import shared_data_dir

DATA = shared_data_dir()
matplotlib = pytest.importorskip("matplotlib")


def png_size(path) -> tuple[int, int]:
    """(width, height) of a PNG as its file says."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.mark.parametrize("case", ["TSEX_0002", "TSDCM_0001"])
def test_preview_of_a_real_case_draws_every_organ_present(tmp_path, case):
    image = sitk.ReadImage(str(DATA / f"{case}_0000.nii.gz"))
    label = sitk.ReadImage(str(DATA / f"{case}.nii.gz"))
    path = tmp_path / f"{case}.png"
    drawn = preview_png(image, label, path, title=case)
    present = {name for value, name in enumerate(("liver", "kidney", "spleen", "pancreas"), 1)
               if (sitk.GetArrayViewFromImage(label) == value).any()}  # fmt: skip
    assert set(drawn) == present and present
    width, height = png_size(path)
    assert width > 500 and height > 300 * len(present)  # a row of three views per organ
    _, lab, _ = to_lps_arrays(image, label)
    values = {"liver": 1, "kidney": 2, "spleen": 3, "pancreas": 4}
    for organ, (z, y, x) in drawn.items():
        v = values[organ]
        assert (lab[z] == v).any() and (lab[:, y, :] == v).any() and (lab[:, :, x] == v).any()


def test_both_kidneys_sagittal_view_cuts_one():
    lab = np.zeros((10, 20, 30), np.uint8)
    lab[2:8, 5:12, 3:7] = 2  # right kidney
    lab[2:8, 5:12, 22:26] = 2  # left kidney: the middle of both lies between them, at x 14
    z, y, x = organ_slices(lab)["kidney"]
    assert lab[:, :, x].any() and lab[z].any() and lab[:, y, :].any()


def test_preview_without_organs(tmp_path):
    image = sitk.GetImageFromArray(np.full((4, 16, 16), -50, np.int16))
    label = sitk.GetImageFromArray(np.zeros((4, 16, 16), np.uint8))
    assert preview_png(image, label, tmp_path / "p.png") == {}
    assert png_size(tmp_path / "p.png")[0] > 0
    with pytest.raises(ValueError, match="not one grid"):
        preview_png(image, label[:8, :, :], tmp_path / "q.png")
