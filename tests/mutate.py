"""A small mutation check: break the code in one targeted way at a time and see which test notices.

    python tests/mutate.py [--only NAME ...] [--list]        (or: make mutate)

Copies the repository's files (git ls-files: tracked and untracked-but-not-ignored) to a temporary folder once,
then for each mutation in MUTATIONS: changes one piece of source text there (or scrambles the shipped weights),
runs only the tests named for it (pytest -x), records the first failing test, and restores the file. Prints a
markdown table: mutation -> the test that caught it, SURVIVED (every selected test passed) or NOT APPLIED (the
source text was not found exactly once: the code changed, update the list). Exit code 1 when a mutation survived
or did not apply. Slow (about 10-20 minutes on 2 cores), so not part of the test suite or CI.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@dataclass(frozen=True)
class Mutation:
    """Replace ``old`` (which must occur exactly once in ``path``) by ``new``, or run ``apply`` on the copy."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    apply: Callable[[Path], None] | None = None


def scramble_weights(root: Path) -> None:
    """weights/runet.pt with every tensor's values permuted (same shapes), SHA256SUMS updated to match."""
    import torch

    from inference.checkpoint import write_sha256sums

    path = root / "weights" / "runet.pt"
    payload = torch.load(path, map_location="cpu", weights_only=True)
    gen = torch.Generator().manual_seed(0)
    for name, t in payload["state_dict"].items():
        if t.is_floating_point() and t.numel() > 1:
            payload["state_dict"][name] = t.flatten()[torch.randperm(t.numel(), generator=gen)].view_as(t).clone()
    torch.save(payload, path)
    write_sha256sums(path.parent)


CLI = "tests/test_cli_options.py"
REF = "tests/test_reference_values.py"
EDGE = "tests/test_input_edge_cases.py"
TRAIN = "tests/test_training_choices.py"

