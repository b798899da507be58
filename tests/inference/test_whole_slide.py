import hashlib
import logging

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from monai_coco.data import slide_io
from monai_coco.data.ome_pyramid import write_ome_pyramid
from monai_coco.data.slide_io import Slide, is_slide, read_image, read_tiff_region
from monai_coco.data.synthetic import write_synthetic_slide
from monai_coco.data.tissue import TissueMap, detect_tissue
from monai_coco.inference import SlideInferenceConfig, infer_file, infer_path, list_images, segment_image
from monai_coco.inference.__main__ import main
from monai_coco.inference.summary import read_summary

WHITE, PINK, PURPLE = (240, 240, 240), (200, 100, 180), (90, 40, 160)  # glass, benign tissue, "cancer"


def _scene(height=256, width=384):
    """Level-0 RGB (H, W, 3) and its expected mask (purple = class 1); block edges on multiples of 32."""
    img = np.zeros((height, width, 3), np.uint8)
    img[:] = WHITE
    img[32:160, 32:224] = PINK
    img[64:128, 96:160] = PURPLE
    img[160:224, 256:352] = PURPLE
    return img, (img == PURPLE).all(-1).astype(np.uint8)


def _write_slide(path, img, levels=2, tile=64, mpp=0.5):
    """Pyramidal TIFF: level 0 then reduced pages (subfiletype=1), JPEG tiles, resolution in px/cm."""
    with tifffile.TiffWriter(path) as tw:
        for level in range(levels):
            data = img[:: 2**level, :: 2**level]
            tw.write(
                data,
                tile=(tile, tile),
                compression="jpeg",
                compressionargs={"level": 95},
                photometric="rgb",
                subfiletype=1 if level else 0,
                resolution=(1e4 / (mpp * 2**level),) * 2,
                resolutionunit="CENTIMETER",
                metadata=None,
            )
    return path


class ColourNet(torch.nn.Module):
    """Fixed 1x1 conv: logit(class 1) = 20 * (blue - red) + bias, logit(class 0) = 0; counts windows.

    bias < 0: purple -> 1; pink and white -> 0.  bias > 0: white also -> 1 (to show skipped windows).
    """

    def __init__(self, bias=-0.5):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            self.conv.weight[1, 2], self.conv.weight[1, 0], self.conv.bias[1] = 20.0, -20.0, bias
        self.windows = 0

    def forward(self, x):
        self.windows += x.shape[0]
        return self.conv(x)


def _config(**kw):
    settings = {"roi_size": 32, "chunk_size": 96, "device": "cpu", "runtime": "torch"}
    return SlideInferenceConfig(**{**settings, **kw})


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    img, expected = _scene()
    return _write_slide(tmp_path_factory.mktemp("slide") / "case.tif", img), expected


def _mask_levels(path):
    """The levels of a pyramidal OME-TIFF map (SubIFDs, tiled, deflate) and their resolutions (px/cm)."""
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        pages = [level.keyframe for level in tif.series[0].levels]
        assert [p.subfiletype for p in pages] == [0] + [1] * (len(pages) - 1)
        assert all(p.is_tiled and p.compression == tifffile.COMPRESSION.ADOBE_DEFLATE for p in pages)
        return [p.asarray() for p in pages], [p.get_resolution() for p in pages]


def _mismatch(mask, expected):
    return float((mask != expected).mean())


@pytest.mark.parametrize("reader", ["tifffile", "openslide"])
def test_slide_round_trip_mask_aligned_at_level_0_and_1(slide, tmp_path, reader):
    path, expected = slide
    result = infer_file(ColourNet(), path, tmp_path / "out", _config(reader=reader, level=0))
    assert result.mask == tmp_path / "out" / "case_mask.ome.tif"
    levels, resolution = _mask_levels(result.mask)
    assert [m.shape for m in levels] == [(256, 384), (128, 192)]  # the slide's level sizes
    assert _mismatch(levels[0], expected) < 0.005  # JPEG edges only
    assert (levels[0][70:122, 102:154] == 1).all() and (levels[0][:30] == 0).all()
    assert _mismatch(levels[1], expected[1::2, 1::2]) < 0.01
    assert resolution[0] == pytest.approx((2e4, 2e4)) and resolution[1] == pytest.approx((1e4, 1e4))

    at_level_1 = infer_file(ColourNet(), path, tmp_path / "l1", _config(reader=reader, level=1))
    levels, _ = _mask_levels(at_level_1.mask)
    assert [m.shape for m in levels] == [(128, 192)]
    assert _mismatch(levels[0], expected[::2, ::2]) < 0.01
    with Image.open(at_level_1.overlay) as overlay:
        assert overlay.mode == "RGB" and max(overlay.size) <= 1024


