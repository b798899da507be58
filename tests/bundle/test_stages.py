"""Every stage of the bundle run by ``python -m monai.bundle`` (see conftest.py), checked on its outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from bundle_runs import DATA, cli, run_bundle
from monai.bundle import ConfigWorkflow
from PIL import Image

from monai_coco.checkpoints import load_checkpoint
from monai_coco.data import Slide
from monai_coco.networks import MobileUNet, Paraphraser

pytestmark = pytest.mark.slow  # runs (or reads) the bundle stages through python -m monai.bundle


def _student(path) -> MobileUNet:
    network = MobileUNet()
    network.load_state_dict(torch.load(path, weights_only=True))  # a bare state dict, as ckpt_export reads it
    return network.eval()


def _predict(network: torch.nn.Module, jpg) -> np.ndarray:
    """Class map of one RGB tile, preprocessed independently of the bundle (pixels / 255, (1, 3, H, W))."""
    rgb = np.asarray(Image.open(jpg).convert("RGB"), dtype=np.float32) / 255.0
    with torch.no_grad():
        return network(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0].argmax(0).numpy()


def test_each_training_stage_writes_its_checkpoint_and_resumable_state(trained_bundle):
    models = trained_bundle.models
    for name in ("teacher", "paraphraser", "model"):
        assert (models / f"{name}.pt").is_file(), name
        assert (models / f"train_state_{name}.pt").is_file(), name
    _student(models / "model.pt")
    # teacher features 8..64: both taps have 32 channels; the student's have 24
    paraphrasers = torch.nn.ModuleList([Paraphraser(32, 24), Paraphraser(32, 24)])
    load_checkpoint(models / "paraphraser.pt", {"model": paraphrasers})
    state = torch.load(models / "train_state_model.pt", weights_only=True)
    assert set(state) == {"model", "optimizer", "lr_scheduler", "adversarial", "best_model", "trainer",
                          "random_states", "record", "data_pass"}  # fmt: skip
    assert state["trainer"]["iteration"] == state["trainer"]["epoch_length"] == 2  # 1 epoch: 4 tiles, batch 2
    assert state["data_pass"]["iteration"] == 0  # the one pass began with the run
    assert set(state["adversarial"]) == {"critic", "optimizer", "scaler", "lr_scheduler"}
    assert state["adversarial"]["lr_scheduler"]["last_epoch"] == 2  # the critic's poly: once per iteration
    # the student's schedule: poly over the run and the authors' step-downs, each stepped once per iteration
    assert [part["last_epoch"] for part in state["lr_scheduler"]["_schedulers"]] == [2, 2]


def test_distillation_logs_each_loss_term(trained_bundle):
    log = trained_bundle.logs["distill"]
    for term in ("ce:", "coco:", "adv:", "critic:", "miou"):
        assert term in log, term
    assert "DistillationTrainer" in log


def test_evaluation_scores_equal_an_independent_recount_over_the_test_tiles(trained_bundle):
    rows = (trained_bundle.root / "eval" / "metrics.csv").read_text().split()
    scores = {name: float(value) for name, value in (row.split(",") for row in rows)}
    network = _student(trained_bundle.models / "model.pt")
    confusion = np.zeros((2, 2), dtype=np.int64)
    for jpg in sorted((trained_bundle.root / "data" / "synthetic" / "test").glob("*.jpg")):
        truth = (np.asarray(Image.open(jpg.with_suffix(".png"))) > 0).astype(np.int64)
        np.add.at(confusion, (truth.ravel(), _predict(network, jpg).ravel()), 1)
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    assert abs(scores["accuracy"] - tp.sum() / confusion.sum()) < 1e-6
    assert abs(scores["miou"] - np.nanmean(np.where(union > 0, tp / np.maximum(union, 1), np.nan))) < 1e-6
    assert {"dice", "iou", "precision", "recall", "specificity"} <= set(scores)


def test_inference_writes_a_mask_of_the_tile_size_equal_to_the_network_output(trained_bundle):
    outputs = trained_bundle.root / "outputs"
    tile = trained_bundle.root / "inference_inputs" / "gastric_0000.jpg"
    mask = np.asarray(Image.open(outputs / "gastric_0000_mask.png"))
    assert mask.shape == (64, 64)  # one 64² window: the network's own argmax
    np.testing.assert_array_equal(mask, _predict(_student(trained_bundle.models / "model.pt"), tile))
    assert (outputs / "gastric_0000_overlay.png").is_file()


def test_inference_yaml_alone_runs_over_the_base_as_the_zoo_runs_it(trained_bundle, tmp_path):
    """``--config_file configs/inference.yaml`` alone, the model zoo's way, runs as ``[base.yaml,
    inference.yaml]``: the fixture's two-file run's mask of the tile. Through MONAI's Python API, which has no
    command line to run again, it is one line naming the list to give."""
    tile = trained_bundle.root / "inference_inputs" / "gastric_0000.jpg"
    alone = tmp_path / "alone"
    result = run_bundle("run", "inference", "--config_file", trained_bundle.config("inference.yaml"),
                        "--bundle_root", str(trained_bundle.root), "--roi_size", "[64,64]",
                        "--dataset_dir", str(tile), "--output_dir", str(alone))  # fmt: skip
    listed = [trained_bundle.config("base.yaml"), trained_bundle.config("inference.yaml")]
    assert f"overlay of base.yaml: running with --config_file {listed!r}" in result.stdout + result.stderr
    np.testing.assert_array_equal(
        np.asarray(Image.open(alone / "gastric_0000_mask.png")),
        np.asarray(Image.open(trained_bundle.root / "outputs" / "gastric_0000_mask.png")),
    )
    workflow = ConfigWorkflow(trained_bundle.config("inference.yaml"), trained_bundle.config("metadata.json"),
                              workflow_type="infer", run_id="inference", bundle_root=str(trained_bundle.root),
                              dataset_dir=str(tile), output_dir=str(tmp_path / "api"))  # fmt: skip
    workflow.initialize()
    with pytest.raises(SystemExit) as stop:
        workflow.run()
    assert str(stop.value.code) == (
        "monai_coco: inference.yaml is an overlay of base.yaml: give the config files "
        "['configs/base.yaml', 'configs/inference.yaml']."
    )
    assert not (tmp_path / "api").exists()


def test_inference_writes_a_mask_pyramid_of_the_slide_levels_from_the_chosen_level(trained_bundle):
    with Slide(trained_bundle.slide) as slide:
        expected = slide.level_shapes[1:]  # --level 1
    with tifffile.TiffFile(trained_bundle.root / "outputs" / "gastric_slide_mask.ome.tif") as tif:
        shapes = [level.shape for level in tif.series[0].levels]
        level0 = tif.series[0].levels[0].asarray()
    assert shapes[0] == tuple(expected[0]) and all(  # level 1 as it is, then halved to 256 pixels a side
        max(s) > 256 or i == len(shapes) - 1 for i, s in enumerate(shapes)
    )
    assert set(np.unique(level0).tolist()) <= {0, 1}
    assert (trained_bundle.root / "outputs" / "gastric_slide_overlay.png").is_file()


def test_the_training_scale_is_recorded_with_each_checkpoint_and_checked_by_inference(trained_bundle):
    """``mpp`` (metadata.json's training_mpp, 2 um/px for the synthetic tiles) is recorded
    beside every checkpoint; inference at another scale is one line naming both and the fix."""
    models = trained_bundle.models
    for name in ("teacher", "paraphraser", "model"):
        assert json.loads((models / f"{name}.preprocessing.json").read_text())["mpp"] == 2.0, name
    result = run_bundle(
        "run", "inference", "--config_file", repr(trained_bundle.stage("inference.yaml")),
        "--bundle_root", str(trained_bundle.root), *cli(DATA), "--mpp", "0.5", check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"monai_coco: {models}/model.pt was trained with mpp=2.0 but this run has mpp=0.5; rerun with "
        "--mpp 2.0 (the network must see images prepared as in training)."
    )
