"""Predicted regions as GeoJSON polygons that QuPath imports as classified annotations.

A class-index mask is traced into polygons by ``rasterio.features.shapes`` (GDAL's polygonizer, pixel edges,
4-connectivity, holes as interior rings) and checked with ``shapely``. Coordinates are level-0 pixels of the
slide, x to the right and y down, as QuPath's image coordinates: a mask pixel ``(row, col)`` covers
``[col * scale_x, (col + 1) * scale_x] x [row * scale_y, (row + 1) * scale_y]``.

Each region is one GeoJSON ``Feature`` with a ``Polygon`` geometry and QuPath's annotation properties
(QuPath 0.3+ GeoJSON, as its "Export objects as GeoJSON" writes them)::

    {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [...]},
     "properties": {"objectType": "annotation", "classification": {"name": "Tumor", "color": [r, g, b]}}}

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

from monai_coco.checkpoints import atomic_path

__all__ = ["mask_features", "write_geojson", "MIN_REGION_PIXELS"]

MIN_REGION_PIXELS = 64.0


def _polygons(labels: np.ndarray, value: int, transform: Affine) -> list[Polygon]:
    mask = labels == value
    if not mask.any():
        return []
    pieces = rasterio.features.shapes(mask.astype(np.uint8), mask=mask, connectivity=4, transform=transform)
    return [shape(geometry) for geometry, _ in pieces]


def mask_features(
    labels: np.ndarray,
    classes: Mapping[int, tuple[str, Sequence[int]]],
    scale: Sequence[float] = (1.0, 1.0),
    pixel_area: float = 1.0,
    min_area: float = MIN_REGION_PIXELS,
) -> list[dict[str, Any]]:
    """QuPath annotation features of the regions of each class in ``classes``.

    Args:
        labels: class indices ``(h, w)``, integer.
        classes: ``{class index: (QuPath class name, (r, g, b) colour 0..255)}``, e.g.
            ``{1: ("Tumor", (200, 0, 0))}``.
        scale: level-0 pixels per mask pixel ``(y, x)``.
        pixel_area: area of one mask pixel in the unit of ``min_area`` (1 when ``min_area`` is in mask
            pixels; ``d**2`` when the mask is an inference-level mask sampled every ``d`` pixels and
            ``min_area`` is in inference-level pixels).
        min_area: regions, and holes, smaller than this are dropped (filled); see the module docstring.

    Returns:
        GeoJSON ``Feature`` mappings with ``Polygon`` geometries, class by class, larger regions first.
    """
    if labels.ndim != 2:
        raise ValueError(f"labels must be a (h, w) mask, got shape {labels.shape}.")
    transform = Affine.scale(float(scale[1]), float(scale[0]))
    unit = float(scale[0]) * float(scale[1]) / pixel_area  # level-0 area per unit of min_area
    features = []
    for value, (name, colour) in classes.items():
        kept = []
        for polygon in _polygons(labels, int(value), transform):
            holes = [ring for ring in polygon.interiors if Polygon(ring).area >= min_area * unit]
            polygon = Polygon(polygon.exterior, holes)
            if polygon.area >= min_area * unit:
                kept.append(polygon)
        for polygon in sorted(kept, key=lambda p: -p.area):
            features.append(
                {
                    "type": "Feature",
                    "geometry": mapping(polygon),
                    "properties": {
                        "objectType": "annotation",
                        "classification": {"name": name, "color": [int(c) for c in colour]},
                    },
                }
            )
    return features


def write_geojson(path: str | os.PathLike, features: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``features`` as a GeoJSON ``FeatureCollection`` to ``path``, atomically."""
    path = Path(path)
    collection = {"type": "FeatureCollection", "features": list(features)}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(collection))
    return path
