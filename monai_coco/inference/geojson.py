"""Predicted regions as GeoJSON polygons that QuPath imports as classified annotations.

A class-index mask is traced into polygons by ``rasterio.features.shapes`` (GDAL's polygonizer, pixel edges,
4-connectivity, holes as interior rings) and checked with ``shapely``. Coordinates are level-0 pixels of the
slide, x to the right and y down, as QuPath's image coordinates: a mask pixel ``(row, col)`` covers
``[col * scale_x, (col + 1) * scale_x] x [row * scale_y, (row + 1) * scale_y]``.

Each region is one GeoJSON ``Feature`` with a ``Polygon`` geometry and QuPath's annotation properties
(QuPath 0.3+ GeoJSON, as its "Export objects as GeoJSON" writes them)::

    {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [...]},
     "properties": {"objectType": "annotation",
                    "classification": {"name": "Tumor", "color": [200, 0, 0]},
                    "measurements": {"Area µm^2": 1234.5, "Mean tumour probability": 0.91}}}

The class colours are QuPath's built-in ones (``PathClass`` defaults: Tumor 200,0,0; Stroma 150,200,150;
Immune cells 160,90,160; Necrosis 50,50,50; Other 255,200,0), so an imported region keeps the colour QuPath
would draw for its class anyway. ``Area µm^2`` is QuPath's own measurement name; both measurements are
given when their inputs are (the slide's µm/px; the probability map).

in a ``FeatureCollection``; QuPath's *File > Import objects from file* (or drag and drop) reads it.

Tiny specks: a region whose area (holes subtracted) is below ``min_area`` (in mask pixels of the inference
level, see :func:`mask_features`) is dropped, and a hole below it is filled: at the default of 64 pixels
(an 8 x 8 square: 16 x 16 µm at the 2 µm/px training scale, a few cells), isolated false-positive pixels
and pinholes do not clutter the annotation list.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import rasterio.features
from affine import Affine
from shapely import STRtree, clip_by_rect, is_empty, to_geojson
from shapely.geometry import Polygon, box, shape
from shapely.geometry.base import BaseGeometry

from monai_coco.atomic_files import atomic_path
from monai_coco.data.raw_map import RawMap
from monai_coco.settings import SETTINGS

__all__ = ["mask_features", "write_geojson", "feret_diameter", "MIN_REGION_PIXELS", "QUPATH_CLASS_COLOURS"]

MIN_REGION_PIXELS = SETTINGS["min_region_pixels"].default  # monai_coco.settings
TRACE_BAND_PIXELS = 1 << 21  # pixels of the probability map read (and burnt) at a time: memory
Labels = np.ndarray | RawMap  # a (h, w) class mask: in memory, or in a raw file read by GDAL
Rows = Any  # a (h, w) array, or any map read by row slices with a .shape (monai_coco.data.raw_map.RawMap)
QUPATH_CLASS_COLOURS = {
    "Tumor": (200, 0, 0),
    "Stroma": (150, 200, 150),
    "Immune cells": (160, 90, 160),
    "Necrosis": (50, 50, 50),
    "Other": (255, 200, 0),
}
"""QuPath's built-in class colours (``qupath.lib.objects.classes.PathClass``), by class name."""


def feret_diameter(polygon: Polygon) -> float:
    """The maximum Feret diameter (longest distance between two points) of ``polygon``, in its units:
    the largest distance between two vertices of its convex hull, one row of distances at a time."""
    hull = np.asarray(polygon.convex_hull.exterior.coords if polygon.area > 0 else polygon.coords)
    return float(max((np.hypot(*(hull - point).T).max() for point in hull), default=0.0))


def _filled(polygon: Polygon, min_area: float) -> Polygon | None:
    """``polygon`` with its holes below ``min_area`` filled, or ``None`` when it is itself below it."""
    holes = [ring for ring in polygon.interiors if Polygon(ring).area >= min_area]
    polygon = Polygon(polygon.exterior, holes)
    return polygon if polygon.area >= min_area else None


