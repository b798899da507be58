"""monai_coco.handlers: Ignite handlers for adversarial distillation, resumable training, atomic
model files, non-finite stops and segmentation metrics."""

from .adversarial import AdversarialDistillationHandler
from .finite import NonFiniteStop
from .metrics import PathologySegmentationMetric
from .model_saver import AtomicCheckpointSaver
from .resume import RandomStates, ResumableCheckpoint, check_training_state

__all__ = [
    "AdversarialDistillationHandler",
    "AtomicCheckpointSaver",
    "NonFiniteStop",
    "PathologySegmentationMetric",
    "RandomStates",
    "ResumableCheckpoint",
    "check_training_state",
]