def test_background_windows_are_skipped_without_running_the_network(slide, tmp_path):
    path, expected = slide
    eager = ColourNet(bias=0.5)  # predicts cancer on white glass too
    everything = infer_file(eager, path, tmp_path / "all", _config(min_tissue_fraction=0.0))
    # the network runs each window it is given once, plus the one window make_segmenter checks it on
    assert everything.windows_skipped == 0 and eager.windows == everything.windows_run + 1
    assert (_mask_levels(everything.mask)[0][0][:24, :] == 1).all()

    skipping = ColourNet(bias=0.5)
    result = infer_file(skipping, path, tmp_path / "tissue", _config(min_tissue_fraction=0.05))
    assert skipping.windows == result.windows_run + 1
    assert 0 < result.windows_run < everything.windows_run and result.windows_skipped > 0
    mask = _mask_levels(result.mask)[0][0]
    assert (mask[:16, :] == 0).all() and (mask[:, 360:] == 0).all()  # glass far from tissue: background
    assert (mask[70:122, 102:154] == 1).all()


def test_synthetic_slide_of_the_data_module_gets_a_mask_pyramid_like_its_ground_truth(tmp_path):
    slide_path, truth_path = write_synthetic_slide(tmp_path / "syn" / "slide.tif", size=(192, 256), tile=64)
    result = infer_file(ColourNet(bias=0.5), slide_path, tmp_path / "out", _config())
    with tifffile.TiffFile(truth_path) as truth:
        truth_shapes = [page.shape for page in truth.pages]
    levels, _ = _mask_levels(result.mask)
    assert levels[0].shape == truth_shapes[0] and len(truth_shapes) > 1
    assert result.windows_skipped > 0
    assert levels[0][0, 0] == levels[0][-1, -1] == 0  # glass in the corners: skipped, background


def test_chunked_inference_equals_whole_image_inference():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 5, padding=2), torch.nn.Tanh(), torch.nn.Conv2d(4, 2, 5, padding=2)
    )
    image = np.random.default_rng(0).integers(0, 256, (3, 100, 150), dtype=np.uint8)
    whole = segment_image(net, image, _config(chunk_size=512, blend_mode="gaussian"))
    chunked = segment_image(net, image, _config(chunk_size=32, blend_mode="gaussian"))
    assert whole.shape == (100, 150) and 0.1 < whole.mean() < 0.9
    assert (chunked == whole).all()


def test_thumbnail_of_a_single_level_slide_is_sampled_in_bands(tmp_path, monkeypatch):
    monkeypatch.setattr(slide_io, "_THUMBNAIL_BAND_PIXELS", 4096)  # 8-row bands: 32 reads
    img, _ = _scene()
    path = _write_slide(tmp_path / "flat.tif", img, levels=1)
    with Slide(path, "tifffile") as s:
        thumb = s.thumbnail(max_side=100)
    assert thumb.shape == (3, 64, 96)  # stride 4
    assert (thumb == np.moveaxis(tifffile.imread(path)[::4, ::4], -1, 0)).all()


def test_tissue_map_fractions():
    thumb = np.zeros((3, 10, 20), np.uint8)
    thumb[:] = np.array(WHITE)[:, None, None]
    thumb[:, 0:5, 0:10] = np.array(PINK)[:, None, None]
    mask = detect_tissue(thumb)
    assert mask.sum() == 50 and mask[:5, :10].all()
    tissue = TissueMap(mask, (100, 200))  # 10 level pixels per mask pixel
    assert tissue.fraction(0, 0, 50, 100) == 1.0
    assert tissue.fraction(0, 50, 50, 150) == pytest.approx(0.5)
    assert tissue.fraction(60, 0, 100, 200) == 0.0
    assert tissue.count(0, 0, 3, 3) == 1  # a box smaller than a mask pixel still covers one


