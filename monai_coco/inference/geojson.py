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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio.features
from affine import Affine
from shapely.geometry import Polygon, mapping, shape
from shapely.ops import unary_union

from monai_coco.checkpoints import atomic_path

__all__ = ["mask_features", "write_geojson", "feret_diameter", "MIN_REGION_PIXELS", "QUPATH_CLASS_COLOURS"]

MIN_REGION_PIXELS = 64.0
TRACE_BAND_PIXELS = 1 << 23  # pixels of the mask traced (and of the probability read) at a time: memory
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


def _mean_values(polygons: Sequence[Polygon], values: Rows, transform: Affine, band: int) -> list[float]:
    """Mean of ``values`` (``(h, w)``) over the pixels whose centres lie in each polygon (in the coordinates
    ``transform`` maps pixels to): one pass over ``values``, ``band`` rows at a time, each band's polygons
    rasterised at once (their index per pixel) and summed with ``bincount``."""
    sums, counts = np.zeros(len(polygons) + 1), np.zeros(len(polygons) + 1)
    bounds = np.array([p.bounds for p in polygons]).reshape(-1, 4)
    to_pixels = ~transform
    rows_min = np.minimum(*[(to_pixels * (bounds[:, 0], bounds[:, y]))[1] for y in (1, 3)])
    rows_max = np.maximum(*[(to_pixels * (bounds[:, 0], bounds[:, y]))[1] for y in (1, 3)])
    for top in range(0, values.shape[0], band):
        bottom = min(top + band, values.shape[0])
        here = np.flatnonzero((rows_max > top) & (rows_min < bottom))
        if not len(here):
            continue
        index = rasterio.features.rasterize(
            [(polygons[i], int(i) + 1) for i in here], out_shape=(bottom - top, values.shape[1]),
            transform=transform * Affine.translation(0, top), fill=0, dtype="int32",
        )  # fmt: skip
        band_values = np.asarray(values[top:bottom], dtype=np.float64).ravel()
        sums += np.bincount(index.ravel(), weights=band_values, minlength=len(sums))
        counts += np.bincount(index.ravel(), minlength=len(counts))
    return [float(s / c) if c else 0.0 for s, c in zip(sums[1:], counts[1:])]


def _polygons(labels: Rows, value: int, transform: Affine, band: int) -> list[Polygon]:
    """The 4-connected regions of ``value``: traced band by band (``band`` rows); the pieces that reach a
    border between two bands are merged (``unary_union``: they share pixel edges exactly), the others are
    whole regions already."""
    pieces, reaching = [], []
    height = labels.shape[0]
    borders = set(range(band, height, band))  # mask rows between two bands
    for top in range(0, height, band):
        mask = np.asarray(labels[top : top + band]) == value
        if mask.any():
            at = transform * Affine.translation(0, top)
            traced = rasterio.features.shapes(mask.astype(np.uint8), mask=mask, connectivity=4, transform=at)
            for geometry, _ in traced:
                piece = shape(geometry)
                _, y0, _, y1 = piece.bounds
                rows = {round(y / transform.e) for y in (y0, y1)}  # exact pixel rows, whatever the scale
                (reaching if rows & borders else pieces).append(piece)
    if reaching:
        merged = unary_union(reaching)
        pieces += list(getattr(merged, "geoms", [merged]))
    return pieces


def mask_features(
    labels: np.ndarray,
    classes: Mapping[int, tuple[str, Sequence[int]]],
    scale: Sequence[float] = (1.0, 1.0),
    pixel_area: float = 1.0,
    min_area: float = MIN_REGION_PIXELS,
    level0_mpp: Sequence[float] | None = None,
    probability: Rows | None = None,
    band: int | None = None,
) -> list[dict[str, Any]]:
    """QuPath annotation features of the regions of each class in ``classes``.

    Args:
        labels: class indices ``(h, w)``, integer: an array, or a map read by row slices
            (:class:`~monai_coco.data.raw_map.RawMap`); traced ``band`` rows at a time, so memory is bounded
            by the band and the polygons, not by the mask.
        classes: ``{class index: (QuPath class name, (r, g, b) colour 0..255)}``, e.g.
            ``{1: ("Tumor", (200, 0, 0))}``.
        scale: level-0 pixels per mask pixel ``(y, x)``.
        pixel_area: area of one mask pixel in the unit of ``min_area`` (1 when ``min_area`` is in mask
            pixels; ``d**2`` when the mask is an inference-level mask sampled every ``d`` pixels and
            ``min_area`` is in inference-level pixels).
        min_area: regions, and holes, smaller than this are dropped (filled); see the module docstring.
        level0_mpp: µm/px ``(y, x)`` of level 0; given, each feature measures ``Area µm^2``.
        probability: ``(h, w)`` ``uint8`` tumour probability (``255 p``) on the grid of ``labels`` (an array
            or a row-sliced map); given, each feature measures ``Mean tumour probability`` (of the pixels
            whose centres it covers).
        band: rows traced (and read) at a time; default: :data:`TRACE_BAND_PIXELS` pixels' worth.

    Returns:
        GeoJSON ``Feature`` mappings with ``Polygon`` geometries, class by class, larger regions first.
    """
    if len(labels.shape) != 2:
        raise ValueError(f"labels must be a (h, w) mask, got shape {labels.shape}.")
    band = band or max(16, TRACE_BAND_PIXELS // max(1, labels.shape[1]))
    transform = Affine.scale(float(scale[1]), float(scale[0]))
    unit = float(scale[0]) * float(scale[1]) / pixel_area  # level-0 area per unit of min_area
    features = []
    for value, (name, colour) in classes.items():
        kept = []
        for polygon in _polygons(labels, int(value), transform, band):
            holes = [ring for ring in polygon.interiors if Polygon(ring).area >= min_area * unit]
            polygon = Polygon(polygon.exterior, holes)
            if polygon.area >= min_area * unit:
                kept.append(polygon)
        kept.sort(key=lambda p: -p.area)
        means = {}
        if probability is not None and kept:
            means = dict(zip(map(id, kept), _mean_values(kept, probability, transform, band)))
        for polygon in kept:
            measurements = {}
            if level0_mpp is not None:
                area = polygon.area * float(level0_mpp[0]) * float(level0_mpp[1])
                measurements["Area µm^2"] = round(area, 2)
            if probability is not None:
                measurements["Mean tumour probability"] = round(means[id(polygon)] / 255.0, 4)
            properties = {
                "objectType": "annotation",
                "classification": {"name": name, "color": [int(c) for c in colour]},
            }
            if measurements:
                properties["measurements"] = measurements
            features.append({"type": "Feature", "geometry": mapping(polygon), "properties": properties})
    return features


def write_geojson(path: str | os.PathLike, features: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``features`` as a GeoJSON ``FeatureCollection`` to ``path``, atomically."""
    path = Path(path)
    collection = {"type": "FeatureCollection", "features": list(features)}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(collection))
    return path
