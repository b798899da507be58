"""monai_coco.networks"""

from .critic import LogitCritic
from .fanet import FANet
from .mobile_unet import MobileUNet
from .paraphraser import Paraphraser
from .taps import FeatureTaps, feature_taps, find_taps, network_taps, tap_channels

__all__ = [
    "FANet",
    "FeatureTaps",
    "LogitCritic",
    "MobileUNet",
    "Paraphraser",
    "feature_taps",
    "find_taps",
    "network_taps",
    "tap_channels",
]
