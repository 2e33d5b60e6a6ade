"""Template label maps for the phantom's "labels" mode: real whole-anatomy label maps (../shared/data/templates,
classes.json names every id), read once, with a synthetic spine where a map has no bones and per-slice body
outlines; their class names mapped to FLARE labels (liver 1, kidney* 2, spleen 3, pancreas 4) and to the phantom
tissue whose Hounsfield units a class borrows.

Arrays are numpy zyx; SimpleITK geometry xyz; mm.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter1d

from inference.task import ORGANS
from phantom.template_extras import kidney_body_centres, kidney_depth, paint_lung_bases, paint_psoas, paint_vessels
from training.shared_data import shared_data_dir

# extra class ids, above every template id
FAT, WALL, VISCERAL, GAS = 250, 251, 252, 253
# a synthetic spine for templates without bones (AMOS): vertebral body cortex and marrow, posterior arch, canal,
# paraspinal muscles
DISC, CORTEX, MARROW, CANAL, PARASPINAL = 245, 246, 247, 248, 249
PANCREAS_FAT = 240  # version 3: the pancreas's interlobular fat (FLARE label 4)
FIRST_EXTRA = 233  # version 4 adds ids 233-239 (phantom/template_extras.py)
N_CLASSES = 256

# (substring of a class name, phantom tissue), first match wins
_NAME_TISSUE = (
    ("kidney_cyst", "gallbladder"),
    ("liver", "liver"),
    ("kidney", "kidney_cortex"),
    ("spleen", "spleen"),
    ("pancreas", "pancreas"),
    ("gallbladder", "gallbladder"),
    ("bladder", "urine"),
    ("lung", "lung"),
    ("trachea", "gas"),
    ("aorta", "aorta"),
    ("artery", "aorta"),
    ("brachiocephalic_trunk", "aorta"),
    ("portal", "portal_vein"),
    ("vena", "ivc"),
    ("vein", "ivc"),
    ("heart", "heart"),
    ("atrial", "heart"),
    ("stomach", "stomach_wall"),
    ("esophagus", "bowel_wall"),
    ("bowel", "bowel_content"),
    ("duodenum", "bowel_content"),
    ("colon", "stool"),
    ("rectum", "stool"),
    ("cartilage", "cartilage"),
    ("spinal_cord", "spinal_canal"),
    ("gluteus", "muscle"),
    ("autochthon", "muscle"),
    ("iliopsoas", "muscle"),
    ("brain", "muscle"),
    # soft-tissue glands without a row of their own: unenhanced 20-50 HU, modest enhancement, as muscle (L, B)
    ("adrenal_gland", "muscle"),
    ("thyroid_gland", "muscle"),
    ("prostate", "muscle"),
    ("uterus", "muscle"),
)
_BONE_WORDS = (
    "vertebra",
    "rib",
    "sacrum",
    "hip",
    "femur",
    "humerus",
    "scapula",
    "clavicula",
    "skull",
    "sternum",
)


def templates_dir(override: str | os.PathLike | None = None) -> Path:
    """The templates folder: `override`, else $RUNET_SHARED_DATA/templates, else ../shared/data/templates."""
    if override is not None:
        return Path(override)
    return shared_data_dir() / "templates"


def flare_label(name: str) -> int:
    """FLARE label of a template class name: 1 liver, 2 kidney (incl. cysts), 3 spleen, 4 pancreas, else 0."""
    for lab, word in ORGANS.items():
        if word in name:
            return lab
    return 0


def class_tissue(name: str) -> str:
    """The phantom tissue whose HU range a template class borrows ("bone" for bones; femur_left / femur_right are
    the femoral heads). ValueError for a class name no rule knows: a new template's classes are mapped on purpose,
    never silently painted as muscle."""
    if any(w in name for w in _BONE_WORDS):
        return "bone"
    for word, tissue in _NAME_TISSUE:
        if word in name:
            return tissue
    raise ValueError(f"template class {name!r} has no tissue: add it to phantom/templates.py's _NAME_TISSUE")


class Template:
    """A template label map: classes (uint8 zyx), geometry and class names, plus per-slice body ellipses."""

    def __init__(self, path: Path, names: dict[int, str]):
        img = sitk.ReadImage(str(path))
        arr = sitk.GetArrayFromImage(img)
        if arr.max() >= FIRST_EXTRA:
            raise ValueError(f"{path}: class ids must be < {FIRST_EXTRA}, got {arr.max()}")
        self.path = path
        self.classes = arr.astype(np.uint8)
        self.names = names
        self.spacing = np.array(img.GetSpacing())
        self.origin = np.array(img.GetOrigin())
        self.direction = np.array(img.GetDirection()).reshape(3, 3)
        if abs(self.direction[2, 2]) != 1.0:
            raise ValueError(f"{path}: template slices must be axial (direction[2][2] = +-1), got {img.GetDirection()}")
        corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]) * (np.array(img.GetSize()) - 1)
        world = self.origin + (self.direction @ (corners * self.spacing).T).T
        self.lo, self.hi = world.min(axis=0), world.max(axis=0)
        present = {names.get(int(i), "") for i in np.unique(arr)}
        # label maps without bones or muscles (AMOS) need room for the wall that the union of organs lacks
        self.has_wall = any(("rib" in n) or ("autochthon" in n) for n in present)
        self.synthetic_spine = False
        if not any("vertebra" in n for n in present):
            self.synthetic_spine = self._add_spine()
        self.ellipses = self._slice_ellipses()

    def _world_xy(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """World x and y (mm, float32 (ny, nx)) of the pixels of template slice k."""
        ny, nx = self.classes.shape[1:]
        jj, ii = np.mgrid[:ny, :nx].astype(np.float32)
        d, sp, o = self.direction, self.spacing, self.origin
        wx = o[0] + d[0, 0] * ii * sp[0] + d[0, 1] * jj * sp[1] + d[0, 2] * k * sp[2]
        wy = o[1] + d[1, 0] * ii * sp[0] + d[1, 1] * jj * sp[1] + d[1, 2] * k * sp[2]
        return wx.astype(np.float32), wy.astype(np.float32)

    def _add_spine(self) -> bool:
        """Paint a vertebral column behind the aorta into unlabelled voxels; False if the map has no aorta."""
        aorta_ids = [i for i, n in self.names.items() if n == "aorta"]
        if not aorta_ids:
            return False
        nz = self.classes.shape[0]
        centres: list = [None] * nz
        for k in range(nz):
            m = np.isin(self.classes[k], aorta_ids)
            if m.sum() >= 5:
                wx, wy = self._world_xy(k)
                r = np.sqrt(m.sum() * self.spacing[0] * self.spacing[1] / np.pi)
                centres[k] = (float(wx[m].mean()), float(wy[m].mean()), r)
        have = [k for k in range(nz) if centres[k] is not None]
        if not have:
            return False
        body = []
        for k in range(nz):
            ax_, ay_, ar = centres[min(have, key=lambda h: abs(h - k))]
            body.append((ax_ - 12.0, ay_ + ar + 21.0))  # vertebral body centre: right of and behind the aorta
        self._paint_spine(self.classes, body)
        return True

    def _paint_spine(self, classes: np.ndarray, body: list) -> None:
        """Paint (in place, into 0 voxels of `classes`) vertebrae, discs, canal and paraspinal muscles around the
        vertebral body centres `body` ((x, y) world mm per slice)."""
        for k in range(classes.shape[0]):
            wx, wy = self._world_xy(k)
            cx, cy = body[k]
            yc = cy + 19.0 + 10.0  # spinal canal centre
            sl = classes[k]
            free = sl == 0
            layers = np.zeros_like(sl)
            for side in (-1.0, 1.0):
                layers[((wx - cx - side * 32) / 26) ** 2 + ((wy - yc - 18) / 22) ** 2 < 1] = PARASPINAL
            arch = (((wx - cx) / 20) ** 2 + ((wy - yc) / 16) ** 2 < 1) & (wy > cy)
            arch |= (np.abs(wx - cx) < 3.5) & (wy > yc) & (wy < yc + 40)
            layers[arch] = CORTEX
            r2 = ((wx - cx) / 23) ** 2 + ((wy - cy) / 18) ** 2
            wz = self.origin[2] + self.direction[2, 2] * k * self.spacing[2]
            if np.mod(wz, 34.0) < 8.0:  # intervertebral discs about every 34 mm
                layers[r2 < 1] = DISC
            else:
                layers[r2 < 1] = CORTEX
                layers[r2 < 0.75] = MARROW
            layers[((wx - cx) / 10) ** 2 + ((wy - yc) / 8) ** 2 < 1] = CANAL
            sl[free] = layers[free]

    @functools.cached_property
    def classes_v4(self) -> np.ndarray:
        """Version 4's classes (uint8 zyx): `classes` plus what the map leaves unlabelled
        (phantom/template_extras.py): a spine from the kidneys where the map has no aorta, aorta and IVC where
        it has none, psoas muscles where it has no iliopsoas, lung bases where it has no lung."""
        out = self.classes.copy()
        present = {self.names.get(int(i), "") for i in np.unique(self.classes)}
        has = lambda word: any(word in n for n in present)  # noqa: E731
        dz = float(self.direction[2, 2])
        sz = float(self.spacing[2])
        centres = None
        if not self.synthetic_spine and not has("vertebra"):
            centres = kidney_body_centres(out, self.names, self._world_xy)
            if centres is not None:
                self._paint_spine(out, centres)
        elif not has("vertebra"):
            centres = kidney_body_centres(out, self.names, self._world_xy)
        if centres is not None:
            if not has("aorta"):
                paint_vessels(out, self.names, self._world_xy, centres, dz, sz)
            if not has("iliopsoas"):
                paint_psoas(out, self.names, self._world_xy, centres, dz, sz)
        if not has("lung"):
            paint_lung_bases(out, self.names, self._inside_ribs, dz)
        return out

    @functools.cached_property
    def kidney_depth(self) -> np.ndarray:
        """uint8 zyx: distance of each kidney voxel to its kidney's surface, mm (template_extras.kidney_depth)."""
        return kidney_depth(self.classes, self.names, self.spacing)

    def _inside_ribs(self, k: int) -> np.ndarray:
        """bool (ny, nx): inside slice k's covering ellipse (the labels' outline) shrunk by 10 %."""
        ok, mu, v, half = self._ellipse_arrays
        if not ok[k]:
            return np.zeros(self.classes.shape[1:], bool)
        jj, ii = np.mgrid[: self.classes.shape[1], : self.classes.shape[2]].astype(np.float32)
        py, px = jj * np.float32(self.spacing[1]) - mu[k, 0], ii * np.float32(self.spacing[0]) - mu[k, 1]
        p0 = py * v[k, 0, 0] + px * v[k, 1, 0]
        p1 = py * v[k, 0, 1] + px * v[k, 1, 1]
        return (p0 / (0.9 * half[k, 0])) ** 2 + (p1 / (0.9 * half[k, 1])) ** 2 < 1

    def _slice_ellipses(self) -> list:
        """Per slice: None or (mean (2,), eigenvectors (2, 2), half-axes (2,)), mm, covering the labels."""
        sy, sx = self.spacing[1], self.spacing[0]
        area = (self.classes > 0).sum(axis=(1, 2))
        good = area >= max(20, 0.3 * area.max())
        good_k = np.nonzero(good)[0]
        # the sampled z range: well-filled slices that hold at least one of the four FLARE organs
        organ_ids = [i for i, n in self.names.items() if flare_label(n) > 0]
        has_organ = np.isin(self.classes, organ_ids).any(axis=(1, 2))
        sample_k = np.nonzero(good & has_organ)[0]
        if sample_k.size == 0:
            sample_k = good_k if good_k.size else np.arange(len(area))
        self.good_range = (int(sample_k.min()), int(sample_k.max()))
        # version 3 samples every slice with a body: the pelvis too (AMOS_0013's bladder lies below its organs)
        body_k = np.nonzero(area >= 20)[0]
        self.body_range = (int(body_k.min()), int(body_k.max())) if body_k.size else self.good_range
        out = []
        for k in range(self.classes.shape[0]):
            # slices with little labelled (e.g. only the bladder) borrow the outline of the nearest well-filled one
            src = int(good_k[np.argmin(np.abs(good_k - k))]) if good_k.size else k
            jj, ii = np.nonzero(self.classes[src])
            if jj.size < 20:
                out.append(None)
                continue
            pts = np.stack([jj * sy, ii * sx], axis=1)
            mu = pts.mean(axis=0)
            cov = np.cov((pts - mu).T) + np.eye(2)
            w, v = np.linalg.eigh(cov)
            proj = (pts - mu) @ v / np.sqrt(w)
            s = np.sqrt(np.percentile((proj**2).sum(axis=1), 99.5))
            out.append((mu, v, s * np.sqrt(w)))
        return out

    def body_layers(
        self, k, j, i, thickness: tuple[float, float, float], *, power: float = 2.0, smooth: bool = False
    ) -> np.ndarray:
        """Body layer class (FAT, WALL, VISCERAL or 0 air) at template voxels (k, j, i) (int arrays, same shape).

        thickness: (subcutaneous fat, wall muscle, extra margin) in mm; the outline of slice k is its covering
        ellipse (`ellipses`) grown by fat + extra; the wall lies inside it, the visceral fat inside the wall.
        power: the outline's exponent (2: an ellipse; 2.5-3.5: a squarer, more body-like outline); smooth: the
        ellipses smoothed along z (`_ellipse_arrays_smooth`), so that the outline does not jump from slice to slice.
        """
        t_fat, t_wall, extra = thickness
        ok, mu, v, half = self._ellipse_arrays_smooth if smooth else self._ellipse_arrays
        py = j * np.float32(self.spacing[1]) - mu[k, 0]
        px = i * np.float32(self.spacing[0]) - mu[k, 1]
        p0 = py * v[k, 0, 0] + px * v[k, 1, 0]
        p1 = py * v[k, 0, 1] + px * v[k, 1, 1]
        out = np.zeros(k.shape, np.uint8)
        for offset, cid in ((t_fat + extra, FAT), (extra, WALL), (extra - t_wall, VISCERAL)):
            a0 = np.maximum(half[k, 0] + np.float32(offset), 1.0)
            a1 = np.maximum(half[k, 1] + np.float32(offset), 1.0)
            if power == 2.0:
                inside = (p0 / a0) ** 2 + (p1 / a1) ** 2 < 1
            else:
                inside = np.abs(p0 / a0) ** power + np.abs(p1 / a1) ** power < 1
            out[inside & ok[k]] = cid
        return out

    @functools.cached_property
    def _ellipse_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The per-slice ellipses as arrays: ok (nz,), centre (nz, 2), axes (nz, 2, 2), half-axes (nz, 2)."""
        nz = len(self.ellipses)
        ok = np.array([e is not None for e in self.ellipses])
        mu = np.zeros((nz, 2), np.float32)
        v = np.tile(np.eye(2, dtype=np.float32), (nz, 1, 1))
        half = np.zeros((nz, 2), np.float32)
        for k, e in enumerate(self.ellipses):
            if e is not None:
                mu[k], v[k], half[k] = e
        return ok, mu, v, half

    @functools.cached_property
    def _ellipse_arrays_smooth(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """`_ellipse_arrays` smoothed along z (Gaussian, sigma 12 mm) over the slices that have an ellipse: centre,
        half-axes and the axes' angle (smoothed as (cos 2a, sin 2a), so that a and a + 180 degrees agree)."""
        ok, mu, v, half = self._ellipse_arrays
        if ok.sum() < 2:
            return ok, mu, v, half
        sigma = 12.0 / float(self.spacing[2])
        idx = np.nonzero(ok)[0]
        ang = np.arctan2(v[idx, 1, 0], v[idx, 0, 0])
        cols = np.column_stack([mu[idx], half[idx], np.cos(2 * ang), np.sin(2 * ang)])
        sm = gaussian_filter1d(cols, sigma, axis=0, mode="nearest")
        mu_s, half_s, v_s = mu.copy(), half.copy(), v.copy()
        mu_s[idx], half_s[idx] = sm[:, 0:2], sm[:, 2:4]
        a = 0.5 * np.arctan2(sm[:, 5], sm[:, 4])
        v_s[idx] = np.stack([np.stack([np.cos(a), -np.sin(a)], 1), np.stack([np.sin(a), np.cos(a)], 1)], 1)
        return ok, mu_s, v_s, half_s


