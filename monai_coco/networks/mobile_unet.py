"""Mobile U-Net, the CoCo DistillNet student: a MobileNetV2 encoder (Sandler et al., CVPR 2018) with a
U-Net decoder of transposed convolutions and inverted residual blocks (method.md §2).

Layout at ``width_mult=1`` (the authors' ``MobileNetV2_unet``, re-written)::

    input (B, Cin, H, W)
      features.0      3x3 conv, stride 2              32 ch  1/2
      features.1      inverted residual               16 ch  1/2  ──────────────────────────┐
      features.2-3    inverted residuals              24 ch  1/4  ─────────────────┐        │  <- shallow tap
      features.4-6    inverted residuals              32 ch  1/8  ────────┐        │        │     (features.3)
      features.7-13   inverted residuals              96 ch  1/16 ─┐      │        │        │
      features.14-18  inverted residuals + 1x1 conv 1280 ch  1/32  │      │        │        │
      decoder.0  4x4 transposed conv 1280 -> 96 (1/16) ++ skip -> inverted residual 192 -> 96
      decoder.1                        96 -> 32 (1/8)  ++ skip -> inverted residual  64 -> 32
      decoder.2                        32 -> 24 (1/4)  ++ skip -> inverted residual  48 -> 24  <- deep tap
      decoder.3                        24 -> 16 (1/2)  ++ skip -> inverted residual  32 -> 16
      head       1x1 conv -> logits at 1/2, bilinear 2x up-sampling -> (B, out_channels, H, W)

``features`` keeps torchvision's MobileNetV2 layer names, so ``features.3`` is the output of
``features[0:4]``. Five stride-2 stages: H and W must be multiples of 32. The authors' head
(1x1 conv to 3 channels, then 1x1 conv to the classes) is one 1x1 conv here.

At ``in_channels=1, out_channels=2`` and 256x256 it has 4.68 M parameters (paper: 4.64 M) and costs
1.49 G multiply-adds in thop's convention, the convention of the paper's "1.49 GFLOPs" (0.96 G real
multiply-adds, 1.92 G FLOPs as FlopCounterMode counts them; see :mod:`monai_coco.networks.summary`).
"""

from functools import partial
from typing import Final

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

from .sizes import check_spatial_size

__all__ = ["InvertedResidual", "MobileUNet"]

_conv_bn = partial(Convolution, 2, norm="batch", bias=False)

# MobileNetV2 body: (expansion t, channels c, repeats n, first stride s)
_MOBILENET_V2_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled width to a multiple of ``divisor`` without losing more than 10 % (as MobileNetV2)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual: 1x1 expansion conv-BN-ReLU6 (skipped when ``expand_ratio == 1``),
    3x3 depthwise conv-BN-ReLU6 with ``stride``, 1x1 linear projection conv-BN; identity shortcut when
    the stride is 1 and the channel count is unchanged.

    Shapes: ``(B, in_channels, H, W) -> (B, out_channels, H / stride, W / stride)``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(in_channels * expand_ratio)
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn(in_channels, hidden, kernel_size=1, act="relu6"))
        layers += [
            _conv_bn(hidden, hidden, kernel_size=3, strides=stride, groups=hidden, act="relu6"),
            _conv_bn(hidden, out_channels, kernel_size=1, act=None),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_residual:
            return x + self.conv(x)
        return self.conv(x)


class _MobileUNetDecoderStage(nn.Module):
    """``up`` (4x4 transposed conv, stride 2) -> concatenate the skip -> inverted residual."""

    def __init__(self, in_channels: int, out_channels: int, expand_ratio: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1)
        self.block = InvertedResidual(2 * out_channels, out_channels, stride=1, expand_ratio=expand_ratio)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([skip, self.up(x)], dim=1))


class MobileUNet(nn.Module):
    """Mobile U-Net student (MobileNetV2 encoder + U-Net decoder), see the module docstring.

    Args:
        in_channels: image channels (3 for RGB H&E, 1 for the paper's grayscale setting).
        out_channels: number of classes (logit channels).
        width_mult: MobileNetV2 width multiplier; every width (decoder included, as it follows the
            skips) is scaled and rounded to a multiple of 8; the last 1x1 conv keeps 1280 channels
            unless ``width_mult > 1``.
        decoder_expand_ratio: expansion of the decoder's inverted residual blocks.

    ``forward(x)`` maps ``(B, in_channels, H, W)`` to logits ``(B, out_channels, H, W)``; H and W must
    be multiples of ``size_divisor`` (32). ``default_taps`` names the (shallow, deep) layers of method.md §2:
    ``features.3`` (output of ``features[0:4]``, 24 channels, 1/4 resolution) and ``decoder.2`` (third
    decoder stage, 24 channels, 1/4 resolution); channels at ``width_mult=1``.
    """

    default_taps: tuple[str, str] = ("features.3", "decoder.2")
    size_divisor: Final[int] = 32

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 2,
        width_mult: float = 1.0,
        decoder_expand_ratio: int = 6,
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"MobileUNet width_mult must be positive, got {width_mult}.")
        channels = _make_divisible(32 * width_mult)
        layers: list[nn.Module] = [_conv_bn(in_channels, channels, kernel_size=3, strides=2, act="relu6")]
        skip_channels: list[int] = []
        skip_indices: list[int] = []
        for expand_ratio, base_channels, repeats, first_stride in _MOBILENET_V2_SETTING:
            out = _make_divisible(base_channels * width_mult)
            for i in range(repeats):
                stride = first_stride if i == 0 else 1
                if stride == 2:  # the previous layer's output is the last one at its resolution
                    skip_indices.append(len(layers) - 1)
                    skip_channels.append(channels)
                layers.append(InvertedResidual(channels, out, stride, expand_ratio))
                channels = out
        last_channels = _make_divisible(1280 * max(1.0, width_mult))
        layers.append(_conv_bn(channels, last_channels, kernel_size=1, act="relu6"))
        self.features = nn.Sequential(*layers)
        self.skip_indices = skip_indices

        decoder: list[nn.Module] = []
        channels = last_channels
        for skip in reversed(skip_channels):
            decoder.append(_MobileUNetDecoderStage(channels, skip, decoder_expand_ratio))
            channels = skip
        self.decoder = nn.ModuleList(decoder)
        self.head = nn.Conv2d(channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # not checked while tracing: the check would not be recorded and only warns there
        if not torch.jit.is_tracing():
            check_spatial_size(x, self.size_divisor, "MobileUNet", "five stride-2 stages")
        skips: list[torch.Tensor] = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.skip_indices:
                skips.append(x)
        for i, stage in enumerate(self.decoder):
            x = stage(x, skips[-1 - i])
        return F.interpolate(self.head(x), scale_factor=2.0, mode="bilinear", align_corners=False)
