"""One H&E-like picture written in the layouts scanners and converters produce (the field cases' layouts).

Each writer takes the level-0 RGB picture ``(H, W, 3)`` ``uint8`` and its level-0 µm/px and writes the file
the way the named software does; they are the fixtures of ``test_slide_layouts.py``.
"""

from __future__ import annotations

import imagecodecs
import numpy as np
import tifffile


def tissue(size: int, seed: int = 0) -> np.ndarray:
    """Glass (235) around a round pink section (220, 150, 190) holding purple "tumour" blocks and nuclei."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 235, np.uint8)
    yy, xx = np.mgrid[:size, :size]
    section = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.4 * size) ** 2
    img[section] = (220, 150, 190)
    img[size // 4 : size // 2, size // 3 : 2 * size // 3] = (90, 40, 160)
    img[section & (rng.random((size, size)) < 0.01)] = (120, 60, 140)
    return img


def _reduce(img: np.ndarray, factor: int) -> np.ndarray:
    """Box-filter reduction (what scanners' pyramids hold)."""
    h, w = img.shape[0] // factor * factor, img.shape[1] // factor * factor
    blocks = img[:h, :w].reshape(h // factor, factor, w // factor, factor, 3).astype(np.float32)
    return np.round(blocks.mean((1, 3))).astype(np.uint8)


def _ycbcr(rgb: np.ndarray) -> np.ndarray:
    """JFIF full-range YCbCr, as Aperio stores 33003 tiles."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return np.clip(np.round(np.stack([y, cb, cr], -1)), 0, 255).astype(np.uint8)


def _jp2k_tiles(img: np.ndarray, tile: int = 256):
    for top in range(0, img.shape[0], tile):
        for left in range(0, img.shape[1], tile):
            block = np.zeros((tile, tile, 3), np.uint8)
            part = img[top : top + tile, left : left + tile]
            block[: part.shape[0], : part.shape[1]] = part
            yield imagecodecs.jpeg2k_encode(_ycbcr(block), level=100, codecformat="J2K", mct=False)


def write_aperio_svs(path, img, mpp=0.5, factors=(1, 4, 16), jpeg2000=False, tile=256, compression="jpeg"):
    """An Aperio SVS as ScanScope/GT450 write it: tiled level 0 with the Aperio description (``MPP`` only
    there, no TIFF resolution tags), a stripped thumbnail as page 1, then the tiled reduced levels; JPEG
    tiles (or another ``compression`` of tifffile's, e.g. ``"jpeg2000"``: TIFF's 34712, which OpenSlide
    refuses), or JPEG 2000 YCbCr tiles (compression 33003, PhotometricInterpretation RGB)."""
    h, w = img.shape[:2]
    codec = "J2K/YUV16" if jpeg2000 else "JPEG/RGB"
    head = f"Aperio Image Library v12.0.15 \r\n{w}x{h} [0,0 {w}x{h}] ({tile}x{tile}) {codec} Q=70"
    with tifffile.TiffWriter(path) as tw:
        for i, factor in enumerate(factors):
            level = img if factor == 1 else _reduce(img, factor)
            description = f"{head}|AppMag = 20|MPP = {mpp:.4f}" if i == 0 else (
                f"{head.splitlines()[0]}\r\n{w}x{h} -> {level.shape[1]}x{level.shape[0]} - |")
            if jpeg2000:
                tw.write(_jp2k_tiles(level, tile), shape=level.shape, dtype=np.uint8, tile=(tile, tile),
                         compression=33003, photometric="rgb", description=description, metadata=None)
            else:
                tw.write(level, tile=(tile, tile), compression=compression,
                         compressionargs={"level": 95} if compression == "jpeg" else None,
                         photometric="rgb", description=description, metadata=None)
            if i == 0:
                thumb = img[:: max(1, h // 128), :: max(1, w // 128)]
                tw.write(thumb, photometric="rgb", rowsperstrip=16, metadata=None,
                         description=f"{head.splitlines()[0]}\r\n{w}x{h} -> thumbnail - |")
    return path


def write_ome_tiff(path, img, mpp=0.5, factors=(1, 2, 4), tile=256):
    """A pyramidal OME-TIFF as bfconvert/raw2ometiff/QuPath write it: reduced levels in SubIFDs, the pixel
    size only in the OME-XML (the TIFF resolution left at 1/1, unit NONE)."""
    meta = {"axes": "YXS", "PhysicalSizeX": mpp, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": mpp,
            "PhysicalSizeYUnit": "µm"}  # fmt: skip
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tw:
        opts = {"tile": (tile, tile), "compression": "zlib", "photometric": "rgb"}
        tw.write(img, subifds=len(factors) - 1, metadata=meta, **opts)
        for factor in factors[1:]:
            tw.write(_reduce(img, factor), subfiletype=1, **opts)
    return path


def write_generic_pyramid(
    path, img, mpp=0.5, factors=(1, 2, 4), tile=256, unit="CENTIMETER", compression="zlib"
):
    """A generic tiled pyramid (OpenSlide's generic-tiff; NDPI-like x2 steps, or a scanner's x4 steps),
    reduced levels as further pages (``subfiletype=1``), the scale in resolution tags (cm or inch)."""
    per_unit = 1e4 if unit == "CENTIMETER" else 25400.0
    with tifffile.TiffWriter(path) as tw:
        for i, factor in enumerate(factors):
            level = img if factor == 1 else _reduce(img, factor)
            tw.write(level, tile=(tile, tile), compression=compression, photometric="rgb",
                     subfiletype=1 if i else 0, metadata=None,
                     resolution=(per_unit / (mpp * factor),) * 2, resolutionunit=unit)  # fmt: skip
    return path


def write_stripped(path, img, mpp=0.5):
    """A single-level stripped TIFF (QuPath's "export whole image", flat exports) with its scale in px/cm
    resolution tags."""
    resolution = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
    tifffile.imwrite(path, img, photometric="rgb", rowsperstrip=64, compression="zlib", **resolution)
    return path


def write_imagej(path, img, mpp=0.5, unit="micron"):
    """A single-level TIFF as ImageJ/Fiji saves one: its scale only as ``unit=...`` in the ImageJ
    description, the resolution tags in pixels per that unit, their ResolutionUnit NONE."""
    metadata = {"unit": unit, "axes": "YXS"}
    tifffile.imwrite(path, img, imagej=True, resolution=(1 / mpp, 1 / mpp), metadata=metadata)
    return path
