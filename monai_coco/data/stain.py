"""H&E stain normalisation of RGB tiles (Macenko), with MONAI's ``NormalizeHEStains`` doing the work.

Tiles from several sites differ in stain colour; normalising each tile to one reference H&E stain matrix
before the network sees it removes most of that difference. The same transform, with the same
parameters, must run in training, evaluation and inference: the bundle records it with each checkpoint
(:func:`monai_coco.bundle.preprocessing.record_preprocessing`) and refuses a checkpoint whose record differs.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.apps.pathology.transforms import NormalizeHEStains
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_dst_type, convert_to_numpy

from monai_coco.data.tissue import detect_tissue

__all__ = ["HEStainNormalize", "HEStainNormalized"]

logger = logging.getLogger(__name__)


class HEStainNormalize(Transform):
    """Macenko H&E stain normalisation of one channel-first RGB image ``(3, H, W)`` with values in [0, 255].

    The image's H and E stain vectors are estimated (MONAI's ``ExtractHEStains``: optical density, pixels
    above the absorbance threshold ``beta``, the ``alpha`` / ``100 - alpha`` percentile angles) and the
    image is rebuilt with the reference stain matrix ``target_he`` and the reference 99th-percentile stain
    concentrations ``max_cref`` (Macenko et al., ISBI 2009; defaults are MONAI's, from the reference
    implementations). The result has the input's type (numpy, tensor, MetaTensor with its metadata) and
    dtype class; values stay in [0, 255].

    Glass is left alone: an image whose tissue (:func:`~monai_coco.data.tissue.detect_tissue`, saturation
    with the clipped Otsu threshold) covers less than ``min_tissue_fraction`` of its pixels has too little
    stain for an estimate and is returned unchanged (a blank tile, one with a dust speck, light-grey glass
    would otherwise be "normalised" into dark tissue-coloured noise, or stop the eigen-solver). An estimate
    that fails anyway (the eigen-solver does not converge, no pixel above ``beta``) returns the image
    unchanged with a warning: never an exception inside a data loader.

    Args:
        tli: transmitted light intensity (0-255 scale).
        alpha: percentile tolerance of the stain-vector angles, in percent.
        beta: optical-density threshold of transparent (background) pixels.
        target_he: reference stain matrix, RGB rows by (H, E) columns, ``(3, 2)``.
        max_cref: reference maximum stain concentrations (H, E).
        min_tissue_fraction: the least tissue fraction for an estimate, in [0, 1]. Default 0.05.

    Raises:
        ValueError: the image is not ``(3, H, W)`` or has values outside [0, 255].
    """

    def __init__(
        self,
        tli: float = 240.0,
        alpha: float = 1.0,
        beta: float = 0.15,
        target_he: Sequence[Sequence[float]] = ((0.5626, 0.2159), (0.7201, 0.8012), (0.4062, 0.5581)),
        max_cref: Sequence[float] = (1.9705, 1.0308),
        min_tissue_fraction: float = 0.05,
    ) -> None:
        if not 0 <= min_tissue_fraction <= 1:
            raise ValueError(f"min_tissue_fraction must lie in [0, 1], got {min_tissue_fraction!r}.")
        self.min_tissue_fraction = float(min_tissue_fraction)
        self.normalizer = NormalizeHEStains(
            tli=tli, alpha=alpha, beta=beta, target_he=np.asarray(target_he), max_cref=np.asarray(max_cref)
        )

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        if img.ndim != 3 or img.shape[0] != 3:
            raise ValueError(f"H&E stain normalisation needs an RGB image (3, H, W), got {tuple(img.shape)}.")
        rgb = convert_to_numpy(img)
        if rgb.size and (rgb.min() < 0 or rgb.max() > 255):
            raise ValueError("H&E stain normalisation needs values in [0, 255] (apply it before scaling).")
        chw = np.round(rgb).astype(np.uint8)
        if chw[0].size == 0 or detect_tissue(chw).mean() < self.min_tissue_fraction:
            return img
        try:
            normalised = np.moveaxis(self.normalizer(np.ascontiguousarray(np.moveaxis(chw, 0, -1))), -1, 0)
        except (ValueError, np.linalg.LinAlgError) as exc:
            logger.warning("stain normalisation skipped for one image: the stain estimate failed (%s)", exc)
            return img
        floating = isinstance(img, torch.Tensor) and img.is_floating_point()
        floating = floating or (isinstance(img, np.ndarray) and np.issubdtype(img.dtype, np.floating))
        dtype = np.float32 if floating else img.dtype
        out, *_ = convert_to_dst_type(normalised.astype(np.float32), img, dtype=dtype)
        return out


class HEStainNormalized(MapTransform):
    """Dictionary version of :class:`HEStainNormalize` (the same arguments after ``keys``).

    Args:
        keys: keys of the RGB images (not the masks).
        allow_missing_keys: do not raise if a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        tli: float = 240.0,
        alpha: float = 1.0,
        beta: float = 0.15,
        target_he: Sequence[Sequence[float]] = ((0.5626, 0.2159), (0.7201, 0.8012), (0.4062, 0.5581)),
        max_cref: Sequence[float] = (1.9705, 1.0308),
        min_tissue_fraction: float = 0.05,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalizer = HEStainNormalize(tli, alpha, beta, target_he, max_cref, min_tissue_fraction)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalizer(d[key])
        return d
