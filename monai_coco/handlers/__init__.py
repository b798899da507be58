"""monai_coco.handlers: Ignite handlers for adversarial distillation, resumable training and
segmentation metrics, progress bars and loss lines."""

from .adversarial import AdversarialDistillationHandler
from .metrics import PathologySegmentationMetric
from .progress import TerminalProgressBar, loss_line_filter
from .resume import ResumableCheckpoint

__all__ = [
    "AdversarialDistillationHandler",
    "PathologySegmentationMetric",
    "ResumableCheckpoint",
    "TerminalProgressBar",
    "loss_line_filter",
]
