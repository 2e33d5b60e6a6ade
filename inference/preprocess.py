"""Preparing a CT volume for the network: intensity normalization (as the checkpoint records it), non-finite
voxels, and the memory one case needs."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

AIR_HU = -1000.0  # the value of air: what padding outside the field of view and non-finite voxels become


@dataclass(frozen=True)
class Normalization:
    """Clip Hounsfield units to [hu_min, hu_max] and map that window linearly onto [-1, 1]."""

    hu_min: float = -200.0
    hu_max: float = 300.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.hu_min) and np.isfinite(self.hu_max) and self.hu_max > self.hu_min):
            raise ValueError(f"need finite hu_min < hu_max, got {self.hu_min}, {self.hu_max}")

    def to_dict(self) -> dict:
        return {"kind": "hu_window", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> Normalization:
        if d.get("kind", "hu_window") != "hu_window":
            raise ValueError(f"unknown normalization kind {d.get('kind')!r}")
        return cls(hu_min=float(d["hu_min"]), hu_max=float(d["hu_max"]))

    @property
    def air_value(self) -> float:
        """The normalized value of air (-1000 HU): what padding outside the field of view uses."""
        return float(self.apply(np.array([AIR_HU]))[0])

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Any-shape array of HU -> float32 array of the same shape with values in [-1, 1]."""
        center = 0.5 * (self.hu_max + self.hu_min)
        half = 0.5 * (self.hu_max - self.hu_min)
        out = np.clip(image.astype(np.float32, copy=False), self.hu_min, self.hu_max)
        out -= np.float32(center)
        out *= np.float32(1.0 / half)
        return out


# Bytes per voxel that segmenting one case holds at its peak, on top of the decoded image itself (itemsize bytes
# per voxel). Set when the whole volume was normalized into a float32 copy clipped from another float32 (8), beside
# the label map (1), one phase's class probabilities and window buffers (about 1.25 at 16 phases) and the output's
# reoriented copy (1): checked against the measured peak of a 512x512x300 int16 case (about 13 bytes per voxel
# above the start-up). Since then each phase is normalized as it is cut (inference.patching.phase_input) and
# post-processing holds its component ids (up to 4 per voxel of the foreground's box) without a second copy of the
# map; the peak of a 512x512x256 case fell by about 4 bytes per voxel, and the figure stays as a margin.
PIPELINE_BYTES_PER_VOXEL = 12


def memory_needed(voxels: int, itemsize: int) -> int:
    """Bytes one case of ``voxels`` voxels stored with ``itemsize`` bytes each needs while it is segmented."""
    return voxels * (itemsize + PIPELINE_BYTES_PER_VOXEL)


def _read_numbers(path: str) -> dict[str, int]:
    """'key value' or 'key: value kB' lines -> {key: bytes}; {} when the file cannot be read."""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.replace(":", " ").split()
                if len(parts) >= 2 and parts[1].isdigit():
                    out[parts[0]] = int(parts[1]) * (1024 if parts[2:3] == ["kB"] else 1)
    except OSError:
        pass
    return out


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_headroom() -> int | None:
    """Bytes the process's memory cgroup still allows (limit minus usage, reclaimable file cache counted as free);
    None without a limit. cgroup v2 and v1, the process's own group or, inside a container, the mount's root."""
    try:
        with open("/proc/self/cgroup") as f:
            entries = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        return None
    for _, controllers, group in entries:
        if controllers == "":  # v2
            files, root = ("memory.max", "memory.current", "inactive_file"), "/sys/fs/cgroup"
        elif "memory" in controllers.split(","):
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
            root = "/sys/fs/cgroup/memory"
        else:
            continue
        for folder in (root + group, root):
            limit = _read_int(f"{folder}/{files[0]}")
            usage = _read_int(f"{folder}/{files[1]}")
            if limit is None or usage is None:
                continue
            if limit >= 2**60:
                break  # no limit at this level
            reclaimable = _read_numbers(f"{folder}/memory.stat").get(files[2], 0)
            return limit - usage + reclaimable
    return None


def usable_memory() -> tuple[int, str] | None:
    """The bytes this process may still allocate and what limits it: the smallest of the system's available memory
    (with free swap), the memory cgroup's headroom, and the address-space limit (RLIMIT_AS) minus the process's
    current size. None when nothing can be read (not Linux)."""
    import resource

    limits: list[tuple[int, str]] = []
    meminfo = _read_numbers("/proc/meminfo")
    if "MemAvailable" in meminfo:
        limits.append((meminfo["MemAvailable"] + meminfo.get("SwapFree", 0), "available memory"))
    cgroup = _cgroup_headroom()
    if cgroup is not None:
        limits.append((cgroup, "memory cgroup limit"))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        size = _read_numbers("/proc/self/status").get("VmSize", 0)
        limits.append((soft - size, "address-space limit RLIMIT_AS"))
    return min(limits) if limits else None


def memory_problem(size_xyz: tuple[int, ...], dtype: np.dtype) -> str | None:
    """A one-line refusal when a case of this size and voxel type needs more memory than the process may use."""
    voxels = int(np.prod(size_xyz, dtype=np.int64)) if size_xyz else 0
    need = memory_needed(voxels, np.dtype(dtype).itemsize)
    usable = usable_memory()
    if usable is None or need <= usable[0]:
        return None
    size = "x".join(str(s) for s in size_xyz)
    return (
        f"needs about {need / 2**20:,.0f} MB to segment ({size} {np.dtype(dtype).name} voxels), more than the "
        f"{max(usable[0], 0) / 2**20:,.0f} MB this process may use ({usable[1]})"
    )


def replace_non_finite(array: np.ndarray, mask: np.ndarray | None = None) -> int:
    """Set NaN and +-Inf voxels of a float array (in place) to :data:`AIR_HU`; returns how many there were.

    ``mask`` (bool, same number of elements, C order) marks voxels known to be non-finite although the array no
    longer shows it (ITK reads them as 0); voxels that are non-finite in ``array`` itself are found too."""
    bad = ~np.isfinite(array) if array.dtype.kind == "f" else np.zeros(array.shape, dtype=bool)
    if mask is not None:
        bad |= mask.reshape(array.shape)
    count = int(bad.sum())
    if count:
        if array.dtype.kind != "f":
            raise ValueError(f"non-finite voxels in a {array.dtype} array")
        array[bad] = AIR_HU
    return count