MUTATIONS = [
    Mutation(
        "shipped weights scrambled", "weights/runet.pt", "", "", ("tests/test_quality_floor.py",), scramble_weights
    ),
    Mutation(
        "CLI ignores --stride (auto included)",
        "inference/plan.py",
        '            stride=stride if stride == "auto" else int(stride),\n',
        "",
        (f"{CLI}::test_stride_auto_follows_the_spacing_and_a_fixed_stride_overrides_it",),
    ),
    Mutation(
        "stride auto always 4",
        "inference/plan.py",
        "choose_stride(tuple(spacing_yx_mm), sampling.inplane_voxel_mm, divisors(sampling.stride))",
        "4",
        ("tests/test_stride.py", f"{CLI}::test_stride_auto_follows_the_spacing_and_a_fixed_stride_overrides_it"),
    ),
    Mutation(
        "CLI ignores --short-volume",
        "inference/plan.py",
        'short_volume=getattr(args, "short_volume", cls.short_volume),',
        "",
        (f"{CLI}::test_short_volume_pad_and_fit",),
    ),
    Mutation(
        "CLI ignores --precision",
        "inference/engine_options.py",
        "precision_of(self.precision, device)",
        'precision_of("auto", device)',
        (f"{CLI}::test_precision_is_the_one_asked_for",),
    ),
    Mutation(
        "CLI ignores --postprocess",
        "inference/engine_options.py",
        "args.batch_size, args.postprocess)",
        "args.batch_size, DEFAULT_RULE)",
        (f"{CLI}::test_no_postprocess_writes_the_network_labels",),
    ),
    Mutation(
        "CLI ignores --phases",
        "inference/plan.py",
        'phases=getattr(args, "phases", cls.phases),',
        "phases=16,",
        (f"{CLI}::test_phases",),
    ),
    Mutation(
        "CLI ignores --overlap",
        "inference/plan.py",
        'overlap=getattr(args, "overlap", cls.overlap),',
        "overlap=0.5,",
        (f"{CLI}::test_overlap",),
    ),
    Mutation(
        "--batch-size 0 accepted",
        "inference/engine_options.py",
        'check_whole("batch_size", self.batch_size)',
        "pass",
        (f"{CLI}::test_batch_size_below_one_is_a_usage_error",),
    ),
    Mutation(
        "unknown device accepted",
        "inference/device.py",
        'if name not in ("auto", "cpu") and not name.startswith("cuda"):',
        "if False:",
        (f"{CLI}::test_unknown_device_or_precision_is_a_usage_error",),
    ),
    Mutation(
        "unknown precision unchecked",
        "inference/device.py",
        "if name not in PRECISIONS:",
        "if False:",
        (f"{CLI}::test_unknown_device_or_precision_is_a_usage_error",),
    ),
    Mutation(
        "normalization scale halved",
        "inference/preprocess.py",
        "out *= np.float32(1.0 / half)",
        "out *= np.float32(0.5 / half)",
        (f"{REF}::test_hu_window_maps_onto_minus_one_to_one_by_hand",),
    ),
    Mutation(
        "window overlap: last window replaces the sum",
        "inference/patching.py",
        "sums[p][:, z0 : z0 + win] += probs[k]",
        "sums[p][:, z0 : z0 + win] = probs[k]",
        (REF, "tests/test_patching.py"),
    ),
    Mutation(
        "in-place softmax modifies its input",
        "inference/regularized_softmax.py",
        "torch.softmax(torch.sub(logits, div.mul_(lam)), dim=1)",
        "torch.softmax(logits.sub_(div.mul_(lam)), dim=1)",
        ("tests/test_inference_speed.py::test_inplace_regularized_softmax_matches_the_autograd_version",),
    ),
    Mutation(
        "phase split cuts the through-plane axis",
        "training/phase_split.py",
        "z_index_axis = 2 - Orientation.from_direction(image.GetDirection()).perm[0]",
        "z_index_axis = 2",
        ("tests/test_phase_split.py",),
    ),
    Mutation(
        "phase split repeats a case fewer times than --entries",
        "training/phase_split.py",
        "repeats = entries // count if entries else 1",
        "repeats = max(entries // count - 1, 1) if entries else 1",
        ("tests/test_phase_split.py",),
    ),
    Mutation(
        "anatomy rule keeps the largest liver piece",
        "inference/postprocess.py",
        "kept = candidates[np.argmax(table.z_mean[candidates])]",
        "kept = liver[0]",
        ("tests/test_postprocess.py",),
    ),
    Mutation(
        "anatomy rule keeps spleen pieces far below the liver",
        "inference/postprocess.py",
        "survive[spleen[table.z_mean[spleen] < floor]] = False",
        "pass",
        ("tests/test_postprocess.py",),
    ),
    Mutation(
        "kidney keeps 1 component",
        "inference/postprocess.py",
        "KEEP_COMPONENTS = {1: 1, 2: 3, 3: 1, 4: 1}",
        "KEEP_COMPONENTS = {1: 1, 2: 1, 3: 1, 4: 1}",
        ("tests/test_postprocess.py",),
    ),
    Mutation(
        "non-finite image values kept",
        "inference/preprocess.py",
        "        array[bad] = AIR_HU\n",
        "        pass\n",
        (f"{EDGE}::test_non_finite_float_voxels_are_read_as_air_with_a_warning",),
    ),
    Mutation(
        "failed write leaves its temporary file",
        "inference/ct_io.py",
        "tmp.unlink(missing_ok=True)",
        "pass",
        (f"{EDGE}::test_a_failed_write_leaves_no_temporary_file",),
    ),
    Mutation(
        "NIfTI-2 header not checked",
        "niftiio/nifti_file.py",
        "if size == 540 and len(head) >= 540:",
        "if False:",
        (f"{EDGE}::test_nifti2_header_checks",),
    ),
    Mutation(
        "oblique direction needs exact axes",
        "inference/ct_io.py",
        "np.argmax(np.abs(d), axis=0)",
        "np.argmax(np.abs(d) == 1, axis=0)",
        (f"{EDGE}::test_near_axis_aligned_oblique_directions_take_the_nearest_axes",),
    ),
    Mutation(
        "corrupt checkpoint raises a raw torch error",
        "inference/checkpoint.py",
        "except Exception as exc:  # torch raises many types",
        "except OSError as exc:  # torch raises many types",
        (f"{EDGE}::test_listed_but_corrupt_checkpoint_is_a_checkpoint_error",),
    ),
    Mutation(
        "weights not fitting the config raise a raw error",
        "inference/checkpoint.py",
        "    if got != expected:\n",
        "    if False:\n",
        (f"{EDGE}::test_weights_that_do_not_fit_the_saved_config",),
    ),
    Mutation(
        "NaN weights loaded as they are",
        "inference/checkpoint.py",
        "    if problem is not None:\n",
        "    if False:\n",
        ("tests/test_untrusted_disk.py::test_the_first_non_finite_tensor_is_named",),
    ),
    Mutation(
        "cached network read without comparing its bytes with the seal",
        "inference/cache_seal.py",
        '(len(data), _digest(data)) != (entry.get("bytes"), entry.get("sha256"))',
        "False",
        ("tests/test_untrusted_disk.py::test_a_tampered_cache_entry_is_rebuilt_with_one_line",),
    ),
    Mutation(
        "summary mean computed as a median",
        "evaluation/report.py",
        'entry[f"{metric}_mean"] = float(np.mean(values))',
        'entry[f"{metric}_mean"] = float(np.median(values))',
        (f"{REF}::test_summary_mean_median_and_sample_std_by_hand",),
    ),
    Mutation(
        "summary std with ddof 0",
        "evaluation/report.py",
        "np.std(values, ddof=1)",
        "np.std(values, ddof=0)",
        (f"{REF}::test_summary_mean_median_and_sample_std_by_hand",),
    ),
    Mutation(
        "unreadable ground truth scored as a missing prediction",
        "evaluation/evaluate.py",
        'return CaseResult(case, GT_ERROR, f"ground truth {err}")',
        'return CaseResult(case, MISSING, f"ground truth {err}", dict.fromkeys(labels, (0.0, 0.0)))',
        ("tests/test_evaluate_options.py::test_unreadable_ground_truth_is_an_error_and_not_scored",),
    ),
    Mutation(
        "per-organ tolerance ignored",
        "evaluation/evaluate.py",
        "out[by_name[name.strip()]] = float(value)",
        "out[by_name[name.strip()]] = 1.0",
        ("tests/test_evaluate_options.py::test_per_organ_tolerance",),
    ),
    Mutation(
        "efficiency timeout kills the shell only",
        "evaluation/efficiency.py",
        "os.killpg(proc.pid, 9)",
        "proc.kill()",
        ("tests/test_efficiency.py::test_run_command_timeout_kills_the_process_group",),
    ),
    Mutation(
        "best.pt saved every epoch",
        "training/train.py",
        "if improved or not run.val_cases:",
        "if True:",
        (f"{TRAIN}::test_best_checkpoint_is_the_epoch_of_the_best_validation",),
    ),
    Mutation(
        "--max-steps ignored inside an epoch",
        "training/train.py",
        "        if cfg.max_steps and step >= cfg.max_steps:\n            break\n",
        "",
        (f"{TRAIN}::test_max_steps_stops_mid_epoch_and_validates_there",),
    ),
    Mutation(
        "--val-max-cases ignored",
        "training/train.py",
        "val_cases = val_cases[: cfg.val_max_cases]",
        "val_cases = val_cases",
        (f"{TRAIN}::test_val_max_cases_keeps_the_first_validation_cases",),
    ),
]


