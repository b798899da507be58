"""GeoJSON regions read back with shapely, per-slide summaries, and the scale-aware choice of level."""

import json
import logging

import numpy as np
import pytest
import tifffile
from shapely.geometry import shape
from shapely.ops import unary_union

from monai_coco.inference import SlideInferenceConfig, infer_file
from monai_coco.inference.geojson import mask_features
from monai_coco.inference.scale import choose_level
from monai_coco.inference.summary import read_summary

from .test_whole_slide import PURPLE, ColourNet, _scene, _write_slide

TUMOR = {1: ("Tumor", (200, 0, 0))}


def _union(features):
    return unary_union([shape(f["geometry"]) for f in features])


def test_regions_keep_holes_drop_specks_and_match_the_mask_area():
    labels = np.zeros((60, 80), np.uint8)
    labels[10:50, 10:50] = 1
    labels[20:30, 20:30] = 0  # a 100-pixel hole: kept
    labels[40:42, 40:42] = 0  # a 4-pixel pinhole: filled
    labels[5:7, 70:72] = 1  # a 4-pixel speck: dropped
    labels[30:60, 60:80] = 1  # a second region touching the border
    features = mask_features(labels, TUMOR, scale=(2.0, 2.0), min_area=16)
    assert [f["geometry"].geom_type for f in features] == ["Polygon", "Polygon"]
    for f in features:
        assert f["type"] == "Feature"
        assert f["properties"] == {
            "objectType": "annotation",
            "classification": {"name": "Tumor", "color": [200, 0, 0]},
        }
    square, corner = (shape(f["geometry"]) for f in features)
    assert square.is_valid and corner.is_valid
    assert len(square.interiors) == 1 and square.area == (40 * 40 - 100) * 4  # level-0 pixels: x2 a side
    assert square.bounds == (20.0, 20.0, 100.0, 100.0)  # (minx, miny, maxx, maxy): columns are x
    assert corner.bounds == (120.0, 60.0, 160.0, 120.0) and corner.area == 30 * 20 * 4
    kept = labels.copy()
    kept[40:42, 40:42], kept[5:7, 70:72] = 1, 0
    assert _union(features).area == kept.sum() * 4


def test_slide_gets_qupath_geojson_and_a_summary_agreeing_with_its_mask(tmp_path):
    img, expected = _scene()
    path = _write_slide(tmp_path / "case.tif", img, mpp=0.5)
    config = SlideInferenceConfig(roi_size=32, chunk_size=64, device="cpu", runtime="torch", level=1)
    result = infer_file(ColourNet(), path, tmp_path / "out", config)
    collection = json.loads(result.geojson.read_text())
    assert result.geojson.name == "case_regions.geojson" and collection["type"] == "FeatureCollection"
    assert len(collection["features"]) == 2  # the two purple blocks
    with tifffile.TiffFile(result.mask) as tif:
        mask = tif.series[0].levels[0].asarray()  # level 1: 128 x 192
    regions = _union(collection["features"])
    assert regions.area == pytest.approx(mask.sum() * 4, rel=1e-9)  # level-0 pixels: 2 x 2 per mask pixel
    assert regions.bounds == pytest.approx((96, 64, 352, 224), abs=4)  # the blocks in level-0 pixels

    summary = read_summary(result.summary)
    assert summary == json.loads(json.dumps(result.row()))
    assert result.level == summary["level"] == 1 and (result.height, result.width) == (128, 192)
    assert result.mpp == pytest.approx((1.0, 1.0))  # 0.5 um/px at level 0, x2
    assert result.tumour_pixels == int(mask.sum()) == pytest.approx(int(expected[::2, ::2].sum()), rel=0.05)
    tissue = ((img[::2, ::2] == PURPLE).all(-1) | (img[::2, ::2] != 240).any(-1)).sum()
    assert result.tissue_pixels == pytest.approx(tissue, rel=0.05)
    assert summary["tumour_area_mm2"] == pytest.approx(mask.sum() * 1e-6, rel=5e-3)  # 1 um^2 a pixel
    assert summary["tumour_fraction"] == pytest.approx(mask.sum() / result.tissue_pixels, rel=5e-3)
    assert len(str(summary["tumour_fraction"]).lstrip("0.")) <= 3  # 3 significant digits
    assert summary["slide_mpp_x"] == pytest.approx(0.5) and summary["version"]
    # foci: the two purple blocks; the larger, 64x96 level-0 pixels of 0.5 um: its diagonal, in mm
    assert summary["foci"] == 2
    assert summary["largest_focus_mm"] == pytest.approx(np.hypot(64, 96) * 0.5e-3, rel=0.03)
    for feature in collection["features"]:
        measured = feature["properties"]["measurements"]
        area = shape(feature["geometry"]).area * 0.25  # level-0 pixels of 0.5 x 0.5 um
        assert measured["Area µm^2"] == pytest.approx(area, rel=1e-6)
        assert measured["Mean tumour probability"] > 0.9  # purple: 20 * (160 - 90) / 255 - 0.5 logits
    assert summary["windows_run"] + summary["windows_skipped"] == 5 * 8  # 128 x 192 level, 32-px windows
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left behind


