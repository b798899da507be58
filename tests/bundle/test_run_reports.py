"""What the bundle's stages report (see conftest.py: every stage run once by ``python -m monai.bundle``):
TensorBoard event files of every training stage, read back with TensorBoard's ``EventAccumulator``; tile
counts, loss lines and no warning flood in the logs."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

pytestmark = pytest.mark.slow  # reads the bundle stages run through python -m monai.bundle


def _events(folder: Path) -> EventAccumulator:
    """Every event file of ``folder`` (one per MONAI TensorBoard handler), merged."""
    files = sorted(folder.glob("events.out.tfevents.*"))
    assert files, f"no TensorBoard event file in {folder}"
    scalars, images = {}, set()
    for path in files:
        events = EventAccumulator(str(path), size_guidance={"scalars": 0, "images": 0}).Reload()
        scalars.update({tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]})
        images.update(events.Tags()["images"])
    return scalars, images


def test_distillation_writes_each_loss_term_the_learning_rate_metrics_and_panels(trained_bundle):
    scalars, images = _events(trained_bundle.root / "logs" / "model")
    for term in ("loss", "ce", "coco", "adv", "critic", "lr"):
        assert len(scalars[term]) == 2, term  # 1 epoch of 2 iterations (4 tiles, batch 2)
    total = [sum(scalars[term][i] for term in ("ce", "coco", "adv")) for i in range(2)]
    assert scalars["loss"] == pytest.approx(total, rel=1e-5)
    # poly(0.9) decay over 2 iterations, stepped before the value is logged: 0.003 * (1 - k / 2) ** 0.9
    assert scalars["lr"] == pytest.approx([0.003 * 0.5**0.9, 0.0])
    for metric in ("miou", "accuracy", "dice"):
        assert len(scalars[metric]) == 1 and 0.0 <= scalars[metric][0] <= 1.0, metric  # 1 validation
    # image | label | prediction of the first validation tile: MONAI names them input_0, input_1, output
    assert any(tag.startswith("input_0") for tag in images), images
    assert any(tag.startswith("input_1") for tag in images), images
    assert any(tag.startswith("output") for tag in images), images


def test_teacher_and_paraphraser_stages_write_their_own_event_files(trained_bundle):
    teacher, teacher_images = _events(trained_bundle.root / "logs" / "teacher")
    assert {"loss", "lr", "miou", "dice"} <= set(teacher) and teacher_images
    paraphraser, _ = _events(trained_bundle.root / "logs" / "paraphraser")
    mse = [tag for tag in paraphraser if tag.startswith("mse[")]
    assert len(mse) == 2 and {"loss", "lr"} <= set(paraphraser)  # one reconstruction loss per teacher tap


def test_logs_count_the_tiles_of_each_split_and_stay_free_of_warning_floods(trained_bundle):
    logs = trained_bundle.logs
    assert "train split: 4 tile(s), from the folder " in logs["teacher"]
    assert "val split: 2 tile(s), from the folder " in logs["teacher"]
    assert "test split: 2 tile(s), from the folder " in logs["evaluate"]
    for stage, log in logs.items():
        assert "Mean of empty slice" not in log, stage
        assert "RuntimeWarning" not in log, stage
        assert "tqdm is not installed" not in log, stage
