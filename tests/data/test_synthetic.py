"""Synthetic gastric data: determinism, mask/image alignment, seamless windows, the pyramidal slide."""

import math

import numpy as np
import pytest
import tifffile
from monai.data import WSIReader
from PIL import Image
from skimage.color import rgb2hed

from monai_coco.data import (
    SyntheticGastricTissue,
    load_paired_datalist,
    synthetic_tile,
    write_synthetic_dataset,
    write_synthetic_slide,
)
from monai_coco.data.synthetic.__main__ import main


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = write_synthetic_dataset(tmp_path / "a", n=2, size=64, seed=3)
    b = write_synthetic_dataset(tmp_path / "b", n=2, size=64, seed=3)
    c = write_synthetic_dataset(tmp_path / "c", n=2, size=64, seed=4)
    for x, y, z in zip(a, b, c):
        for key in ("image", "label"):
            assert open(x[key], "rb").read() == open(y[key], "rb").read()
        assert open(x["image"], "rb").read() != open(z["image"], "rb").read()


def test_written_layout_is_the_authors_and_loads(tmp_path):
    items = write_synthetic_dataset(tmp_path, n=3, size=64, seed=0)
    assert [(p["image"][-16:], p["label"][-16:]) for p in items] == [
        (f"gastric_000{i}.jpg", f"gastric_000{i}.png") for i in range(3)
    ]
    assert load_paired_datalist(tmp_path) == items  # validated: sizes match, masks within {0, 1}
    image = np.asarray(Image.open(items[0]["image"]))
    mask = np.asarray(Image.open(items[0]["label"]))
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and mask.shape == (64, 64)
    assert set(np.unique(mask)) <= {0, 1}


def test_any_window_renders_the_same_pixels():
    """Tiles of a slide are seamless: a window equals the same crop of a larger render, exactly."""
    world = SyntheticGastricTissue(5, mpp=0.5, tumour_offset=0.0)
    rgb, mask = world.render(-40, 10, 160, 150)
    sub_rgb, sub_mask = world.render(3, 47, 70, 90)
    np.testing.assert_array_equal(sub_rgb, rgb[43:113, 37:127])
    np.testing.assert_array_equal(sub_mask, mask[43:113, 37:127])


def test_tumour_is_more_hematoxylin_and_darker_but_benign_has_dark_nuclei_too():
    """Alignment: measured with skimage's Ruifrok-Johnston colour deconvolution (not the generator's
    Macenko vectors), cancer pixels carry more hematoxylin and are darker; benign tissue still holds
    a good share of the most hematoxylin-rich pixels (nuclei), so colour alone does not solve the task."""
    h_tumour, h_benign, l_tumour, l_benign, dark_benign = [], [], [], [], []
    for seed in range(8):
        rgb, mask = SyntheticGastricTissue(seed, mpp=2.0, tumour_offset=0.0).render(0, 0, 160, 160)
        if mask.min() == mask.max():
            continue
        h = rgb2hed(rgb)[..., 0]
        luma = rgb.astype(np.float64).mean(-1)
        h_tumour.append(h[mask == 1].mean())
        h_benign.append(h[mask == 0].mean())
        l_tumour.append(luma[mask == 1].mean())
        l_benign.append(luma[mask == 0].mean())
        top = h > np.percentile(h, 90)
        dark_benign.append((top & (mask == 0)).sum() / top.sum() / (mask == 0).mean())
    assert len(h_tumour) >= 3
    assert all(t > 1.2 * b for t, b in zip(h_tumour, h_benign))
    assert all(t < b - 5 for t, b in zip(l_tumour, l_benign))
    assert np.mean(dark_benign) > 0.1  # benign share of the darkest decile, relative to its area


def test_tumour_fraction_varies_between_tiles_and_can_be_zero():
    fractions = [synthetic_tile(seed, size=48, mpp=8.0)[1].mean() for seed in range(12)]
    assert min(fractions) == 0.0 and max(fractions) > 0.3
    _, none = SyntheticGastricTissue(0, tumour_offset=math.inf).render(0, 0, 32, 32)
    assert none.max() == 0


def test_stain_varies_between_tiles():
    means = [synthetic_tile(seed, size=48)[0].reshape(-1, 3).mean(0) for seed in range(4)]
    assert np.ptp(np.stack(means), axis=0).max() > 5


def test_bad_arguments_name_the_setting(tmp_path):
    with pytest.raises(ValueError, match="mpp"):
        SyntheticGastricTissue(0, mpp=0)
    with pytest.raises(ValueError, match="size"):
        synthetic_tile(0, size=0)
    with pytest.raises(ValueError, match="quality"):
        write_synthetic_dataset(tmp_path, n=1, size=16, quality=0)
    with pytest.raises(ValueError, match="tile"):
        write_synthetic_slide(tmp_path / "s.tif", size=64, tile=100)
    for bad in (0, -0.5, 1.5):
        with pytest.raises(ValueError, match="section_fraction"):
            write_synthetic_slide(tmp_path / "s.tif", size=64, section_fraction=bad)


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    path = tmp_path_factory.mktemp("slide") / "s.tif"
    return write_synthetic_slide(path, size=(600, 520), seed=1, mpp=0.5, tile=128)


@pytest.mark.parametrize("backend", ["tifffile", "openslide"])
def test_slide_opens_with_wsireader(slide, backend):
    image, _ = slide
    reader = WSIReader(backend=backend)
    wsi = reader.read(str(image))
    sizes = [(600, 520), (300, 260), (150, 130), (75, 65)]
    assert reader.get_level_count(wsi) == len(sizes)
    assert [tuple(reader.get_size(wsi, level)) for level in range(len(sizes))] == sizes
    assert reader.get_mpp(wsi, 0) == pytest.approx((0.5, 0.5))
    assert reader.get_mpp(wsi, 1) == pytest.approx((1.0, 1.0))
    patch, _ = reader.get_data(wsi, location=(200, 100), size=(64, 48), level=0)
    full = tifffile.imread(image)
    np.testing.assert_array_equal(np.asarray(patch).transpose(1, 2, 0), full[200:264, 100:148])