def test_lazy_region_read_equals_full_decode(tmp_path):
    data = np.random.default_rng(1).integers(0, 256, (100, 90, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "t.tif", data, tile=(32, 32), compression="zlib")
    with tifffile.TiffFile(tmp_path / "t.tif") as tif:
        assert (read_tiff_region(tif.pages[0], 30, 20, 67, 70) == data[30:97, 20:90]).all()


def test_ome_pyramid_halves_to_256_with_its_physical_size_and_opens_in_openslide(tmp_path):
    labels = (np.arange(600 * 520).reshape(600, 520) % 3).astype(np.uint8)
    path = write_ome_pyramid(
        tmp_path / "m.ome.tif",
        np.lib.format.open_memmap(tmp_path / "m.npy", mode="w+", dtype=np.uint8, shape=labels.shape),
        mpp=(2.0, 2.5),
        tile=16,
    )
    path.unlink()
    memmap = np.lib.format.open_memmap(tmp_path / "m.npy", mode="r+")
    memmap[:] = labels
    write_ome_pyramid(path, memmap, mpp=(2.0, 2.5), tile=16)
    levels, resolution = _mask_levels(path)
    assert [m.shape for m in levels] == [(600, 520), (300, 260), (150, 130)]
    assert (levels[0] == labels).all() and (levels[1] == labels[1::2, 1::2]).all()
    assert resolution[0] == pytest.approx((1e4 / 2.5, 1e4 / 2.0))  # px/cm, x then y
    assert resolution[1] == pytest.approx((1e4 / 5.0, 1e4 / 4.0))
    with tifffile.TiffFile(path) as tif:
        assert 'PhysicalSizeX="2.5"' in tif.ome_metadata and 'PhysicalSizeY="2.0"' in tif.ome_metadata
    openslide = pytest.importorskip("openslide")
    with openslide.OpenSlide(str(path)) as osr:
        assert osr.dimensions == (520, 600)


def test_tile_image_gives_png_mask_of_the_right_size(tmp_path):
    img, expected = _scene(96, 160)
    Image.fromarray(img).save(tmp_path / "tile.png")
    tifffile.imwrite(tmp_path / "strips.tif", img)  # single-level, not tiled: a tile too
    assert not is_slide(tmp_path / "strips.tif")
    (tmp_path / "tile_mask.png").write_bytes(b"")  # an output-like name in the folder is ignored
    results = infer_path(ColourNet(), tmp_path, tmp_path / "out", _config())
    assert [r.image.name for r in results] == ["strips.tif", "tile.png"]
    for r in results:
        assert r.mask.name == f"{r.image.stem}_mask.png"
        mask = np.asarray(Image.open(r.mask))
        assert mask.shape == (96, 160) and (mask == expected).all()
        assert Image.open(r.overlay).size == (160, 96)


def test_a_folder_in_the_flat_training_layout_segments_the_tiles_never_the_masks(tmp_path):
    """``<id>.jpg`` + ``<id>.png`` pairs (the documented flat layout): the PNG masks are
    no inputs (their outputs would overwrite the tiles'); two images of one stem are refused, one line."""
    img, expected = _scene(96, 160)
    for name in ("a", "b"):
        Image.fromarray(img).save(tmp_path / f"{name}.jpg", quality=100)
        Image.fromarray(expected.astype(np.uint8) * 255).save(tmp_path / f"{name}.png")
    results = infer_path(ColourNet(), tmp_path, tmp_path / "out", _config())
    assert [r.image.name for r in results] == ["a.jpg", "b.jpg"]
    mask = np.asarray(Image.open(tmp_path / "out" / "a_mask.png"))
    assert (mask == expected).mean() > 0.99  # the tile's segmentation (JPEG edges aside), not a mask's

    Image.fromarray(img).save(tmp_path / "a.tif")
    with pytest.raises(ValueError, match=r"^a.jpg and a.tif in .* would write the same outputs \(a_mask"):
        infer_path(ColourNet(), tmp_path, tmp_path / "out", _config())


def test_a_rerun_skips_complete_images_and_overwrite_redoes_them(tmp_path, caplog):
    """A folder run resumes: images whose summary (written last) exists are skipped, one log line says so;
    a missing summary (an interrupted image) is redone; ``overwrite`` redoes every image."""
    img, _ = _scene(96, 160)
    for name in ("a", "b", "c"):
        Image.fromarray(img).save(tmp_path / f"{name}.png")
    out = tmp_path / "out"
    first = infer_path(ColourNet(), tmp_path, out, _config())
    assert [r.image.name for r in first] == ["a.png", "b.png", "c.png"]
    written = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "b_summary.json").unlink()
    caplog.set_level(logging.INFO, logger="monai_coco.inference")
    assert [r.image.name for r in infer_path(ColourNet(), tmp_path, out, _config())] == ["b.png"]
    assert f"2 of 3 image(s) already done in {out}, skipped" in caplog.text
    redone = ("b_", "cohort_summary", ".")  # b's outputs, the cohort table (now 3 rows), the run's lock file
    kept = [p for p in out.iterdir() if not p.name.startswith(redone)]
    assert all(p.stat().st_mtime_ns == written[p.name] for p in kept)
    assert len((out / "cohort_summary.csv").read_text().splitlines()) == 1 + 3
    assert infer_path(ColourNet(), tmp_path / "a.png", out, _config()) == []  # one file: skipped too
    redone = infer_path(ColourNet(), tmp_path, out, _config(), overwrite=True)
    assert [r.image.name for r in redone] == ["a.png", "b.png", "c.png"]
    assert (out / "a_mask.png").stat().st_mtime_ns > written["a_mask.png"]


