"""Whole-image inference: a segmentation network over tiles and pyramidal slides, writing masks and overlays.

For every image, the network runs over the windows of one MONAI ``SlidingWindowInferer`` pass over the
inference level, each window once, region by region
(:class:`~monai_coco.inference.window_grid.GridSegmenter`):

* the level is read in chunks of about ``chunk_size`` pixels a side, with no margin; a window's blended
  output reaches every pixel it covers across chunk borders, so the mask equals a single pass's;
* a window whose tissue fraction (from a thumbnail tissue mask, :mod:`monai_coco.data.tissue`) is below
  ``min_tissue_fraction`` is background without running the network; a chunk without tissue is not
  even read;
* the network runs in the config's runtime (:mod:`monai_coco.inference.runtimes`: eager torch,
  TorchScript or ONNX Runtime); window outputs are blended as softmax probabilities; the mask holds the
  argmax class index.

Scale: a slide is segmented at the network's training scale ``mpp`` exactly
(:meth:`~monai_coco.data.Slide.view`: the nearest level at least as fine, resampled by the remaining
factor), its own scale read from the file or given as ``slide_mpp``; a slide of unknown scale is refused
naming ``slide_mpp``. A ``level`` set reads that level as it is. Tiles (JPEG/PNG, small single-level TIFF
without a scale) are taken at the training scale.

Outputs, in ``output_dir``: ``<stem>_mask.png`` and ``<stem>_probability.png`` for tiles;
``<stem>_mask.ome.tif`` and ``<stem>_probability.ome.tif`` for slides: class indices and the tumour (class
1) probability (``uint8``, 255 p) as pyramidal OME-TIFFs covering the slide's level-0 extent at the scale
run, with their µm/px (:func:`~monai_coco.data.ome_pyramid.write_ome_pyramid`); ``<stem>_overlay.png``: a
thumbnail with the predicted classes drawn over it; ``<stem>_regions.geojson``: the regions of each class
traced at the mask's own resolution, as QuPath annotations in level-0 pixels with their area and mean tumour
probability (:mod:`monai_coco.inference.geojson`); and last ``<stem>_summary.json``
(:mod:`monai_coco.inference.summary`). Every file is written atomically; the summary's presence marks an
image done. While a slide runs, its maps are kept in raw files beside the outputs (dotted names, removed
when done) and read back band by band for the pyramids and the polygons, so memory stays bounded whatever
the slide's size.

Command line: ``python -m monai_coco.inference`` (:mod:`monai_coco.inference.__main__`).
"""

from __future__ import annotations

import csv
import ctypes
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
from PIL import Image
from shapely import affinity
from shapely.geometry import Polygon

from monai_coco.atomic_files import atomic_path
from monai_coco.data.datalist import mask_files
from monai_coco.data.image_check import check_images, is_broken_link, raise_first
from monai_coco.data.ome_pyramid import write_ome_pyramid
from monai_coco.data.raw_map import RawMap
from monai_coco.data.slide_io import Slide, SlideView, is_slide, read_image
from monai_coco.data.stain import HEStainNormalize
from monai_coco.data.suffixes import SLIDE_SUFFIXES, TIFF_SUFFIXES, TILE_SUFFIXES
from monai_coco.data.tissue import TissueMap, detect_tissue
from monai_coco.data.transforms import ColorChannels
from monai_coco.folder_lock import FolderLock
from monai_coco.inference.geojson import (
    QUPATH_CLASS_COLOURS,
    feret_diameter,
    mask_features,
    write_geojson,
)
from monai_coco.inference.runtimes import build_runtime, device_problem
from monai_coco.inference.scale import choose_level
from monai_coco.inference.summary import (
    InferenceResult,
    checkpoint_sha256,
    package_version,
    read_summary,
)
from monai_coco.inference.window_grid import GridSegmenter
from monai_coco.settings import SETTINGS

__all__ = [
    "SlideInferenceConfig",
    "InferenceResult",
    "scale_to_unit",
    "network_input",
    "segment_image",
    "infer_file",
    "BLEND_MODES",
    "make_segmenter",
    "list_images",
    "check_inputs",
    "output_lock",
]

_PALETTE = np.array([(0, 0, 0), *QUPATH_CLASS_COLOURS.values()], dtype=np.float32)  # Tumor first
BLEND_MODES = SETTINGS["blend_mode"].choices
logger = logging.getLogger("monai_coco.inference")


