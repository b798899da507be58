"""FANet, the CoCo DistillNet teacher: a U-Net built from selective-kernel (SK) residual blocks, with
strip-pooling attention after each decoder stage (method.md §2).

Layout (the authors' ``UnetSKA2``, re-written; widths ``features=(64, 128, 256, 512)``)::

    input (B, Cin, H, W)
      encoder.0  SK stage  Cin -> 64      1/1  ──────────────────────────────┐
      encoder.1  SK stage   64 -> 128     1/2  ─────────────────────┐        │
      encoder.2  SK stage  128 -> 256     1/4  ────────────┐        │        │   <- shallow tap
      encoder.3  SK stage  256 -> 512     1/8  (bottleneck)│        │        │
      decoder.0  up 512 -> 256 (1/4) ++ skip -> SK stage -> strip pooling    │   <- decoder.0: deep tap
      decoder.1  up 256 -> 128 (1/2) ++ skip -> SK stage -> strip pooling    │
      decoder.2  up 128 ->  64 (1/1) ++ skip -> SK stage -> strip pooling ───┘
      head       dropout + 1x1 conv -> logits (B, out_channels, H, W)

An SK stage is two residual blocks ``1x1 conv -> SK conv -> 1x1 conv (+ shortcut)``; the SK conv mixes
a 5x5 and a 3x3 branch with channel-wise softmax weights (Li et al., CVPR 2019). Strip pooling is the
mixed pooling module of Hou et al. (CVPR 2020): square average pools for local context and 1xW / Hx1 strip
pools for long-range context. Three 2x max-poolings: H and W must be multiples of 8.

Deliberate departures from the authors' code (none changes the taps; each moves the counts by < 2 %):
no BatchNorm on the SK attention's pooled ``(B, C, 1, 1)`` descriptor (it fails at batch size 1 in
training) and no bias before a BatchNorm; one strip-pooling design for all three decoder stages (the
authors' last stage used a variant); no second, unused output head.

At ``in_channels=1, out_channels=2`` and 256x256 FANet has 38.28 M parameters (paper: 38.25 M) and costs
169.0 G multiply-adds in thop's convention, the convention of the paper's "171.6 GFLOPs" (164.2 G real
multiply-adds, 328.3 G FLOPs as FlopCounterMode counts them; see :mod:`monai_coco.networks.summary`).
"""

from functools import partial
from typing import Final, Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

from .sizes import check_spatial_size

__all__ = ["FANet", "SelectiveKernelConv", "SKResidualBlock", "StripPooling"]

_conv_bn = partial(Convolution, 2, norm="batch", bias=False)