def test_tile_summary_has_no_mm2_without_a_scale(tmp_path):
    from PIL import Image

    img, expected = _scene(96, 160)
    Image.fromarray(img).save(tmp_path / "tile.png")
    config = SlideInferenceConfig(roi_size=32, chunk_size=64, device="cpu", runtime="torch")
    result = infer_file(ColourNet(), tmp_path / "tile.png", tmp_path / "out", config)
    assert result.tumour_pixels == expected.sum() and result.tumour_area_mm2 is None
    assert _union(json.loads(result.geojson.read_text())["features"]).area == expected.sum()


@pytest.mark.parametrize(
    "mpps, train, level, expected_level, warns",
    [
        ([0.25, 0.5, 1.0, 2.0], 0.5, None, 1, None),
        ([0.25, 1.0, 4.0], 2.0, None, 1, "factor 0.50"),  # log-nearest: 1 and 4 are equally far; first
        ([0.25, 0.5, 1.0, 2.0], 1.1, None, 2, None),
        ([0.25, 0.5], 2.0, None, 1, "level 1 is at 0.5 µm/px, but the network was trained at 2 µm/px"),
        ([0.25, 0.5], 0.5, 0, 0, "factor 0.50"),
        (None, 2.0, None, 0, "does not record its µm/px"),
    ],
)
def test_choose_level_by_scale(mpps, train, level, expected_level, warns):
    chosen, warning = choose_level(mpps, train, "s.tif", level)
    assert chosen == expected_level
    assert (warning is None) if warns is None else (warns in warning and "s.tif" in warning)


def test_slide_is_seen_at_the_training_scale_exactly_and_said_so(tmp_path, caplog):
    """A level at the training scale is read as it is; a scale between levels (1.5) or beyond the last (4)
    is the nearest finer level resampled, with no warning; a level forced far from it warns."""
    img, _ = _scene()
    path = _write_slide(tmp_path / "case.tif", img, mpp=0.5)  # levels at 0.5 and 1 um/px
    for mpp, level, shape_, how in [(1.0, 1, (128, 192), "as it is"), (1.5, 1, (85, 128), "resampled by 1.5"),
                                    (4.0, 1, (32, 48), "resampled by 4")]:  # fmt: skip
        config = SlideInferenceConfig(roi_size=32, device="cpu", runtime="torch", level=None, mpp=mpp)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="monai_coco.inference"):
            result = infer_file(ColourNet(), path, tmp_path / f"out{mpp}", config)
        assert result.level == level and (result.height, result.width) == shape_
        assert result.mpp == pytest.approx((0.5 * 256 / shape_[0], 0.5 * 384 / shape_[1]))
        assert f"case.tif: level {level} (1 µm/px" in caplog.text and f"{how} to {mpp:g} µm/px" in caplog.text
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    forced = SlideInferenceConfig(roi_size=32, device="cpu", runtime="torch", level=0, mpp=4.0)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="monai_coco.inference"):
        assert infer_file(ColourNet(), path, tmp_path / "forced", forced).level == 0
    assert len(caplog.records) == 1 and "trained at 4 µm/px" in caplog.text
    with pytest.raises(ValueError, match="SlideInferenceConfig.level"):
        SlideInferenceConfig(level=-1)


