"""The regularized softmax on OpenVINO's CPU plugin: seconds per batch of each form of the last activation, and of
the whole network with it, measured interleaved in one run.

Forms of the activation, each converted alone (input: a (B, C, D, H, W) float32 batch of logits):
- "plain softmax": what inference runs when lambda is under the bound at which the regularized softmax equals it to
  float32 rounding (:func:`inference.regularized_softmax.negligible_lambda`);
- "TV, slice and pad": the regularized softmax as the conversion wrote it before (per axis a Slice, a subtraction
  and a zero Pad for the forward difference, a Slice and a Pad for the backward one);
- "TV, pad shifts": as the conversion writes it now
  (:func:`inference.openvino_conversion.traceable_regularized_softmax`: one Pad with a negative width per shift).
Then the shipped network per batch, converted with the TV term (slice and pad, as before) and with the activation
the conversion now picks for its lambda. Each row: best of ``--repeats`` calls, all rows interleaved; the largest
difference from the torch layer (float32 hint) says the forms compute the same thing.

    python bench/bench_tv.py                    # batch 2 of 128^3 windows, lambda 0.5 for the TV forms
    python bench/bench_tv.py --quick            # tiny sizes (smoke test)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine_line, markdown_table, network, publish  # noqa: E402

from inference.model import RUNet, fuse_batchnorm, plain_softmax_where_exact  # noqa: E402
from inference.openvino_backend import compile_config, cpu_threads, import_openvino  # noqa: E402
from inference.openvino_conversion import convert_module, traceable_regularized_softmax  # noqa: E402
from inference.regularized_softmax import RegularizedSoftmax, negligible_lambda, regularized_softmax  # noqa: E402
from niftiio.command_line import UsageParser  # noqa: E402

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_PAD_AFTER = {2: (0, 0, 0, 0, 0, 1), 3: (0, 0, 0, 1, 0, 0), 4: (0, 1, 0, 0, 0, 0)}
_PAD_BEFORE = {2: (0, 0, 0, 0, 1, 0), 3: (0, 0, 1, 0, 0, 0), 4: (1, 0, 0, 0, 0, 0)}


def slice_pad_regularized_softmax(logits: torch.Tensor, lam: float, step: float) -> torch.Tensor:
    """The regularized softmax as the OpenVINO conversion wrote it before (Slice and zero-Pad chains per axis)."""
    s = torch.softmax(logits, dim=1)
    grads = []
    for dim in (2, 3, 4):
        n = s.shape[dim]
        grads.append(F.pad(s.narrow(dim, 1, n - 1) - s.narrow(dim, 0, n - 1), _PAD_AFTER[dim]))
    sq = grads[0] * grads[0] + grads[1] * grads[1] + grads[2] * grads[2]
    factor = -step / torch.sqrt(torch.clamp(sq * (step * step), min=1.0))
    div = torch.zeros_like(s)
    for g, dim in zip(grads, (2, 3, 4)):
        eta = g * factor
        div = div + eta - F.pad(eta.narrow(dim, 0, eta.shape[dim] - 1), _PAD_BEFORE[dim])
    return torch.softmax(logits - lam * div, dim=1)


class _Activation(nn.Module):
    """(B, C, D, H, W) logits -> probabilities by ``form(logits, lam, step)``, or a plain softmax (form None)."""

    def __init__(self, form, lam: float, step: float) -> None:
        super().__init__()
        self.form, self.lam, self.step = form, lam, step

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=1) if self.form is None else self.form(logits, self.lam, self.step)


class _Network(nn.Module):
    """A RUNet's logits followed by an :class:`_Activation`."""

    def __init__(self, net: RUNet, activation: nn.Module) -> None:
        super().__init__()
        self.net, self.activation = net, activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.net.logits(x))


def _request(module: nn.Module, shape: tuple[int, ...], precision: str, ov) -> object:
    """An infer request of ``module`` converted by the backend's tracer, compiled for ``shape`` at ``precision``."""
    example = torch.zeros(1, *shape[1:2], *(min(s, 32) for s in shape[2:]))
    model = convert_module(module, example, [-1, shape[1], -1, -1, -1], ov)
    model.reshape(list(shape))
    config = compile_config(PRECISIONS[precision], cpu_threads())
    return ov.Core().compile_model(model, "CPU", config).create_infer_request()