@functools.lru_cache(maxsize=4)
def load_template(path: str) -> Template:
    p = Path(path)
    names_all = json.loads((p.parent / "classes.json").read_text())
    names = {int(k): v for k, v in names_all.get(p.name, {}).items()}
    if not names:
        raise ValueError(f"{p.parent / 'classes.json'} names no classes for {p.name}")
    return Template(p, names)


def list_templates(folder: str | os.PathLike | Sequence[str | os.PathLike] | None = None) -> list[Path]:
    """Template label maps named in classes.json that exist in the folder, or in each of several folders (sorted by
    file name; each folder has its own classes.json)."""
    if folder is not None and not isinstance(folder, (str, os.PathLike)):
        found = [p for f in folder for p in list_templates(f)]
        names = [p.name for p in found]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"template file names found in more than one folder: {dup}")
        return sorted(found, key=lambda p: p.name)
    d = templates_dir(folder)
    cj = d / "classes.json"
    if not cj.exists():
        raise FileNotFoundError(f"no templates: {cj} is missing (set RUNET_SHARED_DATA or pass templates_dir)")
    found = sorted(d / name for name in json.loads(cj.read_text()) if (d / name).exists())
    if not found:
        raise FileNotFoundError(f"no template label maps listed in {cj} exist in {d}")
    return found


def select_templates(paths: list[Path], only: Sequence[str] = (), exclude: Sequence[str] = ()) -> list[Path]:
    """The templates whose file name starts with one of `only` (all when empty) and with none of `exclude`.

    ValueError when a name matches no template or nothing is left.
    """
    for name in (*only, *exclude):
        if not any(p.name.startswith(name) for p in paths):
            raise ValueError(f"template {name!r} matches none of {[p.name for p in paths]}")
    kept = [p for p in paths if (not only or any(p.name.startswith(n) for n in only))]
    kept = [p for p in kept if not any(p.name.startswith(n) for n in exclude)]
    if not kept:
        raise ValueError(f"no template left of {[p.name for p in paths]} (only {list(only)}, exclude {list(exclude)})")
    return kept
