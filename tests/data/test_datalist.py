"""Datalists of paired tiles: every layout, the seeded split, and one test per bad input."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from monai_coco.data import check_dataset, image_check, load_paired_datalist


def _image(path: Path, size=(16, 12), mode="RGB", seed=0) -> Path:
    """A small random image of PIL ``mode`` (``size`` is (W, H)); TIFF through tifffile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    bands = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2}[mode]
    a = rng.integers(0, 256, (size[1], size[0], bands), dtype=np.uint8)
    if path.suffix in (".tif", ".tiff"):
        tifffile.imwrite(
            path, a if bands > 1 else a[..., 0], photometric="rgb" if bands == 3 else "minisblack"
        )
    else:
        Image.fromarray(a if bands > 1 else a[..., 0], mode).save(path)
    return path


def _mask(path: Path, size=(16, 12), values=(0, 1)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.full((size[1], size[0]), values[0], np.uint8)
    a[: size[1] // 2] = values[-1]
    Image.fromarray(a).save(path)
    return path


def _flat(folder: Path, n: int, image_suffix=".jpg", mask_name="{}.png", values=(0, 1)) -> list[str]:
    ids = [f"case{i:02d}" for i in range(n)]
    for i, key in enumerate(ids):
        _image(folder / f"{key}{image_suffix}", seed=i)
        _mask(folder / mask_name.format(key), values=values)
    return ids


def _pairs(items) -> list[tuple[str, str]]:
    return [(Path(d["image"]).name, Path(d["label"]).name) for d in items]


# ---------------------------------------------------------------------------------------------- layouts
def test_flat_layout_pairs_jpg_with_same_stem_png(tmp_path):
    _flat(tmp_path, 3)
    items = load_paired_datalist(tmp_path)
    assert _pairs(items) == [(f"case{i:02d}.jpg", f"case{i:02d}.png") for i in range(3)]
    assert all(Path(d["image"]).is_absolute() and Path(d["label"]).is_absolute() for d in items)


def test_flat_layout_png_tiles_with_mask_suffix(tmp_path):
    _flat(tmp_path, 2, image_suffix=".png", mask_name="{}_mask.png", values=(0, 255))
    assert _pairs(load_paired_datalist(tmp_path)) == [
        ("case00.png", "case00_mask.png"),
        ("case01.png", "case01_mask.png"),
    ]


def test_flat_layout_tiff_images_and_configurable_mask_suffix(tmp_path):
    _image(tmp_path / "a.tif")
    _mask(tmp_path / "a_seg.png")
    _image(tmp_path / "b.TIFF")
    _mask(tmp_path / "b_seg.png")
    items = load_paired_datalist(tmp_path, mask_suffix="_seg.png")
    assert _pairs(items) == [("a.tif", "a_seg.png"), ("b.TIFF", "b_seg.png")]


@pytest.mark.parametrize("mask_folder", ["masks", "labels"])
def test_images_and_masks_folders(tmp_path, mask_folder):
    for i, key in enumerate(["x", "y"]):
        _image(tmp_path / "images" / f"{key}.png", seed=i)  # .png images are unambiguous in images/
    _mask(tmp_path / mask_folder / "x.png")
    _mask(tmp_path / mask_folder / "y_mask.png")
    assert _pairs(load_paired_datalist(tmp_path)) == [("x.png", "x.png"), ("y.png", "y_mask.png")]


def test_split_folders_of_either_layout(tmp_path):
    _flat(tmp_path / "train", 3)
    _flat(tmp_path / "val", 1)
    _image(tmp_path / "test" / "images" / "t.jpg")
    _mask(tmp_path / "test" / "masks" / "t.png")
    assert len(load_paired_datalist(tmp_path, "train")) == 3
    assert _pairs(load_paired_datalist(tmp_path, "validation")) == [("case00.jpg", "case00.png")]
    test = load_paired_datalist(tmp_path, "test")
    assert _pairs(test) == [("t.jpg", "t.png")] and "/test/images/" in test[0]["image"]
    assert len(load_paired_datalist(tmp_path)) == 5


def test_monai_json_datalist_with_relative_paths(tmp_path):
    _flat(tmp_path / "data", 3)
    spec = {
        "training": [{"image": f"data/case0{i}.jpg", "label": f"data/case0{i}.png"} for i in (0, 1)],
        "validation": [{"image": "data/case02.jpg", "label": "data/case02.png"}],
    }
    (tmp_path / "list.json").write_text(json.dumps(spec))
    train = load_paired_datalist(tmp_path / "list.json", "train")
    assert _pairs(train) == [("case00.jpg", "case00.png"), ("case01.jpg", "case01.png")]
    assert train[0]["image"] == str((tmp_path / "data" / "case00.jpg").resolve())
    assert _pairs(load_paired_datalist(tmp_path / "list.json", "val")) == [("case02.jpg", "case02.png")]


def test_seeded_split_partitions_the_pairs(tmp_path):
    _flat(tmp_path, 10)
    train = load_paired_datalist(tmp_path, "train", val_fraction=0.3, seed=1)
    val = load_paired_datalist(tmp_path, "val", val_fraction=0.3, seed=1)
    names = sorted(d["image"] for d in train + val)
    assert len(val) == 3 and len(train) == 7
    assert names == sorted(d["image"] for d in load_paired_datalist(tmp_path))  # a partition
    assert val == load_paired_datalist(tmp_path, "val", val_fraction=0.3, seed=1)  # reproducible
    others = [load_paired_datalist(tmp_path, "val", val_fraction=0.3, seed=s) for s in range(2, 6)]
    assert any(o != val for o in others)  # the seed matters


def test_val_is_cut_from_train_folder_when_the_data_has_no_val(tmp_path):
    _flat(tmp_path / "train", 4)
    _flat(tmp_path / "test", 1)
    train = load_paired_datalist(tmp_path, "train", val_fraction=0.25)
    val = load_paired_datalist(tmp_path, "val", val_fraction=0.25)
    assert len(train) == 3 and len(val) == 1
    assert all("/train/" in d["image"] for d in train + val)


def test_each_split_logs_its_tile_count_and_how_it_was_made(tmp_path, caplog):
    _flat(tmp_path / "train", 4)
    _flat(tmp_path / "test", 2)
    spec = {"validation": [{"image": "test/case00.jpg", "label": "test/case00.png"}]}
    (tmp_path / "list.json").write_text(json.dumps(spec))
    with caplog.at_level("INFO", logger="monai_coco.data.datalist"):
        load_paired_datalist(tmp_path, "train", val_fraction=0.25, seed=3)
        load_paired_datalist(tmp_path, "val", val_fraction=0.25, seed=3)
        load_paired_datalist(tmp_path, "test")
        load_paired_datalist(tmp_path / "list.json", "val")
    root = tmp_path.resolve()
    seeded = f"a seeded split of the 4 pairs of the folder {root / 'train'} (val_fraction=0.25, seed=3)"
    assert caplog.messages == [
        f"train split: 3 tile(s), from {seeded}",
        f"val split: 1 tile(s), from {seeded}",
        f"test split: 2 tile(s), from the folder {root / 'test'}",
        f"val split: 1 tile(s), from the 'validation' list of {root / 'list.json'}",
    ]


def test_missing_test_split_is_file_not_found(tmp_path):
    _flat(tmp_path, 2)
    with pytest.raises(FileNotFoundError, match="test"):
        load_paired_datalist(tmp_path, "test")


def test_bad_settings_name_the_setting(tmp_path):
    _flat(tmp_path, 2)
    with pytest.raises(ValueError, match="val_fraction"):
        load_paired_datalist(tmp_path, "val", val_fraction=1.0)
    with pytest.raises(ValueError, match="split"):
        load_paired_datalist(tmp_path, "holdout")
    with pytest.raises(ValueError, match="label_map"):
        load_paired_datalist(tmp_path, label_map={"zero": 0})


def test_custom_label_map_accepts_its_values(tmp_path):
    _flat(tmp_path, 1, values=(0, 128))
    with pytest.raises(ValueError, match="case00.png"):
        load_paired_datalist(tmp_path)
    assert len(load_paired_datalist(tmp_path, label_map={0: 0, 128: 1, 255: 2})) == 1


# ---------------------------------------------------------------------------------------------- bad inputs
def test_image_without_mask(tmp_path):
    _flat(tmp_path, 1)
    _image(tmp_path / "lonely.jpg")
    with pytest.raises(FileNotFoundError, match=r"lonely\.jpg.*image without mask.*lonely\.png"):
        load_paired_datalist(tmp_path)


@pytest.mark.parametrize("split", ["train", "val"])
def test_a_file_problem_is_reported_before_the_seeded_split(tmp_path, split):
    """Too few pairs to split because a mask is missing: the message names the file, not the split."""
    _image(tmp_path / "lonely.jpg")
    with pytest.raises(FileNotFoundError, match=r"lonely\.jpg.*image without mask"):
        load_paired_datalist(tmp_path, split=split)


@pytest.mark.parametrize("split", ["train", "val"])
def test_empty_folder_is_reported_as_empty_for_a_seeded_split(tmp_path, split):
    with pytest.raises(ValueError, match=f"{tmp_path.name}.*empty folder"):
        load_paired_datalist(tmp_path, split=split)


def test_mask_without_image(tmp_path):
    _flat(tmp_path / "images", 0)
    _image(tmp_path / "images" / "a.jpg")
    _mask(tmp_path / "masks" / "a.png")
    _mask(tmp_path / "masks" / "orphan.png")
    with pytest.raises(FileNotFoundError, match=r"orphan\.png.*mask without image"):
        load_paired_datalist(tmp_path)


def test_flat_mask_without_image(tmp_path):
    _flat(tmp_path, 1)
    _mask(tmp_path / "ghost_mask.png")
    with pytest.raises(FileNotFoundError, match=r"ghost_mask\.png.*mask without image.*ghost"):
        load_paired_datalist(tmp_path)


def test_undecodable_file(tmp_path):
    _flat(tmp_path, 2)
    (tmp_path / "case01.jpg").write_bytes(b"this is not a JPEG")
    with pytest.raises(ValueError, match=r"case01\.jpg.*cannot be decoded"):
        load_paired_datalist(tmp_path)


def test_mask_size_differs_from_image(tmp_path):
    _image(tmp_path / "a.jpg", size=(16, 12))
    _mask(tmp_path / "a.png", size=(12, 16))
    with pytest.raises(ValueError, match=r"a\.png: mask size 12x16 differs .*16x12.*a\.jpg"):
        load_paired_datalist(tmp_path)


def test_mask_values_outside_label_map(tmp_path):
    _flat(tmp_path, 1, values=(0, 1, 255))  # {0, 1} and {0, 255} mixed
    a = np.zeros((12, 16), np.uint8)
    a[0, 0], a[1, 1] = 1, 255
    Image.fromarray(a).save(tmp_path / "case00.png")
    with pytest.raises(ValueError, match=r"case00\.png: mask values \[0, 1, 255\]"):
        load_paired_datalist(tmp_path)


def test_a_jpeg_damaged_mask_is_named_lossy_in_a_bounded_line(tmp_path):
    """A {0, 255} mask saved as JPEG holds dozens of values near the edge; the message
    shows a few of them, their count, and says the mask looks lossy."""
    _image(tmp_path / "a.jpg", size=(64, 64))
    rows, cols = np.mgrid[:64, :64]
    mask = np.where((rows - 30) ** 2 + (cols - 33) ** 2 < 17**2, 255, 0).astype(np.uint8)  # a disc
    Image.fromarray(mask).save(tmp_path / "a_mask.jpg", quality=50)
    values = np.unique(np.asarray(Image.open(tmp_path / "a_mask.jpg")))
    assert len(values) > 20  # the damage is real
    with pytest.raises(ValueError) as error:
        load_paired_datalist(tmp_path, mask_suffix=".jpg")
    line = [x for x in str(error.value).splitlines() if "a_mask.jpg" in x][0]
    assert f"({len(values)} values)" in line and "it looks lossy" in line and len(line) < 400


def test_a_tile_too_large_to_decode_whole_is_named_with_the_limit(tmp_path):
    """Checked from the header alone (a 6000x6000 JPEG header, not its pixels)."""
    _flat(tmp_path, 1)
    Image.new("RGB", (6000, 6000), (200, 100, 180)).save(tmp_path / "case00.jpg", quality=10)
    _mask(tmp_path / "case00.png", size=(6000, 6000))
    with pytest.raises(ValueError, match=r"case00\.jpg: image is 6000x6000 pixels, above the 32 Mpx"):
        load_paired_datalist(tmp_path)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_an_image_of_another_bit_depth_is_refused_not_misscaled(tmp_path, suffix):
    """The pipeline maps 0..255 to 0..1, so a 16-bit image would saturate."""
    _mask(tmp_path / "a_mask.png")
    deep = (np.arange(12 * 16, dtype=np.uint16).reshape(12, 16) * 300)
    if suffix == ".tif":
        tifffile.imwrite(tmp_path / "a.tif", deep)
    else:
        Image.fromarray(deep).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match=rf"a\{suffix}: image has 16 bits per sample; expected 8"):
        load_paired_datalist(tmp_path)


def test_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=f"{tmp_path.name}.*empty folder"):
        load_paired_datalist(tmp_path)


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_paired_datalist(tmp_path / "nowhere")


