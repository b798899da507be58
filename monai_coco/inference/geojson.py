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
from scipy import ndimage
from shapely import STRtree, to_geojson
from shapely.geometry import Polygon, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from monai_coco.atomic_files import atomic_path
from monai_coco.settings import SETTINGS

__all__ = ["mask_features", "write_geojson", "feret_diameter", "MIN_REGION_PIXELS", "QUPATH_CLASS_COLOURS"]

MIN_REGION_PIXELS = SETTINGS["min_region_pixels"].default  # monai_coco.settings
TRACE_BAND_PIXELS = 1 << 21  # pixels of the mask traced (and of the probability read) at a time: memory
Region = tuple[Polygon, float, int]  # (polygon, sum of the probability over its pixels, its pixel count)
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


def _regions(
    labels: Rows, value: int, transform: Affine, band: int, probability: Rows | None
) -> list[Region]:
    """The 4-connected regions of ``value`` with their probability sums and pixel counts.

    Traced band by band (``band`` rows): each band's components (``scipy.ndimage.label``, 4-connected) are
    counted and summed (``bincount``) and traced by component (``rasterio.features.shapes``); the pieces
    that reach a border between two bands are merged (``unary_union``: they share pixel edges exactly),
    their sums and counts added, each piece found in its merged region by a point inside it (``STRtree``).
    """
    done, reaching = [], []
    height = labels.shape[0]
    borders = set(range(band, height, band))  # mask rows between two bands
    for top in range(0, height, band):
        mask = np.asarray(labels[top : top + band]) == value
        if not mask.any():
            continue
        components, count = ndimage.label(mask)
        flat = components.ravel()
        pixels = np.bincount(flat, minlength=count + 1)
        sums = np.zeros(count + 1)
        if probability is not None:
            weights = np.asarray(probability[top : top + band]).ravel()
            sums = np.bincount(flat, weights=weights, minlength=count + 1)
        at = transform * Affine.translation(0, top)
        traced = rasterio.features.shapes(components, mask=mask, connectivity=4, transform=at)
        for geometry, component in traced:
            piece = shape(geometry)
            rows = {round(y / transform.e) for y in piece.bounds[1::2]}  # exact pixel rows, any scale
            region = (piece, float(sums[int(component)]), int(pixels[int(component)]))
            (reaching if rows & borders else done).append(region)
    if reaching:
        merged = unary_union([piece for piece, _, _ in reaching])
        groups = list(getattr(merged, "geoms", [merged]))
        tree = STRtree(groups)
        totals = np.zeros((len(groups), 2))
        for piece, total, pixels in reaching:
            group = tree.query(piece.representative_point(), predicate="within")[0]
            totals[group] += (total, pixels)
        done += [(group, float(total), int(pixels)) for group, (total, pixels) in zip(groups, totals)]
    return done


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
            or a row-sliced map); given, each feature measures ``Mean tumour probability`` (over the
            region's own pixels: a filled speck-sized hole does not count).
        band: rows traced (and read) at a time; default: :data:`TRACE_BAND_PIXELS` pixels' worth.

    Returns:
        GeoJSON ``Feature`` mappings, class by class, larger regions first; each ``"geometry"`` is a shapely
        ``Polygon`` (its ``__geo_interface__`` is the GeoJSON geometry; :func:`write_geojson` writes it).
    """
    if len(labels.shape) != 2:
        raise ValueError(f"labels must be a (h, w) mask, got shape {labels.shape}.")
    band = band or max(16, TRACE_BAND_PIXELS // max(1, labels.shape[1]))
    transform = Affine.scale(float(scale[1]), float(scale[0]))
    unit = float(scale[0]) * float(scale[1]) / pixel_area  # level-0 area per unit of min_area
    features = []
    for value, (name, colour) in classes.items():
        kept = []
        for polygon, total, pixels in _regions(labels, int(value), transform, band, probability):
            holes = [ring for ring in polygon.interiors if Polygon(ring).area >= min_area * unit]
            polygon = Polygon(polygon.exterior, holes)
            if polygon.area >= min_area * unit:
                kept.append((polygon, total / max(pixels, 1)))
        kept.sort(key=lambda region: -region[0].area)
        for polygon, mean in kept:
            measurements = {}
            if level0_mpp is not None:
                area = polygon.area * float(level0_mpp[0]) * float(level0_mpp[1])
                measurements["Area µm^2"] = round(area, 2)
            if probability is not None:
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
