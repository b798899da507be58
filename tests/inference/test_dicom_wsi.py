"""A DICOM whole-slide image (VL Whole Slide Microscopy series) is read through OpenSlide, at its µm/px."""

from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile
from wsidicomizer import WsiDicomizer

from monai_coco.data.slide_io import Slide, choose_reader
from monai_coco.inference import SlideInferenceConfig, infer_file

from .test_whole_slide import ColourNet

GLASS, PINK, PURPLE = (235, 235, 235), (220, 150, 190), (90, 40, 160)


def _picture(size=1024):
    """Glass around a pink disc with a purple block at [size/4, size/2) in both axes."""
    img = np.full((size, size, 3), GLASS, np.uint8)
    yy, xx = np.mgrid[:size, :size]
    img[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.4 * size) ** 2] = PINK
    img[size // 4 : size // 2, size // 4 : size // 2] = PURPLE
    return img


def _write_pyramid(path, img, levels=3, mpp=0.5):
    """Generic pyramidal TIFF: level 0 with reduced levels in SubIFDs, 256-px JPEG tiles, px/cm."""
    with tifffile.TiffWriter(path) as tw:
        for level in range(levels):
            tw.write(
                img[:: 2**level, :: 2**level],
                tile=(256, 256),
                compression="jpeg",
                compressionargs={"level": 95},
                photometric="rgb",
                subifds=levels - 1 if level == 0 else None,
                subfiletype=1 if level else 0,
                resolution=(1e4 / (mpp * 2**level),) * 2,
                resolutionunit="CENTIMETER",
            )
    return path


@pytest.fixture(scope="module")
def dicom_slide(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dicom_wsi")
    source = _write_pyramid(folder / "case.tif", _picture())
    files = WsiDicomizer.convert(source, folder / "dcm", tile_size=256, workers=1)
    assert len(files) == 3  # one instance per pyramid level
    return sorted(files)[0]  # any instance of the series opens the whole pyramid


def test_openslide_reads_dicom_series_with_its_mpp(dicom_slide):
    assert openslide.OpenSlide.detect_format(dicom_slide) == "dicom"
    with openslide.OpenSlide(dicom_slide) as osr:
        assert osr.level_dimensions == ((1024, 1024), (512, 512), (256, 256))
        assert float(osr.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.5)
        assert float(osr.properties[openslide.PROPERTY_NAME_MPP_Y]) == pytest.approx(0.5)
        rgb = np.asarray(osr.read_region((384, 384), 0, (1, 1)).convert("RGB"))[0, 0]
        assert np.abs(rgb.astype(int) - PURPLE).max() <= 6


def test_slide_reads_dicom_at_2_um_per_px(dicom_slide):
    assert choose_reader(dicom_slide) == "openslide"
    with Slide(dicom_slide) as slide:
        assert slide.backend == "openslide"
        assert slide.level_shapes == [(1024, 1024), (512, 512), (256, 256)]
        assert slide.mpp(0) == pytest.approx((0.5, 0.5))
        view = slide.view(mpp=2.0)
        assert tuple(view.shape) == (256, 256)


def test_infer_file_on_dicom_labels_purple_block(dicom_slide, tmp_path):
    config = SlideInferenceConfig(roi_size=64, chunk_size=128, device="cpu", runtime="torch", mpp=2.0)
    result = infer_file(ColourNet(), dicom_slide, tmp_path / "out", config)
    assert result.mpp == pytest.approx((2.0, 2.0)) and result.slide_mpp == pytest.approx((0.5, 0.5))
    with tifffile.TiffFile(result.mask) as tif:
        mask = tif.series[0].levels[0].asarray()
    assert mask.shape == (256, 256)
    assert (mask[72:120, 72:120] == 1).all()  # the purple block, [64, 128) at 2 µm/px, inside its edges
    assert (mask[:24] == 0).all() and (mask[140:200, 140:200] == 0).all()  # glass and pink


def test_a_folder_holding_a_dicom_series_is_one_slide(dicom_slide, tmp_path):
    """The series' instances (one .dcm per level) in a folder list as one slide, its first instance."""
    from monai_coco.inference import list_images

    folder = Path(dicom_slide).parent
    assert list_images(folder) == [sorted(folder.glob("*.dcm"))[0]]
