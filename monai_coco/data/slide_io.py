"""Opening slides in every layout scanners and converters write, reading them by regions at any scale.

One way to open a file, for training and inference (:class:`Slide`): the backend is chosen from the file
(:func:`choose_reader`), a ``reader`` setting only overrides it:

* **OpenSlide** (MONAI's ``WSIReader(backend="openslide")``) for every file it recognises
  (``openslide.OpenSlide.detect_format``): Aperio SVS, Hamamatsu NDPI/VMS/VMU, MIRAX MRXS, Leica SCN,
  Ventana BIF, Philips TIFF, DICOM-WSI, generic tiled TIFF;
* **tifffile** (:class:`LazyTiffFileWSIReader`) for what it does not read right or at all: OME-TIFF (pyramid
  levels in SubIFDs, scale in the OME-XML, which OpenSlide's generic TIFF reader sees neither of) and
  stripped TIFFs (single-level exports). tifffile's region reads decode only the tiles or strips they touch.

Aperio's JPEG 2000 tiles with compression 33003 hold YCbCr samples (no multiple-component transform) under
PhotometricInterpretation RGB; :func:`read_tiff_region` converts them to RGB (JFIF full-range, as OpenSlide
does), 33005 tiles are RGB already.

The scale of level 0 (µm/px) comes from the file (:mod:`.slide_mpp`) or from ``mpp`` given when opening
(the ``slide_mpp`` setting, for a file that records none). :meth:`Slide.view` gives the slide at the
network's training scale exactly: the nearest level at least as fine, resampled by the remaining factor
(:mod:`.resample`, antialiased), region by region.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import tifffile
from monai.data import WSIReader
from monai.data.wsi_reader import TiffFileWSIReader
from PIL import Image

from .orientation import upright
from .resample import resample_region
from .slide_mpp import MAX_INCH_MPP, MIN_MPP, openslide_mpp, tiff_mpp
from .suffixes import TIFF_SUFFIXES, TILE_SUFFIXES

__all__ = [
    "LazyTiffFileWSIReader",
    "Slide",
    "SlideView",
    "choose_reader",
    "read_image",
    "is_slide",
    "read_tiff_region",
    "SLIDE_READERS",
    "LARGE_IMAGE_PIXELS",
]

SLIDE_READERS = ("auto", "openslide", "tifffile")
"""``reader`` settings: ``auto`` chooses from the file (:func:`choose_reader`); the others force a backend."""
LARGE_IMAGE_PIXELS = 1 << 26
"""A single-level, stripped TIFF with more pixels than this (8192²) is read as a slide, by regions."""
_THUMBNAIL_BAND_PIXELS = 1 << 22  # pixels per band when a thumbnail is sampled from a large level
_SAME_SCALE = 1e-3  # a level within this relative difference of the wanted scale is read without resampling
_MAX_UPSAMPLING = 1.25  # a slide coarser than the training scale by up to this factor is upsampled
_APERIO_JP2K_YCBCR = 33003


def _openslide():
    try:
        import openslide
    except ImportError:  # the optional extra monai-coco[openslide] is not installed
        return None
    return openslide


def _tiff_kind(path: Path) -> Optional[str]:
    """``"ome"``, ``"stripped"`` (single level, not tiled) or ``"tiff"`` for a TIFF file, else ``None``."""
    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome:
                return "ome"
            series = tif.series[0]
            return "tiff" if len(series.levels) > 1 or series.keyframe.is_tiled else "stripped"
    except Exception:
        return None


def _tiff_levels(path: Path) -> int:
    with tifffile.TiffFile(path) as tif:
        return len(tif.series[0].levels)


def _openslide_levels(openslide, path: Path) -> int:
    try:
        with openslide.OpenSlide(str(path)) as osr:
            return osr.level_count
    except Exception:
        return 0


def choose_reader(path: str | os.PathLike, reader: str = "auto") -> str:
    """The backend that reads ``path`` right: ``reader`` unless ``"auto"``; else ``"tifffile"`` for
    OME-TIFF and stripped TIFF, ``"openslide"`` for what OpenSlide recognises (but ``"tifffile"`` for a
    generic TIFF in which tifffile finds more pyramid levels: reduced pages not marked reduced, which
    OpenSlide's generic reader skips; and for a TIFF OpenSlide recognises but cannot open, e.g. an SVS whose
    tiles are JPEG 2000 as compression 34712, which tifffile decodes), ``"tifffile"`` for other TIFF.

    Raises:
        ValueError: ``reader`` is not one of :data:`SLIDE_READERS`, or no backend opens ``path`` (naming it).
    """
    if reader not in SLIDE_READERS:
        raise ValueError(f"reader must be one of {SLIDE_READERS}, got {reader!r}.")
    if reader != "auto":
        return reader
    path = Path(path)
    kind = _tiff_kind(path)
    if kind in ("ome", "stripped"):
        return "tifffile"
    openslide = _openslide()
    if openslide is not None:
        try:
            vendor = openslide.OpenSlide.detect_format(str(path))
        except Exception:  # an unreadable file: said below
            vendor = None
        levels = _openslide_levels(openslide, path) if vendor is not None else 0
        if vendor == "generic-tiff" and _tiff_levels(path) > levels:
            return "tifffile"  # reduced pages not marked reduced (NewSubfileType 0): OpenSlide sees level 0
        if vendor is not None and (levels or kind is None):
            return "openslide"  # a TIFF it recognises but cannot open (JPEG 2000 as 34712): tifffile, below
    if kind is not None:
        return "tifffile"
    hint = "" if openslide is not None else " (OpenSlide is not installed: pip install monai-coco[openslide])"
    raise ValueError(f"{path}: no slide reader opens this file; expected a whole-slide image{hint}.")


def _ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """JFIF full-range YCbCr ``(..., 3)`` ``uint8`` to RGB ``uint8`` (ITU-T T.871)."""
    y, cb, cr = (ycbcr[..., i].astype(np.float32) for i in range(3))
    cb -= 128.0
    cr -= 128.0
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def read_tiff_region(page: tifffile.TiffPage, top: int, left: int, height: int, width: int) -> np.ndarray:
    """Decode the region ``[top, top + height) x [left, left + width)`` of one TIFF page.

    Only the tiles or strips that overlap the region are read and decoded. The region must lie inside
    the page.

    Args:
        page: a tiled or stripped 2D page, chunky (``planarconfig=1``) or single-sample.
        top, left, height, width: the region in the page's pixel coordinates.

    Aperio JPEG 2000 YCbCr tiles (compression 33003) are returned as RGB.

    Returns:
        the region, shape ``(height, width, samples)``, the page's dtype.
    """
    samples = page.samplesperpixel
    if page.imagedepth != 1 or (samples > 1 and page.planarconfig != 1):
        raise ValueError(
            f"{page.parent.filehandle.path}: only 2D pages with interleaved samples are supported "
            f"(page {page.index}: depth {page.imagedepth}, planarconfig {page.planarconfig})."
        )
    seg_h, seg_w = page.chunks[0], page.chunks[1]
    per_row = page.chunked[1]
    rows = range(top // seg_h, (top + height - 1) // seg_h + 1)
    cols = range(left // seg_w, (left + width - 1) // seg_w + 1)
    indices = [r * per_row + c for r in rows for c in cols]
    out = np.zeros((height, width, samples), dtype=page.dtype)
    fh = page.parent.filehandle
    offsets = [page.dataoffsets[i] for i in indices]
    counts = [page.databytecounts[i] for i in indices]
    for data, index in fh.read_segments(offsets, counts, indices=indices, sort=True):
        segment, _, _ = page.decode(data, index, jpegtables=page.jpegtables)
        if segment is None:  # a sparse (empty) segment
            continue
        segment = segment.reshape(segment.shape[-3], segment.shape[-2], -1)
        if page.compression == _APERIO_JP2K_YCBCR and samples == 3:
            segment = _ycbcr_to_rgb(segment)
        y0, x0 = (index // per_row) * seg_h, (index % per_row) * seg_w
        ys, ye = max(top, y0), min(top + height, y0 + segment.shape[0], page.imagelength)
        xs, xe = max(left, x0), min(left + width, x0 + segment.shape[1], page.imagewidth)
        out[ys - top : ye - top, xs - left : xe - left] = segment[ys - y0 : ye - y0, xs - x0 : xe - x0]
    return out


class LazyTiffFileWSIReader(TiffFileWSIReader):
    """MONAI's tifffile WSI reader, reading a region by decoding only the tiles it overlaps.

    Levels are the pyramid levels of the file's first image series (tifffile's ``series[0].levels``),
    so SVS thumbnails, labels and macro images are not levels. Select regions by ``level``; the ``mpp``
    selection of the parent class still indexes pages. Arguments as ``TiffFileWSIReader``.
    """

    @staticmethod
    def _level_page(wsi: tifffile.TiffFile, level: int) -> tifffile.TiffPage:
        return wsi.series[0].levels[level].keyframe

    @staticmethod
    def get_level_count(wsi: tifffile.TiffFile) -> int:
        return len(wsi.series[0].levels)

    def get_size(self, wsi: tifffile.TiffFile, level: int) -> tuple[int, int]:
        page = self._level_page(wsi, level)
        return (page.imagelength, page.imagewidth)

    def get_downsample_ratio(self, wsi: tifffile.TiffFile, level: int) -> float:
        return float(self._level_page(wsi, 0).imagelength) / float(self._level_page(wsi, level).imagelength)

    def _get_patch(
        self, wsi, location: tuple[int, int], size: tuple[int, int], level: int, dtype, mode: str
    ) -> np.ndarray:
        ratio = self.get_downsample_ratio(wsi, level)
        top, left = (round(v / ratio) for v in location)
        level_h, level_w = self.get_size(wsi, level)
        if top < 0 or left < 0 or top + size[0] > level_h or left + size[1] > level_w:
            raise ValueError(
                f"{self.get_file_path(wsi)}: region at ({top}, {left}) of size {tuple(size)} is outside "
                f"level {level} of size {(level_h, level_w)}."
            )
        patch = read_tiff_region(self._level_page(wsi, level), top, left, size[0], size[1]).astype(dtype)
        if mode in "RGB" and patch.shape[-1] == 1:  # a gray pyramid: its value in each colour, as tiles
            patch = np.repeat(patch, 3, axis=-1)
        if mode in "RGB":
            if patch.shape[-1] not in (3, 4):
                raise ValueError(
                    f"{self.get_file_path(wsi)}: expected 3 or 4 colour channels in '{mode}' mode, "
                    f"found {patch.shape[-1]}."
                )
            patch = patch[..., :3]
        return np.moveaxis(patch, -1, self.channel_dim)


def _make_reader(backend: str):
    if backend == "tifffile":
        return LazyTiffFileWSIReader(channel_dim=0, dtype=np.uint8, mode="RGB")
    return WSIReader(backend="openslide", channel_dim=0, dtype=np.uint8, mode="RGB")


class Slide:
    """A whole-slide image read by regions at one level, as channel-first RGB ``uint8``.

    Args:
        path: a slide in any layout :func:`choose_reader` opens.
        reader: ``"auto"`` (:func:`choose_reader`), ``"openslide"`` or ``"tifffile"``.
        mpp: µm/px of level 0 for a file that records none (the ``slide_mpp`` setting); given, it replaces
            what the file records.

    Attributes:
        backend: the backend reading the file. level_shapes: ``(H, W)`` of every level, level 0 first.

    Raises:
        FileNotFoundError: ``path`` does not exist. ValueError: no backend opens it (naming it).

    Use as a context manager (or call :meth:`close`). Coordinates passed to :meth:`read` are pixels of
    the level read from.
    """

    def __init__(self, path: str | os.PathLike, reader: str = "auto", mpp: Optional[float] = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"slide {self.path} does not exist.")
        if mpp is not None and not MIN_MPP <= mpp <= MAX_INCH_MPP:
            raise ValueError(f"slide_mpp must be in [{MIN_MPP:g}, {MAX_INCH_MPP:g}] µm/px, got {mpp!r}.")
        self.backend = choose_reader(self.path, reader)
        try:
            self._reader = _make_reader(self.backend)
            self._wsi = self._reader.read(str(self.path))
            count = self._reader.get_level_count(self._wsi)
            self.level_shapes: list[tuple[int, int]] = [
                tuple(int(v) for v in self._reader.get_size(self._wsi, level)) for level in range(count)
            ]
        except Exception as exc:
            raise ValueError(f"cannot read slide {self.path} with the {self.backend} reader: {exc}") from exc
        self._mpp = (float(mpp), float(mpp)) if mpp is not None else self._file_mpp()
        if self.backend == "tifffile" and self._wsi.series[0].dtype != np.uint8:
            raise ValueError(
                f"slide {self.path} holds {self._wsi.series[0].dtype} samples; expected 8-bit (uint8) RGB or "
                "gray (convert it, e.g. with QuPath or bfconvert, to 8 bits)."
            )

    def _file_mpp(self) -> Optional[tuple[float, float]]:
        """The file's level-0 scale; under OpenSlide, what its properties say, else (an OME-TIFF forced
        through OpenSlide) the TIFF's own records."""
        if self.backend == "tifffile":
            return tiff_mpp(self._wsi)
        mpp = openslide_mpp(self._wsi.properties)
        if mpp is None and _tiff_kind(self.path) is not None:
            with tifffile.TiffFile(self.path) as tif:
                mpp = tiff_mpp(tif)
        return mpp

    @property
    def level_count(self) -> int:
        return len(self.level_shapes)

    def check_level(self, level: int) -> None:
        """Raise ``ValueError`` naming the file and its levels when ``level`` does not exist."""
        if not 0 <= level < self.level_count:
            sizes = ", ".join(f"{i}: {h}x{w}" for i, (h, w) in enumerate(self.level_shapes))
            raise ValueError(
                f"slide {self.path} has no level {level}; its levels (height x width) are {sizes}."
            )

    def downsample(self, level: int) -> tuple[float, float]:
        """Level-0 pixels per pixel of ``level``, ``(y, x)``."""
        self.check_level(level)
        (h0, w0), (h, w) = self.level_shapes[0], self.level_shapes[level]
        return h0 / h, w0 / w

    def mpp(self, level: int = 0) -> Optional[tuple[float, float]]:
        """µm/px ``(y, x)`` of ``level``, or ``None`` when neither the file nor ``mpp`` says."""
        if self._mpp is None:
            return None
        dy, dx = self.downsample(level)
        return self._mpp[0] * dy, self._mpp[1] * dx

    def read(self, level: int, top: int, left: int, height: int, width: int) -> np.ndarray:
        """The region of ``level``, shape ``(3, height, width)``, ``uint8``."""
        dy, dx = self.downsample(level)
        location = (round(top * dy), round(left * dx))
        try:
            patch, _ = self._reader.get_data(self._wsi, location=location, size=(height, width), level=level)
        except Exception as exc:
            raise ValueError(
                f"cannot read a {height}x{width} region at ({top}, {left}) of level {level} from slide "
                f"{self.path}: {exc}"
            ) from exc
        return np.asarray(patch, dtype=np.uint8)

    def view(self, mpp: Optional[float] = None, level: Optional[int] = None) -> SlideView:
        """The slide at ``mpp`` µm/px exactly, or one ``level`` as it is.

        With ``mpp``: the coarsest level at least as fine as ``mpp`` (level 0 when all are coarser, up to
        1.25 times), resampled by the remaining factor (none when within 0.1 %); the view's shape is level
        0's times ``level-0 µm/px / mpp``. With ``level`` (and no ``mpp``): that level, unresampled.

        Raises:
            ValueError: the slide's scale is unknown (naming ``slide_mpp``), or its level 0 is more than
                1.25 times coarser than ``mpp``.
        """
        if mpp is None:
            level = 0 if level is None else level
            self.check_level(level)
            return SlideView(self, level, (1.0, 1.0), self.level_shapes[level])
        mpp0 = self.mpp(0)
        if mpp0 is None:
            raise ValueError(
                f"slide {self.path} does not record its µm/px (OME-XML, Aperio MPP, ImageJ unit, OpenSlide "
                f"mpp or TIFF resolution in cm/inch); give its level-0 µm/px as slide_mpp (bundle: "
                f"--slide_mpp, command line: --slide-mpp) to segment it at {mpp:g} µm/px."
            )
        if mpp * _MAX_UPSAMPLING < max(mpp0):
            raise ValueError(
                f"slide {self.path} has {max(mpp0):g} µm/px at level 0, coarser than the training scale "
                f"{mpp:g} µm/px by more than {_MAX_UPSAMPLING:g} times: it does not hold the detail the "
                "network was trained on (if the file's scale is wrong, give slide_mpp)."
            )
        fine = [i for i in range(self.level_count) if max(self.mpp(i)) <= mpp * (1 + _SAME_SCALE)]
        source = fine[-1] if fine else 0
        level_mpp = self.mpp(source)
        factor = tuple(1.0 if abs(mpp / m - 1) <= _SAME_SCALE else mpp / m for m in level_mpp)
        h0, w0 = self.level_shapes[0]
        shape = (max(1, round(h0 * mpp0[0] / mpp)), max(1, round(w0 * mpp0[1] / mpp)))
        if factor == (1.0, 1.0):
            shape = self.level_shapes[source]
        return SlideView(self, source, factor, shape)

    def thumbnail(self, max_side: int) -> np.ndarray:
        """The whole slide, at most ``max_side`` pixels on its longer side, shape ``(3, h, w)``.

        Read from the coarsest level whose longer side is at least ``max_side`` (level 0 if none is),
        sampled with an integer stride, band by band, so the level is never held in memory at once.
        """
        large = [level for level, shape in enumerate(self.level_shapes) if max(shape) >= max_side]
        level = large[-1] if large else 0
        height, width = self.level_shapes[level]
        stride = max(1, math.ceil(max(height, width) / max_side))
        band = max(stride, (_THUMBNAIL_BAND_PIXELS // width) // stride * stride)
        parts = [
            self.read(level, top, 0, min(band, height - top), width)[:, ::stride, ::stride]
            for top in range(0, height, band)
        ]
        return np.concatenate(parts, axis=1)

    def close(self) -> None:
        self._wsi.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class SlideView:
    """A slide at one scale: ``level`` of ``slide`` resampled by ``factor`` (level pixels per view pixel
    ``(y, x)``; ``(1, 1)``: the level as it is), ``shape`` ``(H, W)`` view pixels, read by regions."""

    slide: Slide
    level: int
    factor: tuple[float, float]
    shape: tuple[int, int]

    @property
    def resampled(self) -> bool:
        return self.factor != (1.0, 1.0)

    @property
    def level0_scale(self) -> tuple[float, float]:
        """Level-0 pixels per view pixel ``(y, x)``."""
        (h0, w0), (h, w) = self.slide.level_shapes[0], self.shape
        return h0 / h, w0 / w

    @property
    def mpp(self) -> Optional[tuple[float, float]]:
        """µm/px ``(y, x)`` of the view's pixels, ``None`` when the slide's scale is unknown."""
        mpp0 = self.slide.mpp(0)
        return None if mpp0 is None else (mpp0[0] * self.level0_scale[0], mpp0[1] * self.level0_scale[1])

    @property
    def read(self) -> Callable[[int, int, int, int], np.ndarray]:
        """``(top, left, height, width) -> (3, height, width)`` ``uint8`` of the view."""
        level, shape = self.level, self.slide.level_shapes[self.level]
        source = lambda top, left, height, width: self.slide.read(level, top, left, height, width)  # noqa: E731
        if not self.resampled:
            return source
        return lambda top, left, height, width: resample_region(  # noqa: E731
            source, shape, self.factor, top, left, height, width
        )


def is_slide(path: str | os.PathLike) -> bool:
    """Whether ``path`` is read as a slide (by regions, at the network's scale) rather than as a tile (whole).

    JPEG and PNG files are tiles. A TIFF is a slide when it is tiled, holds more than one pyramid level,
    records its µm/px (:mod:`.slide_mpp`) or holds more than :data:`LARGE_IMAGE_PIXELS`; else a tile. Any
    other file is a slide when a slide reader opens it (:func:`choose_reader`).

    Raises:
        FileNotFoundError: ``path`` does not exist. ValueError: no reader opens it (naming it).
    """
    path = Path(path)
    if path.suffix.lower() in TILE_SUFFIXES:
        return False
    if not path.exists():
        raise FileNotFoundError(f"image {path} does not exist.")
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            page = series.keyframe
            return (
                len(series.levels) > 1
                or page.is_tiled
                or tiff_mpp(tif) is not None
                or page.imagelength * page.imagewidth > LARGE_IMAGE_PIXELS
            )
    except tifffile.TiffFileError:
        pass
    except Exception as exc:
        raise ValueError(f"{path} is not a readable TIFF file: {exc}") from exc
    choose_reader(path)  # raises naming the file when no reader opens it
    return True


def read_image(path: str | os.PathLike) -> np.ndarray:
    """A whole tile image (JPEG, PNG or single-level TIFF) as RGB, shape ``(3, H, W)``, ``uint8``.

    Grayscale images are repeated to three channels and an alpha channel is dropped; an EXIF orientation is
    applied (:func:`~monai_coco.data.orientation.upright`), as training's loader does.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist.")
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            array = tifffile.imread(path)
        else:
            with Image.open(path) as image:
                array = np.asarray(upright(image).convert("RGB"))
    except Exception as exc:
        raise ValueError(f"cannot decode image {path}: {exc}") from exc
    if array.dtype != np.uint8:
        raise ValueError(f"image {path} has dtype {array.dtype}; expected 8-bit (uint8) RGB or gray.")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"image {path} has shape {array.shape}; expected (H, W), (H, W, 3) or (H, W, 4).")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(np.moveaxis(array[..., :3], -1, 0))


