"""LogitCritic: the SAGAN-style critic of adversarial distillation (method.md §5).

Named ``LogitCritic`` because MONAI already has ``monai.networks.nets.Critic``, and MONAI's config parser
resolves short class names across every ``monai*`` module.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

__all__ = ["LogitCritic", "SelfAttention2d"]


class SelfAttention2d(nn.Module):
    """SAGAN self-attention block (Zhang et al., "Self-Attention Generative Adversarial Networks", ICML 2019).

    With 1×1 projections ``q, k`` ``(B, C/r, N)`` and ``v`` ``(B, C, N)``, ``N = h·w``:
    ``β = softmax_j(q_iᵀ k_j)`` ``(B, N, N)`` and ``y_i = x_i + γ · Σ_j β_ij v_j``, ``γ`` starting at 0.
    The attention matrix is ``N × N`` by nature (a softmax has no Gram shortcut); in the critic it is
    built on the 1/8 and 1/16 resolution maps: at 256×256 logits ``N = 1024`` (4 MiB per image in
    float32), at 1024×1024 logits ``N = 16384`` (1 GiB per image, plus as much again for the
    gradient penalty's double backward).

    Args:
        channels: ``C``, the input (and output) channels.
        reduction: ``r``, the query/key channel reduction (SAGAN: 8); at least one query/key channel.
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        inner = max(1, channels // reduction)
        self.query = nn.Conv2d(channels, inner, kernel_size=1)
        self.key = nn.Conv2d(channels, inner, kernel_size=1)
        self.value = nn.Conv2d(channels, channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, C, h, w)`` -> ``(B, C, h, w)``."""
        query, key, value = (proj(x).flatten(2) for proj in (self.query, self.key, self.value))
        attention = torch.softmax(torch.bmm(query.transpose(1, 2), key), dim=-1)  # (B, N, N), rows sum to 1
        attended = torch.bmm(value, attention.transpose(1, 2))  # (B, C, N)
        return x + self.gamma * attended.view_as(x)


class LogitCritic(nn.Module):
    """SAGAN-style critic on segmentation logits (Structured Knowledge Distillation, Liu et al., CVPR 2019).

    ``tanh(logits)`` → four stride-2 conv4×4 (padding 1) with spectral norm
    (``torch.nn.utils.parametrizations.spectral_norm``) and LeakyReLU(0.1), widths 64→128→256→512, a
    :class:`SelfAttention2d` after the 3rd and the 4th → a final conv4×4 (no padding) to one channel.
    As in SAGAN's and the CoCo authors' code, the final conv and the attention projections have no
    spectral norm (the WGAN gradient penalty constrains the whole critic).

    Each stride-2 conv halves the side (rounding down), so logits of side ``≥ 4·2^L`` (``L`` = number of
    widths; 64 by default) give a score map of side ``⌊side/2^L⌋ − 3``: 1×1 at 64×64, 13×13 at 256×256,
    61×61 at 1024×1024. See :class:`SelfAttention2d` for the memory of the attention at large inputs.

    Args:
        in_channels: the logits' channels (the number of classes). Default 2.
        channels: widths of the stride-2 convs, at least two; attention follows the last two.
            Default ``(64, 128, 256, 512)``; smaller widths make a cheaper critic.
        negative_slope: of the LeakyReLUs. Default 0.1.
        attention_reduction: query/key channel reduction of the attention blocks. Default 8.
    """

    def __init__(
        self,
        in_channels: int = 2,
        channels: Sequence[int] = (64, 128, 256, 512),
        negative_slope: float = 0.1,
        attention_reduction: int = 8,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) < 2 or min(channels) < 1 or in_channels < 1:
            raise ValueError(
                f"LogitCritic needs in_channels >= 1 and at least two positive widths; got in_channels="
                f"{in_channels}, channels={channels}."
            )
        self.in_channels = int(in_channels)
        self.min_size = 4 * 2 ** len(channels)
        layers: list[nn.Module] = []
        previous = self.in_channels
        for i, width in enumerate(channels):
            layers += [
                spectral_norm(nn.Conv2d(previous, width, kernel_size=4, stride=2, padding=1)),
                nn.LeakyReLU(negative_slope),
            ]
            if i >= len(channels) - 2:
                layers.append(SelfAttention2d(width, attention_reduction))
            previous = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(previous, 1, kernel_size=4)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, H, W)`` (raw; ``tanh`` is applied here) -> scores ``(B, 1, h, w)``."""
        if logits.ndim != 4 or logits.shape[1] != self.in_channels or min(logits.shape[-2:]) < self.min_size:
            raise ValueError(
                f"LogitCritic expects logits (B, {self.in_channels}, H, W) with H, W >= {self.min_size}; got "
                f"{tuple(logits.shape)}."
            )
        return self.head(self.features(torch.tanh(logits)))