class SelectiveKernelConv(nn.Module):
    """Selective-kernel convolution: parallel ``k x k`` conv-BN-ReLU branches fused by a softmax over
    branches, per channel, computed from the globally pooled sum of the branches.

    Args:
        channels: input and output channels ``C``.
        kernel_sizes: one branch per kernel size (default 5x5 and 3x3, as in the authors' code).
        reduction: the squeezed descriptor has ``max(C // reduction, 1)`` channels.

    Shapes: ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(self, channels: int, kernel_sizes: Sequence[int] = (5, 3), reduction: int = 2) -> None:
        super().__init__()
        if len(kernel_sizes) < 2:
            raise ValueError(f"kernel_sizes needs at least two branches, got {tuple(kernel_sizes)}.")
        self.branches = nn.ModuleList(
            _conv_bn(channels, channels, kernel_size=k, act="relu") for k in kernel_sizes
        )
        squeezed = max(channels // reduction, 1)
        # no BatchNorm on the (B, C, 1, 1) descriptor: it would fail at batch size 1 in training
        self.squeeze = nn.Sequential(nn.Conv2d(channels, squeezed, 1), nn.ReLU(inplace=True))
        self.excite = nn.Conv2d(squeezed, channels * len(kernel_sizes), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: list[torch.Tensor] = []
        for branch in self.branches:
            outputs.append(branch(x))
        branches = torch.stack(outputs, dim=1)  # (B, M, C, H, W)
        descriptor = self.squeeze(branches.sum(dim=1).mean(dim=(2, 3), keepdim=True))  # (B, C', 1, 1)
        weights = self.excite(descriptor).view(x.shape[0], len(outputs), x.shape[1], 1, 1).softmax(dim=1)
        return (branches * weights).sum(dim=1)


class SKResidualBlock(nn.Module):
    """Residual block ``1x1 conv-BN-ReLU -> SK conv -> 1x1 conv-BN``, plus a shortcut (a 1x1 conv-BN
    projection when the channel count changes), then ReLU.

    Shapes: ``(B, in_channels, H, W) -> (B, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, sk_reduction: int = 2) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn(in_channels, out_channels, kernel_size=1, act="relu"),
            SelectiveKernelConv(out_channels, reduction=sk_reduction),
            _conv_bn(out_channels, out_channels, kernel_size=1, act=None),
        )
        self.shortcut: nn.Module = (
            nn.Identity()
            if in_channels == out_channels
            else _conv_bn(in_channels, out_channels, kernel_size=1, act=None)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


def _sk_stage(in_channels: int, out_channels: int, sk_reduction: int) -> nn.Sequential:
    """The U-Net "double conv" of FANet: two SK residual blocks."""
    return nn.Sequential(
        SKResidualBlock(in_channels, out_channels, sk_reduction),
        SKResidualBlock(out_channels, out_channels, sk_reduction),
    )


class StripPooling(nn.Module):
    """Strip-pooling attention (mixed pooling module, Hou et al., CVPR 2020), residual.

    A local path adds a 3x3 conv to 3x3 convs on square average pools of fixed output sizes
    (``pool_sizes``, up-sampled back by nearest neighbour); a long-range path adds a 1x3 conv on the
    ``1 x W`` strip (mean over H) and a 3x1 conv on the ``H x 1`` strip (mean over W), broadcast to
    ``H x W``. Each path goes through ReLU and a 3x3 conv-BN-ReLU; a 1x1 conv-BN fuses both, added to
    the input, then ReLU.

    Shapes: ``(B, C, H, W) -> (B, C, H, W)``, any H and W.
    """

    def __init__(self, channels: int, pool_sizes: Sequence[int] = (3, 6)) -> None:
        super().__init__()
        self.reduce_local = _conv_bn(channels, channels, kernel_size=1, act="relu")
        self.reduce_strip = _conv_bn(channels, channels, kernel_size=1, act="relu")
        self.local = _conv_bn(channels, channels, kernel_size=3, act=None)
        self.pooled = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(size), _conv_bn(channels, channels, kernel_size=3, act=None))
            for size in pool_sizes
        )
        self.strip_rows = _conv_bn(channels, channels, kernel_size=(1, 3), act=None)  # on (B, C, 1, W)
        self.strip_cols = _conv_bn(channels, channels, kernel_size=(3, 1), act=None)  # on (B, C, H, 1)
        self.fuse_local = _conv_bn(channels, channels, kernel_size=3, act="relu")
        self.fuse_strip = _conv_bn(channels, channels, kernel_size=3, act="relu")
        self.project = _conv_bn(2 * channels, channels, kernel_size=1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = [x.shape[-2], x.shape[-1]]
        local_in = self.reduce_local(x)
        local = self.local(local_in)
        for pooled in self.pooled:
            local = local + F.interpolate(pooled(local_in), size=size, mode="nearest")
        strip_in = self.reduce_strip(x)
        # (B, C, 1, W) + (B, C, H, 1) broadcasts to (B, C, H, W)
        strip = self.strip_rows(strip_in.mean(dim=2, keepdim=True)) + self.strip_cols(
            strip_in.mean(dim=3, keepdim=True)
        )
        local = self.fuse_local(F.relu(local))
        strip = self.fuse_strip(F.relu(strip))
        return F.relu(x + self.project(torch.cat([local, strip], dim=1)))


class _FANetDecoderStage(nn.Module):
    """``up`` (2x2 transposed conv, stride 2) -> concatenate the skip -> SK stage -> strip pooling."""

    def __init__(
        self, in_channels: int, out_channels: int, pool_sizes: Sequence[int], sk_reduction: int
    ) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.block = _sk_stage(2 * out_channels, out_channels, sk_reduction)
        self.attention = StripPooling(out_channels, pool_sizes)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.attention(self.block(torch.cat([self.up(x), skip], dim=1)))


class FANet(nn.Module):
    """FANet teacher (SK-conv U-Net with strip-pooling attention), see the module docstring.

    Args:
        in_channels: image channels (3 for RGB H&E, 1 for the paper's grayscale setting).
        out_channels: number of classes (logit channels).
        features: widths of the four encoder stages (1/1, 1/2, 1/4, 1/8 resolution); the decoder mirrors
            the first three.
        strip_pool_sizes: square pool sizes of the strip-pooling module after each decoder stage, from
            the deepest (1/4) to the shallowest (1/1); the authors' ``((3, 6), (12, 18), (3, 6))``.
        sk_reduction: channel reduction of the SK attention descriptor.
        dropout: channel dropout (``Dropout2d``) before the 1x1 output conv (0.5 in the authors' code).

    ``forward(x)`` maps ``(B, in_channels, H, W)`` to logits ``(B, out_channels, H, W)``; H and W must
    be multiples of ``size_divisor`` (8). ``default_taps`` names the (shallow, deep) layers of method.md §2:
    ``encoder.2`` (encoder stage 3, ``features[2]`` channels, 1/4 resolution) and ``decoder.0`` (the
    first decoder stage after its skip fusion, ``features[2]`` channels, 1/4 resolution). The paper's deep
    tap, ``decoder.0.up`` (the 2×2 transposed convolution's output), stays available as
    ``teacher_taps``; its cosine geometry is the up-sampler's 2×2 pattern, not the tissue.
    """

    default_taps: tuple[str, str] = ("encoder.2", "decoder.0")
    size_divisor: Final[int] = 8

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 2,
        features: Sequence[int] = (64, 128, 256, 512),
        strip_pool_sizes: Sequence[Sequence[int]] = ((3, 6), (12, 18), (3, 6)),
        sk_reduction: int = 2,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if len(features) != 4:
            raise ValueError(f"FANet features must give 4 stage widths, got {tuple(features)}.")
        if len(strip_pool_sizes) != 3:
            raise ValueError(
                f"FANet strip_pool_sizes must give pool sizes for 3 decoder stages, got {strip_pool_sizes}."
            )
        widths = [in_channels, *features]
        self.encoder = nn.ModuleList(
            _sk_stage(widths[i], widths[i + 1], sk_reduction) for i in range(len(features))
        )
        self.pool = nn.MaxPool2d(2)
        self.decoder = nn.ModuleList(
            _FANetDecoderStage(features[i + 1], features[i], pool_sizes, sk_reduction)
            for i, pool_sizes in zip(range(len(features) - 2, -1, -1), strip_pool_sizes)
        )
        self.head = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(features[0], out_channels, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # not checked while tracing: the check would not be recorded and only warns there
        if not torch.jit.is_tracing():
            check_spatial_size(x, self.size_divisor, "FANet", "three 2x poolings")
        skips: list[torch.Tensor] = []
        for i, stage in enumerate(self.encoder):
            x = stage(x if i == 0 else self.pool(x))
            skips.append(x)
        for i, stage in enumerate(self.decoder):
            x = stage(x, skips[-2 - i])
        return self.head(x)
