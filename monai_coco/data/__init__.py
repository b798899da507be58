"""monai_coco.data"""

from .bundle_data import bundle_datalist, synthetic_dataset
from .gastric import IMAGE_SUFFIXES, DataProblem, check_dataset, load_paired_datalist
from .slide_io import LazyTiffFileWSIReader, Slide, read_image, write_mask_pyramid
from .slides import InferenceResult, SlideInferenceConfig, infer_file, infer_path, segment_image
from .synthetic import SyntheticGastricTissue, synthetic_tile, write_synthetic_dataset, write_synthetic_slide
from .tissue import TissueMap, detect_tissue
from .transforms import ColorChannels, ColorChannelsd

__all__ = [
    "IMAGE_SUFFIXES",
    "ColorChannels",
    "ColorChannelsd",
    "DataProblem",
    "SyntheticGastricTissue",
    "check_dataset",
    "load_paired_datalist",
    "synthetic_tile",
    "write_synthetic_dataset",
    "write_synthetic_slide",
    "LazyTiffFileWSIReader",
    "Slide",
    "read_image",
    "write_mask_pyramid",
    "InferenceResult",
    "SlideInferenceConfig",
    "infer_file",
    "infer_path",
    "segment_image",
    "TissueMap",
    "detect_tissue",
    "bundle_datalist",
    "synthetic_dataset",
]
