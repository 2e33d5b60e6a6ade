"""Hounsfield units of every tissue of the version-3 phantoms, per contrast phase, with the source of each range.

One table serves both generator modes: the analytic anatomy (phantom/trunk_scan.py) and the label templates
(phantom/from_labels.py). Each row gives, per phase, the range (lo, hi) HU from which a case's mean for that
tissue is drawn, the standard deviations of its fine (~5 mm) and coarse (~25 mm) texture, and a source key
(`SOURCES`). The tissues are those of version 2 (phantom/tissues.py, same names and ids) followed by the
ones version 3 adds. `VARIANTS` holds the rows that replace a tissue's row in some patients (fatty liver, fatty
pancreas). `python -m phantom.hu_table` prints the table as Markdown (docs/phantom.md holds it).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from phantom.tissues import TISSUES as TISSUES_V2

PHASES_V3 = ("plain", "arterial", "venous", "delayed")

Range = tuple[float, float]

SOURCES = {
    "K": "Kalender WA. Computed Tomography, 3rd ed. Publicis, 2011 (HU scale: air -1000, water 0)",
    "R": "Radiopaedia, 'Hounsfield unit' (typical values: fat, water/urine/bile, CSF, soft tissue, lung, bone)",
    "L": "Lamba R et al. CT Hounsfield numbers of soft tissues on unenhanced abdominal CT scans. AJR 2014;203:1013",
    "B": "Bae KT. Intravenous contrast medium administration and scan timing at CT. Radiology 2010;256:32-61",
    "Y": "Yuh BI, Cohan RH. Different phases of renal enhancement: role in detecting and characterizing renal "
    "masses during helical CT. AJR 1999;173:747-755",
    "G": "Glazer GM et al. Dynamic CT of the normal spleen. AJR 1981;137:343-346 (arciform arterial enhancement)",
    "KO": "Kodama Y et al. Comparison of CT methods for determining the fat content of the liver. AJR "
    "2007;188:1307-1312 (unenhanced liver < 40 HU with moderate-severe steatosis)",
    "KS": "Kim SY et al. Quantitative assessment of pancreatic fat by using unenhanced CT. Radiology "
    "2014;271:104-112 (fatty pancreas: lower attenuation, fat between lobules)",
    "S": "Schreiber JJ et al. Hounsfield units for assessing bone mineral density and strength. J Bone Joint Surg "
    "Am 2011;93:1057-1063 (trabecular bone about 100-250 HU)",
    "G3": "the generator's choice (no tissue-specific reference): a plausible range kept away from the organs'",
}


@dataclass(frozen=True)
class TissueHU:
    """One tissue: FLARE label, HU range of the case mean per phase, texture std (HU), source key."""

    name: str
    label: int
    plain: Range
    arterial: Range
    venous: Range
    delayed: Range
    tex: tuple[float, float]  # std of the fine and coarse texture, HU
    source: str

    def hu_range(self, phase: str) -> Range:
        if phase not in PHASES_V3:
            raise ValueError(f"phase must be one of {PHASES_V3}, got {phase!r}")
        return getattr(self, phase)


def _same(name, label, rng, tex, src) -> TissueHU:
    """A tissue that contrast does not change."""
    return TissueHU(name, label, rng, rng, rng, rng, tex, src)


def _row(name, label, plain, arterial, venous, delayed, tex, src) -> TissueHU:
    return TissueHU(name, label, plain, arterial, venous, delayed, tex, src)


TISSUES_V3: tuple[TissueHU, ...] = (
    _same("air", 0, (-1000, -995), (3, 0), "K"),
    _row("skin", 0, (20, 50), (25, 60), (30, 70), (30, 60), (5, 2), "R"),
    _same("fat_subcutaneous", 0, (-120, -85), (8, 6), "R, L"),
    _row("muscle", 0, (40, 60), (45, 65), (55, 75), (50, 70), (6, 4), "L; B (modest enhancement)"),
    _same("fat_visceral", 0, (-115, -75), (10, 8), "R, L"),
    _same("lung", 0, (-900, -760), (35, 25), "R"),
    _same("bone_cortex", 0, (500, 1200), (80, 40), "R (cortical bone; lower at 2-4 mm voxels)"),
    _same("bone_marrow", 0, (80, 280), (50, 20), "S"),
    _same("disc", 0, (60, 110), (8, 3), "G3"),
    _same("spinal_canal", 0, (0, 25), (5, 2), "R (CSF)"),
    _same("cartilage", 0, (70, 200), (20, 5), "G3 (costal cartilage, calcifying with age)"),
    _row("liver", 1, (50, 70), (60, 85), (95, 130), (80, 105), (5, 5), "L; B"),
    _row("liver_vessel", 1, (35, 50), (50, 110), (140, 200), (100, 140), (4, 2), "B (blood; portal and hepatic veins)"),
    _same("gallbladder", 0, (0, 20), (3, 2), "R (bile)"),
    _row("spleen", 3, (40, 55), (90, 150), (100, 135), (85, 110), (5, 4), "L; B; G"),
    _row("kidney_cortex", 2, (25, 40), (140, 220), (140, 200), (110, 160), (6, 3), "L; Y (corticomedullary)"),
    _row("kidney_medulla", 2, (25, 40), (60, 110), (140, 200), (150, 260), (6, 3), "L; Y (nephrographic)"),
    _same("renal_sinus", 0, (-100, -40), (20, 5), "R (fat)"),
    _row("pancreas", 4, (35, 50), (100, 160), (80, 120), (60, 90), (10, 4), "L; B (pancreatic phase)"),
    _row("aorta", 0, (35, 55), (220, 450), (140, 200), (100, 140), (4, 2), "B"),
    _row("ivc", 0, (35, 55), (60, 140), (120, 180), (100, 140), (6, 6), "B"),
    _row("portal_vein", 0, (35, 55), (90, 160), (150, 220), (110, 150), (4, 2), "B"),
    _row("heart", 0, (35, 55), (180, 400), (130, 190), (100, 140), (6, 4), "B (blood pool)"),
    _row("stomach_wall", 0, (30, 50), (80, 130), (70, 110), (60, 90), (6, 3), "B (mucosal enhancement)"),
    _same("gastric_fluid", 0, (0, 25), (4, 3), "R (water)"),
    _row("bowel_wall", 0, (30, 50), (70, 120), (70, 110), (60, 90), (6, 3), "B (mucosal enhancement)"),
    _same("bowel_content", 0, (0, 35), (8, 6), "R (water, chyme)"),
    _same("gas", 0, (-1000, -900), (10, 0), "K"),
    _same("stool", 0, (-200, 60), (80, 20), "G3 (faeces mixed with gas)"),
    _same("table", 0, (-600, -250), (10, 0), "G3"),
    _same("table_shell", 0, (100, 400), (10, 0), "G3"),
    _same("urine", 0, (0, 20), (3, 2), "R"),
    _same("mediastinum", 0, (-100, -40), (15, 10), "R (fat with vessels)"),
    _same("oral_contrast", 0, (150, 500), (30, 20), "G3 (positive oral contrast, dilution varies)"),
    # version 3's tissues
    _row("urine_excreted", 0, (0, 20), (0, 20), (0, 40), (200, 1000), (30, 10), "Y (excretory phase); R"),
    _row("renal_pelvis", 0, (0, 20), (0, 20), (0, 40), (300, 1200), (30, 10), "Y (excretory phase); R"),
    _same("pancreas_fat", 4, (-110, -60), (10, 5), "KS; R (fat)"),
    _row("spleen_band", 3, (40, 55), (50, 90), (100, 135), (85, 110), (5, 4), "G (hypoenhancing arcs)"),
    _same("gastric_food", 0, (-60, 60), (40, 20), "G3 (mixed food and fluid)"),
    _row("uterus", 0, (35, 55), (70, 140), (90, 150), (80, 120), (8, 4), "G3 (myometrium; B for timing)"),
    _row("prostate", 0, (30, 50), (50, 90), (60, 100), (60, 90), (8, 4), "G3 (B for timing)"),
)

VARIANTS: dict[str, TissueHU] = {
    "fatty_liver": _row("liver", 1, (0, 40), (10, 50), (40, 85), (30, 70), (6, 6), "KO"),
    "fatty_pancreas": _row("pancreas", 4, (10, 35), (60, 110), (50, 90), (40, 70), (12, 5), "KS"),
}

TISSUE_ID_V3: dict[str, int] = {t.name: i for i, t in enumerate(TISSUES_V3)}


def _check_v2_prefix() -> None:
    names = [t.name for t in TISSUES_V2]
    if [t.name for t in TISSUES_V3[: len(names)]] != names:
        raise AssertionError("TISSUES_V3 must start with version 2's tissues, in their order")


_check_v2_prefix()


def tissue_label_lut_v3() -> np.ndarray:
    """uint8 (n_tissues,): FLARE label of each version-3 tissue id."""
    return np.array([t.label for t in TISSUES_V3], np.uint8)


def draw_case_hu(
    rng: np.random.Generator, phase: str, variants: tuple[str, ...] = ()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-case HU tables (mean, fine texture std, coarse texture std), float32 (n_tissues,), version-3 ids.

    Each mean is drawn inside its row's range for `phase`; one case-wide enhancement level (the bolus) moves the
    enhancing tissues together. variants: names of `VARIANTS` rows that replace their tissue's row.
    """
    if phase not in PHASES_V3:
        raise ValueError(f"phase must be one of {PHASES_V3}, got {phase!r}")
    rows = list(TISSUES_V3)
    for v in variants:
        rows[TISSUE_ID_V3[VARIANTS[v].name]] = VARIANTS[v]
    level = rng.uniform()
    q = np.clip(0.5 * level + 0.5 * rng.uniform(size=len(rows)), 0.0, 1.0)
    lo_hi = np.array([r.hu_range(phase) for r in rows], np.float64)
    mean = (lo_hi[:, 0] + q * (lo_hi[:, 1] - lo_hi[:, 0])).astype(np.float32)
    fine = np.array([r.tex[0] for r in rows], np.float32) * rng.uniform(0.6, 1.4, len(rows)).astype(np.float32)
    coarse = np.array([r.tex[1] for r in rows], np.float32) * rng.uniform(0.5, 1.5, len(rows)).astype(np.float32)
    if phase == "arterial":  # the spleen's arterial enhancement is heterogeneous
        coarse[TISSUE_ID_V3["spleen"]] *= 3.0
    return mean, fine, coarse


def markdown_table() -> str:
    """The table as Markdown: one row per tissue (and variant), HU ranges per phase, the source keys."""
    head = "| tissue | label | " + " | ".join(PHASES_V3) + " | source |\n|" + " --- |" * (len(PHASES_V3) + 3)
    lines = [head]
    rows = [(t.name, t) for t in TISSUES_V3] + [(f"{t.name} ({k})", t) for k, t in VARIANTS.items()]
    for name, t in rows:
        cells = [f"{lo:g} to {hi:g}" for lo, hi in (t.hu_range(p) for p in PHASES_V3)]
        lines.append(f"| {name} | {t.label} | " + " | ".join(cells) + f" | {t.source} |")
    lines.append("")
    lines += [f"- {k}: {v}" for k, v in SOURCES.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