def test_slide_pages_are_jpeg_tiles_and_mask_pyramid_is_lossless_and_aligned(slide):
    image, mask = slide
    with tifffile.TiffFile(image) as tif:
        pages = list(tif.pages)
        assert [p.compression.name for p in pages] == ["JPEG"] * 4
        assert [int(p.subfiletype) for p in pages] == [0, 1, 1, 1]
        assert all(p.tilewidth == p.tilelength == 128 for p in pages)
        level0 = pages[0].asarray()
    with tifffile.TiffFile(mask) as tif:
        masks = [p.asarray() for p in tif.pages]
        assert [p.compression.name for p in tif.pages] == ["ADOBE_DEFLATE"] * 4
    world = SyntheticGastricTissue(1, mpp=0.5, tumour_offset=0.6, tumour_scale_um=350.0, section=(600, 520))
    rgb, truth = world.render(0, 0, 600, 520)
    np.testing.assert_array_equal(masks[0], truth)  # the mask is exactly the generator's
    assert 0.02 < truth.mean() < 0.6
    assert np.abs(level0.astype(int) - rgb).mean() < 3  # the image is the same tissue, up to JPEG
    np.testing.assert_array_equal(masks[1], (truth.reshape(300, 2, 260, 2).sum((1, 3)) >= 2).astype(np.uint8))
    assert [m.shape for m in masks] == [(600, 520), (300, 260), (150, 130), (75, 65)]
    assert np.asarray(level0)[:8, :8].mean() > 220  # glass around the tissue section is bright


def test_a_smaller_section_is_the_same_tissue_centred_on_glass(tmp_path):
    """section_fraction 0.5 of a 512 x 384 slide: inside the central 256 x 192 box, the cancer mask of the
    256 x 192 slide whose section fills it (the same world, moved); outside, glass (no saturated pixel); the
    tissue is about the inscribed ellipse's share of the slide, 0.64 * 0.5 ** 2 = 0.16."""
    sparse, sparse_mask = write_synthetic_slide(tmp_path / "sparse.tif", (512, 384), 2, section_fraction=0.5)
    _, full_mask = write_synthetic_slide(tmp_path / "full.tif", (256, 192), 2)
    mask, inner = tifffile.imread(sparse_mask, key=0), tifffile.imread(full_mask, key=0)
    assert inner.any()  # the slide's tumour focus, so the comparison below is not of zeros
    np.testing.assert_array_equal(mask[128:384, 96:288], inner)
    rgb = tifffile.imread(sparse, key=0).astype(np.int16)
    saturated = (rgb.max(-1) - rgb.min(-1)) > 0.15 * rgb.max(-1)
    outside = np.ones(saturated.shape, bool)
    outside[128:384, 96:288] = False
    assert mask[outside].sum() == 0 and saturated[outside].mean() < 0.002
    assert 0.12 < saturated.mean() < 0.2


def test_cli_writes_tiles_and_slide(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--n", "2", "--size", "32", "--slide-size", "300"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "gastric_0000.jpg",
        "gastric_0000.png",
        "gastric_0001.jpg",
        "gastric_0001.png",
        "slide",
    ]
    assert sorted(p.name for p in (tmp_path / "slide").iterdir()) == [
        "gastric_slide.tif",
        "gastric_slide_mask.tif",
    ]
    assert len(load_paired_datalist(tmp_path)) == 2  # the slide folder does not disturb the tile layout


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--slide-section", "2"], "--slide-section must be in (0, 1] (of the slide's sides), got 2.0"),
        (["--slide-section", "0"], "--slide-section must be in (0, 1] (of the slide's sides), got 0.0"),
        (["--quality", "0"], "quality must be a JPEG quality in [1, 100], got 0."),
        (["--slide-mpp", "nan"], "--slide-mpp must be micrometres per pixel in [0.001, 1000], got nan"),
        (["--mpp", "inf"], "--mpp must be micrometres per pixel in [0.001, 1000], got inf"),
    ],
)
def test_cli_bad_setting_is_one_line_and_writes_nothing(tmp_path, capsys, flags, named):
    with pytest.raises(SystemExit) as exit_:
        main(["--out", str(tmp_path / "out"), "--n", "1", "--size", "32", "--slide-size", "64", *flags])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"error: {named}")
    assert not (tmp_path / "out").exists()


def test_a_bad_setting_is_refused_before_the_slide_is_touched(tmp_path):
    """A bad setting (mpp not a number) is refused before the files are opened: the previous pair stays
    whole (a NaN mpp used to truncate the slide to 8 bytes); bad sizes are named."""
    slide, mask = write_synthetic_slide(tmp_path / "s.tif", size=64)
    before = slide.read_bytes(), mask.read_bytes()
    with pytest.raises(ValueError, match="mpp must be micrometres per pixel"):
        write_synthetic_slide(tmp_path / "s.tif", size=64, mpp=math.nan)
    assert (slide.read_bytes(), mask.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tif", "s_mask.tif"]
    for size in ("64", 64.0, (64,), (64, 64, 3)):
        with pytest.raises(ValueError, match="size must be a whole number"):
            write_synthetic_slide(tmp_path / "s.tif", size=size)
    assert write_synthetic_slide(tmp_path / "t.tif", size=np.int64(40), mpp=np.float32(0.5))[0].is_file()
