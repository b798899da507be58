"""A slide's scale (µm/px at level 0) from wherever its file keeps it.

Scanners and converters keep the scale in different places; each is read here, first match wins:

1. OME-XML ``Pixels@PhysicalSizeX/Y`` with ``PhysicalSizeXUnit``/``YUnit`` (OME schema 2016-06; default
   unit µm). OME-TIFFs that bfconvert or QuPath write often leave the TIFF resolution tags empty (or unit
   NONE), so the XML is the only record.
2. Aperio's ImageDescription ``Aperio Image Library ...|AppMag = 20|MPP = 0.4990|...`` (the SVS layout:
   ``|``-separated ``key = value`` fields after the first line, as OpenSlide's aperio reader parses them).
3. OpenSlide's ``openslide.mpp-x/y`` properties (what OpenSlide derived from the vendor's metadata).
4. ImageJ's (and Fiji's) ImageDescription ``ImageJ=...`` with ``unit=micron`` (or ``um``, ``\\u00B5m``,
   ``nm``, ``mm``, ...): the TIFF resolution tags then hold pixels per that unit, their ``ResolutionUnit``
   NONE (ImageJ's ``TiffEncoder``; tifffile's ``imagej_metadata`` reads the description).
5. The TIFF resolution tags, ``XResolution``/``YResolution`` in pixels per ``ResolutionUnit``:
   centimetre (``1e4 / res`` µm/px) or inch (``25400 / res``). An inch resolution coarser than
   :data:`MAX_INCH_MPP` µm/px (below 508 dpi) is taken for an image editor's screen or print default (72,
   96, 300 dpi), not a microscope's scale, and ignored; so are unit NONE and absent tags.

A scale outside ``[MIN_MPP, MAX_INCH_MPP]`` (0.01–50 µm/px) from any source is ignored (``None``): slides
are scanned at about 0.1–1 µm/px, and a network's training scale is at most a few tens of µm/px; a scale
far below the optical limit would ask for an absurdly large resampled image.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any, Optional

import tifffile

__all__ = [
    "MAX_INCH_MPP",
    "MIN_MPP",
    "aperio_mpp",
    "imagej_mpp",
    "ome_mpp",
    "openslide_mpp",
    "resolution_mpp",
    "tiff_mpp",
]

MAX_INCH_MPP = 50.0
"""The coarsest scale taken from a file, µm/px (508 dpi); coarser inch resolutions are editors' defaults."""
MIN_MPP = 0.01
"""The finest scale taken from a file or given, µm/px: 20 times below light microscopy's resolution limit."""

_UNIT_IN_UM = {"pm": 1e-6, "nm": 1e-3, "µm": 1.0, "um": 1.0, "\u03bcm": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6,
               "Å": 1e-4, "in": 25400.0}  # fmt: skip
# ImageJ's unit names beyond those (its Calibration: "micron", the escaped "\u00B5m" of its descriptions)
_IMAGEJ_UNITS = {**_UNIT_IN_UM, "micron": 1.0, "microns": 1.0, "\\u00b5m": 1.0, "nanometer": 1e-3,
                 "millimeter": 1e3, "centimeter": 1e4, "inch": 25400.0}  # fmt: skip

Mpp = Optional[tuple[float, float]]
_APERIO_MPP = re.compile(r"\|\s*MPP\s*=\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)")


def _valid(y: float, x: float) -> Mpp:
    ok = all(math.isfinite(v) and MIN_MPP <= v <= MAX_INCH_MPP for v in (y, x))
    return (float(y), float(x)) if ok else None


def ome_mpp(ome_xml: Optional[str]) -> Mpp:
    """``(y, x)`` µm/px of the first OME ``Image``'s ``Pixels``, or ``None`` when absent or unparsable."""
    if not ome_xml:
        return None
    try:
        root = ET.fromstring(ome_xml)
    except ET.ParseError:
        return None
    pixels = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None
    values = []
    for axis in ("Y", "X"):
        size, unit = pixels.get(f"PhysicalSize{axis}"), pixels.get(f"PhysicalSize{axis}Unit", "µm")
        if size is None or unit not in _UNIT_IN_UM:
            return None
        try:
            values.append(float(size) * _UNIT_IN_UM[unit])
        except ValueError:
            return None
    return _valid(*values)


