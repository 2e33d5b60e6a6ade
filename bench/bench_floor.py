"""The floor: a case's network FLOPs over the best throughput this machine reaches, per backend, in this run.

For a 512x512xD case at --phases 16 the network runs on 16 x (windows per phase) windows of (window, 128, 128).
Its FLOPs (torch's counter, a multiply-add counts 2) divided by a throughput give the floor: the seconds the
network would take if every FLOP ran that fast. The throughput is, per backend (torch, openvino) and precision, the
larger of a large 3x3x3 Conv3d's and the best large matrix product's (GEMM, n = 1024 and 2048), each measured with
that backend on the same machine in the same run. Reported: measured network seconds per case (one batch of 2
windows timed, best of N, interleaved with every other measurement, times the number of batches) over that floor,
for float32 and bfloat16, for the network as trained ("before": torch, batch norms, NCDHW, autograd-friendly
regularized softmax), as the torch backend runs it ("after": folded batch norms, channels-last-3d, in-place
regularized softmax) and on the openvino backend (the folded network converted, regularized softmax included).

    python bench/bench_floor.py                     # D = 64 case, default and checkpoint networks
    python bench/bench_floor.py --networks checkpoint --repeats 3
    python bench/bench_floor.py --quick             # tiny network and windows (smoke test)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine_line, markdown_table, network, publish, sync  # noqa: E402

from inference import regularized_softmax as rs  # noqa: E402
from inference.checkpoint import CheckpointError  # noqa: E402
from inference.model import RUNet, count_flops, fuse_batchnorm  # noqa: E402
from inference.openvino_backend import OpenVINONetwork, compile_config, cpu_threads, import_openvino  # noqa: E402
from inference.openvino_conversion import convert_module  # noqa: E402
from inference.patching import round_up, z_windows  # noqa: E402
from inference.plan import PatchPlan  # noqa: E402
from inference.precision_choice import measure  # noqa: E402
from niftiio.command_line import UsageParser

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_INPLACE = rs.regularized_softmax_inplace


Timed = Callable[[], object]


def _torch_ctx(dtype: torch.dtype, device: str):
    kind = torch.device(device).type
    return torch.autocast(kind, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()


def _inference(fn: Timed, dtype: torch.dtype, device: str) -> Timed:
    """``fn`` under inference mode and autocast below float32, synchronized with the device."""

    def run() -> None:
        with torch.inference_mode(), _torch_ctx(dtype, device):
            fn()
        sync(device)

    return run


def _openvino_call(ov, module: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype) -> Timed:
    """A call running ``module`` on ``x`` with OpenVINO's CPU plugin at ``dtype`` (compiled for x's shape)."""
    model = convert_module(module, x, list(x.shape), ov)
    request = ov.Core().compile_model(model, "CPU", compile_config(dtype, cpu_threads())).create_infer_request()
    arr = x.numpy()
    return lambda: request.infer({0: arr}, share_inputs=True)


def reference_ops(shape, channels, gemm_sizes, backends, dtypes, device) -> dict[tuple, tuple[Timed, float]]:
    """(kind, backend, precision) -> (a call, its FLOPs): one Conv3d(channels, channels, 3) on (1, channels, *shape)
    and one (n, n) x (n, n) matrix product per n, on each backend and precision."""
    ops: dict[tuple, tuple[Timed, float]] = {}
    conv = torch.nn.Conv3d(channels, channels, 3, padding=1, bias=False).to(device).eval()
    x = torch.randn(1, channels, *shape, device=device)
    conv_flops = 2 * channels * channels * 27 * x[0, 0].numel()
    ov = import_openvino() if "openvino" in backends else None
    for name, dt in dtypes.items():
        if "torch" in backends:
            if dt == torch.float32:  # channels-last for float32 (faster there), as the reference always ran
                c, v = (
                    copy.deepcopy(conv).to(memory_format=torch.channels_last_3d),
                    x.contiguous(memory_format=torch.channels_last_3d),
                )
            else:
                c, v = conv, x
            ops["conv", "torch", name] = (_inference(lambda c=c, v=v: c(v), dt, device), conv_flops)
            for n in gemm_sizes:
                a, b = torch.randn(n, n, device=device, dtype=dt), torch.randn(n, n, device=device, dtype=dt)
                ops[f"gemm {n}", "torch", name] = (_inference(lambda a=a, b=b: a @ b, torch.float32, device), 2 * n**3)
        if ov is not None:
            ops["conv", "openvino", name] = (_openvino_call(ov, conv.cpu(), x.cpu(), dt), conv_flops)
            for n in gemm_sizes:
                linear = torch.nn.Linear(n, n, bias=False)
                ops[f"gemm {n}", "openvino", name] = (_openvino_call(ov, linear, torch.randn(n, n), dt), 2 * n**3)
    return ops


def network_call(model: RUNet, variant: str, dtype: torch.dtype, x: torch.Tensor, device: str) -> Timed:
    """A call running one forward pass of ``model`` on ``x`` in the given variant and precision."""
    if variant == "openvino":
        run = OpenVINONetwork(fuse_batchnorm(model), import_openvino()).predict_fn(dtype)
        return lambda: run(x)
    if variant == "after":
        net = fuse_batchnorm(model).to(device).to(memory_format=torch.channels_last_3d)
        xin = x.contiguous(memory_format=torch.channels_last_3d)
        return _inference(lambda: net(xin), dtype, device)
    net = model.to(device)

    def before() -> None:
        rs.regularized_softmax_inplace = rs.regularized_softmax_graph  # the pre-speed-up layer (same values)
        try:
            net(x)
        finally:
            rs.regularized_softmax_inplace = _INPLACE

    return _inference(before, dtype, device)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options, with the sizes of the case and of the reference operations (smaller with --quick)."""
    p = UsageParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny network and windows (smoke test)")
    p.add_argument("--depth", type=int, default=64, help="slices of the 512x512xD case")
    p.add_argument(
        "--networks", nargs="+", default=["default", "checkpoint"], choices=("default", "checkpoint", "tiny")
    )
    p.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"], choices=tuple(DTYPES))
    p.add_argument("--backends", nargs="+", default=["torch", "openvino"], choices=("torch", "openvino"))
    p.add_argument("--repeats", type=int, default=None, help="best of N interleaved rounds (default 2, quick 1)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=RESULTS / "floor.md")
    args = p.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 2)
    args.size, args.window, args.conv_shape, args.channels, args.gemm = 512, 128, (64, 128, 128), 32, (1024, 2048)
    if args.quick:
        args.networks, args.depth, args.size, args.window = ["tiny"], 16, 64, 16
        args.conv_shape, args.channels, args.gemm = (16, 32, 32), 16, (256,)
    if "openvino" in args.backends and (args.device != "cpu" or import_openvino() is None):
        print("skipping the openvino backend: it needs --device cpu and the openvino package", file=sys.stderr)
        args.backends = [b for b in args.backends if b != "openvino"]
    return args


