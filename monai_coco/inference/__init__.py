"""monai_coco.inference: tile and whole-slide segmentation with a trained network, writing masks and overlays.

Command line: ``python -m monai_coco.inference INPUT OUTPUT_DIR --network MobileUNet --checkpoint
models/model.pt`` (:mod:`monai_coco.inference.__main__`).
"""

from .cohort import run_cohort
from .engine import SlideInferenceEvaluator, infer_path, inference_dataset, sliding_window_inferer
from .progress import InferenceProgress
from .summary import InferenceResult
from .whole_slide import (
    BLEND_MODES,
    SlideInferenceConfig,
    infer_file,
    list_images,
    make_segmenter,
    scale_to_unit,
    segment_image,
)

__all__ = [
    "BLEND_MODES",
    "InferenceProgress",
    "InferenceResult",
    "SlideInferenceConfig",
    "SlideInferenceEvaluator",
    "infer_file",
    "infer_path",
    "inference_dataset",
    "make_segmenter",
    "list_images",
    "run_cohort",
    "scale_to_unit",
    "segment_image",
    "sliding_window_inferer",
]
