"""One checker for every input image: annotated tiles, the unannotated pool (tiles and slides), the tiles and
slides given to inference, and evaluation data pass the same file checks before any work.

:func:`image_problems` reads one file as the pipeline will (a tile whole, a slide by its header and levels,
:func:`~monai_coco.data.slide_io.is_slide` deciding which) and returns its problems, each a
:class:`DataProblem` naming the file and what was expected: a broken link or a missing file; a tile that
cannot be decoded (a damaged file), that is not gray, RGB or RGBA, not 8 bits per sample, or larger than
:data:`MAX_TILE_PIXELS`; a slide that no reader opens, that is not 8-bit, or whose µm/px is unknown where the
run needs it (naming ``slide_mpp``). An EXIF orientation is no problem: every reader applies it
(:mod:`~monai_coco.data.orientation`). :func:`check_images` checks many files; :func:`raise_first` turns the
problems into one exception, the first problem's line with the count of the others and the command that
lists them all (``python -m monai_coco.data.check``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import tifffile
from PIL import Image

from .orientation import exif_orientation, swaps_sides, upright
from .slide_io import Slide, is_slide
from .suffixes import TIFF_SUFFIXES

__all__ = ["DataProblem", "MAX_TILE_PIXELS", "check_images", "image_problems", "raise_first", "tile_problems"]

MAX_TILE_PIXELS = 2**25
"""The largest training tile, in pixels (32 Mpx, e.g. 5792x5792; the paper's tiles are 1024x1024): each
tile is decoded whole (3 bytes per pixel, then float copies in the transforms: ~60 bytes per pixel)."""


@dataclass(frozen=True)
class DataProblem:
    """One problem of a data set: the offending file (or folder) and what was expected."""

    path: str
    message: str
    missing: bool = False  # a missing file or partner (FileNotFoundError) rather than a bad one (ValueError)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    def error(self) -> Exception:
        return (FileNotFoundError if self.missing else ValueError)(str(self))


@dataclass(frozen=True)
class _FileInfo:
    """What one read of a file told: size (W, H), colour ("gray", "rgb", "rgba", "palette" or the format's
    own model name), channel count, mask values (masks only), or the decoding error."""

    size: tuple[int, int] = (0, 0)
    colour: str = ""
    channels: int = 0
    values: frozenset[int] | None = None
    error: str | None = None
    bits: int = 8  # bits per sample
    orientation: int = 1  # EXIF orientation (applied by every reader: monai_coco.data.orientation)


_PIL_COLOURS = {
    "1": "gray",
    "L": "gray",
    "I": "gray",
    "I;16": "gray",
    "I;16B": "gray",
    "I;16L": "gray",
    "F": "gray",
    "RGB": "rgb",
    "RGBA": "rgba",
    "P": "palette",
}


_PIL_BITS = {"1": 1, "I": 32, "I;16": 16, "I;16B": 16, "I;16L": 16, "F": 32}  # other modes: 8 bits


def _tiff_colour(photometric: str, samples: int) -> str:
    if samples == 1 and photometric in ("MINISBLACK", "MINISWHITE"):
        return "gray"
    if samples == 1 and photometric == "PALETTE":
        return "palette"
    if photometric in ("RGB", "YCBCR") and samples in (3, 4):
        return "rgb" if samples == 3 else "rgba"
    return photometric


# ---------------------------------------------------------------------------------------------- reading
def _read_info(path: str, role: str) -> _FileInfo:
    """Read a header (``role="image"``), decode a whole image (``"image-full"``) or a mask (``"mask"``)."""
    array, orientation = None, 1
    try:
        if path.lower().endswith(TIFF_SUFFIXES):
            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                size, channels = (page.imagewidth, page.imagelength), page.samplesperpixel
                colour = _tiff_colour(page.photometric.name, channels)
                bits = int(page.bitspersample)
                if role != "image":
                    array = page.asarray()
        else:
            with Image.open(path) as im:
                size, channels = im.size, len(im.getbands())
                orientation = exif_orientation(im)
                if swaps_sides(orientation):  # read upright, as the mask was drawn (orientation.upright)
                    size = size[::-1]
                colour = _PIL_COLOURS.get(im.mode, im.mode)
                bits = _PIL_BITS.get(im.mode, 8)
                if role != "image":
                    im.load()
                    array = np.asarray(upright(im)) if role == "mask" else None
    except Exception as e:  # any decoder failure is reported, not raised from deep inside a library
        return _FileInfo(error=f"cannot be decoded ({type(e).__name__}: {e})")
    values = None
    if role == "mask" and array is not None:
        flat = np.asarray(array).ravel()
        small = flat.dtype in (np.uint8, np.bool_)
        values = frozenset((np.flatnonzero(np.bincount(flat)) if small else np.unique(flat)).tolist())
    size = (int(size[0]), int(size[1]))
    return _FileInfo(size, colour, int(channels), values, bits=bits, orientation=orientation)


@functools.lru_cache(maxsize=1 << 16)
def _cached_info(path: str, mtime_ns: int, nbytes: int, role: str) -> _FileInfo:
    return _read_info(path, role)


def info(path: str, role: str) -> _FileInfo:
    """What one read of the file at ``path`` tells (``role``: ``"image"`` reads its header, ``"image-full"``
    decodes it whole, ``"mask"`` decodes its values), cached by path, modification time and size."""
    st = Path(path).stat()
    return _cached_info(path, st.st_mtime_ns, st.st_size, role)


def is_broken_link(path: Path) -> bool:
    """Whether ``path`` is a symbolic link to a file that is gone."""
    return path.is_symlink() and not path.exists()


def tile_problems(
    path: str, facts: _FileInfo, max_pixels: Optional[int] = MAX_TILE_PIXELS
) -> list[DataProblem]:
    """The problems of a tile ``path`` (read whole by the pipeline) from what :func:`info` read of it: not
    decodable, above ``max_pixels`` (a training tile; ``None``: no limit, as inference reads), not 8 bits
    per sample, or not gray, RGB or RGBA."""
    if facts.error:
        return [DataProblem(path, f"image {facts.error}; expected a JPEG, PNG or TIFF image")]
    width, height = facts.size
    if max_pixels is not None and width * height > max_pixels:
        return [
            DataProblem(
                path,
                f"image is {width}x{height} pixels, above the {max_pixels // 2**20} Mpx a training tile may "
                "have (each is decoded whole); expected tiles: cut it into tiles",
            )
        ]
    if facts.bits != 8:
        return [
            DataProblem(
                path,
                f"image has {facts.bits} bits per sample; expected 8 (the pipeline maps 0..255 to 0..1): "
                "save it as 8-bit",
            )
        ]
    if facts.colour not in ("gray", "rgb", "rgba"):
        return [
            DataProblem(
                path,
                f"image colour model is {facts.colour} ({facts.channels} channel(s)); "
                "expected gray (1 channel), RGB (3) or RGBA (4)",
            )
        ]
    return []


def image_problems(
    path: str | os.PathLike,
    decode: bool = False,
    reader: str = "auto",
    slide_mpp: Optional[float] = None,
    needs_scale: bool = False,
    max_tile_pixels: Optional[int] = MAX_TILE_PIXELS,
) -> list[DataProblem]:
    """The problems of one input image, a tile or a slide (see the module doc).

    Args:
        path: the file.
        decode: decode a tile whole (finds a truncated file) rather than read its header only.
        reader: the slide backend, as the run's ``reader`` setting.
        slide_mpp: level-0 µm/px given for slides that record none (the ``slide_mpp`` setting).
        needs_scale: a slide must have a known µm/px (the run reads it at the training scale).
        max_tile_pixels: the largest tile (training); ``None`` for inference, which reads any tile.
    """
    path = Path(path)
    if is_broken_link(path):
        return [DataProblem(str(path), f"a broken link: its target {os.readlink(path)} does not exist", True)]
    if not path.is_file():
        return [DataProblem(str(path), "does not exist; expected an image or slide file", missing=True)]
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # bytes the file system took that are no UTF-8: shown escaped
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        why = "its name is not valid UTF-8 (the outputs and summaries name it in UTF-8 text)"
        return [DataProblem(shown, f"{why}; expected a UTF-8 file name: rename it")]
    try:
        slide = is_slide(path)
    except (ValueError, FileNotFoundError) as exc:
        return [DataProblem(str(path), _about(path, exc))]
    if not slide:
        return tile_problems(str(path), info(str(path), "image-full" if decode else "image"), max_tile_pixels)
    try:
        with Slide(path, reader, slide_mpp) as opened:
            unknown = needs_scale and opened.mpp(0) is None
    except (ValueError, FileNotFoundError) as exc:
        return [DataProblem(str(path), _about(path, exc))]
    if unknown:
        return [
            DataProblem(
                str(path),
                "the slide records no µm/px (no OpenSlide mpp, Aperio MPP, OME-XML PhysicalSize, ImageJ unit "
                "or TIFF resolution in cm/inch); expected its level-0 µm/px as slide_mpp",
            )
        ]
    return []


def _about(path: Path, exc: Exception) -> str:
    """A reader's message about ``path`` without its leading file name (the problem names the file)."""
    text = str(exc)
    return text[len(str(path)) :].lstrip(": ") if text.startswith(str(path)) else text


def check_images(paths: Sequence[str | os.PathLike], **options) -> list[DataProblem]:
    """:func:`image_problems` of every path (``options`` as there), in order."""
    return [problem for path in paths for problem in image_problems(path, **options)]


def raise_first(problems: Sequence[DataProblem], what: str) -> None:
    """Raise the first of ``problems`` (``FileNotFoundError`` for a missing file, else ``ValueError``) as one
    line, with how many others ``what`` has and the command that lists them all; nothing when empty."""
    if not problems:
        return
    first = problems[0]
    more = (
        f" ({len(problems) - 1} more problem(s) in {what}: python -m monai_coco.data.check --images lists "
        "them all)"
        if len(problems) > 1
        else ""
    )
    raise (FileNotFoundError if first.missing else ValueError)(f"{first}{more}")