def network_cases(args: argparse.Namespace, dtypes: dict[str, torch.dtype], calls: dict[tuple, Timed]) -> list:
    """Per network of --networks (each config once): (source, model, windows per case, window depth, window
    height and width, FLOP per case, variants); its forward calls are added to ``calls``."""
    cases = []
    seen = set()
    for source in args.networks:
        try:
            model = network(source)
        except CheckpointError as exc:
            print(f"skipping the {source} network: {exc}", file=sys.stderr)
            continue
        key = repr(model.config.to_dict())
        if key in seen:
            continue
        seen.add(key)
        m = model.config.size_multiple
        depth, starts = z_windows(args.depth, PatchPlan(phases=16, window=args.window, size_multiple=m))
        win, hw = min(args.window, depth), round_up(-(-args.size // 4), m)
        n_windows, batch = 16 * len(starts), 2
        case_flops = count_flops(model, (1, 1, win, hw, hw)) * n_windows
        x = torch.randn(batch, 1, win, hw, hw, device=args.device)
        variants = (["before", "after"] if "torch" in args.backends else []) + [
            b for b in args.backends if b != "torch"
        ]
        for name, dt in dtypes.items():
            for variant in variants:
                calls["network", source, name, variant] = network_call(model, variant, dt, x, args.device)
        cases.append((source, model, n_windows, win, hw, case_flops, variants))
    return cases


def floor_rows(cases: list, dtypes: dict, seconds: dict[tuple, float], flops: dict[tuple, float]) -> list[list]:
    """One table row per network, precision and variant: its floor (the case's FLOP at the best reference
    throughput of its backend and precision) beside the measured network time."""
    rows = []
    for source, model, n_windows, win, hw, case_flops, variants in cases:
        for name in dtypes:
            for variant in variants:
                backend = "torch" if variant in ("before", "after") else variant
                refs = {k[0]: flops[k] / seconds[k] for k in seconds if k[1:] == (backend, name)}
                conv = refs["conv"]
                best_gemm = max(v for k, v in refs.items() if k.startswith("gemm"))
                floor = case_flops / max(conv, best_gemm)
                measured = seconds["network", source, name, variant] * n_windows / 2
                rows.append(
                    [
                        f"{source} {list(model.config.widths)}",
                        backend,
                        name,
                        variant,
                        f"{n_windows} x ({win},{hw},{hw})",
                        f"{case_flops / 1e12:.2f}",
                        f"{conv / 1e9:.1f}",
                        f"{best_gemm / 1e9:.1f}",
                        floor,
                        measured,
                        measured / floor,
                    ]
                )
    return rows


HEADERS = [
    "network",
    "backend",
    "precision",
    "variant",
    "windows",
    "TFLOP / case",
    "Conv3d GFLOP/s",
    "best GEMM GFLOP/s",
    "floor (s)",
    "network (s)",
    "network / floor",
]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dtypes = {name: DTYPES[name] for name in args.precisions}
    calls: dict[tuple, Timed] = {}
    flops: dict[tuple, float] = {}
    ops = reference_ops(args.conv_shape, args.channels, args.gemm, args.backends, dtypes, args.device)
    for key, (fn, f) in ops.items():
        calls[key], flops[key] = fn, f
    cases = network_cases(args, dtypes, calls)
    seconds = measure(calls, rounds=args.repeats)  # every call warmed up, then timed round after round, interleaved
    rows = floor_rows(cases, dtypes, seconds, flops)
    size, channels, conv_shape = args.size, args.channels, args.conv_shape
    title = (
        f"Floor ({'quick' if args.quick else 'full'}): {size}x{size}x{args.depth} case at --phases 16, batch 2; "
        f"floor throughput = max(Conv3d({channels}, {channels}, 3) on {conv_shape}, GEMM n in {list(args.gemm)}) "
        f"per backend and precision; best of {args.repeats} interleaved rounds; device {args.device}, openvino "
        f"threads {cpu_threads()}. {machine_line(args.device)}."
    )
    publish(title, markdown_table(HEADERS, rows), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
