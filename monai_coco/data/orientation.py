"""EXIF orientation: a JPEG (or PNG, TIFF-in-Pillow) tile can store its pixels rotated or mirrored and say so
in its EXIF ``Orientation`` tag (cameras, phone scans, some slide exporters). Viewers, and annotation tools,
show it upright, so a mask drawn on it is upright: every reader of the project applies the tag
(:func:`upright`, the same as Pillow's ``ImageOps.exif_transpose``) so image and mask stay aligned.
"""

from __future__ import annotations

from PIL import Image, ImageOps

__all__ = ["ORIENTATION_TAG", "exif_orientation", "swaps_sides", "upright"]

ORIENTATION_TAG = 0x0112  # EXIF Orientation: 1 upright; 2-4 mirrored/rotated 180°; 5-8 transposed (90°)


def exif_orientation(image: Image.Image) -> int:
    """The image's EXIF orientation, 1 (upright) when it records none."""
    try:
        return int(image.getexif().get(ORIENTATION_TAG, 1) or 1)
    except Exception:  # a damaged EXIF block reads as no orientation, as viewers do
        return 1


def swaps_sides(orientation: int) -> bool:
    """Whether an orientation turns the stored ``(W, H)`` into ``(H, W)`` when applied (5, 6, 7, 8)."""
    return orientation in (5, 6, 7, 8)


def upright(image: Image.Image) -> Image.Image:
    """``image`` with its EXIF orientation applied (``ImageOps.exif_transpose``); unchanged without one."""
    return ImageOps.exif_transpose(image) if exif_orientation(image) != 1 else image
