"""Colour-channel normalisation of loaded H&E tiles: gray, RGB or RGBA in, RGB or gray out."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform

__all__ = ["LUMA_WEIGHTS", "ColorChannels", "ColorChannelsd"]

LUMA_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights (what PIL's ``convert("L")`` and OpenCV's gray conversion use)."""


class ColorChannels(Transform):
    """Bring a channel-first image ``(C, H, W)`` with C = 1 (gray), 3 (RGB) or 4 (RGBA) to ``channels``.

    ``channels=3``: gray is repeated, RGBA loses its alpha. ``channels=1`` (the paper's grayscale input):
    RGB(A) becomes BT.601 luma, gray stays. The type (numpy, tensor, MetaTensor) and dtype class are kept;
    a luma of integer images is rounded.

    Args:
        channels: 3 (RGB) or 1 (gray).
    """

    def __init__(self, channels: int = 3) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 3 (RGB) or 1 (gray), got {channels}.")
        self.channels = channels

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        c = img.shape[0]
        if img.ndim != 3 or c not in (1, 3, 4):
            raise ValueError(
                f"expected a channel-first image (C, H, W) with C in (1, 3, 4) (gray, RGB, RGBA); got shape "
                f"{tuple(img.shape)}" + _source(img)
            )
        if self.channels == 3:
            if c == 1:
                return img.repeat(3, 1, 1) if isinstance(img, torch.Tensor) else np.repeat(img, 3, axis=0)
            return img[:3]
        if c == 1:
            return img
        w = LUMA_WEIGHTS
        luma = w[0] * img[0:1] + w[1] * img[1:2] + w[2] * img[2:3]  # float64 weights: accumulate in float
        if isinstance(img, torch.Tensor):
            return (luma.round() if not img.is_floating_point() else luma).to(img.dtype)
        return (np.round(luma) if not np.issubdtype(img.dtype, np.floating) else luma).astype(img.dtype)


def _source(img: NdarrayOrTensor) -> str:
    meta = getattr(img, "meta", None) or {}
    name = meta.get("filename_or_obj")
    return f" from {name}" if name else ""


class ColorChannelsd(MapTransform):
    """Dictionary version of :class:`ColorChannels`.

    Args:
        keys: keys of the images to convert (not the masks).
        channels: 3 (RGB) or 1 (gray).
        allow_missing_keys: do not raise if a key is missing.
    """

    def __init__(self, keys: KeysCollection, channels: int = 3, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = ColorChannels(channels)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d
