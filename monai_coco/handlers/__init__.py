"""monai_coco.handlers: Ignite handlers for adversarial distillation and resumable training."""

from .adversarial import AdversarialDistillationHandler
from .resume import ResumableCheckpoint

__all__ = ["AdversarialDistillationHandler", "ResumableCheckpoint"]
