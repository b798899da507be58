"""The one table of file suffixes the package reads (lower case, with the dot)."""

__all__ = ["IMAGE_SUFFIXES", "SLIDE_SUFFIXES", "TIFF_SUFFIXES", "TILE_SUFFIXES"]

TILE_SUFFIXES = (".jpg", ".jpeg", ".png")
"""Tiles read whole with PIL."""
TIFF_SUFFIXES = (".tif", ".tiff")
"""TIFF files: a single-level tile, or a pyramidal slide (read with ``tifffile`` or OpenSlide)."""
SLIDE_SUFFIXES = (".svs", ".svslide", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".bif", ".dcm")
"""Whole-slide formats other than TIFF that OpenSlide reads: which files of a folder are taken as slides.
A file given by name is tried whatever its suffix (:func:`~monai_coco.data.slide_io.choose_reader`)."""
IMAGE_SUFFIXES = TILE_SUFFIXES + TIFF_SUFFIXES
"""Images of a training data set (tiles and their masks)."""