@pytest.mark.parametrize(
    "tissue, tumour, fraction", [(1000, 250, 0.25), (239279, 243534, 1.0), (0, 5, 0.0), (10, 0, 0.0)]
)
def test_tumour_fraction_is_of_the_tissue_and_at_most_one(tissue, tumour, fraction):
    """More tumour than thumbnail tissue (a benchmark student's sparse slide: 243,534 against 239,279) is
    all of it, not 1.018."""
    from pathlib import Path

    from monai_coco.inference.summary import InferenceResult

    paths = [Path(name) for name in ("a.tif", "m.tif", "p.tif", "o.png", "r.geojson", "s.json")]
    result = InferenceResult(*paths, 0, 100, 100, None, tissue, tumour, 1, 0, 0.1)
    assert result.tumour_fraction == fraction and result.row()["tumour_fraction"] == fraction


def test_regions_traced_from_a_raw_map_s_file_equal_the_array_s(tmp_path):
    """A mask in a raw file, traced by GDAL from the file, gives the regions of the same mask in memory:
    same count, same union; the mean probability, read 16 rows at a time (regions clipped at the band
    borders), is each region's own."""
    from scipy import ndimage

    from monai_coco.data.raw_map import RawMap

    rng = np.random.default_rng(0)
    labels = (ndimage.gaussian_filter(rng.random((150, 110)), 4) > 0.5).astype(np.uint8)
    labels[40:44, 10:14] = 1  # a 16-pixel square, 2 rows each side of the band border at 42
    raw = RawMap(tmp_path / "mask.raw", labels.shape)
    for top in range(0, 150, 37):  # written in bands of another height
        raw.write_rows(top, labels[top : top + 37])
    probability = np.where(labels == 1, 230, 10).astype(np.uint8)
    whole = mask_features(labels, TUMOR, min_area=4, probability=probability)
    banded = mask_features(raw, TUMOR, min_area=4, probability=probability, band=16)
    assert len(whole) == len(banded) > 3
    assert _union(whole).symmetric_difference(_union(banded)).area == 0
    for f in banded:
        measured = f["properties"]["measurements"]
        assert measured["Mean tumour probability"] == pytest.approx(230 / 255, abs=1e-4)
    assert (raw[0:150] == labels).all() and raw[149:150].shape == (1, 110)


def test_mean_probability_is_over_a_region_s_own_pixels_across_probability_bands():
    """By hand: a square with a filled pinhole (its pixels at 0 do not count) has mean 200; a block whose
    rows hold 10 * row, read 4 rows at a time (clipped at 2 band borders), has mean 45 (rows 0..9)."""
    labels = np.zeros((12, 50), np.uint8)
    probability = np.zeros((12, 50), np.uint8)
    labels[1:11, 1:11], probability[1:11, 1:11] = 1, 200
    labels[5:7, 5:7], probability[5:7, 5:7] = 0, 0  # a 4-pixel pinhole: filled, not counted
    labels[0:10, 30:40] = 1
    probability[0:10, 30:40] = (10 * np.arange(10))[:, None]
    features = mask_features(labels, TUMOR, min_area=16, probability=probability, band=4)
    means = sorted(f["properties"]["measurements"]["Mean tumour probability"] for f in features)
    assert means == [round(45 / 255, 4), round(200 / 255, 4)]
    assert sorted(shape(f["geometry"]).area for f in features) == [100.0, 100.0]  # the pinhole filled


def test_a_probability_map_on_another_grid_or_labels_beyond_int32_are_refused_and_an_empty_mask_has_none():
    labels = np.zeros((8, 8), np.int64)
    labels[2:6, 2:6] = 1
    with pytest.raises(ValueError, match=r"probability must be on the grid of labels \(8, 8\), got \(4, 4\)"):
        mask_features(labels, TUMOR, min_area=1, probability=np.zeros((4, 4), np.uint8))
    labels[0, 0] = 2**32 + 1  # would wrap to class 1 in int32
    with pytest.raises(ValueError, match="beyond it"):
        mask_features(labels, TUMOR, min_area=1)
    assert mask_features(np.zeros((0, 5), np.uint8), TUMOR) == []