def test_a_redo_that_fails_keeps_the_earlier_outputs_whole_and_clears_what_killed_runs_left(tmp_path):
    """An image redone with ``overwrite`` whose run fails mid-slide leaves its earlier outputs, summary
    included, byte for byte (the new ones are made in a staging folder, moved in together at the end); the
    staging folder and the temporary summary a killed run left for that image are removed, another image's
    are not; a rerun skips the image as complete."""

    class Failing(ColourNet):
        def forward(self, x):
            if self.windows:  # after make_segmenter's one-window check: mid-slide
                raise RuntimeError("killed mid-slide")
            return super().forward(x)

    img, _ = _scene(96, 160)
    Image.fromarray(img).save(tmp_path / "a.png")
    out = tmp_path / "out"
    infer_path(ColourNet(), tmp_path, out, _config())
    before = {p.name: p.read_bytes() for p in out.glob("a_*")}
    assert sorted(before) == [
        f"a_{n}" for n in ("mask.png", "overlay.png", "probability.png", "regions.geojson", "summary.json")
    ]
    (out / ".a.partial").mkdir()
    (out / ".a.partial" / "a_mask.png").write_bytes(b"a killed run's")
    (out / ".a_summary.k1ll3d.json").write_bytes(b"partial")
    (out / ".ab_summary.k1ll3d.json").write_bytes(b"another image's write in progress")
    with pytest.raises(RuntimeError, match="killed mid-slide"):
        infer_path(Failing(), tmp_path, out, _config(), overwrite=True)
    assert {p.name: p.read_bytes() for p in out.glob("a_*")} == before
    assert not (out / ".a.partial").exists() and not (out / ".a_summary.k1ll3d.json").exists()
    assert (out / ".ab_summary.k1ll3d.json").exists()
    assert infer_path(ColourNet(), tmp_path, out, _config()) == []  # complete: skipped


def test_a_short_row_or_a_binary_slide_list_is_one_line(tmp_path):
    (tmp_path / "short.csv").write_text("label,image\nx\n")
    with pytest.raises(ValueError, match=r"short.csv, line 2, has 1 field\(s\); expected a slide path"):
        list_images(tmp_path / "short.csv")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match=r"binary.csv is not a UTF-8 CSV text file"):
        list_images(tmp_path / "binary.csv")


def test_grayscale_input_and_custom_preprocess():
    image = np.moveaxis(_scene(64, 64)[0], -1, 0)
    gray_net = torch.nn.Conv2d(1, 2, 1)
    assert segment_image(gray_net, image, _config(grayscale=True)).shape == (64, 64)
    seen = []

    def preprocess(region):
        seen.append(region.dtype)
        return region.float() / 127.5 - 1

    segment_image(torch.nn.Conv2d(3, 2, 1), image, _config(preprocess=preprocess))
    assert seen and set(seen) == {torch.uint8}


def test_errors_name_the_file_or_setting(tmp_path, slide):
    path, _ = slide
    net = ColourNet()
    with pytest.raises(FileNotFoundError, match="missing.tif"):
        infer_file(net, tmp_path / "missing.tif", tmp_path / "out")
    (tmp_path / "scan.bmp").write_bytes(b"BM")
    with pytest.raises(ValueError, match="scan.bmp"):
        infer_file(net, tmp_path / "scan.bmp", tmp_path / "out")
    (tmp_path / "broken.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(ValueError, match="broken.tif"):
        infer_file(net, tmp_path / "broken.tif", tmp_path / "out")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ValueError, match="broken.jpg"):
        read_image(tmp_path / "broken.jpg")
    with pytest.raises(ValueError, match=r"case.tif has no level 2.*0: 256x384, 1: 128x192"):
        infer_file(net, path, tmp_path / "out", _config(level=2))
    with pytest.raises(ValueError, match="openslide"):
        Slide(tmp_path / "broken.tif", "openslide")
    with pytest.raises(ValueError, match="output folder"):
        infer_file(net, path, path.parent, _config())
    with pytest.raises(ValueError, match="num_classes=3"):
        infer_file(net, path, tmp_path / "out", _config(num_classes=3))
    with pytest.raises(ValueError, match="SlideInferenceConfig.overlap"):
        SlideInferenceConfig(overlap=1.0)
    with pytest.raises(ValueError, match="SlideInferenceConfig.reader"):
        SlideInferenceConfig(reader="cucim")
    with pytest.raises(ValueError, match="roi_size"):
        SlideInferenceConfig(roi_size=(0, 32))


