"""Unannotated tiles and slide patches: listing, the patch grid at the training scale, the labelled flag."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from monai_coco.data import Slide, write_synthetic_slide
from monai_coco.data.unlabelled import MarkLabelledd, ReadSlidePatchd, list_unlabelled, slide_patches


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


@pytest.mark.parametrize("mpp, side", [(2.0, 128), (3.0, 85), (1.0, 256)])
def test_patches_tile_the_slide_seen_at_the_training_scale(slide, mpp, side):
    # the 512² slide at 0.5 µm/px seen at `mpp` is round(512 · 0.5 / mpp) pixels a side; 32² patches tile it
    every = slide_patches(slide, mpp, 32, min_tissue=0.0)
    grid = side // 32
    assert len(every) == grid * grid and {tuple(e["size"]) for e in every} == {(32, 32)}
    assert {e["mpp"] for e in every} == {mpp}
    assert sorted(tuple(e["location"]) for e in every) == [
        (r * 32, c * 32) for r in range(grid) for c in range(grid)
    ]
    tissue = slide_patches(slide, mpp, 32)
    assert 0 < len(tissue) <= len(every) and all(e in every for e in tissue)


@pytest.mark.parametrize("reader", ["tifffile", "openslide"])
def test_read_slide_patch_gives_the_level_at_its_scale_or_pil_s_antialiased_resize_of_it(slide, reader):
    """2.0 µm/px is level 2 as it is; 3.0 µm/px is level 2 reduced 1.5 times: Pillow's antialiased bilinear
    resize of the whole level (an independent reference) within 1 grey level (its fixed-point rounding)."""
    read = ReadSlidePatchd(keys="image")
    with Slide(slide, reader) as s:
        level2 = s.read(2, 0, 0, 128, 128)
    for mpp in (2.0, 3.0):
        entries = slide_patches(slide, mpp, 32, reader=reader, min_tissue=0.0)
        side = 128 / (mpp / 2.0)
        box = (0, 0, int(side) * mpp / 2.0, int(side) * mpp / 2.0)  # the grid: mpp / 2 level pixels each
        level_image = Image.fromarray(np.moveaxis(level2, 0, -1))
        resized = level_image.resize((int(side),) * 2, Image.BILINEAR, box=box, reducing_gap=None)
        reference = np.asarray(resized)
        for entry in (entries[0], entries[-1]):
            patch = read(entry)["image"]
            assert patch.dtype == torch.float32 and patch.shape == (3, 32, 32)
            top, left = entry["location"]
            expected = np.moveaxis(reference[top : top + 32, left : left + 32], -1, 0)
            assert np.abs(patch.numpy() - expected).max() <= (0 if mpp == 2.0 else 1), mpp


def test_a_scale_much_finer_than_the_slide_and_a_bad_tissue_fraction_are_refused(slide):
    with pytest.raises(ValueError, match=r"0.5 µm/px at level 0, coarser than the training scale 0.25"):
        slide_patches(slide, 0.25, 32)
    assert slide_patches(slide, 0.45, 32, min_tissue=0.0)  # 1.1 times finer: level 0, upsampled
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


@pytest.mark.parametrize("masks", ["masks", "labels"])
@pytest.mark.parametrize("where", ["", "site1"])
def test_a_folder_in_the_images_masks_layout_is_refused_wherever_it_sits(tmp_path, masks, where):
    """The masks are not images: an ``images/`` + ``masks/`` (or ``labels/``) folder, at the top or below,
    is an annotated data set (give it as ``dataset_dir``)."""
    annotated = tmp_path / where
    for sub in ("images", masks):
        (annotated / sub).mkdir(parents=True)
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(annotated / sub / "t0.png")
    with pytest.raises(ValueError, match=rf"^{annotated} is annotated \(images/ with {masks}/ beside it\)"):
        list_unlabelled(tmp_path)
