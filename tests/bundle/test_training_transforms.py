"""The bundle's training transforms, built from its configs with MONAI's ConfigParser, on real files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bundle_runs import parse_stage
from PIL import Image

SIZE = 32


def _pair(folder, mask_values: tuple[int, int]) -> tuple[dict[str, str], np.ndarray]:
    """An RGB tile that is bright exactly where its mask is cancer (an asymmetric L-shaped region and a
    dot), and the mask with ``mask_values`` (background, cancer); returns the file pair and the region."""
    region = np.zeros((SIZE, SIZE), bool)
    region[4:20, 6:10] = region[16:20, 6:26] = region[28, 29] = True
    image = np.where(region[..., None], 200, 40).astype(np.uint8).repeat(3, axis=2)
    mask = np.where(region, mask_values[1], mask_values[0]).astype(np.uint8)
    paths = {"image": str(folder / "tile.png"), "label": str(folder / "tile_mask.png")}
    Image.fromarray(image).save(paths["image"])
    Image.fromarray(mask).save(paths["label"])
    return paths, region


@pytest.mark.parametrize("mask_values", [(0, 1), (0, 255)])
def test_training_transforms_make_label_mask_greater_than_zero(tmp_path, mask_values):
    """Masks in {0, 1} or {0, 255}: label = 1 exactly where the mask is > 0, wherever the random flips
    put it (the image, bright on the region, is flipped with it)."""
    parser = parse_stage("train_teacher.yaml", {"roi_size": [SIZE, SIZE]})
    preprocessing = parser.get_parsed_content("train#preprocessing")
    paths, region = _pair(tmp_path, mask_values)
    flipped = 0
    for seed in range(4):  # several draws of the random flips
        preprocessing.set_random_state(seed=seed)
        out = preprocessing(dict(paths))
        label, image = torch.as_tensor(out["label"]), torch.as_tensor(out["image"])
        assert label.shape == (1, SIZE, SIZE) and image.shape == (3, SIZE, SIZE)
        assert set(label.unique().tolist()) == {0.0, 1.0}
        assert int(label.sum()) == int(region.sum())
        torch.testing.assert_close(label[0], (image[0] > 0.5).to(label.dtype))
        flipped += not torch.equal(label[0].bool(), torch.from_numpy(region))
    assert flipped > 0  # the flips did run


def _data_folder(root) -> None:
    """``root/train`` with the pairs a, b, c, d (written out of order) and ``root/val`` the same."""
    train = root / "train"
    train.mkdir()
    for name in ("c", "a", "d", "b"):
        _pair(root, (0, 1))
        (root / "tile.png").rename(train / f"{name}.png")
        (root / "tile_mask.png").rename(train / f"{name}_mask.png")
    (root / "val").symlink_to(train)


def test_n_labelled_trains_on_the_first_tiles_of_the_sorted_training_list(tmp_path):
    """``n_labelled: N`` keeps the first N pairs of the training datalist (the benchmark's small labelled
    subset); null keeps them all; validation is untouched."""
    _data_folder(tmp_path)

    def datalists(n_labelled) -> tuple[list[str], int]:
        parser = parse_stage("train_teacher.yaml", {"dataset_dir": str(tmp_path), "n_labelled": n_labelled})
        names = [item["image"].rsplit("/", 1)[-1] for item in parser.get_parsed_content("train#datalist")]
        return names, len(parser.get_parsed_content("validate#datalist"))

    assert datalists(None) == (["a.png", "b.png", "c.png", "d.png"], 4)
    assert datalists(2) == (["a.png", "b.png"], 4)


@pytest.mark.parametrize("stage", ["train_teacher.yaml", "train.yaml"])
def test_a_bad_n_labelled_stops_with_one_line(stage, tmp_path):
    _data_folder(tmp_path)
    parser = parse_stage(stage, {"dataset_dir": str(tmp_path), "n_labelled": 0})
    with pytest.raises(SystemExit) as stop:
        parser.get_parsed_content("train#datalist")
    assert str(stop.value.code) == (
        "monai_coco: n_labelled=0 is not valid; expected None (all of them) or a whole number >= 1."
    )


def _accepted_variants(rgb: np.ndarray) -> dict[str, tuple[object, bool]]:
    """Writers of every colour model and layout the checker accepts, from one 8-bit RGB picture; each
    with whether it is gray (compared with the picture's luma) or colour (compared with the picture)."""
    import tifffile

    picture = Image.fromarray(rgb)
    luma = np.asarray(picture.convert("L"))
    return {
        "rgb.png": (lambda f: picture.save(f), False),
        "rgba.png": (lambda f: picture.convert("RGBA").save(f), False),
        "gray.png": (lambda f: picture.convert("L").save(f), True),
        "gray.jpg": (lambda f: picture.convert("L").save(f, quality=100), True),
        "rgb.tif": (lambda f: tifffile.imwrite(f, rgb, photometric="rgb"), False),
        "planar.tif": (lambda f: tifffile.imwrite(f, rgb.transpose(2, 0, 1), photometric="rgb",
                                                  planarconfig="separate"), False),  # fmt: skip
        "miniswhite.tif": (lambda f: tifffile.imwrite(f, 255 - luma, photometric="miniswhite"), True),
        "ycbcr_jpeg.tif": (lambda f: picture.save(f, compression="jpeg", quality=95), False),
    }


@pytest.mark.parametrize("name", list(_accepted_variants(np.zeros((1, 1, 3), np.uint8))))
def test_every_colour_model_the_checker_accepts_loads_as_its_8_bit_rgb_copy(tmp_path, name):
    """What ``python -m monai_coco.data.check`` says OK loads with the same intensities as
    the 8-bit RGB copy of the picture (gray ones: its BT.601 luma in every channel); JPEG within its loss."""
    from monai_coco.data import check_dataset

    rng = np.random.default_rng(0)
    rgb = np.repeat(np.repeat(rng.integers(0, 256, (SIZE // 4, SIZE // 4, 3), dtype=np.uint8), 4, 0), 4, 1)
    write, gray = _accepted_variants(rgb)[name]
    stem, suffix = name.rsplit(".", 1)
    write(tmp_path / f"{stem}.{suffix}")
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(tmp_path / f"{stem}_mask.png")
    _, problems = check_dataset(tmp_path)
    assert not problems, problems
    load = parse_stage("train_teacher.yaml", {"roi_size": [SIZE, SIZE]}).get_parsed_content("load_transforms")
    image = {"image": str(tmp_path / f"{stem}.{suffix}"), "label": str(tmp_path / f"{stem}_mask.png")}
    for transform in load:
        image = transform(image)
    loaded = torch.as_tensor(image["image"]).numpy()
    luma = np.asarray(Image.fromarray(rgb).convert("L"))
    expected = (luma[None].repeat(3, 0) if gray else rgb.transpose(2, 0, 1)) / 255.0
    error = np.abs(loaded - expected)
    assert loaded.shape == (3, SIZE, SIZE)
    if "jpg" in name or "jpeg" in name:  # lossy, chroma subsampled: small on average, bounded everywhere
        assert error.mean() <= 4 / 255 and error.max() <= 32 / 255
    else:  # exact up to the luma's rounding
        assert error.max() <= 1 / 255 + 1e-6
