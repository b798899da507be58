"""Whole-image inference: a segmentation network over tiles and pyramidal slides, writing masks and overlays.

For every image, MONAI's ``SlidingWindowInferer`` runs the network over one level, region by region:

* the level is cut into chunks (``chunk_size`` pixels a side); each chunk is read with a margin of at
  least one window, so that every window covering the chunk lies inside the region read and on the same
  global window grid — chunked and whole-image results agree, and seams are invisible;
* a window whose tissue fraction (from a thumbnail tissue mask, :mod:`monai_coco.data.tissue`) is below
  ``min_tissue_fraction`` is background without running the network; a chunk without tissue is not
  even read;
* window outputs are blended as softmax probabilities; the mask holds the argmax class index.

Outputs, in ``output_dir``: ``<stem>_mask.png`` for tiles (JPEG/PNG/single-level TIFF, read whole),
``<stem>_mask.tif`` for slides (tiled, lossless pyramid with the slide's level sizes from the inference
level down, written band by band, see :func:`~monai_coco.data.slide_io.write_mask_pyramid`), and
``<stem>_overlay.png``: a thumbnail with the predicted classes drawn over it.

Command line: ``python -m monai_coco.inference`` (:mod:`monai_coco.inference.__main__`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
from monai.inferers import SlidingWindowInferer
from PIL import Image

from monai_coco.data.slide_io import SLIDE_BACKENDS, Slide, is_slide, read_image, write_mask_pyramid
from monai_coco.data.suffixes import SLIDE_SUFFIXES, TIFF_SUFFIXES, TILE_SUFFIXES
from monai_coco.data.tissue import TissueMap, detect_tissue
from monai_coco.data.transforms import ColorChannels

__all__ = [
    "SlideInferenceConfig",
    "InferenceResult",
    "scale_to_unit",
    "segment_image",
    "infer_file",
    "infer_path",
    "BLEND_MODES",
]

_PALETTE = np.array([(0, 0, 0), (0, 230, 0), (255, 215, 0), (0, 190, 255), (255, 0, 255)], dtype=np.float32)
BLEND_MODES = ("constant", "gaussian")
RegionReader = Callable[[int, int, int, int], np.ndarray]


def scale_to_unit(image: torch.Tensor, grayscale: bool = False) -> torch.Tensor:
    """Default network input: ``uint8`` RGB ``(3, H, W)`` scaled to ``[0, 1]`` float, ``(3 | 1, H, W)``.

    With ``grayscale``, first the rounded BT.601 luma of :class:`~monai_coco.data.transforms.ColorChannels`
    (the paper's grayscale input, as the training transforms make it).
    """
    if grayscale:
        image = ColorChannels(channels=1)(image)
    return image.float().div_(255.0)


@dataclass
class SlideInferenceConfig:
    """Settings of :func:`infer_file` / :func:`infer_path`.

    Args:
        reader: slide backend, ``"tifffile"`` or ``"openslide"`` (tiles are read whole, with Pillow or
            tifffile).
        level: slide level to run the network at (0 = full resolution).
        roi_size: sliding-window size ``(h, w)`` (an int means square); the network's input size.
        overlap: fraction of overlap between neighbouring windows, in ``[0, 1)``.
        sw_batch_size: windows per network call.
        blend_mode: ``"constant"`` or ``"gaussian"`` weighting of overlapping windows.
        num_classes: number of output channels of the network (>= 2, softmax over classes).
        chunk_size: side (level pixels) of the regions read and processed at once; bounds memory.
        min_tissue_fraction: windows with less tissue than this are background without running the
            network; 0 runs every window. Slides only: tiles are taken as tissue.
        tissue_threshold: saturation threshold of the tissue mask; ``None`` = Otsu (clipped).
        thumbnail_size: longer side of the thumbnail used for the tissue mask and the overlay.
        grayscale: feed the network the luma channel (``in_channels=1``), as in the paper.
        preprocess: maps each region, a ``(3, h, w)`` ``uint8`` tensor, to the network input ``(C, h, w)``
            float; it must match the training transforms. Default :func:`scale_to_unit` (``[0, 1]``).
        device: ``"cuda"``, ``"cpu"``, ...; default CUDA when available.
        amp: mixed precision for the network (CUDA only).
        overlay_alpha: opacity of the classes drawn on the overlay.
    """

    reader: str = "tifffile"
    level: int = 0
    roi_size: Union[int, Sequence[int]] = (256, 256)
    overlap: float = 0.25
    sw_batch_size: int = 4
    blend_mode: str = "constant"
    num_classes: int = 2
    chunk_size: int = 2048
    min_tissue_fraction: float = 0.05
    tissue_threshold: Optional[float] = None
    thumbnail_size: int = 1024
    grayscale: bool = False
    preprocess: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    device: Optional[str] = None
    amp: bool = True
    overlay_alpha: float = 0.45

    def __post_init__(self) -> None:
        roi = (self.roi_size, self.roi_size) if isinstance(self.roi_size, int) else tuple(self.roi_size)
        if len(roi) != 2 or any(int(r) != r or r < 1 for r in roi):
            raise ValueError(
                f"SlideInferenceConfig.roi_size must be two positive integers (h, w), got {self.roi_size!r}."
            )
        self.roi_size = (int(roi[0]), int(roi[1]))
        checks = {
            "reader": (self.reader in SLIDE_BACKENDS, f"one of {SLIDE_BACKENDS}"),
            "level": (self.level >= 0, ">= 0"),
            "overlap": (0 <= self.overlap < 1, "in [0, 1)"),
            "sw_batch_size": (self.sw_batch_size >= 1, ">= 1"),
            "blend_mode": (self.blend_mode in BLEND_MODES, f"one of {BLEND_MODES}"),
            "num_classes": (self.num_classes >= 2, ">= 2"),
            "chunk_size": (self.chunk_size >= max(self.roi_size), f">= roi_size {self.roi_size}"),
            "min_tissue_fraction": (0 <= self.min_tissue_fraction <= 1, "in [0, 1]"),
            "thumbnail_size": (self.thumbnail_size >= 16, ">= 16"),
            "overlay_alpha": (0 <= self.overlay_alpha <= 1, "in [0, 1]"),
        }
        for name, (ok, expected) in checks.items():
            if not ok:
                raise ValueError(
                    f"SlideInferenceConfig.{name} must be {expected}, got {getattr(self, name)!r}."
                )


@dataclass(frozen=True)
class InferenceResult:
    """What :func:`infer_file` wrote for one image.

    ``windows_run``/``windows_skipped``: sliding windows given to the network / set to background by the
    tissue mask (windows in chunk margins are counted once per chunk that reads them).
    """

    image: Path
    mask: Path
    overlay: Path
    windows_run: int
    windows_skipped: int


class _TissueWindowPredictor:
    """``SlidingWindowInferer`` predictor (``with_coord=True``): the network's softmax on tissue windows,
    background probability 1 on the others. Tracks where the current chunk lies in its level."""

    def __init__(self, network: torch.nn.Module, config: SlideInferenceConfig, device: torch.device) -> None:
        self.network = network
        self.num_classes = config.num_classes
        self.min_fraction = config.min_tissue_fraction
        self.autocast = config.amp and device.type == "cuda"
        self.tissue: Optional[TissueMap] = None
        self.origin = (0, 0)  # top-left level pixel of the chunk given to the inferer
        self.pad = (0, 0)  # padding the inferer adds before a chunk smaller than a window
        self.windows_run = 0
        self.windows_skipped = 0

    def _has_tissue(self, coord: Sequence[slice]) -> bool:
        if self.tissue is None:
            return True
        ys, xs = coord[-2], coord[-1]
        height, width = self.tissue.level_shape
        top = min(max(self.origin[0] + ys.start - self.pad[0], 0), height - 1)
        left = min(max(self.origin[1] + xs.start - self.pad[1], 0), width - 1)
        bottom = min(max(self.origin[0] + ys.stop - self.pad[0], top + 1), height)
        right = min(max(self.origin[1] + xs.stop - self.pad[1], left + 1), width)
        return self.tissue.fraction(top, left, bottom, right) >= self.min_fraction

    def __call__(self, windows: torch.Tensor, coords: Sequence[Sequence[slice]]) -> torch.Tensor:
        keep = torch.tensor([self._has_tissue(c) for c in coords], device=windows.device)
        probs = torch.zeros(windows.shape[0], self.num_classes, *windows.shape[2:], device=windows.device)
        probs[:, 0] = 1.0
        n_keep = int(keep.sum())
        self.windows_skipped += windows.shape[0] - n_keep
        if n_keep:
            with torch.autocast("cuda", enabled=self.autocast):
                logits = self.network(windows[keep])
            expected = (n_keep, self.num_classes, *windows.shape[2:])
            if tuple(logits.shape) != expected:
                raise ValueError(
                    f"the network returned logits of shape {tuple(logits.shape)} for windows "
                    f"{tuple(windows[keep].shape)}; expected {expected} (num_classes={self.num_classes})."
                )
            probs[keep] = torch.softmax(logits.float(), dim=1)
            self.windows_run += n_keep
        return probs


class _ChunkedSegmenter:
    """Runs the sliding-window inference over a level chunk by chunk and yields the labels by row bands."""

    def __init__(self, network: torch.nn.Module, config: SlideInferenceConfig) -> None:
        device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.device = device
        self.network = network.to(device).eval()
        self.preprocess = config.preprocess or (lambda image: scale_to_unit(image, config.grayscale))
        self.predictor = _TissueWindowPredictor(self.network, config, device)
        self.inferer = SlidingWindowInferer(
            roi_size=config.roi_size,
            sw_batch_size=config.sw_batch_size,
            overlap=config.overlap,
            mode=config.blend_mode,
            sw_device=device,
            device=device,
            with_coord=True,
        )
        self.roi = config.roi_size
        # MONAI's window grid: starts at multiples of the stride (the last one shifted to the border).
        # Chunks and margins on multiples of the stride, margins >= one window: exact seams.
        stride = [max(int(r * (1 - config.overlap)), 1) for r in self.roi]
        self.chunk = [math.ceil(config.chunk_size / s) * s for s in stride]
        self.margin = [math.ceil(r / s) * s for r, s in zip(self.roi, stride)]

    @torch.inference_mode()
    def _labels(self, region: np.ndarray, origin: tuple[int, int]) -> np.ndarray:
        """Class indices ``(h, w)`` of a ``(3, h, w)`` region whose top-left level pixel is ``origin``."""
        x = self.preprocess(torch.tensor(region))[None].to(self.device)
        self.predictor.origin = origin
        self.predictor.pad = tuple(max(r - s, 0) // 2 for r, s in zip(self.roi, region.shape[1:]))
        probs = self.inferer(x, self.predictor)
        return probs[0].argmax(dim=0).to(torch.uint8).cpu().numpy()

    def bands(
        self, read_region: RegionReader, shape: Sequence[int], tissue: Optional[TissueMap] = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """``(top, labels)`` row bands of the level, top to bottom; ``labels`` is ``(h, W)`` ``uint8``.

        Args:
            read_region: ``(top, left, height, width) -> (3, height, width)`` ``uint8`` of the level.
            shape: ``(H, W)`` of the level.
            tissue: tissue map of the level; ``None`` runs every window.
        """
        height, width = shape
        (ch, cw), (mh, mw) = self.chunk, self.margin
        self.predictor.tissue = tissue
        for top in range(0, height, ch):
            band = np.zeros((min(ch, height - top), width), dtype=np.uint8)
            for left in range(0, width, cw):
                y0, y1 = max(top - mh, 0), min(top + ch + mh, height)
                x0, x1 = max(left - mw, 0), min(left + cw + mw, width)
                if (
                    tissue is not None
                    and self.predictor.min_fraction > 0
                    and tissue.count(y0, x0, y1, x1) == 0
                ):
                    continue  # no window here can reach the tissue fraction: background, nothing read
                labels = self._labels(read_region(y0, x0, y1 - y0, x1 - x0), (y0, x0))
                inner = labels[top - y0 : top - y0 + band.shape[0], left - x0 : left - x0 + cw]
                band[:, left : left + inner.shape[1]] = inner
            yield top, band

    def segment(self, image: np.ndarray) -> np.ndarray:
        """Class indices ``(H, W)`` of a whole in-memory ``(3, H, W)`` ``uint8`` image (every window run)."""
        read = lambda top, left, height, width: image[:, top : top + height, left : left + width]  # noqa: E731
        return np.concatenate([band for _, band in self.bands(read, image.shape[1:])], axis=0)


def segment_image(
    network: torch.nn.Module, image: np.ndarray, config: Optional[SlideInferenceConfig] = None
) -> np.ndarray:
    """Class-index mask ``(H, W)`` ``uint8`` of a whole in-memory RGB image ``(3, H, W)`` ``uint8``."""
    return _ChunkedSegmenter(network, config or SlideInferenceConfig()).segment(image)


def _sample_grid(shape: Sequence[int], thumb_shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Level rows and columns at the centres of the thumbnail's pixels."""
    return tuple(
        np.minimum(((np.arange(t) + 0.5) * s / t).astype(np.int64), s - 1) for s, t in zip(shape, thumb_shape)
    )


def _write_overlay(path: Path, thumbnail: np.ndarray, labels: np.ndarray, alpha: float) -> Path:
    """PNG of the ``(3, h, w)`` thumbnail with the ``(h, w)`` classes > 0 painted over it."""
    rgb = np.moveaxis(thumbnail, 0, -1).astype(np.float32)
    colour = _PALETTE[1 + (labels.astype(np.int64) - 1) % (len(_PALETTE) - 1)]
    weight = np.where(labels > 0, alpha, 0.0)[..., None]
    Image.fromarray(np.round(rgb * (1 - weight) + colour * weight).astype(np.uint8)).save(path)
    return path


def _thumb_size(shape: Sequence[int], max_side: int) -> tuple[int, int]:
    stride = max(1, math.ceil(max(shape) / max_side))
    return (math.ceil(shape[0] / stride), math.ceil(shape[1] / stride))


def _infer_tile(
    segmenter: _ChunkedSegmenter, path: Path, output_dir: Path, config: SlideInferenceConfig
) -> tuple[Path, Path]:
    image = read_image(path)
    labels = segmenter.segment(image)
    mask_path = output_dir / f"{path.stem}_mask.png"
    Image.fromarray(labels).save(mask_path)
    rows, cols = _sample_grid(labels.shape, _thumb_size(labels.shape, config.thumbnail_size))
    thumb = image[:, rows][:, :, cols]
    overlay = _write_overlay(
        output_dir / f"{path.stem}_overlay.png", thumb, labels[rows][:, cols], config.overlay_alpha
    )
    return mask_path, overlay


def _infer_slide(
    segmenter: _ChunkedSegmenter, path: Path, output_dir: Path, config: SlideInferenceConfig
) -> tuple[Path, Path]:
    level = config.level
    with Slide(path, config.reader) as slide:
        slide.check_level(level)
        shape = slide.level_shapes[level]
        thumb = slide.thumbnail(config.thumbnail_size)
        tissue = None
        if config.min_tissue_fraction > 0:
            tissue = TissueMap(detect_tissue(thumb, config.tissue_threshold), shape)
        rows, cols = _sample_grid(shape, thumb.shape[1:])
        thumb_labels = np.zeros(thumb.shape[1:], dtype=np.uint8)

        def bands() -> Iterator[np.ndarray]:
            read = lambda top, left, height, width: slide.read(level, top, left, height, width)  # noqa: E731
            for top, band in segmenter.bands(read, shape, tissue):
                inside = (rows >= top) & (rows < top + band.shape[0])
                thumb_labels[inside] = band[rows[inside] - top][:, cols]
                yield band

        mpp0 = slide.mpp()
        downsamples = [slide.downsample(i) for i in range(level, slide.level_count)]
        mpp = None if mpp0 is None else [(mpp0[0] * d, mpp0[1] * d) for d in downsamples]
        mask_path = write_mask_pyramid(
            output_dir / f"{path.stem}_mask.tif", bands(), slide.level_shapes[level:], mpp=mpp
        )
    overlay = _write_overlay(
        output_dir / f"{path.stem}_overlay.png", thumb, thumb_labels, config.overlay_alpha
    )
    return mask_path, overlay


def infer_file(
    network: torch.nn.Module,
    path: Union[str, os.PathLike],
    output_dir: Union[str, os.PathLike],
    config: Optional[SlideInferenceConfig] = None,
) -> InferenceResult:
    """Segment one tile or slide and write ``<stem>_mask.png|.tif`` and ``<stem>_overlay.png``.

    Args:
        network: maps ``(B, C, h, w)`` windows to logits ``(B, num_classes, h, w)``; moved to the
            config's device and put in ``eval()`` mode.
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
    output_dir.mkdir(parents=True, exist_ok=True)
    segmenter = _ChunkedSegmenter(network, config)
    run = _infer_slide if is_slide(path) else _infer_tile
    mask, overlay = run(segmenter, path, output_dir, config)
    predictor = segmenter.predictor
    return InferenceResult(path, mask, overlay, predictor.windows_run, predictor.windows_skipped)


def infer_path(
    network: torch.nn.Module,
    path: Union[str, os.PathLike],
    output_dir: Union[str, os.PathLike],
    config: Optional[SlideInferenceConfig] = None,
    suffixes: Optional[Sequence[str]] = None,
) -> list[InferenceResult]:
    """:func:`infer_file` on one file, or on every image of a folder (not recursive, sorted by name).

    Args:
        suffixes: image suffixes taken from a folder (default: all supported). In the authors' layout,
            where ``<id>.png`` masks lie beside ``<id>.jpg`` images, pass ``(".jpg",)``. Files named
            ``*_mask.*`` or ``*_overlay.*`` (this module's outputs) are never taken.
    """
    path = Path(path)
    if path.is_file():
        return [infer_file(network, path, output_dir, config)]
    if not path.is_dir():
        raise FileNotFoundError(f"input {path} is neither a file nor a folder.")
    wanted = tuple(
        "." + s.lower().lstrip(".") for s in (suffixes or TILE_SUFFIXES + TIFF_SUFFIXES + SLIDE_SUFFIXES)
    )
    images = sorted(
        p
        for p in path.iterdir()
        if p.is_file() and p.suffix.lower() in wanted and not p.stem.endswith(("_mask", "_overlay"))
    )
    if not images:
        raise ValueError(f"folder {path} holds no image with suffix {wanted}.")
    return [infer_file(network, p, output_dir, config) for p in images]
