"""Paraphraser: the factor auto-encoder of Factor Transfer (Kim et al., "Paraphrasing Complex Network:
Network Compression via Factor Transfer", NeurIPS 2018), used on the teacher's taps by CoCo DistillNet
(method.md §4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Paraphraser"]


def _stage(conv: type[nn.Module], cin: int, cout: int, slope: float) -> list[nn.Module]:
    """A 3×3, stride-1, padding-1 (transposed) convolution followed by LeakyReLU(slope)."""
    return [conv(cin, cout, kernel_size=3, stride=1, padding=1), nn.LeakyReLU(slope)]


class Paraphraser(nn.Module):
    """Auto-encoder from a teacher feature ``(B, C, H, W)`` to its "factor" ``(B, k, H, W)`` and back.

    - encoder: conv3×3 ``C→C`` → conv3×3 ``C→k`` → conv3×3 ``k→k``;
    - decoder: convT3×3 ``k→k`` → convT3×3 ``k→C`` → convT3×3 ``C→C``;

    stride 1, padding 1 (the spatial size is kept), a LeakyReLU(0.1) after every layer including the
    last of each half, no normalisation — as in Factor Transfer's code and the CoCo authors' code. So
    both the factor and the reconstruction are LeakyReLU outputs (teacher taps that follow a ReLU are
    non-negative and reconstructable).

    Stage 1 trains it with :meth:`reconstruction_loss` on the frozen teacher's feature; stage 2 freezes
    it and feeds :meth:`encode`'s factor to the distillation loss in place of the teacher feature.

    With ``num_classes`` (a variant, not Factor Transfer's), a 1×1 convolution ``segmentation_head`` decodes
    the factor into class logits (:meth:`segment`), so that stage 1 can also ask the factor to keep what
    the teacher segments with (:class:`~monai_coco.engines.ParaphraserTrainer`'s ``task_weight``); the
    head is not used by the distillation stage.

    Args:
        in_channels: ``C``, the teacher tap's channels.
        factor_channels: ``k``, the factor's channels (the student's channels at the matching tap).
        negative_slope: of the LeakyReLUs. Default 0.1.
        num_classes: given, the factor's segmentation head's classes; None (default): no head.
    """

    def __init__(
        self,
        in_channels: int,
        factor_channels: int,
        negative_slope: float = 0.1,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("factor_channels", factor_channels)):
            if int(value) != value or value < 1:
                raise ValueError(f"Paraphraser {name} must be a positive integer, got {value!r}.")
        if num_classes is not None and (int(num_classes) != num_classes or num_classes < 2):
            raise ValueError(f"Paraphraser num_classes must be None or an integer >= 2, got {num_classes!r}.")
        c, k = int(in_channels), int(factor_channels)
        self.in_channels, self.factor_channels = c, k
        self.encoder = nn.Sequential(
            *_stage(nn.Conv2d, c, c, negative_slope),
            *_stage(nn.Conv2d, c, k, negative_slope),
            *_stage(nn.Conv2d, k, k, negative_slope),
        )
        self.decoder = nn.Sequential(
            *_stage(nn.ConvTranspose2d, k, k, negative_slope),
            *_stage(nn.ConvTranspose2d, k, c, negative_slope),
            *_stage(nn.ConvTranspose2d, c, c, negative_slope),
        )
        head = None if num_classes is None else nn.Conv2d(k, int(num_classes), kernel_size=1)
        self.segmentation_head = head

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher feature ``(B, C, H, W)`` -> factor ``(B, k, H, W)``."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Factor ``(B, k, H, W)`` -> reconstruction ``(B, C, H, W)``."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``decode(encode(x))`` ``(B, C, H, W)`` of ``x`` ``(B, C, H, W)``."""
        return self.decode(self.encode(x))

    def segment(self, z: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Factor ``(B, k, H, W)`` -> class logits ``(B, num_classes, *size)`` (1×1 head, then bilinear).

        Raises:
            ValueError: the paraphraser was built without ``num_classes``.
        """
        if self.segmentation_head is None:
            raise ValueError("this Paraphraser has no segmentation head: build it with num_classes.")
        return F.interpolate(self.segmentation_head(z), size=size, mode="bilinear", align_corners=False)

    def reconstruction_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Scalar MSE between ``forward(x)`` and ``x`` ``(B, C, H, W)``; the target ``x`` is detached."""
        return F.mse_loss(self(x), x.detach())
