"""The fine-structure synthetic data set: determinism, the split by slide, masks, matched colour, atypia."""

import re

import numpy as np
import pytest
from scipy import ndimage
from skimage.color import rgb2hed

from monai_coco.data import load_paired_datalist
from monai_coco.data.synthetic import (
    HistologySlide,
    histology_dataset,
    synthetic_tile,
    write_histology_dataset,
)
from monai_coco.data.synthetic.__main__ import main

SMALL = {"n_train": 5, "n_val": 2, "n_test": 3, "n_unlabelled": 2, "tiles_per_slide": 2, "size": 64}


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.*"))}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    histology_dataset(tmp_path / "a", **SMALL, seed=3)
    histology_dataset(tmp_path / "b", **SMALL, seed=3)
    write_histology_dataset(tmp_path / "c", **SMALL, seed=4)
    a, b, c = (_files(tmp_path / k) for k in "abc")
    assert a == b
    assert a["train/slide000_00.jpg"] != c["train/slide000_00.jpg"]


def test_splits_come_from_disjoint_slides_and_unlabelled_has_no_masks(tmp_path):
    root = histology_dataset(tmp_path, **SMALL)
    slides = {}
    for split in ("train", "val", "test", "unlabelled"):
        names = sorted(p.name for p in (tmp_path / split).iterdir())
        slides[split] = {re.match(r"slide(\d{3})_\d{2}\.", n).group(1) for n in names}
        assert len([n for n in names if n.endswith(".jpg")]) == SMALL[f"n_{split}"]
        if split == "unlabelled":
            assert all(n.endswith(".jpg") for n in names)
    # 5 training tiles at 2 per slide: 3 slides, then 1, 2 and 1 slides
    assert slides == {
        "train": {"000", "001", "002"},
        "val": {"003"},
        "test": {"004", "005"},
        "unlabelled": {"006"},
    }
    assert len(load_paired_datalist(root, split="test")) == 3  # the bundle's loader reads the layout


def test_cache_is_reused_and_remade_when_settings_change(tmp_path):
    histology_dataset(tmp_path, **SMALL)
    marker = tmp_path / "train" / "marker.txt"
    marker.write_text("kept while the settings match")
    histology_dataset(tmp_path, **SMALL)
    assert marker.exists()
    histology_dataset(tmp_path, **{**SMALL, "n_unlabelled": 0})
    assert not marker.exists() and not (tmp_path / "unlabelled").exists()


def _tiles(n_slides=6, per_slide=4, size=96):
    return [HistologySlide(0, s, tile_size=size).tile(k) for s in range(n_slides) for k in range(per_slide)]


def test_masks_are_binary_and_both_classes_are_present():
    masks = np.stack([m for _, m in _tiles()])
    assert set(np.unique(masks)) == {0, 1}
    assert 0.2 < masks.mean() < 0.8
    assert sum(0 < m.mean() < 1 for m in masks) >= 8  # many tiles hold both classes


def test_tumour_and_benign_have_the_same_mean_colour_unlike_the_built_in_set():
    """Pooled over 24 tiles of 6 slides, the mean RGB of tumour pixels and of benign pixels (lymphoid
    infiltrates, reactive stroma, glands) differ by < 4 grey levels per channel; in the built-in data set,
    at the same scale, tumour is darker by > 15."""

    def difference(tiles):
        rgb = np.concatenate([r.reshape(-1, 3) for r, _ in tiles]).astype(np.float64)
        mask = np.concatenate([m.ravel() for _, m in tiles]).astype(bool)
        return rgb[mask].mean(0) - rgb[~mask].mean(0)

    assert np.abs(difference(_tiles())).max() < 4
    assert difference([synthetic_tile(s, 96, 1.5) for s in range(24)])[:2].min() < -15


def test_tumour_nuclei_are_larger():
    """Nuclei as blobs of the top 20 % hematoxylin (colour deconvolution) of each tile: the median area of
    those wholly in tumour is > 1.2x that of those wholly in benign tissue (measured: 12 against 9 px)."""
    areas = {0: [], 1: []}
    for rgb, mask in _tiles():
        h = rgb2hed(rgb)[..., 0]
        blobs, n = ndimage.label(h > np.quantile(h, 0.8))
        index = np.arange(1, n + 1)
        area = ndimage.sum(np.ones_like(h), blobs, index)
        tumour = ndimage.mean(mask.astype(np.float64), blobs, index)
        areas[1] += list(area[(tumour > 0.99) & (area >= 3)])
        areas[0] += list(area[(tumour < 0.01) & (area >= 3)])
    assert min(len(areas[0]), len(areas[1])) > 100
    assert np.median(areas[1]) > 1.2 * np.median(areas[0])


@pytest.mark.parametrize(
    "setting, value",
    [
        ("n_train", 0),
        ("n_test", 0),
        ("n_val", -1),
        ("n_unlabelled", -1),
        ("tiles_per_slide", 0),
        ("size", 16),
    ],
)
def test_bad_arguments_name_the_setting(tmp_path, setting, value):
    with pytest.raises(ValueError, match=setting):
        histology_dataset(tmp_path, **{**SMALL, setting: value})
    assert not (tmp_path / "train").exists()


def test_bad_mpp_names_the_setting(tmp_path):
    with pytest.raises(ValueError, match="mpp"):
        write_histology_dataset(tmp_path, **SMALL, mpp=0)


def test_cli_writes_the_histology_set(tmp_path, capsys):
    argv = [
        "--histology",
        "--out",
        str(tmp_path),
        "--n",
        "2",
        "--n-val",
        "1",
        "--n-test",
        "1",
        "--size",
        "32",
    ]
    assert main(argv) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test", "train", "val"]
    assert "wrote 2 train tiles" in capsys.readouterr().out