def _timed(request, arr: np.ndarray) -> tuple[float, np.ndarray]:
    import time

    t0 = time.perf_counter()
    out = request.infer({0: arr}, share_inputs=True, share_outputs=False)[0]
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> int:
    p = UsageParser(description=__doc__)
    p.add_argument("--window", type=int, default=128, help="window edge in voxels (z, y, x)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--lam", type=float, default=0.5, help="lambda of the TV forms")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--networks", action="store_true", help="also time the shipped network per batch")
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--out", type=Path, default=RESULTS / "bench_tv.md")
    args = p.parse_args(argv)
    ov = import_openvino()
    if ov is None:
        print("openvino is not installed: nothing to measure", file=sys.stderr)
        return 1
    if args.quick:
        args.window, args.batch, args.repeats = 16, 1, 1
    net = fuse_batchnorm(network("tiny" if args.quick else "checkpoint"))
    classes, step = net.config.num_classes, 1.0
    shape = (args.batch, classes, args.window, args.window, args.window)
    logits = 3 * torch.randn(shape, generator=torch.Generator().manual_seed(0))
    reference = regularized_softmax(logits, args.lam, step).numpy()
    forms = {
        "plain softmax": None,
        "TV, slice and pad": slice_pad_regularized_softmax,
        "TV, pad shifts": traceable_regularized_softmax,
    }
    cases = {}  # (what, precision) -> (request, input, reference or None)
    for name, form in forms.items():
        for precision in PRECISIONS:
            request = _request(_Activation(form, args.lam, step), shape, precision, ov)
            cases[(name, precision)] = (request, logits.numpy(), None if form is None else reference)
    if args.networks or args.quick:
        act = net.activation
        lam = act.lam_value if isinstance(act, RegularizedSoftmax) else 0.0
        edge = args.window
        x = torch.randn(args.batch, 1, edge, edge, edge, generator=torch.Generator().manual_seed(1))
        exact = plain_softmax_where_exact(fuse_batchnorm(net))
        now = None if not isinstance(exact.activation, RegularizedSoftmax) else traceable_regularized_softmax
        variants = {
            f"network (lambda {lam:.3g}), TV slice and pad": slice_pad_regularized_softmax,
            f"network (lambda {lam:.3g}), as converted now": now,
        }
        for name, form in variants.items():
            for precision in PRECISIONS:
                request = _request(_Network(net, _Activation(form, lam, step)), tuple(x.shape), precision, ov)
                cases[(name, precision)] = (request, x.numpy(), None)
    seconds = {key: float("inf") for key in cases}
    errors = {}
    for _ in range(max(1, args.repeats)):  # interleaved: every row once per round
        for key, (request, arr, ref) in cases.items():
            t, out = _timed(request, arr)
            seconds[key] = min(seconds[key], t)
            if ref is not None:
                errors[key] = float(np.abs(out - ref).max())
    rows = []
    for (name, precision), t in seconds.items():
        base = seconds[("plain softmax", precision)] if not name.startswith("network") else None
        ratio = t / base if base else float("nan")
        err = errors.get((name, precision))
        rows.append([name, precision, t, ratio, "n/a" if err is None else f"{err:.1e}"])
    body = markdown_table(
        ["form", "precision hint", "s per batch", "/ plain softmax", "max |p - torch layer|"],
        rows,
    )
    body += (
        f"\n\nBatch {shape} of logits (activation rows) or of (B, 1, D, H, W) windows (network rows), lambda "
        f"{args.lam} for the TV forms, step {step}; plain softmax equals the regularized one to float32 rounding "
        f"below lambda* = {negligible_lambda(step):.3g}. Best of {args.repeats}, interleaved. {machine_line()}."
    )
    publish("# The regularized softmax on OpenVINO, per batch", body, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
