"""monai_coco.engines: MONAI trainers for the paraphraser and distillation stages.

The checkpoint functions live in :mod:`monai_coco.checkpoints` and are re-exported here."""

from monai_coco.checkpoints import load_checkpoint, load_module_state, save_checkpoint

from .distillation import LABELLED, TEACHER_PRED, DistillationTerm, DistillationTrainer
from .multi_term import TERMS, MultiTermTrainer
from .paraphraser import ParaphraserTrainer
from .teacher_cache import TeacherOutputCache

__all__ = [
    "LABELLED",
    "TEACHER_PRED",
    "TERMS",
    "TeacherOutputCache",
    "DistillationTerm",
    "DistillationTrainer",
    "MultiTermTrainer",
    "ParaphraserTrainer",
    "load_checkpoint",
    "load_module_state",
    "save_checkpoint",
]
