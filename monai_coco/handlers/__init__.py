"""monai_coco.handlers: Ignite handlers for adversarial distillation, resumable training, atomic model
files, non-finite stops, segmentation metrics, progress bars, loss lines and experiment tracking."""

from .adversarial import AdversarialDistillationHandler
from .finite import NonFiniteStop
from .metrics import PathologySegmentationMetric
from .model_saver import AtomicCheckpointSaver
from .progress import TerminalProgressBar, loss_line_filter
from .resume import RandomStates, ResumableCheckpoint, check_training_state
from .tracking import training_scalars

__all__ = [
    "AdversarialDistillationHandler",
    "AtomicCheckpointSaver",
    "NonFiniteStop",
    "PathologySegmentationMetric",
    "RandomStates",
    "ResumableCheckpoint",
    "TerminalProgressBar",
    "check_training_state",
    "loss_line_filter",
    "training_scalars",
]
