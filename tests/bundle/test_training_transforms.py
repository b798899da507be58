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
    assert str(stop.value.code) == "monai_coco: n_labelled=0 must be null (all) or an integer >= 1."