def aperio_mpp(description: Optional[str]) -> Mpp:
    """``(y, x)`` µm/px of an Aperio ImageDescription's ``MPP = `` field, or ``None``."""
    if not description or not description.startswith("Aperio"):
        return None
    match = _APERIO_MPP.search(description)
    return None if match is None else _valid(float(match.group(1)), float(match.group(1)))


def imagej_mpp(metadata: Optional[Mapping[str, Any]], y_resolution: float, x_resolution: float) -> Mpp:
    """``(y, x)`` µm/px of an ImageJ TIFF: its resolutions (pixels per unit) in the ``unit`` of its
    description's metadata (tifffile's ``imagej_metadata``), or ``None`` (no metadata, unit ``pixel`` or
    unknown, a zero resolution, an inch resolution of an editor's default as :func:`resolution_mpp` says)."""
    unit = str((metadata or {}).get("unit", "")).strip().lower()
    if unit not in _IMAGEJ_UNITS or not (y_resolution and x_resolution):
        return None
    if _IMAGEJ_UNITS[unit] == 25400.0:
        return resolution_mpp(y_resolution, x_resolution, "inch")
    return _valid(_IMAGEJ_UNITS[unit] / float(y_resolution), _IMAGEJ_UNITS[unit] / float(x_resolution))


def resolution_mpp(y_resolution: float, x_resolution: float, unit: Any) -> Mpp:
    """``(y, x)`` µm/px of TIFF resolutions (pixels per ``unit``: 3/"centimeter"/"cm", 2/"inch"), or
    ``None`` (unit NONE or unknown, a zero resolution, or an editor's inch default, see the module doc)."""
    name = str(getattr(unit, "name", unit)).lower()
    units = {"3": 1e4, "centimeter": 1e4, "cm": 1e4, "2": 25400.0, "inch": 25400.0, "in": 25400.0}
    per_unit = units.get(name)
    if per_unit is None or not (y_resolution and x_resolution):
        return None
    return _valid(per_unit / float(y_resolution), per_unit / float(x_resolution))


def openslide_mpp(properties: Mapping[str, str]) -> Mpp:
    """``(y, x)`` µm/px from OpenSlide's properties: ``openslide.mpp-y/x``, else the ``tiff.*Resolution``
    tags (:func:`resolution_mpp`), else ``None``."""
    try:
        if properties.get("openslide.mpp-x") and properties.get("openslide.mpp-y"):
            return _valid(float(properties["openslide.mpp-y"]), float(properties["openslide.mpp-x"]))
        if properties.get("tiff.XResolution") and properties.get("tiff.YResolution"):
            return resolution_mpp(
                float(properties["tiff.YResolution"]),
                float(properties["tiff.XResolution"]),
                properties.get("tiff.ResolutionUnit", ""),
            )
    except ValueError:
        return None
    return None


def tiff_mpp(tif: tifffile.TiffFile) -> Mpp:
    """``(y, x)`` µm/px of a TIFF's first image series at full resolution: OME-XML, Aperio description,
    ImageJ description, then resolution tags (see the module doc), or ``None``."""
    if tif.is_ome:
        mpp = ome_mpp(tif.ome_metadata)
        if mpp is not None:
            return mpp
    page = tif.series[0].levels[0].keyframe
    mpp = aperio_mpp(tif.pages[0].description)
    if mpp is not None:
        return mpp
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None
    (xn, xd), (yn, yd) = tags["XResolution"].value, tags["YResolution"].value
    if not (xd and yd):
        return None
    if tif.is_imagej:
        return imagej_mpp(tif.imagej_metadata, yn / yd, xn / xd)
    unit = tags["ResolutionUnit"].value if "ResolutionUnit" in tags else 2  # the TIFF default: inch
    return resolution_mpp(yn / yd, xn / xd, int(unit))
