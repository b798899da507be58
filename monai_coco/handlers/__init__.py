"""monai_coco.handlers: Ignite handlers for adversarial distillation, resumable training and
segmentation metrics."""

from .adversarial import AdversarialDistillationHandler
from .metrics import PathologySegmentationMetric
from .resume import ResumableCheckpoint

__all__ = ["AdversarialDistillationHandler", "PathologySegmentationMetric", "ResumableCheckpoint"]
