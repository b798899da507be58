"""Unannotated images for distillation: tiles, and whole slides cut into patches at the training scale.

Distillation terms need no labels (method.md §6), so a folder of images without masks can train the
student alongside the annotated tiles. :func:`list_unlabelled` sorts a folder (searched recursively) into
tiles (JPEG, PNG, single-level TIFF; read whole with ``LoadImaged``) and slides (SVS, tiled or pyramidal
TIFF, and every other file a slide reader opens). :func:`slide_patches` cuts each slide, seen at the
training scale exactly (:meth:`~monai_coco.data.Slide.view`: the nearest finer level, resampled), into a
grid of non-overlapping patches inside its tissue mask; :class:`ReadSlidePatchd` reads them, each slide
through the backend chosen from its file.

:class:`MarkLabelledd` gives every sample the per-sample flag ``"labelled"`` the ``DistillationTrainer``
reads (1: annotated; 0: leave it out of the cross-entropy) and an unannotated one a placeholder mask, so
annotated and unannotated samples batch together.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from .datalist import masks_folder
from .image_check import check_images, is_broken_link, raise_first
from .slide_io import Slide, is_slide
from .suffixes import IMAGE_SUFFIXES, SLIDE_SUFFIXES, TIFF_SUFFIXES
from .tissue import TissueMap, detect_tissue

__all__ = [
    "MarkLabelledd",
    "ReadSlidePatchd",
    "UnlabelledImages",
    "list_unlabelled",
    "slide_patches",
    "unlabelled_files",
]

LABELLED = "labelled"
"""The per-sample flag's key (``monai_coco.engines.LABELLED``, which the data floor cannot import)."""


@dataclass(frozen=True)
class UnlabelledImages:
    """The images of an unannotated folder: ``tiles`` and ``slides``, each a sorted list of paths."""

    tiles: list[str] = field(default_factory=list)
    slides: list[str] = field(default_factory=list)

    def tile_datalist(self) -> list[dict]:
        """``[{"image": path}, ...]`` for the tiles (``LoadImaged(keys="image")``)."""
        return [{"image": path} for path in self.tiles]