@contextmanager
def _band(labels: Labels, transform: Affine) -> Iterator[tuple[Any, Any]]:
    """``labels`` and its non-background mask as ``rasterio.features.shapes`` reads them: an array as it is
    (integers as ``int32``), a :class:`~monai_coco.data.raw_map.RawMap` as a GDAL raster band over its file
    (a VRT raw band with ``transform`` as its geotransform, which ``shapes`` takes from a band; its own mask:
    ``uint8``, 0 is background), read by GDAL's polygonizer a scanline at a time through a 16 MB block
    cache, never whole."""
    if not isinstance(labels, RawMap):
        labels = np.asarray(labels)
        limits = (labels.min(), labels.max()) if labels.size and labels.dtype != np.uint8 else (0, 0)
        if not -(2**31) <= limits[0] <= limits[1] < 2**31:
            raise ValueError("labels must be class indices within int32, got values beyond it.")
        labels = labels.astype(np.uint8 if labels.dtype == np.uint8 else np.int32, copy=False)
        yield labels, labels != 0
        return
    height, width = labels.shape
    vrt = (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">'
        f"<GeoTransform>{', '.join(map(repr, transform.to_gdal()))}</GeoTransform>"
        '<VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand">'
        f'<SourceFilename relativetoVRT="0">{escape(str(labels.path.resolve()))}</SourceFilename>'
        f"<ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>{width}</LineOffset>"
        "</VRTRasterBand></VRTDataset>"
    )
    with rasterio.Env(GDAL_CACHEMAX=16), rasterio.open(vrt) as dataset:
        yield rasterio.band(dataset, 1), rasterio.band(dataset, 1)


def _region_sums(traced: Sequence[Polygon], transform: Affine, probability: Rows, band: int) -> np.ndarray:
    """The sum of ``probability`` over each traced region's own pixels (its holes excluded), ``(n,)``:
    band by band, each region clipped to the band (``shapely.clip_by_rect``) and burnt into it by pixel
    centre (``rasterio.features.rasterize``: the pixels it was traced from), summed by ``bincount``."""
    height, width = probability.shape
    sums = np.zeros(len(traced) + 1)
    regions = np.asarray(traced, dtype=object)
    tree = STRtree(regions)
    for top in range(0, height, band):
        rows = min(band, height - top)
        rect = (0.0, top * transform.e, width * transform.a, (top + rows) * transform.e)
        hits = tree.query(box(*rect))
        if not len(hits):
            continue
        clipped = clip_by_rect(regions[hits], *rect)
        met = ~is_empty(clipped)  # not only the bounding boxes
        hits, clipped = hits[met], clipped[met]
        ids = rasterio.features.rasterize(
            zip(clipped, hits + 1),
            (rows, width),
            transform=transform * Affine.translation(0, top),
            dtype="int32",
        )
        weights = np.asarray(probability[top : top + rows], dtype=np.float64).ravel()
        sums += np.bincount(ids.ravel(), weights=weights, minlength=len(sums))
    return sums[1:]