def test_image_channels_other_than_gray_rgb_rgba(tmp_path):
    _image(tmp_path / "gray_alpha.png", mode="LA")
    _mask(tmp_path / "gray_alpha_mask.png")
    with pytest.raises(ValueError, match=r"gray_alpha\.png: image colour model is LA \(2 channel"):
        load_paired_datalist(tmp_path)


def test_rgb_mask_is_rejected(tmp_path):
    _image(tmp_path / "a.jpg")
    _image(tmp_path / "a.png", mode="RGB")  # an RGB "mask"
    with pytest.raises(ValueError, match=r"a\.png: mask colour model is rgb"):
        load_paired_datalist(tmp_path)


def test_gray_and_rgba_images_are_accepted(tmp_path):
    _image(tmp_path / "g.png", mode="L")
    _mask(tmp_path / "g_mask.png")
    _image(tmp_path / "r.png", mode="RGBA")
    _mask(tmp_path / "r_mask.png", values=(0, 255))
    _image(tmp_path / "t.tif", mode="RGB")
    _mask(tmp_path / "t.png")
    assert len(load_paired_datalist(tmp_path)) == 3


def test_error_counts_the_other_problems(tmp_path):
    _flat(tmp_path, 3)
    (tmp_path / "case00.jpg").write_bytes(b"junk")
    _image(tmp_path / "extra.jpg")
    with pytest.raises(FileNotFoundError, match=r"and 1 more problem.*monai_coco\.data\.check"):
        load_paired_datalist(tmp_path)