def unlabelled_files(folder: str | os.PathLike) -> list[Path]:
    """The image and slide files under ``folder`` (recursively, sorted; hidden files and the ``<stem>_mask``
    TIFF pyramids of slides skipped), unchecked.

    Raises:
        FileNotFoundError: ``folder`` is not a folder.
        ValueError: it holds no image (naming the suffixes looked for), an image has a same-stem PNG mask
            beside it (``<id>.png`` or ``<id>_mask.png``), or a folder under it is in the ``images/`` +
            ``masks/`` layout (:func:`~monai_coco.data.datalist.masks_folder`) — an annotated folder, to give
            as ``dataset_dir``.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; expected a folder of unannotated tiles or slides.")
    suffixes = IMAGE_SUFFIXES + SLIDE_SUFFIXES
    files = sorted(
        p
        for p in root.rglob("*")
        if (p.is_file() or is_broken_link(p))  # a broken link is named by the check, not skipped
        and p.suffix.lower() in suffixes
        and not any(part.startswith(".") for part in p.parts)
    )
    if not files:
        raise ValueError(f"{root} holds no image; expected files ending in {', '.join(suffixes)}.")
    for folder in sorted({root, *(p.parent.parent for p in files if p.parent != root)}):
        masks = masks_folder(folder)
        if masks is not None:
            raise ValueError(
                f"{folder} is annotated (images/ with {masks.name}/ beside it); unannotated folders hold "
                "images only (give an annotated folder as dataset_dir)."
            )
    names = {p.name.lower() for p in files}
    for path in files:
        for mask in (f"{path.stem}_mask.png", f"{path.stem}.png" if path.suffix.lower() != ".png" else ""):
            if mask and mask.lower() in names and (path.parent / mask).exists():
                raise ValueError(
                    f"{path} has a mask beside it ({mask}); unannotated folders hold images only (give an "
                    "annotated folder as dataset_dir)."
                )
    # a slide's mask pyramid beside it (as write_synthetic_slide writes) is not an image
    return [p for p in files if not (p.stem.lower().endswith("_mask") and p.suffix.lower() in TIFF_SUFFIXES)]


def list_unlabelled(
    folder: str | os.PathLike, reader: str = "auto", slide_mpp: Optional[float] = None
) -> UnlabelledImages:
    """The tiles and slides of :func:`unlabelled_files`, each file checked first as every input image is
    (:func:`~monai_coco.data.image_check.image_problems`: a tile decoded whole, its colour model, bit depth
    and size; a slide opened with ``reader`` and its µm/px known, from the file or ``slide_mpp``, as patches
    are cut at the training scale).

    Raises:
        FileNotFoundError, ValueError: as :func:`unlabelled_files`; or the first problem of a file, with the
            count of the others (:func:`~monai_coco.data.image_check.raise_first`).
    """
    files = unlabelled_files(folder)
    problems = check_images(files, decode=True, reader=reader, slide_mpp=slide_mpp, needs_scale=True)
    raise_first(problems, str(folder))
    tiles, slides = [], []
    for path in files:
        (slides if is_slide(path) else tiles).append(str(path))
    return UnlabelledImages(tiles, slides)


def slide_patches(
    path: str | os.PathLike,
    mpp: float,
    patch_size: int | Sequence[int],
    reader: str = "auto",
    min_tissue: float = 0.5,
    thumbnail_side: int = 1024,
    slide_mpp: Optional[float] = None,
) -> list[dict]:
    """A grid of non-overlapping patches of one slide seen at ``mpp`` µm/px, inside its tissue mask.

    The slide is seen at ``mpp`` exactly (:meth:`~monai_coco.data.Slide.view`: its nearest level at least as
    fine, resampled, antialiased, by the remaining factor), so each patch is ``patch_size`` pixels covering
    ``patch_size · mpp`` µm, as the annotated tiles. Patches with at least ``min_tissue`` of their area on
    tissue (:func:`~monai_coco.data.tissue.detect_tissue` on a thumbnail) are kept.

    Args:
        path: a slide whose level-0 µm/px the file states (or ``slide_mpp`` gives).
        mpp: µm/px of the training tiles (the bundle's synthetic data: 2.0).
        patch_size: ``(H, W)`` in pixels at ``mpp`` (the bundle's ``roi_size``), or one side.
        reader: ``"auto"``, ``"openslide"`` or ``"tifffile"`` (never MONAI's GPU-only default, cuCIM).
        min_tissue: the least tissue fraction of a kept patch, in ``[0, 1]``.
        thumbnail_side: longer side of the thumbnail the tissue mask is computed on, pixels.
        slide_mpp: level-0 µm/px for a slide that records none.

    Returns:
        Entries for :class:`ReadSlidePatchd`: ``{"image": path, "location": [row, col], "size": [h, w],
        "mpp": mpp, "reader": reader, "slide_mpp": slide_mpp}`` (location: top-left, pixels at ``mpp``).

    Raises:
        ValueError: the slide cannot be read or its scale is unknown (naming ``slide_mpp``), or
            ``min_tissue`` lies outside ``[0, 1]``.
    """
    height, width = (patch_size, patch_size) if isinstance(patch_size, int) else map(int, patch_size)
    if not 0.0 <= min_tissue <= 1.0:
        raise ValueError(f"min_tissue must lie in [0, 1], got {min_tissue}.")
    with Slide(path, reader, slide_mpp) as slide:
        view = slide.view(mpp=mpp)
        level_h, level_w = view.shape
        tissue = TissueMap(detect_tissue(slide.thumbnail(thumbnail_side)), view.shape)
    common = {"image": str(path), "size": [height, width], "mpp": mpp, "reader": reader}
    common["slide_mpp"] = slide_mpp
    return [
        {**common, "location": [top, left]}
        for top in range(0, level_h - height + 1, height)
        for left in range(0, level_w - width + 1, width)
        if tissue.fraction(top, left, top + height, left + width) >= min_tissue
    ]


class ReadSlidePatchd(MapTransform):
    """Read the :func:`slide_patches` entry under ``keys`` into a ``(3, h, w)`` float32 tensor of RGB values
    in ``[0, 255]`` (as ``LoadImaged`` + ``EnsureChannelFirstd`` give a tile), from the slide at the entry's
    ``mpp`` exactly, and drop the entry's other fields, so that patches batch with tiles. Keeps up to
    ``cache_size`` slides open per process.

    Args:
        keys: the key holding the slide's path (the entry's other fields are read from the same mapping).
        cache_size: open slides kept per process (data loader worker).
    """

    def __init__(self, keys: KeysCollection = "image", cache_size: int = 8) -> None:
        super().__init__(keys)
        self.cache_size = cache_size
        self._open: OrderedDict[tuple, Slide] = OrderedDict()

    def _view(self, d: Mapping[Hashable, object], key: Hashable):
        spec = (str(d[key]), str(d.get("reader", "auto")), d.get("slide_mpp"), float(d["mpp"]))
        if spec not in self._open:
            if len(self._open) >= self.cache_size:
                self._open.popitem(last=False)[1].close()
            self._open[spec] = Slide(spec[0], spec[1], spec[2])
        self._open.move_to_end(spec)
        return self._open[spec].view(mpp=spec[3])

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            (top, left), (height, width) = d["location"], d["size"]
            region = self._view(d, key).read(int(top), int(left), int(height), int(width))
            d[key] = torch.from_numpy(region).float()
        for field_name in _PATCH_FIELDS:
            d.pop(field_name, None)
        return d


_PATCH_FIELDS = ("location", "size", "mpp", "reader", "slide_mpp")


class MarkLabelledd(MapTransform):
    """Set the per-sample flag ``flag_key``: 1 for annotated samples; 0 for unannotated ones, which also get
    a placeholder mask ``label_key`` of zeros, ``(1, H, W)`` in the image's type and dtype (no loss reads
    it: the ``DistillationTrainer`` leaves flagged-0 samples out of the cross-entropy).

    Args:
        keys: the image key (its shape sizes the placeholder).
        labelled: whether the samples this transform sees are annotated.
        label_key: the mask key. flag_key: the flag key (default ``"labelled"``).
        allow_missing_keys: as in ``MapTransform``.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        labelled: bool = False,
        label_key: str = "label",
        flag_key: str = LABELLED,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.labelled = bool(labelled)
        self.label_key = label_key
        self.flag_key = flag_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        d[self.flag_key] = int(self.labelled)
        if not self.labelled:
            for key in self.key_iterator(d):
                d[self.label_key] = d[key][:1] * 0
        return d
