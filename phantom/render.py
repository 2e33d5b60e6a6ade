"""Visual check: axial and coronal slices of synthetic cases beside the same views of real cases.

`python -m phantom.render --out /tmp/phantom_vs_real.png [--seed S]` (or
`python -m phantom --render PNG`). Every volume is reoriented to LPS first, so each axial view is radiological
(patient right on the image's left, anterior at the top) and each coronal view has the head at the top and patient right
on the left. Window W400/L40; outlines: liver red, kidney yellow, spleen blue, pancreas green.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from inference.outputs.preview import draw_panel, to_lps_arrays
from inference.task import INPUT_SUFFIX, shared_data_dir
from niftiio.command_line import UsageParser
from phantom.generate import DEFAULT_VERSION, VERSIONS, generate_case_info

REAL_CASES = ("TSEX_0002", "TSDCM_0001")


def pick_slices(label: np.ndarray) -> tuple[int, int]:
    """(axial z index, coronal y index): through the pancreas and through the kidneys (else any organ)."""

    def centre(mask, axis):
        idx = np.nonzero(mask)
        return int(np.median(idx[axis])) if idx[0].size else label.shape[axis] // 2

    z_mask = label == 4 if (label == 4).any() else label > 0
    y_mask = label == 2 if (label == 2).any() else label > 0
    return centre(z_mask, 0), centre(y_mask, 1)


def render_cases(png: str | os.PathLike, cases: Sequence[tuple[str, sitk.Image, sitk.Image]]) -> None:
    """Write a PNG with one column per (title, image, label): axial view on top, coronal view below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(cases), figsize=(3.3 * len(cases), 6.6), squeeze=False)
    for col, (title, image, label) in enumerate(cases):
        img, lab, (sx, sy, sz) = to_lps_arrays(image, label)
        z, y = pick_slices(lab)
        draw_panel(axes[0, col], img[z], lab[z], sy / sx, f"{title}\naxial z={z}/{img.shape[0]}")
        draw_panel(axes[1, col], img[::-1, y, :], lab[::-1, y, :], sz / sx, f"coronal y={y}/{img.shape[1]}")
    fig.tight_layout()
    fig.savefig(png, dpi=130)
    plt.close(fig)


def render_comparison(
    png: str | os.PathLike,
    seed: int = 0,
    mode: str = "phantom",
    phase: str | None = None,
    extra_seeds: Sequence[int] = (),
    generator_version: int = 4,
) -> None:
    """Render synthetic case(s) (512 in-plane at 0.8 mm, 3 mm slices) beside the real cases.

    Version 2: 110 slices covering the abdomen; versions 3-4: the slices its drawn field of view needs (40-200).
    """
    cases = []
    phases = ("venous", "arterial", "plain") if generator_version == 2 else ("venous", "arterial", "plain", "delayed")
    for s in (seed, *extra_seeds):
        m = mode if mode != "mix" else ("phantom" if s % 2 == 0 else "labels")
        ph = phase or phases[s % len(phases)]
        geometry = dict(slices=110) if generator_version == 2 else dict(slice_range=(40, 200))
        img, lab, info = generate_case_info(
            s, size_xy=512, spacing=(0.8, 0.8, 3.0), phase=ph, mode=m, generator_version=generator_version, **geometry
        )
        fov = info.get("field_of_view", info.get("template") or "")
        cases.append((f"v{generator_version} {m} seed {s} ({ph})\n{fov}", img, lab))
    data = shared_data_dir()
    for name in REAL_CASES:
        ip, lp = data / f"{name}{INPUT_SUFFIX}", data / f"{name}.nii.gz"
        if ip.exists() and lp.exists():
            cases.append((f"real {name}", sitk.ReadImage(str(ip)), sitk.ReadImage(str(lp))))
    render_cases(png, cases)


def main(argv: Sequence[str] | None = None) -> int:
    p = UsageParser(prog="python -m phantom.render", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--extra-seeds", type=int, nargs="*", default=())
    p.add_argument("--mode", choices=("phantom", "labels", "mix"), default="phantom")
    p.add_argument("--phase", choices=("plain", "arterial", "venous", "delayed"), default=None)
    p.add_argument("--generator-version", type=int, choices=VERSIONS, default=DEFAULT_VERSION)
    args = p.parse_args(argv)
    render_comparison(args.out, args.seed, args.mode, args.phase, args.extra_seeds, args.generator_version)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
