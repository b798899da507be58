"""One checker for every input path: a bad image gets the same one-line problem whether it is an annotated
tile, a tile of the unannotated pool, or a tile or slide given to inference, before any work; the data check
lists them all."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from monai_coco.data import check_dataset
from monai_coco.data.check import main as check_main
from monai_coco.data.image_check import image_problems
from monai_coco.data.unlabelled import list_unlabelled
from monai_coco.inference import SlideInferenceConfig, inference_dataset

RGB = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)


def _sixteen_bit(path: Path) -> str:
    Image.fromarray(np.full((32, 48), 40000, np.uint16)).save(path.with_suffix(".png"))
    return "image has 16 bits per sample; expected 8"


def _cmyk(path: Path) -> str:
    Image.fromarray(RGB).convert("CMYK").save(path.with_suffix(".jpg"))
    return "image colour model is CMYK (4 channel(s)); expected gray (1 channel), RGB (3) or RGBA (4)"


def _truncated(path: Path) -> str:
    Image.fromarray(RGB).save(path.with_suffix(".jpg"), quality=90)
    data = path.with_suffix(".jpg").read_bytes()
    path.with_suffix(".jpg").write_bytes(data[: len(data) // 2])
    return "image cannot be decoded"


def _broken_link(path: Path) -> str:
    path.with_suffix(".jpg").symlink_to(path.parent / "moved_away.jpg")
    return "a broken link: its target"


BAD = {"16-bit": _sixteen_bit, "CMYK": _cmyk, "truncated": _truncated, "broken link": _broken_link}


def _write_bad(folder: Path, kind: str) -> tuple[Path, str]:
    folder.mkdir(parents=True, exist_ok=True)
    expected = BAD[kind](folder / "bad")
    return next(p for p in folder.iterdir() if p.stem == "bad"), expected


@pytest.mark.parametrize("kind", sorted(BAD))
def test_a_bad_tile_is_the_same_one_line_problem_on_every_input_path(tmp_path, kind, capsys):
    annotated = tmp_path / "annotated"
    bad, expected = _write_bad(annotated, kind)
    Image.fromarray(np.zeros((32, 48), np.uint8)).save(annotated / "bad_mask.png")
    _, problems = check_dataset(annotated)
    from_datalist = [str(p) for p in problems if p.path == str(bad)]
    assert len(from_datalist) == 1 and expected in from_datalist[0]
    words = from_datalist[0][len(str(bad)) :]  # what the checker says after the file's name

    pool = tmp_path / "pool"
    bad_in_pool, _ = _write_bad(pool, kind)
    Image.fromarray(RGB).save(pool / "good.jpg")
    with pytest.raises((ValueError, FileNotFoundError)) as from_pool:
        list_unlabelled(pool)

    inputs = tmp_path / "inputs"
    bad_input, _ = _write_bad(inputs, kind)
    with pytest.raises((ValueError, FileNotFoundError)) as from_inference:
        inference_dataset(inputs)

    for error, path in ((from_pool, bad_in_pool), (from_inference, bad_input)):
        message = str(error.value)  # (a broken link's target lies in the link's own folder)
        assert "\n" not in message and message == f"{path}{words.replace(str(annotated), str(path.parent))}"

    assert check_main(["--images", str(pool)]) == 1  # the data check lists it, and passes the good one
    out = capsys.readouterr()
    assert out.out.splitlines() == [str(from_pool.value)]
    assert "1 problem(s)" in out.err and "(2 images)" in out.err


def _slide_without_scale(path: Path) -> Path:
    """A tiled RGB TIFF (a slide: read by regions) recording no µm/px."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tissue = np.full((512, 512, 3), 230, np.uint8)
    tissue[128:384, 128:384] = (150, 60, 140)
    tifffile.imwrite(path, tissue, tile=(256, 256), photometric="rgb")
    return path


def test_a_slide_of_unknown_scale_is_refused_naming_slide_mpp_before_any_work(tmp_path):
    slide = _slide_without_scale(tmp_path / "inputs" / "s.tif")
    (tmp_path / "pool").mkdir()
    os.link(slide, tmp_path / "pool" / "s.tif")
    unknown = rf"^{slide}: the slide records no µm/px .*; expected its level-0 µm/px as slide_mpp$"
    with pytest.raises(ValueError, match=unknown):
        inference_dataset(slide, config=SlideInferenceConfig(mpp=2.0))
    with pytest.raises(ValueError, match="expected its level-0 µm/px as slide_mpp"):
        list_unlabelled(tmp_path / "pool")
    given = inference_dataset(slide, config=SlideInferenceConfig(mpp=2.0, slide_mpp=0.5))
    assert [item["image"] for item in given] == [str(slide)]
    assert list_unlabelled(tmp_path / "pool", slide_mpp=0.5).slides == [str(tmp_path / "pool" / "s.tif")]
    assert len(inference_dataset(slide, config=SlideInferenceConfig(mpp=2.0, level=0))) == 1  # read as it is


def test_the_first_problem_counts_the_others_and_names_the_command_that_lists_them(tmp_path):
    _write_bad(tmp_path, "CMYK")
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(ValueError) as error:
        inference_dataset(tmp_path)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'bad.jpg'}: image colour model is CMYK")
    assert message.endswith(
        f"(1 more problem(s) in {tmp_path}: python -m monai_coco.data.check --images lists them all)"
    )


def test_a_file_name_that_is_not_utf8_is_named_escaped_before_any_work(tmp_path):
    """A name of bytes that are no UTF-8 (a file system takes them; JSON summaries and GeoJSON are UTF-8
    text) is one problem, the name shown with its bytes escaped, never an encoding error after the work."""
    raw = os.path.join(os.fsencode(tmp_path), b"bad\xff\xfename.png")
    with open(raw, "wb") as f:
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(f, format="PNG")
    (problem,) = image_problems(Path(os.fsdecode(raw)))
    assert problem.path == f"{tmp_path}/bad\\xff\\xfename.png"
    assert problem.message == (
        "its name is not valid UTF-8 (the outputs and summaries name it in UTF-8 text); expected a UTF-8 "
        "file name: rename it"
    )