def mask_features(
    labels: Labels,
    classes: Mapping[int, tuple[str, Sequence[int]]],
    scale: Sequence[float] = (1.0, 1.0),
    min_area: float = MIN_REGION_PIXELS,
    level0_mpp: Sequence[float] | None = None,
    probability: Rows | None = None,
    band: int | None = None,
) -> list[dict[str, Any]]:
    """QuPath annotation features of the regions of each class in ``classes``.

    Args:
        labels: class indices ``(h, w)``, integer: an array, or a :class:`~monai_coco.data.raw_map.RawMap`
            traced from its file by GDAL a scanline at a time, so memory is bounded by the regions being
            traced and the kept polygons, not by the mask; specks are dropped as they are traced.
        classes: ``{class index: (QuPath class name, (r, g, b) colour 0..255)}``, e.g.
            ``{1: ("Tumor", (200, 0, 0))}``.
        scale: level-0 pixels per mask pixel ``(y, x)``.
        min_area: regions, and holes, smaller than this many mask pixels are dropped (filled); see the
            module docstring.
        level0_mpp: µm/px ``(y, x)`` of level 0; given, each feature measures ``Area µm^2``.
        probability: ``(h, w)`` ``uint8`` tumour probability (``255 p``) on the grid of ``labels`` (an array
            or a row-sliced map); given, each feature measures ``Mean tumour probability`` (over the
            region's own pixels: a filled speck-sized hole does not count).
        band: rows of ``probability`` read at a time; default: :data:`TRACE_BAND_PIXELS` pixels' worth.

    Returns:
        GeoJSON ``Feature`` mappings, class by class, larger regions first; each ``"geometry"`` is a shapely
        ``Polygon`` (its ``__geo_interface__`` is the GeoJSON geometry; :func:`write_geojson` writes it).

    Raises:
        ValueError: ``labels`` not 2D or with values beyond int32; ``probability`` on another grid.
    """
    if len(labels.shape) != 2:
        raise ValueError(f"labels must be a (h, w) mask, got shape {labels.shape}.")
    if probability is not None and tuple(probability.shape) != tuple(labels.shape):
        grids = f"{tuple(labels.shape)}, got {tuple(probability.shape)}"
        raise ValueError(f"probability must be on the grid of labels {grids}.")
    if 0 in labels.shape:
        return []
    band = band or max(16, TRACE_BAND_PIXELS // max(1, labels.shape[1]))
    transform = Affine.scale(float(scale[1]), float(scale[0]))
    min_level0 = min_area * float(scale[0]) * float(scale[1])  # in the polygons' (level-0) units
    traced: dict[int, list[Polygon]] = {int(value): [] for value in classes}
    with _band(labels, transform) as (source, mask):
        for geometry, value in rasterio.features.shapes(
            source, mask=mask, connectivity=4, transform=transform
        ):
            if int(value) in traced:
                piece = shape(geometry)
                if Polygon(piece.exterior).area >= min_level0:  # specks dropped as they come
                    traced[int(value)].append(piece)
    features = []
    for value, (name, colour) in classes.items():
        pieces = traced.pop(int(value))
        means = [None] * len(pieces)
        if probability is not None:
            sums = _region_sums(pieces, transform, probability, band)
            pixel = float(scale[0]) * float(scale[1])  # level-0 area of a mask pixel
            means = [float(total) * pixel / piece.area for total, piece in zip(sums, pieces)]  # area: pixels
        kept = [
            (p, m) for p, m in zip((_filled(piece, min_level0) for piece in pieces), means) if p is not None
        ]
        kept.sort(key=lambda region: -region[0].area)
        for polygon, mean in kept:
            measurements = {}
            if level0_mpp is not None:
                area = polygon.area * float(level0_mpp[0]) * float(level0_mpp[1])
                measurements["Area µm^2"] = round(area, 2)
            if mean is not None:
                measurements["Mean tumour probability"] = round(mean / 255.0, 4)
            properties = {
                "objectType": "annotation",
                "classification": {"name": name, "color": [int(c) for c in colour]},
            }
            if measurements:
                properties["measurements"] = measurements
            features.append({"type": "Feature", "geometry": polygon, "properties": properties})
    return features


def write_geojson(path: str | os.PathLike, features: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``features`` as a GeoJSON ``FeatureCollection`` to ``path``, atomically, one feature at a time
    (a shapely geometry written by ``shapely.to_geojson``, a mapping by ``json``)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write('{"type": "FeatureCollection", "features": [')
        for i, feature in enumerate(features):
            geometry = feature["geometry"]
            text = to_geojson(geometry) if isinstance(geometry, BaseGeometry) else json.dumps(geometry)
            rest = json.dumps({k: v for k, v in feature.items() if k != "geometry"}, ensure_ascii=False)
            f.write(("," if i else "") + rest[:-1] + ', "geometry": ' + text + "}")
        f.write("]}")
    return path
