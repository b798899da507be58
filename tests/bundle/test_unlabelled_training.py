"""Stage 2 with ``--unlabelled_dir``: unannotated tiles and a slide's tissue patches join the student's
training data (python -m monai.bundle, after the session's tiny teacher and paraphraser stages)."""

from __future__ import annotations

import math
import re
import shutil

import pytest
from bundle_runs import CRITIC, DATA, LOADER, TEACHER, cli, config_arg, run_bundle

pytestmark = pytest.mark.slow


def test_training_with_unlabelled_tiles_and_a_slide(trained_bundle, tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    for tile in sorted((trained_bundle.root / "data" / "synthetic" / "test").glob("*.jpg")):
        shutil.copy(tile, pool)  # images without their masks
    shutil.copy(trained_bundle.slide, pool / "slide.tif")
    n_tiles = len(list(pool.glob("*.jpg")))
    result = run_bundle(
        "run", "training", "--config_file", config_arg(trained_bundle.configs, "train.yaml"),
        "--bundle_root", str(trained_bundle.root), *cli(DATA, LOADER, TEACHER, CRITIC),
        "--unlabelled_dir", str(pool), "--model_name", "student_unlabelled.pt",
    )  # fmt: skip
    log = result.stdout + result.stderr
    # one epoch over 4 annotated tiles, the pool's tiles and the slide's tissue patches, batch 2
    iterations = {int(m) for m in re.findall(r"Iter: \d+/(\d+)", log)}
    assert len(iterations) == 1
    (n,) = iterations
    assert n > math.ceil((4 + n_tiles) / 2)  # the slide gave patches too
    assert (trained_bundle.models / "student_unlabelled.pt").is_file()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"unlabelled_dir": "/nowhere"}, "monai_coco: unlabelled_dir='/nowhere': /nowhere is not a folder"),
        (
            {"unlabelled_dir": ".", "distill": "none"},
            "monai_coco: unlabelled_dir needs a distillation method",
        ),
    ],
)
def test_bad_unlabelled_settings_stop_with_one_line(trained_bundle, overrides, message):
    result = run_bundle(
        "run", "training", "--config_file", config_arg(trained_bundle.configs, "train.yaml"),
        "--bundle_root", str(trained_bundle.root), *cli(DATA, LOADER, TEACHER, CRITIC, overrides),
        check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(message)
