"""Channel counts of a network's tapped features, found by one forward pass of a small zero image."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .taps import FeatureTaps

__all__ = ["tap_channels"]


def tap_channels(
    network: nn.Module, in_channels: int, layers: Sequence[str] | None = None, size: int = 64
) -> list[int]:
    """Channels ``C`` of the features ``(B, C, h, w)`` at ``layers``, in their order.

    Used to size a paraphraser per teacher tap (its factor channels = the student's tap channels)
    whatever the networks' widths. The network runs once in ``eval()`` mode without gradients (so batch
    norm statistics are untouched) on a ``(1, in_channels, size, size)`` zero image on its own device;
    its training flag is restored.

    Args:
        network: any network whose ``forward`` takes ``(B, in_channels, H, W)``.
        in_channels: the image channels it takes.
        layers: dotted submodule names; default ``network.default_taps``.
        size: side of the probe image; a multiple of the network's ``size_divisor``.
    """
    if layers is None:
        layers = getattr(network, "default_taps", None)
        if layers is None:
            raise ValueError(f"{type(network).__name__} has no default_taps: give the names of the layers.")
    reference = next(iter(network.parameters()), None)
    device = reference.device if reference is not None else torch.device("cpu")
    was_training = network.training
    network.eval()
    try:
        with FeatureTaps(network, list(layers)) as taps, torch.no_grad():
            _, features = taps(torch.zeros(1, in_channels, size, size, device=device))
    finally:
        network.train(was_training)
    return [int(features[name].shape[1]) for name in layers]
