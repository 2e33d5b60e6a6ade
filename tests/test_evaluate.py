"""The scoring CLI on the real cases of ../shared/data: self-scores, shifted copies against the reference,
missing, corrupt and wrong-grid predictions."""

from __future__ import annotations

import ast
import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from evaluation import figure
from evaluation.evaluate import find_cases, main, parse_tolerance
from evaluation.labels_io import LabelReadError, read_labels
from evaluation.metrics import ORGANS
from inference.task import shared_data_dir

REPO = Path(__file__).resolve().parents[1]
CASES = ["DCMQI_0001", "FLARE22C_0044", "TSDCM_0001", "TSEX_0002"]


@pytest.fixture(scope="module")
def gt_dir() -> Path:
    path = shared_data_dir()
    if not all((path / f"{c}.nii.gz").exists() for c in CASES):
        pytest.skip(f"real cases not found in {path} (set RUNET_SHARED_DATA to the shared data folder)")
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_like(array: np.ndarray, reference: Path, out: Path) -> None:
    """Write a zyx uint8 label map on the grid of the image at ``reference``."""
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.CopyInformation(sitk.ReadImage(str(reference)))
    sitk.WriteImage(image, str(out))


def reference_scores(gt: np.ndarray, pred: np.ndarray, spacing_zyx, tol: float = 1.0):
    """(DSC, NSD) per organ from DeepMind's package, with the organizers' edge cases."""
    sd = pytest.importorskip("surface_distance")
    out = {}
    for label, organ in ORGANS.items():
        g, p = gt == label, pred == label
        if not g.any():
            out[organ] = (1.0, 1.0) if not p.any() else (0.0, 0.0)
        elif not p.any():
            out[organ] = (0.0, 0.0)
        else:
            dists = sd.compute_surface_distances(g, p, spacing_zyx)
            nsd = sd.compute_surface_dice_at_tolerance(dists, tol)
            out[organ] = (float(sd.compute_dice_coefficient(g, p)), float(nsd))
    return out


def run_cli(gt: Path, pred: Path, out: Path, *extra: str) -> int:
    return main(["--gt", str(gt), "--pred", str(pred), "--out", str(out), "--no-progress", *extra])


def test_find_cases_skips_images(gt_dir):
    assert find_cases(gt_dir) == CASES