def copy_tree(dest: Path) -> None:
    """The repository's tracked and untracked-but-not-ignored files, copied under ``dest``."""
    names = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for raw in names:
        if not raw:
            continue
        src = REPO / os.fsdecode(raw)
        if src.is_file():
            (dest / os.fsdecode(raw)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / os.fsdecode(raw))


def run_one(root: Path, m: Mutation, env: dict[str, str]) -> tuple[str, float]:
    """Apply ``m`` in ``root``, run its tests, restore; (result, seconds)."""
    target = root / m.path
    original = target.read_bytes()
    try:
        if m.apply is not None:
            m.apply(root)
        else:
            text = original.decode()
            if text.count(m.old) != 1:
                return f"NOT APPLIED (found {text.count(m.old)} times)", 0.0
            target.write_text(text.replace(m.old, m.new))
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider", *m.tests]
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, flags=re.MULTILINE)
        if proc.returncode == 0:
            return "SURVIVED", seconds
        if failed:
            return f"caught by {failed[0]}", seconds
        return f"caught (pytest exit {proc.returncode}: {proc.stdout.strip().splitlines()[-1:]})", seconds
    finally:
        target.write_bytes(original)
        if m.apply is scramble_weights:
            shutil.copy2(REPO / "weights" / "SHA256SUMS", root / "weights" / "SHA256SUMS")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python tests/mutate.py", description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", default=None, help="run the mutations whose names contain one of these")
    p.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = p.parse_args(argv)
    chosen = [m for m in MUTATIONS if args.only is None or any(s in m.name for s in args.only)]
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.path} -> {', '.join(m.tests)}")
        return 0
    from inference.task import shared_data_dir

    env = dict(os.environ, RUNET_SHARED_DATA=str(shared_data_dir()), PYTHONDONTWRITEBYTECODE="1")
    bad = 0
    with tempfile.TemporaryDirectory(prefix="runet-mutate-") as tmp:
        root = Path(tmp)
        copy_tree(root)
        print("| # | mutation | file | result | s |\n| --- | --- | --- | --- | --- |", flush=True)
        for k, m in enumerate(chosen, 1):
            result, seconds = run_one(root, m, env)
            bad += not result.startswith("caught")
            print(f"| {k} | {m.name} | `{m.path}` | {result} | {seconds:.0f} |", flush=True)
    print(f"\n{len(chosen) - bad} of {len(chosen)} mutations caught", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
