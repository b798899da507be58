"""monai_coco.data: reads and checks data; knows no network, engine, checkpoint or bundle code.

Paired datalists (:mod:`.datalist`), the data check (``python -m monai_coco.data.check DIR``), the one
table of file suffixes (:mod:`.suffixes`), slide I/O (:mod:`.slide_io`, scale :mod:`.slide_mpp`, resampling
:mod:`.resample`), pyramidal OME-TIFF maps (:mod:`.ome_pyramid`), tissue masks (:mod:`.tissue`),
transforms (:mod:`.transforms`), H&E stain normalisation (:mod:`.stain`), unannotated tiles and slide
patches (:mod:`.unlabelled`) and the built-in synthetic data set (:mod:`.synthetic`).
"""

from .datalist import DataProblem, check_dataset, load_paired_datalist
from .ome_pyramid import write_ome_pyramid
from .slide_io import LazyTiffFileWSIReader, Slide, SlideView, choose_reader, is_slide, read_image
from .stain import HEStainNormalize, HEStainNormalized
from .suffixes import IMAGE_SUFFIXES
from .synthetic import (
    SyntheticGastricTissue,
    synthetic_dataset,
    synthetic_tile,
    write_synthetic_dataset,
    write_synthetic_slide,
)
from .tissue import TissueMap, detect_tissue
from .transforms import ColorChannels, ColorChannelsd
from .unlabelled import MarkLabelledd, ReadSlidePatchd, UnlabelledImages, list_unlabelled, slide_patches

__all__ = [
    "IMAGE_SUFFIXES",
    "ColorChannels",
    "ColorChannelsd",
    "DataProblem",
    "HEStainNormalize",
    "HEStainNormalized",
    "SyntheticGastricTissue",
    "check_dataset",
    "load_paired_datalist",
    "synthetic_dataset",
    "synthetic_tile",
    "write_synthetic_dataset",
    "write_synthetic_slide",
    "LazyTiffFileWSIReader",
    "Slide",
    "read_image",
    "SlideView",
    "choose_reader",
    "is_slide",
    "write_ome_pyramid",
    "TissueMap",
    "detect_tissue",
    "MarkLabelledd",
    "ReadSlidePatchd",
    "UnlabelledImages",
    "list_unlabelled",
    "slide_patches",
]
