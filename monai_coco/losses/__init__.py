"""monai_coco.losses: the CoCo loss, the WGAN-GP adversarial terms and the classic baselines."""

from . import adversarial
from .baselines import (
    AttentionTransferLoss,
    ChannelWiseDistillationLoss,
    FSPLoss,
    PairwiseSimilarityLoss,
    PixelwiseKDLoss,
)
from .coco import CoCoDistillationLoss, MultiPairCoCoDistillationLoss

__all__ = [
    "AttentionTransferLoss",
    "ChannelWiseDistillationLoss",
    "CoCoDistillationLoss",
    "FSPLoss",
    "MultiPairCoCoDistillationLoss",
    "PairwiseSimilarityLoss",
    "PixelwiseKDLoss",
    "adversarial",
]
