"""One case from CT volume to label map: the patch plan, normalization, strided patch inference, post-processing.

Load once, segment many: a Segmenter holds the network on its device and plans every volume from its spacing
(:meth:`Segmenter.plan_for`, the one planner). On a CUDA out-of-memory error it falls back, smaller batches first,
then the CPU, for that case only: the next case starts again from the settings the Segmenter was built with.
The network runs on torch, or on OpenVINO's CPU runtime (``backend="openvino"``, inference/openvino_backend.py):
the backend is only a different predict_fn for the patching engine.

Segmenter.from_options is the one place where the user's EngineOptions become a device, a precision and a backend.
On the OpenVINO backend the device and precision are names ("cpu"; "float32" or "bfloat16") and this module does not
import torch; the torch backend holds them as a torch device and dtype.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inference import precision_choice
from inference.checkpoint import Checkpoint, load_checkpoint, verify_sha256
from inference.cli import log
from inference.device import cpu_supports_bf16, device_type, precision_name, torch_dtype
from inference.distributed import Launch
from inference.engine_options import ENGINES, EngineOptions
from inference.openvino_backend import OpenVINONetwork, import_openvino
from inference.openvino_cache import recall_checkpoint, remember_checkpoint
from inference.options import check_choice, check_whole
from inference.patching import ProgressFn, predict_labels
from inference.plan import PatchPlan, PlanOptions, check_plan_options, plan_patches
from inference.postprocess import DEFAULT_RULE, RULES, postprocess
from inference.user_cache import user_cache_dir

if TYPE_CHECKING:
    import torch


@dataclass
class Segmenter:
    """A loaded checkpoint on a device, ready to segment volumes: built once, then :meth:`segment` per volume.

    ``options`` say how volumes are cut (:meth:`plan_for` turns them and the checkpoint's Sampling into each
    volume's PatchPlan); ``batch_size``, ``device`` and ``precision`` are the settings every case starts with, given
    by name or as torch types (held as names on the openvino backend, as torch types on torch's);
    ``backend`` is one that runs here ("torch" or "openvino"). :meth:`from_options` builds one from the names a
    user gives (EngineOptions).
    """

    checkpoint: Checkpoint
    device: str | torch.device
    options: PlanOptions = field(default_factory=PlanOptions)
    batch_size: int = 2
    precision: str | torch.dtype | None = "float32"  # None: measured on the first window (precision_of)
    postprocess: str = DEFAULT_RULE  # one of inference.postprocess.RULES
    _: KW_ONLY
    fuse: bool = True
    channels_last: bool = True
    backend: str = "torch"  # one of inference.engine_options.ENGINES
    converted: tuple[object, Path] | None = field(default=None, repr=False, compare=False)  # recall_checkpoint's

    def __post_init__(self) -> None:
        """Check the options against the checkpoint, then build the network that runs: batch norms folded into the
        convolutions and the regularized softmax a plain one where its lambda changes nothing in float32 (``fuse``;
        inference.model.plain_softmax_where_exact), weights in the channels-last-3d layout (``channels_last``; oneDNN
        and cuDNN pick faster kernels for it), on the device; with the openvino backend, its conversion of the
        folded network, or ``converted`` (the model and cache entry of a checkpoint recalled from the user cache,
        whose checkpoint holds no weights)."""
        if not isinstance(self.options, PlanOptions):
            raise TypeError(f"options must be a PlanOptions, got {type(self.options).__name__}")
        check_whole("batch_size", self.batch_size)
        check_choice("postprocess", self.postprocess, RULES)
        check_choice("backend", self.backend, ENGINES)
        openvino = import_openvino() if self.backend == "openvino" else None
        if self.backend == "openvino" and openvino is None:
            raise ValueError("backend openvino: the openvino package is not installed")
        check_plan_options(self.options, self.checkpoint.sampling, self.checkpoint.config.size_multiple)
        self._typed_settings()
        self._caps_logged: set[int] = set()
        self._settings = (self.batch_size, self.device, self.precision)  # what every case starts with
        self._backed_off = False
        if self.checkpoint.model is None:
            if openvino is None or self.converted is None:
                raise ValueError("a checkpoint without its weights runs only from its cached OpenVINO conversion")
            self.network = None
        elif self.fuse:  # only the folded copy goes to the device: one set of weights there
            from inference.model import fuse_batchnorm, plain_softmax_where_exact

            self.network = plain_softmax_where_exact(fuse_batchnorm(self.checkpoint.model.eval()))
        else:
            self.network = self.checkpoint.model.eval()
        self._openvino = None
        if openvino is not None:
            self._openvino = OpenVINONetwork(self.network, openvino, converted=self.converted)
            folder = self._openvino.cache_folder
            if self.converted is None and folder is not None and self.checkpoint.sha256 is not None:
                remember_checkpoint(self.checkpoint, folder, openvino)
        self._place_network()

    def _typed_settings(self) -> None:
        """The device and precision as the backend holds them: names on OpenVINO, torch types on torch."""
        if self.backend == "openvino":
            self.device = str(self.device)
            self.precision = None if self.precision is None else precision_name(self.precision)
        else:
            import torch

            self.device = torch.device(self.device)
            self.precision = torch_dtype(self.precision)

    @classmethod
    def from_options(
        cls,
        checkpoint: Checkpoint | str | Path,
        engine: EngineOptions = EngineOptions(),
        plan: PlanOptions = PlanOptions(),
        launch: Launch = Launch(),
    ) -> Segmenter:
        """The Segmenter of a checkpoint (loaded, or a file to verify and load) with the user's options: ``engine``
        resolved for this process (:meth:`EngineOptions.resolve`: the device, under torchrun this process's GPU;
        the precision; the backend), then the checkpoint loaded, and ``plan``. ValueError for a device, backend or
        window the run cannot take; CheckpointError for a file that is not a verified RUnet checkpoint."""
        resolved = engine.resolve(launch)
        converted = None
        if not isinstance(checkpoint, Checkpoint):
            checkpoint, converted = _read_checkpoint(Path(checkpoint), resolved.backend)
        return cls(
            checkpoint,
            resolved.device,
            plan,
            engine.batch_size,
            resolved.precision,
            engine.postprocess,
            backend=resolved.backend,
            converted=converted,
        )

    @property
    def openvino_cache_folder(self) -> Path | None:
        """The folder holding the OpenVINO conversion of the network (read from or written to the user cache);
        None with the torch backend or without a cache."""
        return self._openvino.cache_folder if self._openvino is not None else None

    def _place_network(self) -> None:
        if self.network is None:  # runs from its OpenVINO conversion alone
            return
        import torch

        self.network.to(self.device)
        if self.channels_last:
            self.network.to(memory_format=torch.channels_last_3d)

    def plan_for(self, spacing_zyx: Sequence[float]) -> PatchPlan:
        """The PatchPlan a volume of voxel spacing ``spacing_zyx`` (mm, z y x) runs with: the options and the
        checkpoint's Sampling, put together by inference.plan.plan_patches. The one planner: the CLI's log line,
        its --log-csv row and the engine use the plan it returns. When the stride leaves fewer phases than
        ``options.phases`` asks for (a number the user gave; None asks for every phase), one line says so, once per
        stride."""
        plan = plan_patches(
            self.options, self.checkpoint.sampling, tuple(spacing_zyx)[1:], self.checkpoint.config.size_multiple
        )
        asked = self.options.phases
        if asked is not None and plan.phases < asked and plan.stride not in self._caps_logged:
            self._caps_logged.add(plan.stride)
            log(
                f"phases capped at {plan.phases} for volumes split at stride {plan.stride} "
                f"({plan.stride}x{plan.stride} phases; {asked} asked for)"
            )
        return plan

    def predict_fn(self, x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """(B, 1, d, h, w) -> (B, C, d, h, w) probabilities at the segmenter's precision (measured on this first
        window when None) on its backend: the network call the patching engine makes for every batch of windows.
        Benchmarks time it, or replace it on an instance (``seg.predict_fn = timed``), to split a run's time."""
        if self.precision is None:
            self.precision = self._measure_precision(x[:1])
        return self._run(x, self.precision)

    def _run(self, x: torch.Tensor | np.ndarray, precision: str | torch.dtype) -> torch.Tensor | np.ndarray:
        """The network on ``x`` at ``precision``: OpenVINO's, or torch's under autocast below float32."""
        if self._openvino is not None:
            return self._openvino.predict_fn(precision)(x)
        import torch

        if precision == torch.float32:
            ctx = contextlib.nullcontext()
        else:
            ctx = torch.autocast(self.device.type, dtype=precision)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with ctx:
            return self.network(x)

    def _measure_precision(self, window: torch.Tensor | np.ndarray) -> str | torch.dtype:
        """The faster of float32 and bfloat16 (where computed natively) on this backend, timed on ``window``
        (1, 1, d, h, w) or remembered from an earlier measurement on this machine (inference/precision_choice.py);
        a name on OpenVINO, a torch dtype on torch."""
        if self._openvino is not None:
            engine, threads = f"openvino {self._openvino.version}", self._openvino.threads
            bf16, typed = self._openvino.supports_bfloat16(), str
        else:
            import torch

            engine, threads, bf16 = f"torch {torch.__version__}", torch.get_num_threads(), cpu_supports_bf16()
            typed = torch_dtype
        names = ("float32", "bfloat16") if bf16 else ("float32",)
        candidates = {name: (lambda name=name: self._run(window, typed(name))) for name in names}
        key = precision_choice.choice_key(engine, threads, self.checkpoint.config.widths, tuple(window.shape))
        return typed(precision_choice.choose(candidates, key, user_cache_dir(), log))

    def segment(
        self,
        image_hu: np.ndarray,
        spacing_zyx: Sequence[float],
        *,
        plan: PatchPlan | None = None,
        progress: ProgressFn | None = None,
    ) -> np.ndarray:
        """(D, H, W) numpy array of Hounsfield units (zyx, canonical orientation; any real integer or float dtype)
        with voxel spacing ``spacing_zyx`` (mm, z y x) -> (D, H, W) uint8 label map, post-processed by the rule
        ``postprocess`` names (inference.postprocess.RULES; "none": the network's labels). The input is not modified.

        ``plan``: the :meth:`plan_for` of this spacing when the caller made it already (to log it), else None.
        ``progress`` gets (windows done, windows in all) after every network call (it starts again from 0 when an
        out-of-memory error makes the volume run again)."""
        check_case(image_hu, spacing_zyx)
        own = self.plan_for(spacing_zyx)
        if plan is not None and plan != own:
            raise ValueError(f"plan {plan} is not this segmenter's plan for spacing {tuple(spacing_zyx)}: {own}")
        labels = self.network_labels(image_hu, own if plan is None else plan, progress)
        return postprocess(labels, spacing_zyx, self.postprocess)

    def normalize(self, hu: np.ndarray) -> np.ndarray:
        """Any-shape array of HU -> float32 network input (the checkpoint's Normalization): applied to each phase
        as it is cut. Benchmarks replace it on an instance, as they do :meth:`predict_fn`, to time it."""
        return self.checkpoint.normalization.apply(hu)

    def network_labels(self, image_hu: np.ndarray, plan: PatchPlan, progress: ProgressFn | None = None) -> np.ndarray:
        """The network's (D, H, W) uint8 label map (before post-processing) of ``image_hu`` (HU, zyx, canonical) by
        ``plan``, backing off after out-of-memory errors; the settings the case started with are back afterwards,
        whatever happened."""
        try:  # out-of-memory errors are caught on CUDA only (torch is loaded there)
            while True:
                try:
                    return predict_labels(
                        image_hu,
                        self.predict_fn,
                        self.checkpoint.config.num_classes,
                        plan,
                        batch_size=self.batch_size,
                        device=None if self._openvino is not None else self.device,  # numpy on OpenVINO
                        pad_value=self.checkpoint.normalization.air_value,
                        progress=progress,
                        normalize=self.normalize,  # phase by phase: no normalized copy of the whole volume
                    )
                except _cuda_out_of_memory(self.device):
                    if not self._back_off():
                        raise
        finally:
            self._restore()

    def _back_off(self) -> bool:
        """After an out-of-memory error: halve the batch, or leave CUDA for the CPU; False when nothing is left."""
        if device_type(self.device) != "cuda":
            return False
        import torch

        torch.cuda.empty_cache()
        self._backed_off = True
        if self.batch_size > 1:
            self.batch_size //= 2
            log(f"warning: CUDA out of memory; retrying with batch size {self.batch_size}")
        else:
            self.device = torch.device("cpu")
            self.precision = torch.float32  # the measured choice is not worth its time after an OOM
            self._place_network()
            log("warning: CUDA out of memory at batch size 1; continuing this case on the CPU")
        return True

    def _restore(self) -> None:
        """After a case that backed off: the batch size, device and precision it started with, for the next case,
        with one line that says so."""
        if not self._backed_off:
            return
        self._backed_off = False
        self.batch_size, device, self.precision = self._settings
        if device != self.device:
            self.device = device
            self._place_network()
        log(
            f"out-of-memory back-off undone for the next case: batch size {self.batch_size}, device {self.device}, "
            f"precision {precision_name(self.precision)}"
        )


def _cuda_out_of_memory(device: str | torch.device) -> tuple[type[BaseException], ...]:
    """What :meth:`Segmenter._labels` catches to back off: torch's out-of-memory error on a CUDA device, nothing
    elsewhere (where nothing is left to back off to, and torch may not be loaded)."""
    if device_type(device) != "cuda":
        return ()
    import torch

    return (torch.OutOfMemoryError,)


def _read_checkpoint(path: Path, backend: str) -> tuple[Checkpoint, tuple[object, Path] | None]:
    """The checkpoint file ``path``, verified: on the openvino backend from its record in the user cache when there
    is one that holds (metadata and converted model, no weights loaded: inference.openvino_cache.recall_checkpoint),
    else loaded (and its conversion recorded by the Segmenter)."""
    if backend != "openvino":
        return load_checkpoint(path), None
    digest = verify_sha256(path)  # once: the record's key, and the check of the file loaded below
    recalled = recall_checkpoint(user_cache_dir(), digest, import_openvino())
    if recalled is not None:
        checkpoint, model, folder = recalled
        return checkpoint, (model, folder)
    checkpoint = load_checkpoint(path, verify=False)
    checkpoint.sha256 = digest
    return checkpoint, None


def check_case(image_hu: np.ndarray, spacing_zyx: Sequence[float]) -> None:
    """ValueError unless ``image_hu`` is a non-empty 3-D numpy array of real numbers (integer or float, not bool)
    and ``spacing_zyx`` three finite spacings > 0 (mm)."""
    if not isinstance(image_hu, np.ndarray) or image_hu.ndim != 3 or min(image_hu.shape) < 1:
        shape = getattr(image_hu, "shape", type(image_hu).__name__)
        raise ValueError(f"image must be a non-empty (D, H, W) numpy array of HU, got {shape}")
    if image_hu.dtype.kind not in "iuf":
        raise ValueError(f"image must hold real HU (integer or float voxels), got dtype {image_hu.dtype}")
    spacing = tuple(spacing_zyx)
    if len(spacing) != 3 or not all(math.isfinite(float(v)) and float(v) > 0 for v in spacing):
        raise ValueError(f"spacing must be three finite values > 0 (mm, z y x), got {spacing}")
