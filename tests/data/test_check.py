"""``python -m monai_coco.data.check DIR`` lists every problem at once and sets the exit status."""

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from monai_coco.data.check import main


def _image(path: Path, size=(16, 12), mode="RGB") -> None:
    bands = {"RGB": 3, "LA": 2}[mode]
    a = np.random.default_rng(len(path.name)).integers(0, 256, (size[1], size[0], bands), dtype=np.uint8)
    Image.fromarray(a, mode).save(path)


def _mask(path: Path, size=(16, 12), values=(0, 1)) -> None:
    a = np.full((size[1], size[0]), values[0], np.uint8)
    a[: len(values) - 1] = np.asarray(values[1:], np.uint8)[:, None]
    Image.fromarray(a).save(path)


def _broken_folder(root: Path) -> list[str]:
    """A folder with one good pair and six different problems; returns the offending file names."""
    _image(root / "good.jpg")
    _mask(root / "good.png")
    _image(root / "no_mask.jpg")
    _mask(root / "no_image_mask.png")
    (root / "undecodable.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    _mask(root / "undecodable.png")
    _image(root / "small.jpg")
    _mask(root / "small_mask.png", size=(8, 8))
    _image(root / "values.jpg")
    _mask(root / "values.png", values=(0, 1, 255))
    _image(root / "two_channels.png", mode="LA")
    _mask(root / "two_channels_mask.png")
    return [
        "no_mask.jpg",
        "no_image_mask.png",
        "undecodable.jpg",
        "small_mask.png",
        "values.png",
        "two_channels.png",
    ]


def test_cli_lists_every_problem_and_fails(tmp_path):
    offenders = _broken_folder(tmp_path)
    run = subprocess.run(
        [sys.executable, "-m", "monai_coco.data.check", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stderr
    lines = run.stdout.strip().splitlines()
    assert len(lines) == len(offenders)
    assert sorted(Path(line.split(": ")[0]).name for line in lines) == sorted(offenders)
    assert "good" not in run.stdout
    assert f"{len(offenders)} problem(s)" in run.stderr


def test_clean_folder_passes_with_split_counts(tmp_path, capsys):
    for split, n in (("train", 2), ("val", 1)):
        (tmp_path / split).mkdir()
        for i in range(n):
            _image(tmp_path / split / f"t{i}.jpg")
            _mask(tmp_path / split / f"t{i}.png", values=(0, 255))
    assert main([str(tmp_path)]) == 0
    assert "OK: 3 pairs" in capsys.readouterr().out


def test_label_map_option_allows_its_values(tmp_path, capsys):
    _image(tmp_path / "a.jpg")
    _mask(tmp_path / "a.png", values=(0, 128))
    assert main([str(tmp_path)]) == 1
    assert "a.png: mask values [0, 128]" in capsys.readouterr().out
    assert main([str(tmp_path), "--label-map", "0:0,128:1"]) == 0


def test_missing_folder_is_a_problem(tmp_path, capsys):
    assert main([str(tmp_path / "absent")]) == 1
    assert "absent: not found" in capsys.readouterr().out
