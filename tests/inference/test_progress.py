"""InferenceProgress over real tiny slides: bars on a real terminal (``python -m monai_coco.inference`` on a
pseudo-terminal), plain lines in a log."""

import numpy as np
import pytest
import torch
from terminal import PYTHON, run_in_terminal, run_piped

from monai_coco.inference import (
    InferenceProgress,
    SlideInferenceEvaluator,
    infer_file,
    inference_dataset,
    make_segmenter,
)

from .test_cohort import NETWORK
from .test_whole_slide import ColourNet, _config, _scene, _write_slide


@pytest.fixture
def slides(tmp_path):
    """Two 128 x 192 slides: 40 windows of 32 at overlap 0.25 each, in chunks of 16, 16, 4, 4 (chunk 96)."""
    folder = tmp_path / "slides"
    folder.mkdir()
    img, _ = _scene(128, 192)
    for i in range(2):
        _write_slide(folder / f"s{i}.tif", np.roll(img, 16 * i, axis=1), levels=1)
    return folder


def _segment(slides, out, progress):
    """What run_cohort does with its progress, here with a given one."""
    segmenter = make_segmenter(ColourNet(), _config(min_tissue_fraction=0))
    images = sorted(slides.iterdir())
    progress.start(len(images), segmenter)
    for image in images:
        progress.image_started(image.name)
        infer_file(segmenter, image, out, _config(min_tissue_fraction=0))
        progress.image_done()
    progress.close()
    return segmenter


def test_a_log_gets_a_line_per_slide_done_and_lines_through_a_long_slide(slides, tmp_path, caplog):
    caplog.set_level("INFO", logger="monai_coco.inference")
    segmenter = _segment(slides, tmp_path / "out", InferenceProgress(log_percent=25, log_seconds=0))
    lines = [r.getMessage() for r in caplog.records if r.name == "monai_coco.inference"]
    # each step of 25 % passed is said once, at the chunk that passes it
    for name in ("s0.tif", "s1.tif"):
        windows = [line for line in lines if line.startswith(f"{name}: ")]
        assert windows == [f"{name}: 16 of 40 windows (40%)", f"{name}: 32 of 40 windows (80%)",
                           f"{name}: 40 of 40 windows (100%)"]  # fmt: skip
    done = [line for line in lines if " done in " in line]
    assert len(done) == 2 and done[0].startswith("s0.tif done in ") and done[1].startswith("s1.tif done in ")
    assert ": 1 of 2 image(s), about 00:0" in done[0]  # the time left: the second takes as long as the first
    assert done[1].endswith("2 of 2 image(s), about 00:00 left")
    assert segmenter.progress is None  # given back

    caplog.clear()  # a quick slide (under log_seconds): no windows line, only its line when done
    _segment(slides, tmp_path / "again", InferenceProgress(log_seconds=3600))
    assert [r.getMessage().split(" done in ")[0] for r in caplog.records if "windows" in r.getMessage()
            or " done in " in r.getMessage()] == ["s0.tif", "s1.tif"]  # fmt: skip


def test_an_inference_evaluator_reports_the_images_it_segments(slides, tmp_path, caplog):
    out = tmp_path / "out"
    infer_file(ColourNet(), slides / "s0.tif", out, _config(min_tissue_fraction=0))  # done before the run
    caplog.set_level("INFO", logger="monai_coco.inference")
    progress = InferenceProgress(log_percent=50, log_seconds=0)
    dataset, config = inference_dataset(slides), _config(min_tissue_fraction=0)
    engine = SlideInferenceEvaluator(dataset, ColourNet(), out, config, val_handlers=[progress])
    engine.run()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(("s0.tif", "s1.tif"))]
    assert lines[:2] == ["s1.tif: 32 of 40 windows (80%)", "s1.tif: 40 of 40 windows (100%)"]  # s0: skipped
    assert len(lines) == 3 and lines[2].startswith("s1.tif done in ")
    assert lines[2].endswith(": 1 of 1 image(s), about 00:00 left")  # the images to do, not those done before
    assert engine.segmenter.progress is None  # given back


@pytest.mark.parametrize("bad", [{"log_percent": 0}, {"log_percent": 101}, {"log_seconds": -1}])
def test_bad_log_settings_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        InferenceProgress(**bad)


def test_the_command_line_draws_bars_on_a_terminal_and_writes_lines_to_a_file(slides, tmp_path):
    torch.save({"model": ColourNet().conv.state_dict()}, tmp_path / "model.pt")
    args = ["--checkpoint", str(tmp_path / "model.pt"), "--network", NETWORK, "--roi", "32", "32"]
    args += ["--chunk-size", "96", "--device", "cpu", "--runtime", "torch", "--threads", "1"]
    args += ["--min-tissue", "0"]
    command = [PYTHON, "-m", "monai_coco.inference", str(slides)]

    every_update = {"TQDM_MININTERVAL": "0", "TQDM_MINITERS": "1"}  # tqdm's defaults: draw every update
    drawn = run_in_terminal([*command, str(tmp_path / "terminal"), *args], every_update)
    visible = [line.split("\r")[-1] for line in drawn.split("\n")]  # each line as the terminal shows it
    assert "images: 100%" in drawn and "2/2 [" in drawn  # the cohort's bar, with its time left
    drawings = drawn.replace("\n", "\r").split("\r")  # every drawing of a line
    for name in ("s0.tif", "s1.tif"):  # each slide's windows done of its windows, redrawn every chunk
        bars = [bar for bar in drawings if bar.startswith(f"{name}: ") and "window/s]" in bar]
        counts = ("0/40", "16/40", "32/40", "36/40", "40/40")
        assert all(any(f"| {n} [" in bar for bar in bars) for n in counts), bars
    done = [line for line in visible if " done in " in line]
    assert [line.split(" ")[0] for line in done] == ["s0.tif", "s1.tif"]  # each on a line of its own
    assert not any("%|" in line and " done in " in line for line in visible)  # no line inside a bar

    written = run_piped([*command, str(tmp_path / "piped"), *args])  # a log file: lines, no bar
    assert "%|" not in written and "s1.tif done in" in written and "2 of 2 image(s)" in written
