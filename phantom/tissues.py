"""Tissue classes of the CT phantom: FLARE label and Hounsfield units per contrast phase.

Each tissue has a mean HU per phase (plain, arterial, venous), a case-to-case spread of that mean, and the standard
deviations of a fine and a coarse smooth texture inside the tissue (HU). Labels: 0 background, 1 liver, 2 kidney,
3 spleen, 4 pancreas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PHASES = ("plain", "arterial", "venous")


@dataclass(frozen=True)
class Tissue:
    name: str
    label: int
    hu: tuple[float, float, float]  # mean HU in the plain, arterial and venous phases
    spread: float  # case-to-case standard deviation of the mean, HU
    tex_fine: float  # std of the fine (~5 mm) texture, HU
    tex_coarse: float  # std of the coarse (~25 mm) texture, HU; per phase via `coarse_phase`
    coarse_phase: tuple[float, float, float] = (1.0, 1.0, 1.0)


TISSUES: tuple[Tissue, ...] = (
    Tissue("air", 0, (-1000, -1000, -1000), 5, 3, 0),
    Tissue("skin", 0, (20, 25, 30), 10, 5, 2),
    Tissue("fat_subcutaneous", 0, (-100, -100, -100), 10, 8, 6),
    Tissue("muscle", 0, (50, 55, 60), 6, 6, 4),
    Tissue("fat_visceral", 0, (-95, -95, -95), 10, 10, 8),
    Tissue("lung", 0, (-860, -860, -860), 25, 35, 25),
    Tissue("bone_cortex", 0, (850, 850, 850), 120, 80, 40),
    Tissue("bone_marrow", 0, (180, 180, 180), 40, 50, 20),
    Tissue("disc", 0, (85, 85, 85), 10, 8, 3),
    Tissue("spinal_canal", 0, (20, 20, 20), 5, 5, 2),
    Tissue("cartilage", 0, (130, 130, 130), 30, 20, 5),
    Tissue("liver", 1, (57, 68, 110), 8, 5, 5),
    Tissue("liver_vessel", 1, (42, 70, 165), 8, 4, 2),
    Tissue("gallbladder", 0, (10, 10, 12), 6, 3, 2),
    Tissue("spleen", 3, (47, 120, 112), 6, 5, 4, (1.0, 6.0, 1.0)),
    Tissue("kidney_cortex", 2, (32, 185, 155), 6, 6, 3),
    Tissue("kidney_medulla", 2, (30, 75, 150), 6, 6, 3),
    Tissue("renal_sinus", 0, (-60, -40, -30), 15, 20, 5),
    Tissue("pancreas", 4, (42, 105, 92), 8, 10, 4),
    Tissue("aorta", 0, (42, 270, 155), 6, 4, 2),
    Tissue("ivc", 0, (40, 70, 140), 6, 6, 6),
    Tissue("portal_vein", 0, (40, 120, 170), 6, 4, 2),
    Tissue("heart", 0, (42, 210, 140), 6, 6, 4),
    Tissue("stomach_wall", 0, (45, 95, 90), 6, 6, 3),
    Tissue("gastric_fluid", 0, (12, 12, 12), 8, 4, 3),
    Tissue("bowel_wall", 0, (40, 85, 90), 6, 6, 3),
    Tissue("bowel_content", 0, (22, 22, 22), 12, 8, 6),
    Tissue("gas", 0, (-960, -960, -960), 20, 10, 0),
    Tissue("stool", 0, (-40, -40, -40), 40, 80, 20),
    Tissue("table", 0, (-450, -450, -450), 80, 10, 0),
    Tissue("table_shell", 0, (250, 250, 250), 60, 10, 0),
    Tissue("urine", 0, (8, 8, 8), 5, 3, 2),
    Tissue("mediastinum", 0, (-70, -70, -70), 15, 15, 10),
    Tissue("oral_contrast", 0, (250, 250, 250), 80, 30, 20),
)

TISSUE_ID: dict[str, int] = {t.name: i for i, t in enumerate(TISSUES)}


def tissue_label_lut() -> np.ndarray:
    """uint8 (n_tissues,): FLARE label of each tissue id."""
    return np.array([t.label for t in TISSUES], np.uint8)


def draw_tissue_hu(rng: np.random.Generator, phase: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-case HU tables for the phantom: (mean, fine, coarse texture std), float32 (n_tissues,)."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    p = PHASES.index(phase)
    mean = np.array([t.hu[p] + t.spread * rng.standard_normal() for t in TISSUES], np.float32)
    fine = np.array([t.tex_fine * rng.uniform(0.6, 1.4) for t in TISSUES], np.float32)
    coarse = np.array([t.tex_coarse * t.coarse_phase[p] * rng.uniform(0.5, 1.5) for t in TISSUES], np.float32)
    if phase == "arterial":  # the bolus varies a lot between patients
        mean[TISSUE_ID["aorta"]] = rng.uniform(180, 420)
        mean[TISSUE_ID["heart"]] = mean[TISSUE_ID["aorta"]] * rng.uniform(0.6, 0.9)
    return mean, fine, coarse