def test_problems_of_other_splits_do_not_block_a_split(tmp_path):
    _flat(tmp_path / "train", 2)
    _flat(tmp_path / "test", 1)
    _image(tmp_path / "test" / "unlabelled.jpg")
    assert len(load_paired_datalist(tmp_path, "train", val_fraction=0.0)) == 2
    with pytest.raises(FileNotFoundError, match="unlabelled.jpg"):
        load_paired_datalist(tmp_path, "test")


# ---------------------------------------------------------------------------------------------- once per file
def test_files_are_read_once_and_reread_when_changed(tmp_path):
    _flat(tmp_path, 3)
    load_paired_datalist(tmp_path)
    misses = image_check._cached_info.cache_info().misses
    load_paired_datalist(tmp_path, "train")
    load_paired_datalist(tmp_path, "val")
    assert image_check._cached_info.cache_info().misses == misses  # no file read again
    bad = np.full((12, 16), 7, np.uint8)
    Image.fromarray(bad).save(tmp_path / "case01.png")
    stamp = (tmp_path / "case01.png").stat().st_mtime_ns + 10**9
    os.utime(tmp_path / "case01.png", ns=(stamp, stamp))
    with pytest.raises(ValueError, match=r"case01\.png: mask values \[7\]"):
        load_paired_datalist(tmp_path)


