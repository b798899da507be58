"""monai_coco.handlers: Ignite handlers for adversarial distillation, resumable training and
segmentation metrics, progress bars, loss lines and experiment tracking."""

from .adversarial import AdversarialDistillationHandler
from .metrics import PathologySegmentationMetric
from .progress import TerminalProgressBar, loss_line_filter
from .resume import ResumableCheckpoint
from .tracking import training_scalars

__all__ = [
    "AdversarialDistillationHandler",
    "PathologySegmentationMetric",
    "ResumableCheckpoint",
    "TerminalProgressBar",
    "loss_line_filter",
    "training_scalars",
]
