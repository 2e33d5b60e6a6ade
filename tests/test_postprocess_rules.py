import numpy as np
import pytest
import SimpleITK as sitk

from training.postprocess_rules import compare_rules, format_comparison, main


def _write(path, labels_zyx, direction):
    image = sitk.GetImageFromArray(labels_zyx)
    image.SetSpacing((2.0, 2.0, 5.0))
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path))


@pytest.mark.parametrize("flip_z", [False, True])
def test_rules_scored_on_the_canonical_array(tmp_path, flip_z):
    """A liver near the head and a larger liver-labelled blob near the feet: anatomy keeps the liver, flare
    the blob, whichever way the file stores z."""
    gt = np.zeros((40, 16, 16), np.uint8)
    head = slice(30, 36) if not flip_z else slice(4, 10)  # array z grows to the head unless the file flips it
    feet = slice(2, 12) if not flip_z else slice(28, 38)
    gt[head, 2:8, 2:8] = 1
    raw = gt.copy()
    raw[feet, 6:14, 6:14] = 1  # 640 voxels against the liver's 216
    direction = (1, 0, 0, 0, 1, 0, 0, 0, -1) if flip_z else (1, 0, 0, 0, 1, 0, 0, 0, 1)
    (tmp_path / "gt").mkdir()
    (tmp_path / "raw").mkdir()
    _write(tmp_path / "gt" / "c.nii.gz", gt, direction)
    _write(tmp_path / "raw" / "c.nii.gz", raw, direction)
    rows = compare_rules(tmp_path / "raw", tmp_path / "gt")
    liver = {rule: next(s for s in scores if s.organ == "liver") for rule, scores in rows.items()}
    assert liver["anatomy"].dsc == 1.0 and liver["anatomy"].fp_ml == 0.0
    assert liver["flare"].dsc == 0.0 and liver["flare"].fp_ml == pytest.approx(640 * 0.02)
    assert liver["none"].fp_ml == pytest.approx(640 * 0.02)
    table = format_comparison(rows)
    assert "| anatomy | 1.000 / 0.0 mL |" in table and "| flare | 0.000 / 12.8 mL |" in table


def test_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--raw", str(tmp_path / "missing"), "--gt", str(tmp_path)])
    assert exit_.value.code == 2 and "not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["--raw", str(tmp_path), "--gt", str(tmp_path)])
    assert exit_.value.code == 2 and "no prediction" in capsys.readouterr().err
