"""Tests of the phantom's labels mode, version 4 (phantom/from_labels.py's draw_case_v4 / render_case_v4,
phantom/template_extras.py, phantom/template_split.py): every real template maps, the fixed split holds, labels
follow the deformed template, the painted extras never cover an organ, and phases move HU as the table says."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from inference.task import shared_data_dir
from phantom.from_labels import draw_case_v4, render_case_v4
from phantom.generate import generate_case_info, write_dataset
from phantom.hu_table import TISSUE_ID_V3, TISSUES_V3
from phantom.template_extras import AORTA_X, BOWEL_X, GUT_FAT_X, LUNG_X, MEDULLA_X, PSOAS_X
from phantom.template_split import SCORED, VALIDATION, anatomy_dirs, split_templates
from phantom.templates import CORTEX, class_tissue, flare_label, list_templates, load_template

SHARED = shared_data_dir()
TINY_NAMES = {
    "1": "liver",
    "2": "spleen",
    "3": "kidney_left",
    "4": "kidney_right",
    "5": "pancreas",
    "6": "stomach",
    "7": "urinary_bladder",
}


def _tiny_map(seed: int) -> np.ndarray:
    """A 48 x 64 x 64 (zyx) label map at 3 x 3 x 5 mm (LPS, identity direction): organs as ellipsoids where they
    lie in a patient (x to the patient's left, y posterior, z superior), no bowel, no vessels, no bones."""
    z, y, x = np.mgrid[:48, :64, :64].astype(float)
    rng = np.random.default_rng(seed)
    s = 1 + 0.05 * rng.standard_normal(3)
    out = np.zeros((48, 64, 64), np.uint8)

    def put(cid, cz, cy, cx, rz, ry, rx):
        out[((z - cz) / rz) ** 2 + ((y - cy) / (ry * s[1])) ** 2 + ((x - cx) / (rx * s[2])) ** 2 < 1] = cid

    put(1, 38, 28, 18, 9, 14, 13)  # liver, patient right (low x), high
    put(2, 38, 38, 50, 5, 6, 5)  # spleen, left, posterior
    put(3, 28, 42, 44, 6, 5, 4)  # left kidney
    put(4, 26, 42, 20, 6, 5, 4)  # right kidney
    put(5, 30, 30, 34, 2, 3, 9)  # pancreas in front of the kidneys
    put(6, 38, 22, 44, 5, 6, 7)  # stomach
    put(7, 6, 24, 32, 4, 6, 6)  # bladder, low
    return out


@pytest.fixture(scope="module")
def tiny_templates(tmp_path_factory) -> str:
    """A templates folder with one validation name, one training name and one scored case's name."""
    d = tmp_path_factory.mktemp("tiny_templates")
    names = {}
    for i, stem in enumerate(("WORD_0014", "WORD_9001", "TSEX_0002_total")):
        img = sitk.GetImageFromArray(_tiny_map(i))
        img.SetSpacing((3.0, 3.0, 5.0))
        file = f"{stem}.nii.gz" if stem.startswith("TSEX") else f"{stem}_label.nii.gz"
        sitk.WriteImage(img, str(d / file))
        names[file] = TINY_NAMES
    (d / "classes.json").write_text(json.dumps(names))
    return str(d)


def test_split_keeps_held_out_and_scored_maps_apart(tiny_templates):
    paths = list_templates(tiny_templates)
    train = [p.name for p in split_templates(paths, "train")]
    val = [p.name for p in split_templates(paths, "val")]
    assert train == ["WORD_9001_label.nii.gz"] and val == ["WORD_0014_label.nii.gz"]
    assert "TSEX_0002_total.nii.gz" not in [p.name for p in split_templates(paths, "all")]
    with pytest.raises(ValueError, match="split"):
        split_templates(paths, "test")
    assert len(VALIDATION) >= 6 and sum(v.startswith("WORD") for v in VALIDATION) >= 3
    assert sum(v.startswith("BTCV") for v in VALIDATION) >= 3


def test_a_training_set_never_holds_a_held_out_template(tiny_templates, tmp_path):
    options = dict(mode="labels", size_xy=32, slices=12, templates_dir=tiny_templates, templates_split="train")
    write_dataset(tmp_path, 6, seed=3, **options)
    used = {c["template"] for c in json.loads((tmp_path / "manifest.json").read_text())["cases"].values()}
    assert used == {"WORD_9001_label.nii.gz"}
    with pytest.raises(ValueError, match="templates_split"):
        generate_case_info(0, mode="labels", size_xy=32, slices=12, templates_split="train", generator_version=3)


def test_labels_are_the_deformed_templates_organs(tiny_templates):
    rng = np.random.default_rng(7)
    case = draw_case_v4(rng, 40, 24, (6.0, 6.0, 8.0), "arterial", tiny_templates, split="train")
    image, label = render_case_v4(case)
    tpl = case.template
    lut = np.array([flare_label(tpl.names.get(i, "")) for i in range(256)], np.uint8)
    cls, idx = case.warp.classes_and_index(tpl, case.grid, 0, label.shape[0])
    expected = np.where(cls == 0, 0, lut[tpl.classes[idx]])
    np.testing.assert_array_equal(label, expected)
    assert {1, 2, 3, 4} <= set(np.unique(label))
    assert image.dtype == np.int16 and label.shape == image.shape


def test_version_5_paints_some_gut_like_the_pancreas_and_labels_it_background(tiny_templates):
    """Version 5: a gut class that mimics the pancreas takes its HU and texture and its interlobular fat (label 0);
    the labels stay the deformed template's organs; version 4 never mimics."""
    mimicked = 0
    for seed in range(12):
        case = draw_case_v4(
            np.random.default_rng(seed), 40, 24, (6.0, 6.0, 8.0), "venous", tiny_templates, split="train"
        )
        assert not case.mimics.any()
        case = draw_case_v4(
            np.random.default_rng(seed), 40, 24, (6.0, 6.0, 8.0), "venous", tiny_templates, split="train", version=5
        )
        assert set(np.nonzero(case.mimics)[0]) <= {6, BOWEL_X}  # the stomach, the synthetic bowel
        mean, lut = case.imaging.mean, case.lut
        for cid in np.nonzero(case.mimics)[0]:
            assert abs(mean[cid] - mean[5]) < 40 and not case.gassy[cid] and lut[cid] == 0
        assert lut[GUT_FAT_X] == 0 and lut[5] == 4
        if case.mimics[6]:
            mimicked += 1
            image, label = render_case_v4(case)
            tpl = case.template
            organ_lut = np.array([flare_label(tpl.names.get(i, "")) for i in range(256)], np.uint8)
            cls, idx = case.warp.classes_and_index(tpl, case.grid, 0, label.shape[0])
            np.testing.assert_array_equal(label, np.where(cls == 0, 0, organ_lut[tpl.classes[idx]]))
    assert 1 <= mimicked <= 11


def test_extras_only_fill_unlabelled_voxels(tiny_templates):
    tpl = load_template(str(list_templates(tiny_templates)[1]))
    organs = tpl.classes > 0
    organs &= tpl.classes < 233
    v4 = tpl.classes_v4
    np.testing.assert_array_equal(v4[organs], tpl.classes[organs])
    painted = set(np.unique(v4[~organs])) - {0}
    # no aorta in the map: a spine between the kidneys, aorta, psoas; lung above the liver's widest level
    assert {CORTEX, AORTA_X, PSOAS_X, LUNG_X} <= painted
    depth = tpl.depth
    kidneys, gut = np.isin(tpl.classes, [3, 4]), tpl.classes == 6
    assert depth[kidneys].max() >= 8 and depth[gut].max() >= 8 and depth[~(kidneys | gut)].max() == 0


def test_phases_move_hu_as_the_table_says(tiny_templates):
    """Kidney cortex and medulla, pancreas and bladder: the case's mean HU per organ follows the table's ranges."""
    means = {}
    for phase in ("plain", "arterial", "delayed"):
        rng = np.random.default_rng(11)
        case = draw_case_v4(rng, 40, 24, (6.0, 6.0, 8.0), phase, tiny_templates, split="train")
        means[phase] = case.imaging.mean
    for phase, mean in means.items():
        cortex = mean[3]  # kidney_left -> kidney_cortex
        medulla = mean[MEDULLA_X]
        lo, hi = _range("kidney_cortex", phase)
        assert lo - 10 <= cortex <= hi + 10, (phase, cortex)
        lo, hi = _range("kidney_medulla", phase)
        assert lo - 10 <= medulla <= hi + 10, (phase, medulla)
    assert means["arterial"][3] - means["arterial"][MEDULLA_X] > 20, "corticomedullary phase"
    assert means["plain"][5] < means["arterial"][5], "the pancreas enhances"


def _range(tissue: str, phase: str) -> tuple[float, float]:
    return TISSUES_V3[TISSUE_ID_V3[tissue]].hu_range(phase)


@pytest.mark.skipif(not (SHARED / "anatomy" / "classes.json").exists(), reason=f"{SHARED}/anatomy absent")
def test_every_real_template_maps_each_class():
    """All 63 real maps: each class has a tissue and a FLARE label; an unknown class name is an error."""
    paths = list_templates(anatomy_dirs())
    usable = split_templates(paths, "all")
    assert len(usable) >= 63 and not any(p.name.startswith(SCORED) for p in usable)
    for path in usable:  # every map reads, and every id it holds is named and mapped
        names = json.loads((path.parent / "classes.json").read_text())[path.name]
        ids = np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(path))))
        assert {str(i) for i in ids if i} <= set(names), path.name
        for name in names.values():
            assert class_tissue(name) and flare_label(name) in (0, 1, 2, 3, 4)
    assert class_tissue("femur_left") == "bone" and class_tissue("rectum") == "stool"
    assert flare_label("adrenal_gland") == 0 and class_tissue("adrenal_gland") == "muscle"
    with pytest.raises(ValueError, match="no tissue"):
        class_tissue("thalamus")
