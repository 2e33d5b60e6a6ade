"""The Python API of README.md: segment_folder is python -m inference.predict without the command line, and
segment(image) gives, for a SimpleITK image or a file, the label map that the folder run writes for it."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_writer import write_dicom_series

from inference import predict
from inference.case_log import CaseRecord
from inference.ct_io import InputError
from inference.engine_options import EngineOptions
from inference.options import OptionError
from inference.plan import PlanOptions
from inference.runner import RunError, segment, segment_folder

ENGINE = EngineOptions(device="cpu", backend="torch", precision="float32")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two small cases, the second in a non-canonical orientation (flipped x axis)."""
    folder = tmp_path_factory.mktemp("api_cases")
    rng = np.random.default_rng(5)
    for k, direction in enumerate(((1, 0, 0, 0, 1, 0, 0, 0, 1), (-1, 0, 0, 0, 1, 0, 0, 0, 1))):
        image = sitk.GetImageFromArray(rng.integers(-1000, 400, size=(10, 24, 28)).astype(np.int16))
        image.SetSpacing((1.5, 1.5, 3.0))
        image.SetDirection(direction)
        image.SetOrigin((10.0 * k, -4.0, 7.5))
        sitk.WriteImage(image, str(folder / f"case{k}_0000.nii.gz"))
    return folder


def test_segment_folder_writes_what_the_command_line_writes(folder, tiny_weights, tmp_path):
    records = segment_folder(folder, tmp_path / "api", weights=tiny_weights, engine=ENGINE)
    assert [(r.name, r.status) for r in records] == [("case0", "written"), ("case1", "written")]
    assert all(isinstance(r, CaseRecord) and r.stride is not None for r in records)
    argv = ["-i", str(folder), "-o", str(tmp_path / "cli"), "--weights", str(tiny_weights), "--device", "cpu"]
    assert predict.main([*argv, "--backend", "torch", "--precision", "float32"]) == 0
    for name in ("case0", "case1"):
        api = (tmp_path / "api" / f"{name}.nii.gz").read_bytes()
        assert api == (tmp_path / "cli" / f"{name}.nii.gz").read_bytes()


def test_segment_of_an_image_or_a_path_is_the_folder_run_label_map(folder, tiny_weights, tmp_path):
    segment_folder(folder, tmp_path / "out", weights=tiny_weights, engine=ENGINE)
    for name in ("case0", "case1"):
        path = folder / f"{name}_0000.nii.gz"
        written = sitk.ReadImage(str(tmp_path / "out" / f"{name}.nii.gz"))
        for given in (path, str(path), sitk.ReadImage(str(path))):
            labels = segment(given, weights=tiny_weights, engine=ENGINE)
            assert labels.GetPixelID() == sitk.sitkUInt8
            assert labels.GetSize() == written.GetSize() and labels.GetDirection() == written.GetDirection()
            assert labels.GetOrigin() == written.GetOrigin() and labels.GetSpacing() == written.GetSpacing()
            assert np.array_equal(sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(written))


def test_segment_of_a_dicom_folder_is_the_nifti_label_map(folder, tiny_weights, tmp_path):
    image = sitk.ReadImage(str(folder / "case0_0000.nii.gz"))  # identity direction: the series' array order
    write_dicom_series(image, tmp_path / "series")
    expected = segment(image, weights=tiny_weights, engine=ENGINE)
    for given in (tmp_path / "series", tmp_path / "series" / "IM0003.dcm"):
        labels = segment(given, weights=tiny_weights, engine=ENGINE)
        assert np.array_equal(sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(expected))
    with pytest.raises(InputError, match="holds 2 cases .*segment_folder"):
        segment(folder, weights=tiny_weights, engine=ENGINE)


def test_runs_that_cannot_start_raise_with_the_command_line_exit_code(folder, tiny_weights, tmp_path):
    with pytest.raises(RunError) as error:
        segment_folder(folder, folder, weights=tiny_weights, engine=ENGINE)
    assert error.value.code == 2 and "is the input folder" in str(error.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError) as error:
        segment_folder(tmp_path / "empty", tmp_path / "out", weights=tiny_weights, engine=ENGINE)
    assert error.value.code == 1 and "no input images" in str(error.value)
    with pytest.raises(RunError) as error:
        segment_folder(folder, tmp_path / "out", weights=tmp_path / "missing.pt", engine=ENGINE)
    assert error.value.code == 2 and "checkpoint file not found" in str(error.value)


def test_options_are_checked_when_they_are_made():
    with pytest.raises(OptionError, match="batch_size must be >= 1, got 0") as error:
        EngineOptions(batch_size=0)
    assert error.value.as_option() == "--batch-size must be >= 1, got 0"
    with pytest.raises(OptionError, match="precision must be one of auto, float32, bfloat16, float16, got 'half'"):
        EngineOptions(precision="half")
    with pytest.raises(OptionError, match="overlap must be in"):
        PlanOptions(overlap=1.0)
    with pytest.raises(OptionError, match="short_volume must be one of pad, fit, got 'crop'"):
        PlanOptions(short_volume="crop")