def test_labels_against_themselves_score_one(gt_dir, tmp_path):
    pred = tmp_path / "pred"
    pred.mkdir()
    for case in CASES:
        shutil.copy(gt_dir / f"{case}.nii.gz", pred)
    assert run_cli(gt_dir, pred, tmp_path / "out") == 0
    rows = read_csv(tmp_path / "out" / "metrics.csv")
    assert len(rows) == len(CASES) * len(ORGANS)
    assert all(float(r["DSC"]) == 1.0 and float(r["NSD"]) == 1.0 for r in rows)
    assert all(r["status"] == ("ok" if r["in_gt"] == "1" else "absent") for r in rows)
    summary = read_csv(tmp_path / "out" / "summary.csv")
    assert [r["organ"] for r in summary] == [*ORGANS.values(), "overall"]
    assert all(float(r["DSC_mean"]) == 1.0 and float(r["NSD_median"]) == 1.0 for r in summary)
    for name in ("violin_dsc.png", "violin_nsd.png"):
        assert (tmp_path / "out" / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.filterwarnings("ignore:Please import:DeprecationWarning")
def test_shifted_copies_match_the_reference_and_workers_agree(gt_dir, tmp_path):
    pred = tmp_path / "pred"
    pred.mkdir()
    expected = {}
    for i, case in enumerate(CASES):
        gt, grid = read_labels(gt_dir / f"{case}.nii.gz")
        shifted = np.roll(gt, 2, axis=2 - i % 2)  # 2 voxels: more than 1 mm at every spacing here
        write_like(shifted, gt_dir / f"{case}.nii.gz", pred / f"{case}.nii.gz")
        expected[case] = reference_scores(gt, shifted, grid.spacing_zyx)
    assert run_cli(gt_dir, pred, tmp_path / "one") == 0
    assert run_cli(gt_dir, pred, tmp_path / "two", "--workers", "2") == 0
    rows = read_csv(tmp_path / "one" / "metrics.csv")
    assert rows == read_csv(tmp_path / "two" / "metrics.csv")
    for r in rows:
        dsc, nsd = expected[r["case"]][r["organ"]]
        assert float(r["DSC"]) == pytest.approx(dsc, abs=1e-12)
        assert float(r["NSD"]) == pytest.approx(nsd, abs=1e-9)
    present = [r for r in rows if expected[r["case"]][r["organ"]] != (1.0, 1.0)]
    assert present and all(float(r["NSD"]) < 1.0 and float(r["DSC"]) < 1.0 for r in present)


def test_missing_and_corrupt_predictions_score_zero_and_are_listed(gt_dir, tmp_path, capsys):
    pred = tmp_path / "pred"
    pred.mkdir()
    shutil.copy(gt_dir / "TSEX_0002.nii.gz", pred)
    (pred / "DCMQI_0001.nii.gz").write_bytes(b"")  # zero bytes
    (pred / "FLARE22C_0044.nii.gz").write_bytes(b"\x1f\x8b this is not a gzip stream")  # corrupt
    # TSDCM_0001 missing; a .nii beside its expected name is named in the message
    sitk.WriteImage(sitk.ReadImage(str(gt_dir / "TSDCM_0001.nii.gz")), str(pred / "TSDCM_0001.nii"))
    assert run_cli(gt_dir, pred, tmp_path / "out") == 1  # still scored, as 0
    rows = read_csv(tmp_path / "out" / "metrics.csv")
    status = {r["case"]: r["status"] for r in rows}
    assert status == {
        "DCMQI_0001": "unreadable",
        "FLARE22C_0044": "unreadable",
        "TSDCM_0001": "missing",
        "TSEX_0002": "ok",
    }
    for r in rows:
        if r["case"] != "TSEX_0002":
            assert (float(r["DSC"]), float(r["NSD"])) == (0.0, 0.0)
    problems = {r["case"]: r for r in read_csv(tmp_path / "out" / "problems.csv")}
    assert set(problems) == {"DCMQI_0001", "FLARE22C_0044", "TSDCM_0001"}
    assert "0 bytes" in problems["DCMQI_0001"]["message"]
    assert "FLARE22C_0044.nii.gz" in problems["FLARE22C_0044"]["message"]
    assert "TSDCM_0001.nii lies beside it" in problems["TSDCM_0001"]["message"]
    captured = capsys.readouterr()
    assert (
        "TSDCM_0001" in captured.err and "missing" in captured.err and "TSDCM_0001.nii lies beside it" in captured.err
    )
    cases = {ln.split()[0]: ln.split() for ln in captured.out.splitlines() if ln.split()}
    assert cases["TSDCM_0001"][-1] == "missing" and cases["TSEX_0002"][-1] == "ok"
    assert cases["TSDCM_0001"][1:3] == ["0.000", "0.000"]


@pytest.mark.parametrize("change", ["spacing", "origin", "direction", "size"])
def test_prediction_on_the_wrong_grid_is_an_error(gt_dir, tmp_path, capsys, change):
    pred = tmp_path / "pred"
    pred.mkdir()
    for case in CASES:
        shutil.copy(gt_dir / f"{case}.nii.gz", pred)
    image = sitk.ReadImage(str(gt_dir / "TSEX_0002.nii.gz"))
    if change == "spacing":
        image.SetSpacing((3.0, 3.0, 2.5))
    elif change == "origin":
        image.SetOrigin(tuple(v + 1.5 for v in image.GetOrigin()))
    elif change == "direction":
        image.SetDirection((1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    else:
        image = image[:-1, :, :]
    sitk.WriteImage(image, str(pred / "TSEX_0002.nii.gz"))
    assert run_cli(gt_dir, pred, tmp_path / "out") == 1
    rows = read_csv(tmp_path / "out" / "metrics.csv")
    bad = [r for r in rows if r["case"] == "TSEX_0002"]
    assert all(r["status"] == "wrong_grid" and r["DSC"] == "" and r["NSD"] == "" for r in bad)
    assert all(float(r["DSC"]) == 1.0 for r in rows if r["case"] != "TSEX_0002")
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if "TSEX_0002" in ln)
    assert line.startswith("error:") and change in line and "TSEX_0002.nii.gz" in line
    summary = {r["organ"]: r for r in read_csv(tmp_path / "out" / "summary.csv")}
    assert summary["liver"]["n"] == str(len(CASES) - 1)


def usage_line(capsys, argv: list[str]) -> str:
    """Run evaluate's CLI; assert exit code 2 and one line on stderr; return it."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("python -m evaluation.evaluate: error: ") and lines[0].endswith("--help)")
    return lines[0]


def test_bad_arguments_give_a_one_line_error(tmp_path, capsys):
    folder = ["--pred", str(tmp_path), "--out", str(tmp_path / "out")]
    assert f"--gt {tmp_path / 'nope'}: folder not found" in usage_line(
        capsys, ["--gt", str(tmp_path / "nope"), *folder]
    )
    (tmp_path / "a.nii.gz").write_bytes(b"x")
    line = usage_line(capsys, ["--gt", str(tmp_path / "a.nii.gz"), *folder])
    assert f"--gt {tmp_path / 'a.nii.gz'} is a file, not a folder" in line
    assert "required: --gt, --pred, --out" in usage_line(capsys, [])
    assert "unrecognized arguments: --work" in usage_line(capsys, ["--gt", str(tmp_path), *folder, "--work", "2"])
    assert "--tolerance heart=2: unknown organ" in usage_line(
        capsys, ["--gt", str(tmp_path), *folder, "--tolerance", "heart=2"]
    )
    with pytest.raises(ValueError, match="unknown organ"):
        parse_tolerance("heart=2")
    assert parse_tolerance("liver=5,kidney=3,spleen=3,pancreas=5") == {1: 5.0, 2: 3.0, 3: 3.0, 4: 5.0}
    assert parse_tolerance("1") == 1.0


def test_read_labels_rejects_non_integer_and_non_3d(tmp_path):
    img = sitk.GetImageFromArray(np.full((3, 4, 5), 0.5, np.float32))
    sitk.WriteImage(img, str(tmp_path / "f.nii.gz"))
    with pytest.raises(LabelReadError, match="integers"):
        read_labels(tmp_path / "f.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5), np.uint8)), str(tmp_path / "2d.nii.gz"))
    with pytest.raises(LabelReadError, match="3D"):
        read_labels(tmp_path / "2d.nii.gz")
    integral = sitk.GetImageFromArray(np.full((3, 4, 5), 2.0, np.float32))
    sitk.WriteImage(integral, str(tmp_path / "i.nii.gz"))
    labels, grid = read_labels(tmp_path / "i.nii.gz")
    assert labels.dtype == np.uint8 and labels.shape == (3, 4, 5) and grid.size_xyz == (5, 4, 3)


def test_module_entry_point(gt_dir, tmp_path):
    pred = tmp_path / "pred"
    pred.mkdir()
    shutil.copy(gt_dir / "FLARE22C_0044.nii.gz", pred)
    proc = subprocess.run(
        [sys.executable, "-m", "evaluation.evaluate", "--gt", str(gt_dir), "--pred", str(pred)]
        + ["--out", str(tmp_path / "out"), "--no-progress"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr  # three predictions missing
    assert "overall" in proc.stdout and "3 scored 0" in proc.stdout
    assert proc.stderr.count("missing prediction") == 3


def imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_evaluation_imports_nothing_from_inference_or_training():
    for path in (REPO / "evaluation").glob("*.py"):
        for name in imported_modules(path):
            assert name.split(".")[0] not in {"inference", "training"}, f"{path.name} imports {name}"
    for path in (REPO / "niftiio").glob("*.py"):
        for name in imported_modules(path):
            allowed = sys.stdlib_module_names | {"numpy", "__future__", "niftiio"}  # the stdlib, numpy, itself
            assert name.split(".")[0] in allowed, f"{path.name}: {name}"


def test_qualitative_figure_of_a_real_case(gt_dir, tmp_path):
    pred_path = tmp_path / "TSEX_0002.nii.gz"
    gt, _ = read_labels(gt_dir / "TSEX_0002.nii.gz")
    write_like(np.roll(gt, 2, axis=2), gt_dir / "TSEX_0002.nii.gz", pred_path)
    out = tmp_path / "fig.png"
    args = ["--image", str(gt_dir / "TSEX_0002_0000.nii.gz"), "--gt", str(gt_dir / "TSEX_0002.nii.gz")]
    assert figure.main([*args, "--pred", str(pred_path), "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG" and out.stat().st_size > 10_000
    wrong = tmp_path / "wrong.nii.gz"
    shutil.copy(gt_dir / "FLARE22C_0044.nii.gz", wrong)
    assert figure.main([*args, "--pred", str(wrong), "--out", str(tmp_path / "x.png")]) == 2


def test_figure_picks_the_largest_cross_section():
    gt = np.zeros((6, 8, 8), np.uint8)
    gt[1, 2:4, 2:4] = 1
    gt[4, 1:7, 1:7] = 1
    pred = np.zeros_like(gt)
    pred[2, 3:5, 3:5] = 4  # pancreas only predicted: its rows come from the prediction
    assert figure.organ_slices(gt, pred) == {1: 4, 4: 2}


def test_case_names_ending_in_0000_are_labels_unless_an_image_of_a_labelled_case(tmp_path):
    for name in ("PHANTOM_0000.nii.gz", "PHANTOM_0001.nii.gz", "A.nii.gz", "A_0000.nii.gz", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert find_cases(tmp_path) == ["A", "PHANTOM_0000", "PHANTOM_0001"]
