"""HEStainNormalize(d): Macenko normalisation through MONAI's NormalizeHEStains, on synthetic H&E tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.apps.pathology.transforms import NormalizeHEStains
from monai.data import MetaTensor

from monai_coco.data import HEStainNormalize, HEStainNormalized, synthetic_tile


def _tile(seed: int = 0, size: int = 64) -> np.ndarray:
    image, _ = synthetic_tile(size=size, seed=seed)
    return np.moveaxis(np.asarray(image), -1, 0)  # (3, H, W) uint8


def test_channel_first_result_equals_monai_on_the_channel_last_tile():
    rgb = _tile()
    expected = np.moveaxis(NormalizeHEStains()(np.ascontiguousarray(np.moveaxis(rgb, 0, -1))), -1, 0)
    out = HEStainNormalize()(rgb)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    np.testing.assert_array_equal(out, expected)
    assert not np.array_equal(out, rgb)  # the stain did change


def test_two_stainings_of_one_tile_come_closer_after_normalisation():
    """The same tile with its optical density scaled per channel (a second site's stain): the normalised
    tiles differ far less than the raw ones (measured: 2.5 against 11.2 grey levels). The tile holds both
    stains in quantity; on a tile of mostly one stain Macenko's estimate is known to be unstable."""
    rgb = _tile(0, size=128).astype(np.float64)
    density = -np.log((rgb + 1) / 256)
    restained = np.clip(256 * np.exp(-density * np.array([1.25, 0.8, 1.1])[:, None, None]) - 1, 0, 255)
    normalize = HEStainNormalize()
    raw_gap = np.abs(rgb - restained).mean()
    gap = np.abs(normalize(rgb).astype(np.float64) - normalize(restained).astype(np.float64)).mean()
    assert gap < 0.5 * raw_gap


def test_types_metadata_and_a_blank_tile_are_kept():
    rgb = _tile()
    meta = MetaTensor(torch.from_numpy(rgb.astype(np.float32)), meta={"filename_or_obj": "tile.jpg"})
    out = HEStainNormalized(keys="image")({"image": meta, "label": "untouched"})
    assert isinstance(out["image"], MetaTensor) and out["image"].dtype == torch.float32
    assert out["image"].meta["filename_or_obj"] == "tile.jpg" and out["label"] == "untouched"
    np.testing.assert_array_equal(out["image"].numpy(), HEStainNormalize()(rgb).astype(np.float32))
    blank = np.full((3, 8, 8), 250, dtype=np.uint8)  # glass only: no stain to estimate
    assert HEStainNormalize()(blank) is blank


@pytest.mark.parametrize(
    ("image", "message"),
    [(np.zeros((1, 8, 8)), r"RGB image \(3, H, W\)"), (np.full((3, 8, 8), 1.0e3), r"\[0, 255\]")],
)
def test_bad_images_are_refused(image, message):
    with pytest.raises(ValueError, match=message):
        HEStainNormalize()(image)


def _glass(value: int = 250) -> np.ndarray:
    return np.full((3, 64, 64), value, dtype=np.uint8)


def _specks(count: int) -> np.ndarray:
    image = _glass()
    for k in range(count):  # saturated violet dust on glass, one pixel each
        image[:, 10 + 20 * k, 10 + 15 * k] = (150 - 30 * k, 60 - 20 * k, 160 - 10 * k)
    return image


@pytest.mark.parametrize(
    "name", ["blank", "one speck", "two specks", "light-grey glass", "a sliver of tissue (1.6 % of the tile)"]
)
def test_glass_and_near_glass_pass_through_unchanged(name):
    """Measured by the tissue detector, not by whether the eigen-solver converges: a blank tile, dust specks
    (which used to stop the eigen-solver, or turn the tile black), light-grey glass (which became dark
    "tissue") and a sliver below ``min_tissue_fraction`` are returned as they are."""
    images = {"blank": _glass(), "one speck": _specks(1), "two specks": _specks(2)}
    images["light-grey glass"] = _glass(200)
    sliver = _glass()
    sliver[:, :, :1] = _tile()[:, :, :1]  # one column of a tissue tile: 1/64 of the pixels
    images["a sliver of tissue (1.6 % of the tile)"] = sliver
    image = images[name]
    assert HEStainNormalize()(image) is image


def test_a_failed_estimate_returns_the_image_with_a_warning_not_an_exception(caplog):
    normalize = HEStainNormalize()

    def diverge(image):
        raise np.linalg.LinAlgError("Eigenvalues did not converge")

    normalize.normalizer = diverge
    rgb = _tile()
    assert normalize(rgb) is rgb and "stain estimate failed (Eigenvalues did not converge)" in caplog.text
    with pytest.raises(ValueError, match="min_tissue_fraction"):
        HEStainNormalize(min_tissue_fraction=1.5)