def test_command_line_runs_a_checkpointed_network(tmp_path, slide, capsys, caplog):
    path, expected = slide
    torch.save({"model": ColourNet().conv.state_dict()}, tmp_path / "model.pt")
    network = '{"_target_": "torch.nn.Conv2d", "in_channels": 3, "out_channels": 2, "kernel_size": 1}'
    args = [
        str(path),
        str(tmp_path / "out"),
        "--checkpoint",
        str(tmp_path / "model.pt"),
        "--network",
        network,
    ]
    assert main([*args, "--roi", "32", "32", "--chunk-size", "96", "--device", "cpu"]) == 0
    assert "case_mask.ome.tif" in capsys.readouterr().out
    # no scale recorded with the checkpoint, none given: level 0, and the log says why
    assert "level 0 (full resolution): no training scale is recorded with" in caplog.text
    levels, _ = _mask_levels(tmp_path / "out" / "case_mask.ome.tif")
    assert _mismatch(levels[0], expected) < 0.005
    torch.save({"model": torch.nn.Conv2d(3, 3, 1).state_dict()}, tmp_path / "wrong.pt")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                str(path),
                str(tmp_path / "out"),
                "--checkpoint",
                str(tmp_path / "wrong.pt"),
                "--network",
                network,
            ]
        )
    assert exit_info.value.code == 2 and "wrong.pt" in capsys.readouterr().err


def test_command_line_bad_output_device_or_channels_is_one_line(tmp_path, slide, capsys):
    """An output path through a file, a device this machine lacks, 3-channel weights given grayscale
    windows: one line each (no traceback), nothing written."""
    path, _ = slide
    torch.save({"model": ColourNet().conv.state_dict()}, tmp_path / "model.pt")
    network = '{"_target_": "torch.nn.Conv2d", "in_channels": 3, "out_channels": 2, "kernel_size": 1}'
    (tmp_path / "afile").write_text("")
    common = ["--checkpoint", str(tmp_path / "model.pt"), "--network", network, "--roi", "32", "32"]
    cases = [
        ([str(tmp_path / "afile" / "sub"), "--device", "cpu"],
         f"needs a folder where the file {tmp_path}/afile"),
        ([str(tmp_path / "o1"), "--device", "foo"],
         "--device 'foo' is not valid; expected None (CUDA when available), 'cpu'"),
        ([str(tmp_path / "o2"), "--device", "cpu", "--grayscale", "--runtime", "torch"],
         "the network cannot take windows of (1, 32, 32)"),
        ([str(tmp_path / "o3"), "--device", "cpu", "--level", "-1"],  # nearest to an mpp nobody gave
         "--level -1 reads slides at the training scale, but no --mpp is given or recorded"),
    ]  # fmt: skip
    for output, expected in cases:
        with pytest.raises(SystemExit) as stop:
            main([str(path), *output, *common])
        err = capsys.readouterr().err.strip()
        assert stop.value.code == 2 and len(err.splitlines()) == 1 and expected in err, err
    assert not any((tmp_path / name).exists() for name in ("o1", "o2", "o3"))


