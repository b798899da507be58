"""The handler tests' fixtures: teacher, student and data from the tiny-network kit, and a critic."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import BasicUNet
from tiny_networks import STUDENT_FEATURES, TEACHER_FEATURES, make_batches, tiny_unet

from monai_coco.networks import LogitCritic

INSTANCE_NORM = ("instance", {"affine": True})  # MONAI's BasicUNet default


@pytest.fixture
def teacher() -> BasicUNet:
    return tiny_unet(TEACHER_FEATURES, seed=1, norm=INSTANCE_NORM)


@pytest.fixture
def student() -> BasicUNet:
    return tiny_unet(STUDENT_FEATURES, seed=2, norm=INSTANCE_NORM)


@pytest.fixture
def critic() -> LogitCritic:
    torch.manual_seed(3)
    return LogitCritic(in_channels=2, channels=(8, 16))  # 32×32 logits -> 5×5 scores


@pytest.fixture
def batches() -> list[dict[str, torch.Tensor]]:
    """3 batches of images ``(2, 3, 32, 32)`` and class maps ``(2, 32, 32)``."""
    return make_batches(3)
