"""RUnet: a 3D attention U-Net (Oktay et al. 2018) whose last softmax is the TV-regularized softmax.

Tensors are (B, C, D, H, W): batch, channels, z, y, x. Every spatial size must be divisible by 2**(levels - 1)
(16 for the default 4 poolings); inference/patching.py pads to that.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from inference.model_config import UNetConfig
from inference.regularized_softmax import RegularizedSoftmax


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    return nn.InstanceNorm3d(channels, affine=True)


class ConvBlock(nn.Sequential):
    """Two (3x3x3 conv -> norm -> ReLU) layers: (B, c_in, D, H, W) -> (B, c_out, D, H, W)."""

    def __init__(self, c_in: int, c_out: int, norm: str) -> None:
        layers: list[nn.Module] = []
        for c in (c_in, c_out):
            layers += [
                nn.Conv3d(c, c_out, 3, padding=1, bias=False),
                _norm(norm, c_out),
                nn.ReLU(inplace=True),
            ]
        super().__init__(*layers)


class AttentionGate(nn.Module):
    """Additive attention gate: weights skip features x by a map computed from x and the gating signal g.

    x: (B, c_x, D, H, W) skip features; g: (B, c_g, D, H, W) decoder features at the same resolution.
    Returns x * alpha with alpha in (0, 1) of shape (B, 1, D, H, W).
    """

    def __init__(self, c_x: int, c_g: int, c_inner: int, norm: str) -> None:
        super().__init__()
        self.theta = nn.Sequential(nn.Conv3d(c_x, c_inner, 1, bias=False), _norm(norm, c_inner))
        self.phi = nn.Sequential(nn.Conv3d(c_g, c_inner, 1, bias=False), _norm(norm, c_inner))
        self.psi = nn.Sequential(nn.Conv3d(c_inner, 1, 1, bias=False), _norm(norm, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        alpha = self.psi(torch.relu(self.theta(x) + self.phi(g)))
        return x * alpha


class UpStage(nn.Module):
    """Decoder stage: upsample the coarse features, gate the skip, concatenate, ConvBlock."""

    def __init__(self, c_coarse: int, c_skip: int, attention: bool, norm: str) -> None:
        super().__init__()
        self.up = nn.ConvTranspose3d(c_coarse, c_skip, kernel_size=2, stride=2)
        self.gate = AttentionGate(c_skip, c_skip, max(c_skip // 2, 1), norm) if attention else None
        self.conv = ConvBlock(2 * c_skip, c_skip, norm)

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.up(coarse)
        if self.gate is not None:
            skip = self.gate(skip, up)
        return self.conv(torch.cat([skip, up], dim=1))


class RUNet(nn.Module):
    """The attention U-Net with a (regularized) softmax head.

    forward: (B, in_channels, D, H, W) float -> (B, num_classes, D, H, W) class probabilities.
    logits: the same without the last activation.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        w, norm = config.widths, config.norm
        self.down = nn.ModuleList(
            [ConvBlock(config.in_channels, w[0], norm)] + [ConvBlock(a, b, norm) for a, b in zip(w, w[1:])]
        )
        self.pool = nn.MaxPool3d(2)
        self.up = nn.ModuleList([UpStage(b, a, config.attention, norm) for a, b in zip(w, w[1:])])
        self.head = nn.Conv3d(w[0], config.num_classes, 1)
        self.activation = (
            RegularizedSoftmax(config.tv_step, config.lam_init, config.lam_learnable, config.tv_iterations)
            if config.regularized_softmax
            else nn.Softmax(dim=1)
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        m = self.config.size_multiple
        if x.dim() != 5 or any(s % m for s in x.shape[2:]):
            raise ValueError(f"input must be (B, C, D, H, W) with D, H, W multiples of {m}, got {tuple(x.shape)}")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for stage in reversed(self.up):
            x = stage(x, skips.pop())
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.logits(x))


def fuse_batchnorm(model: RUNet) -> RUNet:
    """A copy of ``model`` for inference in which every Conv3d followed by a BatchNorm3d is one Conv3d with bias.

    In eval mode batch normalization is an affine map per channel, so it folds into the preceding convolution's
    weights and bias: y = gamma * (conv(x) - mean) / sqrt(var + eps) + beta. The copy computes the same function
    (to float32 rounding), does one pass less over memory per convolution, and holds the folded BatchNorm3d layers
    as nn.Identity. Instance normalization depends on the input and is left as it is. The original is not modified.

    Args:
        model: a RUNet (any norm); its BatchNorm3d layers must hold their running statistics (eval semantics).
    Returns:
        a new RUNet in eval mode, on the same device as ``model``.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(model).eval()
    for seq in fused.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for k in range(len(seq) - 1):
            conv, bn = seq[k], seq[k + 1]
            if isinstance(conv, nn.Conv3d) and isinstance(bn, nn.BatchNorm3d) and bn.track_running_stats:
                seq[k] = fuse_conv_bn_eval(conv, bn)
                seq[k + 1] = nn.Identity()
    return fused


def plain_softmax_where_exact(model: RUNet) -> RUNet:
    """``model`` itself, its regularized softmax replaced in place by a plain softmax over the class axis (dim 1 of
    (B, C, D, H, W)) when its lambda is under :func:`inference.regularized_softmax.negligible_lambda`, where the two
    agree to float32 rounding; unchanged otherwise. For inference copies (such as :func:`fuse_batchnorm`'s) only:
    the replaced layer no longer holds lambda, so the model cannot be trained or saved as a checkpoint after it."""
    act = model.activation
    if isinstance(act, RegularizedSoftmax) and act.is_plain_softmax:
        model.activation = nn.Softmax(dim=1)
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(model: nn.Module, input_shape: tuple[int, ...] = (1, 1, 128, 128, 128)) -> int:
    """Floating-point operations of one forward pass (a multiply-add counts 2), by torch's FLOP counter.

    Counts convolutions and matrix products (what dominates); runs on the meta device, so no memory is used.
    """
    from torch.utils.flop_counter import FlopCounterMode

    meta = RUNet(model.config).to("meta") if isinstance(model, RUNet) else model
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        meta(torch.empty(input_shape, device="meta"))
    return int(counter.get_total_flops())
