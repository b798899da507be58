"""Writers of the synthetic data sets: tiles in the authors' layout, a pyramidal slide written tile by tile,
and the fine-structure data set split by slide (generated once and cached)."""

from __future__ import annotations

import math
import numbers
import operator
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from .histology import HistologySlide
from .world import SyntheticGastricTissue, derive_seed

__all__ = [
    "HISTOLOGY_SPLITS",
    "synthetic_tile",
    "write_histology_dataset",
    "write_synthetic_dataset",
    "write_synthetic_slide",
]


def synthetic_tile(seed: int, size: int = 512, mpp: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic gastric tile: rgb uint8 ``(size, size, 3)`` and mask uint8 ``(size, size)`` in {0, 1}."""
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}.")
    return SyntheticGastricTissue(seed, mpp=mpp).render(0, 0, size, size)


def write_synthetic_dataset(
    out_dir: str | Path, n: int = 64, size: int = 512, seed: int = 0, mpp: float = 1.0, quality: int = 90
) -> list[dict[str, str]]:
    """Write ``n`` tiles in the authors' layout: ``gastric_0000.jpg`` (RGB, JPEG ``quality``) and
    ``gastric_0000.png`` (mask, {0, 1}), ... in ``out_dir``. Tile ``i`` depends only on ``(seed, i, size,
    mpp)``; the same arguments write the same bytes.

    Returns:
        the datalist ``[{"image": path, "label": path}, ...]`` with absolute paths.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1 tiles, got {n}.")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be a JPEG quality in [1, 100], got {quality}.")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        rgb, mask = synthetic_tile(derive_seed(seed, i), size, mpp)
        image, label = out / f"gastric_{i:04d}.jpg", out / f"gastric_{i:04d}.png"
        Image.fromarray(rgb).save(image, format="JPEG", quality=quality, subsampling=0)
        Image.fromarray(mask).save(label, format="PNG")
        items.append({"image": str(image), "label": str(label)})
    return items


