"""ColorChannelsd: gray/RGB/RGBA tiles to the network's RGB or gray input, checked against PIL."""

import numpy as np
import pytest
import torch
from monai.data import PILReader
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, MapLabelValued
from PIL import Image

from monai_coco.data import ColorChannels, ColorChannelsd


@pytest.fixture
def rgba_tile(tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (8, 10, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    mask = np.zeros((8, 10), np.uint8)
    mask[2:5, 3:7] = 255
    Image.fromarray(mask).save(tmp_path / "t_mask.png")
    return tmp_path, rgba


def _load(channels: int):
    return Compose(
        [
            LoadImaged(["image", "label"], reader=PILReader(reverse_indexing=False), image_only=True),
            EnsureChannelFirstd(["image", "label"]),
            ColorChannelsd("image", channels=channels),
            MapLabelValued("label", orig_labels=[0, 1, 255], target_labels=[0, 1, 1]),
        ]
    )


def test_rgba_file_becomes_rgb_and_mask_becomes_0_1(rgba_tile):
    folder, rgba = rgba_tile
    out = _load(3)({"image": str(folder / "t.png"), "label": str(folder / "t_mask.png")})
    assert out["image"].shape == (3, 8, 10)
    np.testing.assert_array_equal(out["image"].numpy(), rgba[..., :3].transpose(2, 0, 1))
    assert sorted(torch.unique(out["label"]).tolist()) == [0, 1]
    assert out["label"].sum().item() == 12


def test_gray_output_matches_pil_luma(rgba_tile):
    folder, rgba = rgba_tile
    out = _load(1)({"image": str(folder / "t.png"), "label": str(folder / "t_mask.png")})
    reference = np.asarray(Image.fromarray(rgba[..., :3]).convert("L"), np.float64)
    assert out["image"].shape == (1, 8, 10)
    assert (
        np.abs(out["image"][0].numpy().astype(np.float64) - reference).max() <= 1
    )  # PIL rounds in fixed point


def test_gray_is_repeated_to_rgb_for_numpy_and_tensors():
    gray = np.arange(12, dtype=np.uint8).reshape(1, 3, 4)
    for img in (gray, torch.as_tensor(gray)):
        rgb = ColorChannels(3)(img)
        assert tuple(rgb.shape) == (3, 3, 4)
        assert all((np.asarray(rgb[c]) == gray[0]).all() for c in range(3))


def test_float_rgb_to_gray_is_the_weighted_sum():
    img = torch.tensor([1.0, 0.0, 0.0]).reshape(3, 1, 1) * torch.ones(3, 2, 2)
    assert torch.allclose(ColorChannels(1)(img), torch.full((1, 2, 2), 0.299))


def test_bad_channel_counts_and_settings():
    with pytest.raises(ValueError, match=r"\(2, 4, 4\)"):
        ColorChannels(3)(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="channels"):
        ColorChannels(2)
