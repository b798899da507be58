"""Unannotated tiles and slide patches: listing, the patch grid at the training scale, the labelled flag."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import PatchWSIDataset
from PIL import Image

from monai_coco.data import LazyTiffFileWSIReader, Slide, write_synthetic_slide
from monai_coco.data.unlabelled import MarkLabelledd, list_unlabelled, slide_patches


def _tile(path, value=100, size=(8, 6)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    """512×512 at 0.5 µm/px: levels 512, 256, 128 (downsample 1, 2, 4), with its mask pyramid beside."""
    path, _ = write_synthetic_slide(
        tmp_path_factory.mktemp("slide") / "slide.tif", size=512, mpp=0.5, tile=128
    )
    return path


def test_tiles_are_listed_recursively_and_sorted_skipping_hidden_files(tmp_path):
    for name in ("b.jpg", "a.png", "sub/c.tif", ".hidden/d.jpg", "notes.txt"):
        (_tile(tmp_path / name) if not name.endswith(".txt") else (tmp_path / name).write_text("x"))
    images = list_unlabelled(tmp_path)
    assert images.tiles == [str(tmp_path / n) for n in ("a.png", "b.jpg", "sub/c.tif")]
    assert images.slides == []
    assert images.tile_datalist()[0] == {"image": str(tmp_path / "a.png")}


def test_an_annotated_folder_an_empty_one_and_a_missing_one_are_refused(tmp_path):
    _tile(tmp_path / "x.jpg")
    _tile(tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"x.jpg has a mask beside it \(x.png\)"):
        list_unlabelled(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image; expected files ending in .jpg"):
        list_unlabelled(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        list_unlabelled(tmp_path / "nowhere")


def test_slides_are_found_and_their_mask_pyramid_is_not_an_image(slide):
    images = list_unlabelled(slide.parent)
    assert images.slides == [str(slide)] and images.tiles == []


@pytest.mark.parametrize("mpp, level, side", [(2.0, 2, 32), (3.0, 2, 48), (1.0, 1, 32)])
def test_patches_tile_the_level_at_the_training_scale(slide, mpp, level, side):
    # a 32-pixel patch at `mpp` covers 32·mpp µm = 32·mpp/0.5 level-0 pixels, read from the finest level no
    # coarser than `mpp`: 2.0 -> level 2 (2.0 µm/px) 32 px; 3.0 -> level 2, 48 px; 1.0 -> level 1, 32 px
    every = slide_patches(slide, mpp, 32, min_tissue=0.0)
    grid = (512 >> level) // side
    assert len(every) == grid * grid
    assert {(e["level"], tuple(e["size"])) for e in every} == {(level, (side, side))}
    step = side << level
    assert sorted(tuple(e["location"]) for e in every) == [
        (r * step, c * step) for r in range(grid) for c in range(grid)
    ]
    tissue = slide_patches(slide, mpp, 32)
    assert 0 < len(tissue) <= len(every) and all(e in every for e in tissue)


def test_patch_wsi_dataset_reads_the_listed_regions(slide):
    entries = slide_patches(slide, 2.0, 32)
    reader = LazyTiffFileWSIReader(channel_dim=0, dtype=np.uint8, mode="RGB")
    dataset = PatchWSIDataset(entries, include_label=False, center_location=False, reader=reader)
    with Slide(slide) as s:
        for i in (0, len(entries) - 1):
            top, left = (v >> 2 for v in entries[i]["location"])
            np.testing.assert_array_equal(np.asarray(dataset[i]["image"]), s.read(2, top, left, 32, 32))


def test_a_scale_finer_than_the_slide_and_a_bad_tissue_fraction_are_refused(slide):
    with pytest.raises(ValueError, match=r"0.5 µm/px at level 0, coarser than the training scale 0.25"):
        slide_patches(slide, 0.25, 32)
    with pytest.raises(ValueError, match="min_tissue"):
        slide_patches(slide, 2.0, 32, min_tissue=1.5)


def test_mark_labelled_flags_and_gives_unlabelled_samples_a_zero_mask_that_batches_with_real_ones():
    image = torch.rand(3, 5, 7)
    unlabelled = MarkLabelledd("image")({"image": image})
    labelled = MarkLabelledd("image", labelled=True)({"image": image, "label": torch.ones(1, 5, 7)})
    assert unlabelled["labelled"] == 0 and labelled["labelled"] == 1
    assert torch.equal(unlabelled["label"], torch.zeros(1, 5, 7)) and torch.equal(
        labelled["label"], torch.ones(1, 5, 7)
    )
    batch = torch.utils.data.default_collate([labelled, unlabelled])
    assert batch["labelled"].tolist() == [1, 0] and batch["label"].shape == (2, 1, 5, 7)
