"""Any MONAI network as teacher or student, and experiment tracking, through MONAI's bundle runner.

Each (teacher, student) pair of MONAI networks without ``default_taps`` runs every training stage with
``monai.bundle.run`` (the function ``python -m monai.bundle run`` calls), all in one fresh process per pair
(``python tests/bundle/test_networks.py ROOT TEACHER STUDENT TRACKING``), on the bundle's own configs:
teacher, paraphrasers, then the student with ``distill`` coco, kd and none. Across the three pairs
BasicUNet, SegResNet and FlexibleUNet (a ResNet-10 backbone without pretrained weights: nothing is
downloaded) each serve once as teacher and once as student. The first pair runs with ``tracking="mlflow"``
(``--tracking mlflow``), whose SQLite store is read back.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bundle_runs import PAPER, bundle_env, copy_bundle

from monai_coco.checkpoints import load_checkpoint
from monai_coco.networks import Paraphraser

pytestmark = pytest.mark.slow

IO = {"in_channels": "@in_channels", "out_channels": "@num_classes"}
NETWORKS = {
    "BasicUNet": {"_target_": "monai.networks.nets.BasicUNet", "spatial_dims": 2, **IO,
                  "features": [4, 4, 8, 8, 16, 4]},
    "SegResNet": {"_target_": "monai.networks.nets.SegResNet", "spatial_dims": 2, **IO, "init_filters": 8},
    "FlexibleUNet": {"_target_": "monai.networks.nets.FlexibleUNet", "spatial_dims": 2, **IO,
                     "backbone": "resnet10", "pretrained": False},
}  # fmt: skip
# The taps a probe finds (last encoder-side layer and first decoder-side layer of the same channel count, at
# 1/4 resolution) and their channels, read off each architecture; the deep tap is the decoder stage after its
# skip fusion, never the up-sampling: BasicUNet's down_2 and its upcat_3 block have features[2] = 8 channels;
# SegResNet's third down layer and its first up layer (after the skip is added) have 4 * init_filters = 32;
# FlexibleUNet's ResNet layer1 has 64, and so has its third decoder block (decoder_channels[2]).
TAPS = {
    "BasicUNet": (["down_2", "upcat_3"], [8, 8]),
    "SegResNet": (["down_layers.2", "up_layers.0"], [32, 32]),
    "FlexibleUNet": (["encoder.layer1", "decoder.blocks.2"], [64, 64]),
}
PAIRS = [("BasicUNet", "SegResNet"), ("SegResNet", "FlexibleUNet"), ("FlexibleUNet", "BasicUNet")]
TINY = {"roi_size": [64, 64], "synthetic#n_train": 4, "synthetic#n_val": 2, "synthetic#n_test": 2,
        "synthetic#slide_size": 512, "batch_size": 2, "num_workers": 0, "epochs": 1, "paraphraser_epochs": 1,
        "log_interval": 10, "critic_def#channels": [8, 16]}  # fmt: skip
STAGES = {  # name: (overlay, overrides); each student checkpoint under its own name
    "teacher": ("train_teacher.yaml", {}),
    "paraphraser": ("train_paraphraser.yaml", {}),
    "coco": ("train.yaml", PAPER),
    "kd": ("train.yaml", {"distill": "kd", "model_name": "student_kd.pt"}),
    "none": ("train.yaml", {"distill": "none", "model_name": "student_none.pt"}),
}


MARK = "=== monai_coco test stage: "


def run_stages(root: Path, teacher: str, student: str, tracking: str) -> None:
    """Every stage of ``STAGES`` with ``monai.bundle.run`` in this process, a marker line before each."""
    from monai.bundle import run

    configs = copy_bundle(root) / "configs"
    for name, (overlay, overrides) in STAGES.items():
        print(MARK + name, flush=True)
        run("training", config_file=[str(configs / "base.yaml"), str(configs / overlay)],
            bundle_root=str(root), teacher_def=NETWORKS[teacher], network_def=NETWORKS[student],
            tracking=tracking or None, **TINY, **overrides)  # fmt: skip


def _run_pair(root: Path, teacher: str, student: str, tracking: str) -> dict[str, str]:
    """The stages of one pair in one fresh process (its log handlers bound to its own stdout), split per
    stage by the marker lines."""
    command = [sys.executable, __file__, str(root), teacher, student, tracking]
    result = subprocess.run(command, env=bundle_env(), capture_output=True, text=True, timeout=900)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    parts = log.split(MARK)[1:]
    return {part.split("\n", 1)[0]: part for part in parts}


@pytest.fixture(scope="module")
def pair_runs(tmp_path_factory) -> dict[tuple[str, str], tuple[Path, dict[str, str]]]:
    runs = {}
    for i, (teacher, student) in enumerate(PAIRS):
        root = tmp_path_factory.mktemp(f"{teacher}_{student}")
        runs[teacher, student] = root, _run_pair(root, teacher, student, "mlflow" if i == 0 else "")
    return runs


def _network(name: str) -> torch.nn.Module:
    from monai.bundle import ConfigParser

    parser = ConfigParser({"in_channels": 3, "num_classes": 2, "net": NETWORKS[name]})
    return parser.get_parsed_content("net")


@pytest.mark.parametrize(("teacher", "student"), PAIRS)
def test_each_stage_writes_checkpoints_of_the_monai_networks(pair_runs, teacher, student):
    root, _ = pair_runs[teacher, student]
    load_checkpoint(root / "models" / "teacher.pt", {"model": _network(teacher)})
    for checkpoint in ("model.pt", "student_kd.pt", "student_none.pt"):
        load_checkpoint(root / "models" / checkpoint, {"model": _network(student)})


@pytest.mark.parametrize(("teacher", "student"), PAIRS)
def test_found_taps_are_logged_and_size_the_paraphrasers(pair_runs, teacher, student):
    root, logs = pair_runs[teacher, student]
    (t_layers, t_channels), (s_layers, s_channels) = TAPS[teacher], TAPS[student]
    roles = [("teacher_taps", teacher, t_layers), ("student_taps", student, s_layers)]
    for stage in ("paraphraser", "coco"):
        for setting, network, layers in roles:
            line = f"{setting} of {network} (found by a probe forward pass): {layers[0]} "
            assert line in logs[stage], (stage, setting)
            assert f"override with --{setting} \"{str(layers).replace(' ', '')}\"" in logs[stage]
    paraphrasers = torch.nn.ModuleList([Paraphraser(t, s) for t, s in zip(t_channels, s_channels)])
    load_checkpoint(root / "models" / "paraphraser.pt", {"model": paraphrasers})  # raises on another size
    assert "coco:" in logs["coco"] and "adv:" in logs["coco"]


@pytest.mark.parametrize(("teacher", "student"), PAIRS)
def test_logit_only_distillation_and_the_student_alone_need_no_taps(pair_runs, teacher, student):
    _, logs = pair_runs[teacher, student]
    for stage in ("kd", "none"):
        assert "taps of" not in logs[stage], stage
    assert "kd:" in logs["kd"] and "adv:" not in logs["kd"]  # the default: KD without the critic
    assert "ce:" in logs["none"] and "kd:" not in logs["none"]


def test_every_epoch_logs_a_loss_line_and_the_splits_their_counts(pair_runs):
    _, logs = pair_runs[PAIRS[0]]
    log = logs["teacher"]  # 1 epoch of 2 iterations, log_interval 10: the epoch's last iteration is logged
    assert "Epoch: 1/1, Iter: 2/2 -- " in log
    assert "lr: " in log and "loss: " in log
    assert "train split: 4 tile(s), from the folder " in log and "val split: 2 tile(s)" in log


def test_mlflow_tracking_keeps_an_experiment_per_kind_of_stage_with_a_run_per_model(pair_runs):
    from mlflow.tracking import MlflowClient
    from monai.utils import path_to_sqlite_uri

    root, _ = pair_runs[PAIRS[0]]
    client = MlflowClient(path_to_sqlite_uri(str(root / "mlruns.db")))  # <output_root>/mlruns.db
    names = {e.name for e in client.search_experiments()}
    assert {"monai_coco.teacher", "monai_coco.paraphraser", "monai_coco.student"} <= names
    (run,) = client.search_runs([client.get_experiment_by_name("monai_coco.teacher").experiment_id])
    assert run.data.params["max_epochs"] == "1" and run.data.params["epoch_length"] == "2"
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in losses] == [1, 2] and all(m.value > 0 for m in losses)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "miou")] == [1]
    assert 0.0 <= run.data.metrics["miou"] <= 1.0
    assert run.data.metrics["lr_group_0"] >= 0.0
    students = client.search_runs([client.get_experiment_by_name("monai_coco.student").experiment_id])
    by_name = {r.info.run_name: r.data.params for r in students}  # the distillation runs, side by side
    assert {n: p["distill"] for n, p in by_name.items()} == {"model": "coco", "student_kd": "kd",
                                                             "student_none": "none"}  # fmt: skip
    assert by_name["student_kd"]["lambda_kd"] == "10.0" and "lambda_coco" not in by_name["student_kd"]


if __name__ == "__main__":  # one pair's stages, for _run_pair
    run_stages(Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4])
