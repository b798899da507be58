"""EXIF orientation: a tile stored rotated (EXIF Orientation 6: 90° clockwise to show) is read upright by the
data check, the bundle's training loader and inference's reader, so it stays aligned with its mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from monai.bundle import ConfigParser
from PIL import Image

from monai_coco.data import check_dataset
from monai_coco.data.check import main as check_main
from monai_coco.data.orientation import ORIENTATION_TAG
from monai_coco.data.slide_io import read_image

ROOT = Path(__file__).resolve().parents[2]


def _upright_tile() -> np.ndarray:
    """48 (H) x 64 (W) RGB: tissue (dark red) on the left half, glass on the right."""
    tile = np.full((48, 64, 3), 235, np.uint8)
    tile[:, :32] = (150, 60, 120)
    return tile


def _write_rotated(folder: Path) -> Path:
    """The upright tile stored as a viewer would un-rotate with orientation 6 (stored = upright rotated 90°
    counter-clockwise), and its upright mask."""
    folder.mkdir(parents=True, exist_ok=True)
    upright = _upright_tile()
    stored = Image.fromarray(np.rot90(upright, k=1))  # 64 (H) x 48 (W): tissue on the top half
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    stored.save(folder / "t0.jpg", exif=exif.tobytes(), quality=100)
    Image.fromarray(((upright[..., 0] < 200) * 255).astype(np.uint8)).save(folder / "t0.png")
    return folder / "t0.jpg"


def test_the_data_check_reads_the_upright_size_and_says_so(tmp_path, capsys):
    _write_rotated(tmp_path / "d")
    found, problems = check_dataset(tmp_path / "d")
    assert problems == [] and len(found["all"]) == 1  # 48 x 64 upright, as the mask: no size mismatch
    assert check_main([str(tmp_path / "d")]) == 0
    note = "note: 1 image(s) store their pixels rotated or mirrored with an EXIF orientation"
    assert note in capsys.readouterr().out


@pytest.mark.parametrize("reader", ["training", "inference"])
def test_the_readers_apply_the_orientation(tmp_path, reader):
    path = _write_rotated(tmp_path / "d")
    if reader == "training":
        parser = ConfigParser(ConfigParser.load_config_file(ROOT / "bundle" / "configs" / "base.yaml"))
        image = np.asarray(parser.get_parsed_content("load_transforms")[0]({"image": str(path)})["image"])
        image = np.moveaxis(image, -1, 0) if image.shape[-1] == 3 else image
    else:
        image = read_image(path)
    assert image.shape == (3, 48, 64)
    assert image[0, :, :30].mean() < 170 < image[0, :, 34:].mean()  # tissue on the left, as the mask
