import numpy as np
import pytest
import SimpleITK as sitk

from evaluation.scorecard import false_positive_ml, main, scorecard


def _cube_and_grid():
    gt = np.zeros((12, 20, 20), bool)
    gt[4:6, 4:8, 4:8] = True
    return gt


def test_false_positive_volume_by_hand():
    gt = _cube_and_grid()
    pred = gt.copy()
    pred[5, 6, 12] = True  # 5 voxels (x) beyond the cube's last column: 5 mm at 1 mm, 10 mm at 2 mm in x
    pred[5, 6, 9] = True  # 2 voxels beyond: 2 mm
    pred[9, 6, 6] = True  # 4 slices above the cube's top slice (z = 5): 4 voxels along z
    spacing = (2.0, 1.0, 1.0)  # z, y, x mm: the z voxel is 8 mm away
    assert false_positive_ml(gt, pred, spacing, margin_mm=3.0) == pytest.approx(2 * 2.0 / 1000)  # x +5 and z +4
    assert false_positive_ml(gt, pred, spacing, margin_mm=6.0) == pytest.approx(1 * 2.0 / 1000)  # z +4 only (8 mm)
    assert false_positive_ml(gt, pred, spacing, margin_mm=8.0) == 0.0  # 8 mm is within the margin
    assert false_positive_ml(gt, pred, (1.0, 1.0, 2.0), margin_mm=9.0) == pytest.approx(1 * 2.0 / 1000)  # x +5: 10 mm


def test_false_positive_volume_edge_cases():
    gt = _cube_and_grid()
    empty = np.zeros_like(gt)
    assert false_positive_ml(gt, empty, (1, 1, 1)) == 0.0
    assert false_positive_ml(empty, gt, (2.0, 0.5, 0.5)) == pytest.approx(gt.sum() * 0.5 / 1000)  # no reference
    far = np.zeros_like(gt)
    far[0, 19, 19] = True  # outside the reference's box grown by the margin
    assert false_positive_ml(gt, far, (1, 1, 1), margin_mm=2.0) == pytest.approx(0.001)
    with pytest.raises(ValueError, match="spacing"):
        false_positive_ml(gt, gt, (1, 0, 1))
    with pytest.raises(ValueError, match="one shape"):
        false_positive_ml(gt, gt[1:], (1, 1, 1))


def _write(path, array, spacing=(1.0, 1.0, 2.0)):
    img = sitk.GetImageFromArray(array.astype(np.uint8))
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))


def test_scorecard_rows_and_missing_prediction(tmp_path, capsys):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    ref = np.zeros((12, 20, 20), np.uint8)
    ref[4:6, 4:8, 4:8] = 1  # liver, 32 voxels of 2 mm^3
    pred = ref.copy()
    pred[10:12, 15:20, 15:20] = 3  # 50 voxels of spleen in a scan that has none
    _write(gt_dir / "A.nii.gz", ref)
    _write(gt_dir / "A_0000.nii.gz", ref)  # an image beside it: not a reference
    _write(pred_dir / "A.nii.gz", pred)
    _write(gt_dir / "B.nii.gz", ref)  # no prediction
    rows, problems = scorecard(gt_dir, pred_dir)
    by = {(r.case, r.organ): r for r in rows}
    assert len(rows) == 8 and len(problems) == 1 and "B.nii.gz" in problems[0]
    assert by["A", "liver"].dsc == 1.0 and by["A", "liver"].fp_ml == 0.0 and by["A", "liver"].ref_ml == 0.064
    assert by["A", "spleen"].fp_ml == pytest.approx(0.1) and by["A", "spleen"].status == "ok"
    assert by["A", "kidney"].status == "absent"
    assert by["B", "liver"].dsc == 0.0 and by["B", "liver"].status == "missing prediction"
    assert main(["--gt", str(gt_dir), "--pred", str(pred_dir), "--out", str(tmp_path / "s.csv")]) == 1
    out = capsys.readouterr().out
    assert "| A | 1.000 / 1.000 / 0.00 | - | not in scan / FP 0.10 | - |" in out
    assert (tmp_path / "s.csv").read_text().count("\n") == 9


def test_false_positives_are_attributed_to_the_anatomy(tmp_path, capsys):
    gt_dir, pred_dir, anatomy_dir = tmp_path / "gt", tmp_path / "pred", tmp_path / "anatomy"
    for d in (gt_dir, pred_dir, anatomy_dir):
        d.mkdir()
    ref = np.zeros((12, 20, 20), np.uint8)
    ref[2:4, 2:6, 2:6] = 4  # pancreas
    pred = ref.copy()
    pred[8:10, 14:18, 14:18] = 4  # 32 voxels far from the pancreas: 18 in the "stomach", 14 unlabelled
    whole = np.zeros_like(ref)
    whole[8:10, 14:18, 14:19] = 7
    whole[8:10, 14:17, 17:18] = 0  # 2 x 3 x 1 = 6 voxels of the false positive are unlabelled
    whole[8:10, 17, 14:18] = 0  # and 2 x 1 x 4 = 8 more
    _write(gt_dir / "A.nii.gz", ref)
    _write(pred_dir / "A.nii.gz", pred)
    _write(anatomy_dir / "A_total.nii.gz", whole)
    (anatomy_dir / "classes.json").write_text('{"A_total.nii.gz": {"7": "stomach"}}')
    rows, _ = scorecard(gt_dir, pred_dir, anatomy_dir=anatomy_dir)
    pancreas = next(r for r in rows if r.organ == "pancreas")
    assert pancreas.fp_ml == pytest.approx(32 * 2 / 1000)
    assert pancreas.fp_where == "stomach 0.04 mL, unlabelled 0.03 mL"  # 18 and 14 voxels of 2 mm^3
    assert main(["--gt", str(gt_dir), "--pred", str(pred_dir), "--anatomy", str(anatomy_dir)]) == 0
    assert "| A | pancreas | 0.06 | stomach 0.04 mL, unlabelled 0.03 mL |" in capsys.readouterr().out