def test_truncated_image_found_by_full_decoding_only(tmp_path):
    _flat(tmp_path, 1)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        tmp_path / "big.jpg"
    )
    data = (tmp_path / "big.jpg").read_bytes()
    (tmp_path / "big.jpg").write_bytes(data[: len(data) // 2])
    _mask(tmp_path / "big.png", size=(64, 64))
    assert len(load_paired_datalist(tmp_path)) == 2  # headers are intact
    _, problems = check_dataset(tmp_path, decode_images=True)
    assert [Path(p.path).name for p in problems] == ["big.jpg"]


@pytest.mark.parametrize("layout", ["flat", "images_masks"])
def test_a_broken_link_is_named_as_such_not_as_an_image_without_mask(tmp_path, layout):
    """A data set of links into a store whose file moved: the link is named with its missing target."""
    image_dir = tmp_path / "d" / "train" / ("images" if layout == "images_masks" else "")
    mask_dir = tmp_path / "d" / "train" / ("masks" if layout == "images_masks" else "")
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image_dir / f"t{i}.jpg")
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(mask_dir / f"t{i}.png")
    (image_dir / "t1.jpg").unlink()
    (image_dir / "t1.jpg").symlink_to(tmp_path / "store" / "t1.jpg")
    _, problems = check_dataset(tmp_path / "d")
    assert [str(p) for p in problems] == [
        f"{image_dir / 't1.jpg'}: a broken link: its target {tmp_path / 'store' / 't1.jpg'} does not exist"
    ]
