"""Tiny teacher, student, critic and data for the handler tests (32×32 images, CPU)."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import BasicUNet

from monai_coco.networks import LogitCritic


@pytest.fixture
def teacher() -> BasicUNet:
    torch.manual_seed(1)
    return BasicUNet(spatial_dims=2, in_channels=3, out_channels=2, features=(4, 4, 8, 8, 8, 4))


@pytest.fixture
def student() -> BasicUNet:
    torch.manual_seed(2)
    return BasicUNet(spatial_dims=2, in_channels=3, out_channels=2, features=(2, 2, 4, 4, 4, 2))


@pytest.fixture
def critic() -> LogitCritic:
    torch.manual_seed(3)
    return LogitCritic(in_channels=2, channels=(8, 16))  # 32×32 logits -> 5×5 scores


@pytest.fixture
def batches() -> list[dict[str, torch.Tensor]]:
    """3 batches of images ``(2, 3, 32, 32)`` and class maps ``(2, 32, 32)``."""
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(2, 3, 32, 32, generator=g) for _ in range(3)]
    return [{"image": x, "label": (x.mean(1) > 0.5).long()} for x in images]