def _damaged(path, tmp_path, how):
    """A copy of the slide ``path`` with its middle level-0 tile garbled (``"garbled"``) or the file cut
    inside that tile (``"truncated"``): the header still reads, the pixels do not."""
    data = path.read_bytes()
    with tifffile.TiffFile(path) as tif:
        offsets = sorted(tif.pages[0].dataoffsets)
    middle = offsets[len(offsets) // 2]
    damaged = tmp_path / f"{how}.tif"
    noise = bytes(np.random.default_rng(0).integers(0, 256, 600, dtype=np.uint8))
    garbled = data[:middle] + noise + data[middle + 600 :]
    damaged.write_bytes(data[: middle + 10] if how == "truncated" else garbled)
    return damaged


@pytest.mark.parametrize("how", ["garbled", "truncated"])
@pytest.mark.parametrize("reader", ["tifffile", "openslide"])
def test_a_damaged_slide_fails_loudly_under_every_backend_and_writes_no_mask(slide, tmp_path, reader, how):
    """A slide whose header reads but whose tiles do not is refused, naming it, under each
    reader backend; no mask, overlay or summary is left as if it had been segmented."""
    damaged = _damaged(slide[0], tmp_path, how)
    with pytest.raises(ValueError, match=rf"{how}\.tif"):
        infer_file(ColourNet(), damaged, tmp_path / "out", _config(reader=reader, level=0))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("level", [[], ["--level", "-1"]])
def test_command_line_reads_at_the_training_scale_recorded_with_the_checkpoint(
    tmp_path, slide, caplog, level
):
    """The training stage records ``mpp`` beside the checkpoint
    (``model.preprocessing.json``); the command line reads the slide (0.5 um/px at level 0) at the level
    nearest to it, here level 1, by default as with ``--level -1`` (as the bundle's ``level: null``)."""
    path, expected = slide
    torch.save({"model": ColourNet().conv.state_dict()}, tmp_path / "model.pt")
    (tmp_path / "model.preprocessing.json").write_text('{"mpp": 1.0, "stain_normalization": false}')
    network = '{"_target_": "torch.nn.Conv2d", "in_channels": 3, "out_channels": 2, "kernel_size": 1}'
    args = [str(path), str(tmp_path / "out"), "--checkpoint", str(tmp_path / "model.pt"),
            "--network", network, "--roi", "32", "32", "--chunk-size", "96", "--device", "cpu",
            *level]  # fmt: skip
    with caplog.at_level("INFO"):
        assert main(args) == 0
    assert f"training scale 1.0 um/px, recorded with {tmp_path / 'model.pt'}" in caplog.text
    levels, _ = _mask_levels(tmp_path / "out" / "case_mask.ome.tif")
    assert levels[0].shape == (128, 192)  # level 1 of the slide: 1.0 um/px
    assert _mismatch(levels[0], expected[::2, ::2]) < 0.01


def test_a_rerun_with_another_checkpoint_redoes_the_images_the_old_one_segmented(tmp_path, caplog):
    """Outputs are done for the checkpoint that made them (their summary's sha256): a rerun with the same
    checkpoint skips them, one with another checkpoint file (a retrained model) redoes them and says so."""
    img, _ = _scene(96, 160)
    Image.fromarray(img).save(tmp_path / "a.png")
    (tmp_path / "old.pt").write_bytes(b"the first model")
    (tmp_path / "new.pt").write_bytes(b"a retrained model")
    out = tmp_path / "out"
    first = infer_path(ColourNet(), tmp_path / "a.png", out, _config(checkpoint=tmp_path / "old.pt"))
    assert [r.image.name for r in first] == ["a.png"]
    assert infer_path(ColourNet(), tmp_path / "a.png", out, _config(checkpoint=tmp_path / "old.pt")) == []
    caplog.set_level(logging.INFO, logger="monai_coco.inference")
    again = infer_path(ColourNet(), tmp_path / "a.png", out, _config(checkpoint=tmp_path / "new.pt"))
    assert [r.image.name for r in again] == ["a.png"]
    assert f"1 image(s) in {out} were segmented by another checkpoint than {tmp_path / 'new.pt'}: redone" in (
        caplog.text
    )
    made_by = read_summary(out / "a_summary.json")["checkpoint_sha256"]
    assert made_by == hashlib.sha256(b"a retrained model").hexdigest()


def test_a_rerun_that_skips_an_image_removes_the_staging_folder_a_killed_redo_left(tmp_path):
    img, _ = _scene(96, 160)
    Image.fromarray(img).save(tmp_path / "a.png")
    out = tmp_path / "out"
    infer_path(ColourNet(), tmp_path / "a.png", out, _config())
    (out / ".a.partial").mkdir()
    (out / ".a.partial" / "a_probability.png").write_bytes(b"a killed redo's")
    (out / ".a_summary.partial").mkdir()  # another image's (stem a_summary), not matched by a's cleanup
    assert infer_path(ColourNet(), tmp_path / "a.png", out, _config()) == []
    assert not (out / ".a.partial").exists() and (out / ".a_summary.partial").is_dir()
    assert [r.image.name for r in infer_path(ColourNet(), tmp_path / "a.png", out, _config(), overwrite=True)]
