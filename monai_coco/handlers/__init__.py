"""monai_coco.handlers: Ignite handlers for adversarial distillation, resumable training, atomic model
files, one-line stops, non-finite stops, segmentation metrics, progress bars, loss lines and experiment
tracking."""

from .adversarial import AdversarialDistillationHandler
from .exit_on_error import ExitOnError
from .finite import NonFiniteStop
from .metrics import PathologySegmentationMetric
from .model_saver import AtomicCheckpointSaver
from .progress import TerminalProgressBar, loss_line_filter
from .resume import RandomStates, ResumableCheckpoint, check_training_state
from .tensorboard_images import TensorBoardTileImages
from .tracking import grouped_metrics, mlflow_tracked, training_scalars

__all__ = [
    "AdversarialDistillationHandler",
    "AtomicCheckpointSaver",
    "ExitOnError",
    "NonFiniteStop",
    "PathologySegmentationMetric",
    "RandomStates",
    "ResumableCheckpoint",
    "TensorBoardTileImages",
    "TerminalProgressBar",
    "check_training_state",
    "grouped_metrics",
    "loss_line_filter",
    "mlflow_tracked",
    "training_scalars",
]