def network_input(
    grayscale: bool = False, stain_normalization: bool = False
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The training transforms' path from a ``uint8`` RGB region ``(3, h, w)`` to the network input: Macenko
    stain normalisation when asked (:class:`~monai_coco.data.HEStainNormalize`), then
    :func:`scale_to_unit`."""
    if not stain_normalization:
        return lambda image: scale_to_unit(image, grayscale)
    normalize = HEStainNormalize()
    return lambda image: scale_to_unit(normalize(image), grayscale)


def scale_to_unit(image: torch.Tensor, grayscale: bool = False) -> torch.Tensor:
    """Default network input: ``uint8`` RGB ``(3, H, W)`` scaled to ``[0, 1]`` float, ``(3 | 1, H, W)``.

    With ``grayscale``, first the rounded BT.601 luma of :class:`~monai_coco.data.transforms.ColorChannels`
    (the paper's grayscale input, as the training transforms make it).
    """
    if grayscale:
        image = ColorChannels(channels=1)(image)
    return image.float().div_(255.0)


def _default(name: str) -> object:
    return SETTINGS[name].default


@dataclass
class SlideInferenceConfig:
    """Settings of :func:`infer_file` / :func:`~monai_coco.inference.engine.infer_path`.

    Args:
        reader: slide backend, ``"auto"`` (chosen from the file:
            :func:`~monai_coco.data.slide_io.choose_reader`), ``"openslide"`` or ``"tifffile"`` (tiles are
            read whole, with Pillow or tifffile).
        level: slide level to run the network at as it is (0 = full resolution), checked against ``mpp``
            (a one-line warning when more than 1.25 times off); ``None`` (default): the slide at ``mpp``
            exactly (the nearest finer level, resampled, see the module doc), level 0 without ``mpp``.
        mpp: µm/px of the network's training tiles (recorded beside the checkpoint, and the bundle's
            ``metadata.json``). Tiles are taken to be at the training scale.
        slide_mpp: µm/px of the slides' level 0, for files that record none; given, it replaces what the
            files record, for every slide of the run.
        roi_size: sliding-window size ``(h, w)`` (an int means square); the network's input size.
        overlap: fraction of overlap between neighbouring windows, in ``[0, 0.99]``.
        sw_batch_size: windows per network call; ``None``: 1 on CPU, 4 on CUDA. On CPU one window per
            call is as fast per window as four in ONNX Runtime and faster in eager torch, with a quarter of
            the activation memory (``bundle/docs/benchmarks_deployment.md`` as of commit 610f5c5).
        blend_mode: ``"constant"`` or ``"gaussian"`` weighting of overlapping windows.
        num_classes: number of output channels of the network (>= 2, softmax over classes).
        chunk_size: side (level pixels) of the regions read and processed at once; bounds memory (one
            accumulator of about ``num_classes x chunk_size x level width`` float32). The default, 768, is
            four rows of 256² windows at overlap 0.25: less peak memory than 1024 at the same speed
            (``bundle/docs/benchmarks_deployment.md`` as of commit ad358bc).
        min_tissue_fraction: windows with less tissue than this are background without running the
            network; 0 runs every window. Slides only: tiles are taken as tissue.
        tissue_threshold: saturation threshold of the tissue mask; ``None`` = Otsu (clipped).
        thumbnail_size: longer side of the thumbnail used for the tissue mask and the overlay.
        grayscale: feed the network the luma channel (``in_channels=1``), as in the paper.
        stain_normalization: Macenko H&E normalisation of each region first
            (:class:`~monai_coco.data.HEStainNormalize`), as the training transforms did when the
            checkpoint's preprocessing record says so.
        preprocess: maps each region, a ``(3, h, w)`` ``uint8`` tensor, to the network input ``(C, h, w)``
            float; it must match the training transforms. Default :func:`network_input` of ``grayscale``
            and ``stain_normalization``.
        device: ``"cuda"``, ``"cpu"``, ...; default CUDA when available.
        amp: mixed precision for the network (CUDA only).
        runtime: ``"auto"``, ``"torch"``, ``"torchscript"`` or ``"onnxruntime"``, see
            :mod:`monai_coco.inference.runtimes` (``"auto"``: the fastest exact one installed on CPU, eager
            torch with ``amp`` on CUDA).
        num_threads: intra-op threads of the runtime; ``None`` keeps torch's current count.
        onnx_model: an ONNX file of the network (``python -m monai.bundle onnx_export``, see the bundle
            README) for runtime ``"onnxruntime"`` or ``"auto"`` on CPU to load instead of exporting the
            network in this process (less peak memory); its logits must equal the network's within 1e-4
            on a test batch, else ``ValueError``.
        overlay_alpha: opacity of the classes drawn on the overlay.
        class_names: QuPath class name of each class index (index 0, background, is not traced); a class
            without a name here is called ``"Class <index>"``. Colours: QuPath's for its built-in classes.
        min_region_pixels: GeoJSON regions and holes smaller than this many pixels of the mask are dropped
            (filled), see :mod:`monai_coco.inference.geojson`.
        checkpoint: the weights' file, named in each summary with its SHA-256 (not read otherwise).
    """

    reader: str = _default("reader")
    level: Optional[int] = _default("level")
    mpp: Optional[float] = _default("mpp")
    slide_mpp: Optional[float] = _default("slide_mpp")
    roi_size: Union[int, Sequence[int]] = (256, 256)
    overlap: float = _default("overlap")
    sw_batch_size: Optional[int] = _default("sw_batch_size")
    blend_mode: str = _default("blend_mode")
    num_classes: int = _default("num_classes")
    chunk_size: int = _default("chunk_size")
    min_tissue_fraction: float = _default("min_tissue_fraction")
    tissue_threshold: Optional[float] = _default("tissue_threshold")
    thumbnail_size: int = _default("thumbnail_size")
    grayscale: bool = _default("grayscale")
    stain_normalization: bool = _default("stain_normalization")
    preprocess: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    device: Optional[str] = None
    amp: bool = _default("amp")
    runtime: str = _default("runtime")
    num_threads: Optional[int] = _default("num_threads")
    onnx_model: Optional[Union[str, os.PathLike]] = None
    overlay_alpha: float = _default("overlay_alpha")
    class_names: Sequence[str] = ("Background", "Tumor")
    min_region_pixels: float = _default("min_region_pixels")
    checkpoint: Optional[Union[str, os.PathLike]] = None

    def __post_init__(self) -> None:
        roi = (self.roi_size, self.roi_size) if isinstance(self.roi_size, int) else tuple(self.roi_size)
        if len(roi) != 2 or any(int(r) != r or r < 1 for r in roi):
            raise ValueError(
                f"SlideInferenceConfig.roi_size must be two positive integers (h, w), got {self.roi_size!r}."
            )
        self.roi_size = (int(roi[0]), int(roi[1]))
        for field in fields(self):
            if field.name in SETTINGS:
                SETTINGS[field.name].validate(getattr(self, field.name), owner="SlideInferenceConfig.")
        owner = "SlideInferenceConfig."
        if self.chunk_size < max(self.roi_size):
            expected = f"a whole number >= roi_size {self.roi_size}"
            raise ValueError(f"{owner}chunk_size={self.chunk_size!r} is not valid; expected {expected}.")
        if self.device is not None and device_problem(self.device) is not None:
            raise ValueError(f"{owner}device={self.device!r} is not valid; expected {_DEVICES}.")
        if self.onnx_model is not None and not Path(self.onnx_model).expanduser().is_file():
            expected = "None or an existing ONNX file"
            raise ValueError(f"{owner}onnx_model={self.onnx_model!r} is not valid; expected {expected}.")
        if self.onnx_model is not None and self.runtime not in ("auto", "onnxruntime"):
            raise ValueError(
                f"SlideInferenceConfig.onnx_model is run by ONNX Runtime: runtime must be 'auto' or "
                f"'onnxruntime', got {self.runtime!r}."
            )


_DEVICES = "None (CUDA when available), 'cpu', or 'cuda' / 'cuda:N' on a machine with that GPU"


def make_segmenter(network: torch.nn.Module, config: SlideInferenceConfig) -> GridSegmenter:
    """The network in the config's runtime (:func:`~monai_coco.inference.runtimes.build_runtime`), run over
    window grids with the config's settings; build it once for many files."""
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    preprocess = config.preprocess or network_input(config.grayscale, config.stain_normalization)
    seed = torch.Generator().manual_seed(0)
    window = torch.randint(0, 256, (3, *config.roi_size), dtype=torch.uint8, generator=seed)
    batch = config.sw_batch_size or (1 if device.type == "cpu" else 4)
    example = torch.stack([preprocess(window)] * min(batch, 2))
    onnx_model = None if config.onnx_model is None else Path(config.onnx_model).expanduser()
    runtime = build_runtime(
        network, config.runtime, example, device, config.amp, config.num_threads, onnx_model=onnx_model
    )
    if runtime.name == "torch":  # the compiled runtimes were checked against it; eager torch is run here
        try:
            runtime(example.to(device))
        except RuntimeError as exc:  # e.g. 3-channel weights given grayscale windows
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(
                f"the network cannot take windows of {tuple(example.shape[1:])} (in_channels / grayscale, "
                f"roi_size): {message}"
            ) from exc
    source = f" ({onnx_model})" if onnx_model is not None and runtime.name == "onnxruntime" else ""
    logger.info("network runtime: %s%s, %d window(s) per call on %s", runtime.name, source, batch, device)
    return GridSegmenter(
        runtime,
        preprocess,
        config.roi_size,
        config.overlap,
        config.blend_mode,
        batch,
        config.num_classes,
        config.chunk_size,
        config.min_tissue_fraction,
        device,
    )


def segment_image(
    network: torch.nn.Module, image: np.ndarray, config: Optional[SlideInferenceConfig] = None
) -> np.ndarray:
    """Class-index mask ``(H, W)`` ``uint8`` of a whole in-memory RGB image ``(3, H, W)`` ``uint8``."""
    return make_segmenter(network, config or SlideInferenceConfig()).segment(image)


def _sample_grid(shape: Sequence[int], thumb_shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Level rows and columns at the centres of the thumbnail's pixels."""
    return tuple(
        np.minimum(((np.arange(t) + 0.5) * s / t).astype(np.int64), s - 1) for s, t in zip(shape, thumb_shape)
    )


def _write_overlay(
    path: Path, thumbnail: np.ndarray, labels: np.ndarray, alpha: float, colours: np.ndarray
) -> Path:
    """PNG of the ``(3, h, w)`` thumbnail with the ``(h, w)`` classes > 0 painted over it in ``colours``
    (``(num_classes, 3)``, row 0 unused), atomically."""
    rgb = np.moveaxis(thumbnail, 0, -1).astype(np.float32)
    colour = colours[labels.astype(np.int64)]
    weight = np.where(labels > 0, alpha, 0.0)[..., None]
    with atomic_path(path) as tmp:
        Image.fromarray(np.round(rgb * (1 - weight) + colour * weight).astype(np.uint8)).save(tmp)
    return path


def _thumb_size(shape: Sequence[int], max_side: int) -> tuple[int, int]:
    stride = max(1, math.ceil(max(shape) / max_side))
    return (math.ceil(shape[0] / stride), math.ceil(shape[1] / stride))


class _Sampled:
    """A smaller copy of the level's mask (pixels at the centres of a coarser grid), filled band by band."""

    def __init__(self, shape: Sequence[int], sampled_shape: Sequence[int]) -> None:
        self.rows, self.cols = _sample_grid(shape, sampled_shape)
        self.labels = np.zeros(tuple(sampled_shape), dtype=np.uint8)
        self.scale = (shape[0] / sampled_shape[0], shape[1] / sampled_shape[1])  # level pixels per pixel

    def update(self, top: int, band: np.ndarray) -> None:
        inside = (self.rows >= top) & (self.rows < top + band.shape[0])
        self.labels[inside] = band[self.rows[inside] - top][:, self.cols]


class _MapWriter:
    """Takes the ``(top, labels, probability)`` bands of the segmenter: writes both into ``(H, W)`` maps
    (:class:`~monai_coco.data.raw_map.RawMap` files in ``folder``, read back by bands; arrays in memory
    when ``folder`` is ``None``, for tiles), keeps the overlay's sampled copy of the labels and counts
    class-1 pixels."""

    def __init__(self, shape: Sequence[int], thumb_shape: Sequence[int], folder: Optional[Path], stem: str):
        self.thumb = _Sampled(shape, thumb_shape)
        self.tumour_pixels = 0
        shape = (int(shape[0]), int(shape[1]))
        self.maps = [
            np.zeros(shape, np.uint8) if folder is None else RawMap(folder / f".{stem}_{kind}.level0", shape)
            for kind in _MAPS
        ]
        self.labels, self.probability = self.maps

    def consume(self, bands: Iterator[tuple[int, np.ndarray, np.ndarray]]) -> None:
        for top, labels, probability in bands:
            self.thumb.update(top, labels)
            self.tumour_pixels += int(np.count_nonzero(labels == 1))
            for values, band in zip(self.maps, (labels, probability)):
                if isinstance(values, RawMap):
                    values.write_rows(top, band)
                else:
                    values[top : top + band.shape[0]] = band

    def remove(self) -> None:
        for values in self.maps:
            if isinstance(values, RawMap):
                values.remove()


_MAPS = ("mask", "probability")


def _slide_view(slide: Slide, config: SlideInferenceConfig, name: str) -> SlideView:
    """The slide at ``config.mpp`` exactly, or the configured level (checked against ``config.mpp``), or
    level 0 when no training scale is known; says which in one log line."""
    if config.level is not None or config.mpp is None:
        view = slide.view(level=config.level or 0)
        if config.mpp is not None:
            mpps = None if slide.mpp(0) is None else [max(slide.mpp(i)) for i in range(slide.level_count)]
            _, warning = choose_level(mpps, config.mpp, name, view.level)
            if warning:
                logger.warning(warning)
        return view
    view = slide.view(mpp=config.mpp)
    level_mpp = slide.mpp(view.level)
    how = f"resampled by {view.factor[1]:.3g}" if view.resampled else "as it is"
    logger.info(
        "%s: level %d (%.3g µm/px, %s reader) %s to %g µm/px, the network's scale: %dx%d pixels",
        name, view.level, level_mpp[1], slide.backend, how, config.mpp, view.shape[0], view.shape[1],
    )  # fmt: skip
    return view


def _classes(config: SlideInferenceConfig) -> dict[int, tuple[str, Sequence[float]]]:
    """``{class index: (QuPath name, colour)}`` of the classes traced (all but background)."""
    names = list(config.class_names)
    names += [f"Class {c}" for c in range(len(names), config.num_classes)]
    palette = _PALETTE[1:]
    return {
        c: (names[c], QUPATH_CLASS_COLOURS.get(names[c], palette[(c - 1) % len(palette)]))
        for c in range(1, config.num_classes)
    }


def _infer_one(
    segmenter: GridSegmenter, path: Path, output_dir: Path, config: SlideInferenceConfig
) -> InferenceResult:
    start = time.perf_counter()
    run_before, skipped_before = segmenter.windows_run, segmenter.windows_skipped
    slide_mpp = None
    if is_slide(path):
        mask_path = output_dir / f"{path.stem}_mask.ome.tif"
        probability_path = output_dir / f"{path.stem}_probability.ome.tif"
        with Slide(path, config.reader, config.slide_mpp) as slide:
            view = _slide_view(slide, config, path.name)
            level, shape, scale, mpp = view.level, view.shape, view.level0_scale, view.mpp
            slide_mpp = slide.mpp(0)
            thumb = slide.thumbnail(config.thumbnail_size)
            tissue_mask = detect_tissue(thumb, config.tissue_threshold)
            tissue = TissueMap(tissue_mask, shape) if config.min_tissue_fraction > 0 else None
            maps = _MapWriter(shape, thumb.shape[1:], output_dir, path.stem)
            try:
                maps.consume(segmenter.bands(view.read, shape, tissue))
            except BaseException:  # a failed slide leaves no temporary map behind
                maps.remove()
                raise
        for kind, map_path, values in (
            ("mask", mask_path, maps.labels),
            ("probability", probability_path, maps.probability),
        ):
            with atomic_path(map_path) as tmp:
                write_ome_pyramid(tmp, values, mpp, name=f"{path.stem} {kind}")
    else:
        mask_path = output_dir / f"{path.stem}_mask.png"
        probability_path = output_dir / f"{path.stem}_probability.png"
        image = read_image(path)
        level, shape, scale = 0, image.shape[1:], (1.0, 1.0)
        mpp = None if config.mpp is None else (config.mpp, config.mpp)  # tiles: at the training scale
        rows, cols = _sample_grid(shape, _thumb_size(shape, config.thumbnail_size))
        thumb = image[:, rows][:, :, cols]
        tissue_mask = detect_tissue(thumb, config.tissue_threshold)
        maps = _MapWriter(shape, thumb.shape[1:], None, path.stem)
        read = lambda top, left, height, width: image[:, top : top + height, left : left + width]  # noqa: E731
        maps.consume(segmenter.bands(read, shape))
        for map_path, values in ((mask_path, maps.labels), (probability_path, maps.probability)):
            with atomic_path(map_path) as tmp:
                Image.fromarray(values).save(tmp, format="PNG")
    classes = _classes(config)
    colours = np.array([(0, 0, 0)] + [colour for _, colour in classes.values()], dtype=np.float32)
    overlay = _write_overlay(
        output_dir / f"{path.stem}_overlay.png", thumb, maps.thumb.labels, config.overlay_alpha, colours
    )
    level0_mpp = None if mpp is None else (mpp[0] / scale[0], mpp[1] / scale[1])
    _release_freed_heap()
    features = mask_features(
        maps.labels,
        classes,
        scale=scale,
        min_area=config.min_region_pixels,
        level0_mpp=level0_mpp,
        probability=maps.probability,
    )
    geojson = write_geojson(output_dir / f"{path.stem}_regions.geojson", features)
    maps.remove()
    tumour = classes[1][0]
    foci = [f["geometry"] for f in features if f["properties"]["classification"]["name"] == tumour]
    largest = max(foci, key=lambda p: p.area, default=None)
    largest_mm = None
    if largest is not None and level0_mpp is not None:  # level-0 pixels scaled to µm per axis, then mm
        largest_mm = feret_diameter(_scaled(largest, level0_mpp)) / 1000.0
    result = InferenceResult(
        image=path,
        mask=mask_path,
        probability=probability_path,
        overlay=overlay,
        geojson=geojson,
        summary=output_dir / f"{path.stem}_summary.json",
        level=level,
        height=int(shape[0]),
        width=int(shape[1]),
        mpp=mpp,
        tissue_pixels=int(round(tissue_mask.mean() * shape[0] * shape[1])),
        tumour_pixels=maps.tumour_pixels,
        windows_run=segmenter.windows_run - run_before,
        windows_skipped=segmenter.windows_skipped - skipped_before,
        seconds=time.perf_counter() - start,
        slide_mpp=slide_mpp,
        foci=len(foci),
        largest_focus_mm=largest_mm,
        checkpoint=None if config.checkpoint is None else str(config.checkpoint),
        checkpoint_sha256=checkpoint_sha256(config.checkpoint),
        version=package_version(),
    )
    return result


def _scaled(polygon: Polygon, mpp: Sequence[float]) -> Polygon:
    """``polygon`` (level-0 pixels, x then y) in µm."""
    return affinity.scale(polygon, xfact=float(mpp[1]), yfact=float(mpp[0]), origin=(0, 0))


def _release_freed_heap() -> None:
    """Hand the memory the segmentation freed back to the system before the GeoJSON is traced (glibc's
    ``malloc_trim(0)``; elsewhere nothing). Under the deployment's malloc settings (``MALLOC_TRIM_THRESHOLD_``
    at 1 GiB, README.md) freed buffers otherwise stay resident, and the tracing's own allocations come on top:
    on a 20,000² slide at level 0, peak RSS 969 MiB with this, 1110 MiB without
    (bundle/docs/benchmarks_slide_scale.md)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):  # not glibc
        return
    trim(0)


def infer_file(
    network: Union[torch.nn.Module, GridSegmenter],
    path: Union[str, os.PathLike],
    output_dir: Union[str, os.PathLike],
    config: Optional[SlideInferenceConfig] = None,
) -> InferenceResult:
    """Segment one tile or slide and write its mask, overlay, GeoJSON regions and summary.

    Writes ``<stem>_mask.png|.ome.tif``, ``<stem>_probability.png|.ome.tif``, ``<stem>_overlay.png``,
    ``<stem>_regions.geojson`` (:mod:`~monai_coco.inference.geojson`) and last ``<stem>_summary.json``
    (:mod:`~monai_coco.inference.summary`). They are made in ``output_dir/.<stem>.partial/`` and moved into
    place together once all are made, so a run that fails or is killed leaves an earlier run's outputs of
    ``stem`` as they were (only a kill within those few renames leaves them without their summary, which
    marks them incomplete).

    Args:
        network: maps ``(B, C, h, w)`` windows to logits ``(B, num_classes, h, w)``; moved to the
            config's device, put in ``eval()`` mode and wrapped in the config's runtime. Or a segmenter
            from :func:`make_segmenter` (the runtime built once for many files).
        path: a JPEG/PNG/TIFF tile or a TIFF/SVS slide (see :func:`~monai_coco.data.slide_io.is_slide`).
        output_dir: created if needed.
        config: settings, default :class:`SlideInferenceConfig()`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: naming ``path``: an unsupported or unreadable file, or a level it does not have.
    """
    config = config or SlideInferenceConfig()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist.")
    output_dir = Path(output_dir)
    if output_dir.resolve() == path.parent.resolve():
        raise ValueError(
            f"output folder {output_dir} is the folder of {path.name}: choose another one, so that no "
            "<stem>_mask file beside the image (e.g. a ground-truth mask) is overwritten."
        )
    segmenter = network if isinstance(network, GridSegmenter) else make_segmenter(network, config)
    output_dir.mkdir(parents=True, exist_ok=True)  # after the runtime is built: a refused one writes nothing
    staging = _staging(output_dir, path)  # one process writes a given image's outputs
    _remove_staging(staging)  # what a killed run left, and a killed summary write's temporary file
    for partial in output_dir.glob(f".{path.stem}_summary.*.json"):  # atomic_path's .<name>.<random><suffix>
        if partial.is_file():
            partial.unlink(missing_ok=True)
    staging.mkdir()
    try:
        made = _infer_one(segmenter, path, staging, config)
        (output_dir / made.summary.name).unlink(missing_ok=True)  # from here, incomplete until the summary
        moved = {name: output_dir / getattr(made, name).name for name in _OUTPUTS}
        for name, final in moved.items():
            os.replace(getattr(made, name), final)
        result = replace(made, summary=output_dir / made.summary.name, **moved)
        result.write()
    finally:
        _remove_staging(staging)
    return result


def remove_staging(output_dir: Union[str, os.PathLike], images: Sequence[Path]) -> None:
    """Remove the staging folders that killed runs left in ``output_dir`` for ``images`` (an image found
    done keeps its outputs; one to do makes its folder afresh). Call it holding the folder's
    :func:`output_lock`, for the images this process writes."""
    for image in images:
        _remove_staging(_staging(Path(output_dir), image))


def _staging(output_dir: Path, image: Path) -> Path:
    """The folder where :func:`infer_file` makes ``image``'s outputs before moving them into place."""
    return output_dir / f".{image.stem}.partial"


def _remove_staging(staging: Path) -> None:
    """Remove a staging folder (or a file of its name in the way), if there."""
    if staging.is_dir() and not staging.is_symlink():
        shutil.rmtree(staging, ignore_errors=True)
    else:
        staging.unlink(missing_ok=True)


_OUTPUTS = ("mask", "probability", "overlay", "geojson")  # InferenceResult's files, the summary last


def unfinished(
    images: Sequence[Path],
    output_dir: Union[str, os.PathLike],
    overwrite: bool = False,
    checkpoint: Optional[Union[str, os.PathLike]] = None,
) -> list[Path]:
    """The ``images`` whose outputs in ``output_dir`` are not complete (no readable ``<stem>_summary.json``,
    which :func:`infer_file` writes last) or, given the ``checkpoint`` file, were made by another one (their
    summary's ``checkpoint_sha256`` differs: a rerun with a new model never keeps the old one's results
    silently; one log line says how many), in order; all of them with ``overwrite``. An image whose stem's
    outputs are another image's is not redone (that would replace them) but named in a warning line."""
    output_dir = Path(output_dir)
    sha = checkpoint_sha256(checkpoint)
    todo, stale = [], 0
    for image in images:
        summary = read_summary(output_dir / f"{image.stem}_summary.json")
        other = summary is not None and sha is not None and summary.get("checkpoint_sha256") != sha
        stale += other and not overwrite
        if overwrite or summary is None or other:
            todo.append(image)
        elif Path(str(summary.get("image"))).resolve() != image.resolve():  # another image of that stem
            message = "%s: %s holds the outputs of %s under the same name, kept (not redone): give this "
            logger.warning(message + "image another output folder, or overwrite to replace them", image,
                           output_dir, summary.get("image"))  # fmt: skip
    if stale:
        message = "%d image(s) in %s were segmented by another checkpoint than %s: redone"
        logger.info(message, stale, output_dir, checkpoint)
    return todo


def list_images(source: Union[str, os.PathLike], suffixes: Optional[Sequence[str]] = None) -> list[Path]:
    """The images of a folder (not recursive, sorted by name) or of a CSV list.

    Args:
        source: a folder, or a ``.csv`` file whose column ``image`` (else its first column) holds paths,
            relative ones taken from the CSV's folder.
        suffixes: image suffixes taken from a folder (default: all supported). Files named ``*_mask.*`` or
            ``*_overlay.*`` (inference outputs) are never taken, nor the masks of a folder in the flat
            training layout (``<id>.png`` beside ``<id>.jpg``, :func:`~monai_coco.data.datalist.mask_files`);
            the ``.dcm`` files of a folder are one DICOM-WSI slide, taken by its first instance.

    Raises:
        FileNotFoundError: ``source`` does not exist, or a CSV list names files that do not (all named).
        ValueError: naming ``source``: no image in it, a CSV without rows, or two images of one stem (they
            would write the same output files).
    """
    source = Path(source)
    if source.suffix.lower() == ".csv" and source.is_file():
        try:
            with open(source, newline="", encoding="utf-8-sig") as f:  # -sig: Excel's "CSV UTF-8" BOM
                rows = list(csv.reader(f))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ValueError(f"slide list {source} is not a UTF-8 CSV text file ({exc}).") from exc
        if not rows or not rows[0]:
            raise ValueError(f"slide list {source} is empty; expected a column 'image' of slide paths.")
        column = rows[0].index("image") if "image" in rows[0] else 0
        body = rows[1:] if "image" in rows[0] else rows
        for number, row in enumerate(body, start=len(rows) - len(body) + 1):
            if row and len(row) <= column:
                raise ValueError(
                    f"slide list {source}, line {number}, has {len(row)} field(s); expected a slide path in "
                    f"column {column + 1} ('image')."
                )
        images = [source.parent / row[column] for row in body if row and row[column].strip()]
        if not images:
            raise ValueError(f"slide list {source} has no slide path in column {column}.")
        missing = [str(p) for p in images if not p.is_file()]
        if missing:  # before any work: a cohort that names them could never complete
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise FileNotFoundError(f"slide list {source} names {len(missing)} missing file(s): {shown}.")
        return _one_per_stem(images, source)
    if not source.is_dir():
        raise FileNotFoundError(f"input {source} is neither a folder nor a .csv list of slides.")
    wanted = tuple(
        "." + s.lower().lstrip(".") for s in (suffixes or TILE_SUFFIXES + TIFF_SUFFIXES + SLIDE_SUFFIXES)
    )
    masks = mask_files(source)  # masks of the flat training layout (<id>.png beside <id>.jpg) are no inputs
    images = sorted(
        p
        for p in source.iterdir()
        if (p.is_file() or is_broken_link(p))  # a broken link is named by check_inputs, not skipped
        and p.suffix.lower() in wanted
        and not p.stem.endswith(("_mask", "_overlay"))
        and p not in masks
    )
    dicom = [p for p in images if p.suffix.lower() == ".dcm"]
    images = [p for p in images if p not in dicom[1:]]  # a DICOM-WSI folder is one slide: OpenSlide opens
    if not images:  # the whole series from any one of its instances
        raise ValueError(f"folder {source} holds no image with suffix {wanted}.")
    return _one_per_stem(images, source)


def _one_per_stem(images: list[Path], source: Path) -> list[Path]:
    """``images`` if no two share a stem (outputs are named by stem), else ``ValueError`` naming both."""
    stems: dict[str, Path] = {}
    for image in images:
        if image.stem in stems:
            listed = source.suffix.lower() == ".csv"
            choose = "list it once" if listed else "keep one, or choose by suffix (image_suffixes, --suffix)"
            raise ValueError(f"{stems[image.stem].name} and {image.name} in {source} would write the same "
                             f"outputs ({image.stem}_mask.*); {choose}.")  # fmt: skip
        stems[image.stem] = image
    return images


def check_inputs(images: Sequence[Path], config: SlideInferenceConfig, source: str) -> None:
    """Check every image of a run before any work, as every input image is checked
    (:func:`~monai_coco.data.image_check.image_problems`: a tile decoded whole, its colour model and bit
    depth; a slide opened with ``config.reader``, and its µm/px known, from the file or ``config.slide_mpp``,
    when it is read at ``config.mpp``).

    Raises:
        FileNotFoundError, ValueError: the first problem, naming its file, with the count of the others in
            ``source`` (:func:`~monai_coco.data.image_check.raise_first`).
    """
    scaled = config.mpp is not None and config.level is None
    options = {"reader": config.reader, "slide_mpp": config.slide_mpp, "needs_scale": scaled}
    raise_first(check_images(images, decode=True, max_tile_pixels=None, **options), source)


def output_lock(output_dir: Union[str, os.PathLike], worker: int = 0) -> FolderLock:
    """The lock that one inference run (or cohort worker ``worker``) holds on ``output_dir`` while it writes
    there, so that a second run on the same folder is refused in one line (its outputs and temporary maps
    would collide)."""
    name = ".inference.lock" if worker == 0 else f".inference.{worker}.lock"
    instead = "give this run another output folder"
    return FolderLock(output_dir, "an inference run", name, instead)