def _halve(a: np.ndarray, binary: bool) -> np.ndarray:
    """2 x 2 reduction of a (h, w[, c]) uint8 band (odd sizes repeat the edge): mean, or majority (>= 2 of 4)
    if binary."""
    pad = [(0, a.shape[0] % 2), (0, a.shape[1] % 2)] + [(0, 0)] * (a.ndim - 2)
    a = np.pad(a, pad, mode="edge").astype(np.uint16)
    s = a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]
    return (s >= 2).astype(np.uint8) if binary else ((s + 2) // 4).astype(np.uint8)


def _reduce(src: np.ndarray, dst: np.ndarray, tile: int, binary: bool) -> None:
    """Fill ``dst`` with the 2 x 2 reduction of ``src``, ``tile`` rows at a time."""
    for y in range(0, dst.shape[0], tile):
        dst[y : y + tile] = _halve(src[2 * y : 2 * y + 2 * tile], binary)


def _memmap(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)


def _render_bands(
    world: SyntheticGastricTissue,
    origin: tuple[int, int],
    height: int,
    width: int,
    tile: int,
    mask0: np.ndarray,
    rgb1: np.ndarray | None,
) -> Iterator[np.ndarray]:
    """Level-0 tiles in row-major order, rendered one band of ``tile`` rows at a time (in chunks of about
    1024 columns); the band's mask goes to ``mask0`` and its 2 x 2 reduction to ``rgb1`` (level 1). Slide
    pixel ``(y, x)`` is world pixel ``(y - origin[0], x - origin[1])``."""
    chunk = max(tile, (1024 // tile) * tile)
    oy, ox = origin
    for y in range(0, height, tile):
        h = min(tile, height - y)
        band = [world.render(y - oy, x - ox, h, min(chunk, width - x)) for x in range(0, width, chunk)]
        rgb = np.concatenate([b[0] for b in band], axis=1)
        mask0[y : y + h] = np.concatenate([b[1] for b in band], axis=1)
        if rgb1 is not None:
            rgb1[y // 2 : (y + h + 1) // 2] = _halve(rgb, binary=False)
        yield from _tiles(rgb, tile)


def _tiles(level: np.ndarray, tile: int) -> Iterator[np.ndarray]:
    """Row-major tiles of a (memory-mapped) level; edge tiles are partial (tifffile pads them)."""
    for y in range(0, level.shape[0], tile):
        for x in range(0, level.shape[1], tile):
            yield np.ascontiguousarray(level[y : y + tile, x : x + tile])


def checked_mpp(mpp: object, setting: str) -> float:
    """``mpp`` as a float if it is micrometres per pixel in [0.001, 1000] (the range whose resolution tags
    TIFF's rationals hold); else ``ValueError`` naming ``setting``."""
    if not (isinstance(mpp, numbers.Real) and math.isfinite(mpp) and 1e-3 <= mpp <= 1e3):
        raise ValueError(f"{setting} must be micrometres per pixel in [0.001, 1000], got {mpp!r}")
    return float(mpp)


def checked_section_fraction(fraction: object, setting: str) -> float:
    """``fraction`` as a float if it is a share of the slide's sides in (0, 1]; else ``ValueError`` naming
    ``setting``."""
    if not (isinstance(fraction, numbers.Real) and 0 < fraction <= 1):
        raise ValueError(f"{setting} must be in (0, 1] (of the slide's sides), got {fraction!r}")
    return float(fraction)


def write_synthetic_slide(
    path: str | Path,
    size: int | tuple[int, int] = 2048,
    seed: int = 0,
    mpp: float = 0.5,
    tile: int = 256,
    quality: int = 90,
    tumour_offset: float = 0.6,
    section_fraction: float = 1.0,
) -> tuple[Path, Path]:
    """Write a pyramidal synthetic slide and its mask pyramid, tile by tile.

    The tissue section is an ellipse with a rough border, centred on the slide, spanning
    ``section_fraction`` of the slide's height and width (its inscribed ellipse: about
    ``0.64 * section_fraction ** 2`` of the slide's area is tissue, the rest glass). The default 1.0 fills
    the slide; smaller values give the glass around the tissue that most scans have, which whole-slide
    inference skips.

    ``path`` (e.g. ``slide.tif``) receives the RGB pyramid: level 0 then levels halved until they fit in one
    tile, each a tiled (``tile`` x ``tile``), JPEG-compressed page, reduced levels with ``subfiletype=1``,
    and XResolution/YResolution in pixels per centimetre so that ``mpp`` (micrometres per pixel at level 0)
    is known to OpenSlide and to MONAI's ``WSIReader`` (both backends). ``<stem>_mask.tif`` beside it gets the
    cancer mask ({0, 1}, uint8) with the same pyramid, deflate-compressed (lossless). Reduced image levels are
    2 x 2 means, reduced masks 2 x 2 majorities.

    Memory: level 0 is rendered in bands of ``tile`` rows and never held whole; reduced levels and the
    level-0 mask go through memory-mapped temporary files next to ``path``.

    Returns:
        ``(slide_path, mask_path)``.

    Raises:
        ValueError: a size, tile, ``mpp`` (µm/px in [0.001, 1000]), quality or ``section_fraction`` out of
            range or of the wrong type, before any file is opened.
    """
    try:
        height, width = [operator.index(s) for s in ((size, size) if np.ndim(size) == 0 else size)]
        tile = operator.index(tile)
    except (TypeError, ValueError):
        raise ValueError(
            f"size must be a whole number of pixels or (height, width), and tile a whole number; got "
            f"size={size!r}, tile={tile!r}."
        ) from None
    mpp = checked_mpp(mpp, "mpp")
    if min(height, width) < 1 or tile < 16 or tile % 16:
        raise ValueError(f"size must be positive and tile a multiple of 16, got size={size}, tile={tile}.")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be a JPEG quality in [1, 100], got {quality}.")
    section_fraction = checked_section_fraction(section_fraction, "section_fraction")
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    mask_path = path.with_name(f"{path.stem}_mask{path.suffix}")
    section = (max(1, round(height * section_fraction)), max(1, round(width * section_fraction)))
    world = SyntheticGastricTissue(
        seed, mpp=mpp, tumour_offset=tumour_offset, tumour_scale_um=350.0, section=section
    )
    origin = ((height - section[0]) // 2, (width - section[1]) // 2)  # the section's corner on the slide
    shapes = [(height, width)]
    while max(shapes[-1]) > tile:
        shapes.append(((shapes[-1][0] + 1) // 2, (shapes[-1][1] + 1) // 2))
    k_max = len(shapes) - 1
    bigtiff = height * width * 3 > 2**31
    common = {"tile": (tile, tile), "resolutionunit": "CENTIMETER", "metadata": None, "software": False}

    def resolution(level: int) -> tuple[float, float]:
        per_cm = 1e4 / (mpp * width / shapes[level][1]), 1e4 / (mpp * height / shapes[level][0])
        return per_cm[0], per_cm[1]

    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".synthetic_slide_") as tmp:
        rgb_levels = [
            _memmap(Path(tmp) / f"rgb{k}.npy", (*shape, 3)) for k, shape in enumerate(shapes[1:], 1)
        ]
        mask_levels = [_memmap(Path(tmp) / f"mask{k}.npy", shape) for k, shape in enumerate(shapes)]
        rgb_levels.insert(0, None)  # level 0 is rendered band by band and never stored
        jpeg = {
            "photometric": "rgb",
            "compression": "jpeg",
            "compressionargs": {"level": quality},
            "subsampling": (1, 1),
        }
        with tifffile.TiffWriter(path, bigtiff=bigtiff) as tif:
            bands = _render_bands(
                world, origin, height, width, tile, mask_levels[0], rgb_levels[1] if k_max else None
            )
            tif.write(
                bands,
                shape=(height, width, 3),
                dtype=np.uint8,
                subfiletype=0,
                resolution=resolution(0),
                **jpeg,
                **common,
            )
            for k in range(1, k_max + 1):
                _reduce(mask_levels[k - 1], mask_levels[k], tile, binary=True)
                if k < k_max:
                    _reduce(rgb_levels[k], rgb_levels[k + 1], tile, binary=False)
                tif.write(
                    _tiles(rgb_levels[k], tile),
                    shape=(*shapes[k], 3),
                    dtype=np.uint8,
                    subfiletype=1,
                    resolution=resolution(k),
                    **jpeg,
                    **common,
                )
        with tifffile.TiffWriter(mask_path, bigtiff=bigtiff) as tif:
            for k, level in enumerate(mask_levels):
                tif.write(
                    _tiles(level, tile),
                    shape=shapes[k],
                    dtype=np.uint8,
                    photometric="minisblack",
                    compression="zlib",
                    subfiletype=int(k > 0),
                    resolution=resolution(k),
                    **common,
                )
    return path, mask_path


HISTOLOGY_SPLITS = ("train", "val", "test", "unlabelled")


def _histology_settings(
    n_train: int,
    n_val: int,
    n_test: int,
    n_unlabelled: int,
    tiles_per_slide: int,
    size: int,
    mpp: float,
    seed: int,
) -> dict[str, int | float]:
    """The settings of a fine-structure data set, checked (``ValueError`` naming the bad argument)."""
    for name, value, least in (
        ("n_train", n_train, 1),
        ("n_val", n_val, 0),
        ("n_test", n_test, 1),
        ("n_unlabelled", n_unlabelled, 0),
        ("tiles_per_slide", tiles_per_slide, 1),
        ("size", size, 32),
    ):
        if int(value) != value or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}.")
    if not 0.25 <= mpp <= 8:
        raise ValueError(f"mpp must be in [0.25, 8] micrometres per pixel (1-2 intended), got {mpp!r}.")
    return {
        "n_train": int(n_train),
        "n_val": int(n_val),
        "n_test": int(n_test),
        "n_unlabelled": int(n_unlabelled),
        "tiles_per_slide": int(tiles_per_slide),
        "size": int(size),
        "mpp": float(mpp),
        "seed": int(seed),
    }


def write_histology_dataset(
    out_dir: str | Path,
    n_train: int = 96,
    n_val: int = 16,
    n_test: int = 32,
    n_unlabelled: int = 0,
    tiles_per_slide: int = 8,
    size: int = 128,
    mpp: float = 1.5,
    seed: int = 0,
) -> dict[str, list[dict[str, str]]]:
    """Write the fine-structure data set (:mod:`~monai_coco.data.synthetic.histology`), split by slide.

    Layout: ``out_dir/<split>/slide007_03.jpg`` (tile 3 of slide 7, RGB JPEG at the slide's scanner
    quality) and, except in ``unlabelled``, ``slide007_03.png`` (mask, {0, 1}); splits ``train``, ``val``,
    ``test`` and, when ``n_unlabelled > 0``, ``unlabelled`` (images only, for distillation from unannotated
    slides). Each split takes ``ceil(n / tiles_per_slide)`` slides of its own, numbered on from the previous
    split's (train first), so no slide gives tiles to two splits; the last slide of a split may give fewer
    tiles. Tile ``k`` of slide ``i`` depends only on ``(seed, i, k, size, mpp)``: the same arguments write
    the same bytes.

    Args:
        out_dir: the data set folder (created; existing split folders are added to, not cleared).
        n_train, n_val, n_test, n_unlabelled: tiles per split.
        tiles_per_slide: tiles cut from each slide.
        size: tile side in pixels (>= 32).
        mpp: micrometres per pixel (1-2 intended).
        seed: the data set's seed.

    Returns:
        ``{split: [{"image": path[, "label": path]}, ...]}`` with absolute paths, for the splits written.

    Raises:
        ValueError: a count, ``size`` or ``mpp`` out of range (the message names it).
    """
    settings = _histology_settings(n_train, n_val, n_test, n_unlabelled, tiles_per_slide, size, mpp, seed)
    out = Path(out_dir).resolve()
    counts = [settings[f"n_{split}"] for split in HISTOLOGY_SPLITS]
    written: dict[str, list[dict[str, str]]] = {}
    first_slide = 0
    for split, n in zip(HISTOLOGY_SPLITS, counts):
        if n == 0:
            continue
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        items = written.setdefault(split, [])
        for i in range(n):
            slide = HistologySlide(seed, first_slide + i // tiles_per_slide, mpp, size)
            rgb, mask = slide.tile(i % tiles_per_slide)
            stem = f"slide{slide.index:03d}_{i % tiles_per_slide:02d}"
            image = folder / f"{stem}.jpg"
            Image.fromarray(rgb).save(image, format="JPEG", quality=slide.quality, subsampling=0)
            items.append({"image": str(image)})
            if split != "unlabelled":
                Image.fromarray(mask).save(folder / f"{stem}.png", format="PNG")
                items[-1]["label"] = str(folder / f"{stem}.png")
        first_slide += -(-n // tiles_per_slide)
    return written
