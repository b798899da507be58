"""monai_coco.networks"""

from .critic import LogitCritic
from .fanet import FANet
from .mobile_unet import MobileUNet
from .paraphraser import Paraphraser
from .probe import tap_channels
from .taps import FeatureTaps

__all__ = ["FANet", "FeatureTaps", "LogitCritic", "MobileUNet", "Paraphraser", "tap_channels"]
