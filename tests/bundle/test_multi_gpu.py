"""multi_gpu_train.yaml over train.yaml under ``torchrun --nproc_per_node=2`` on CPU (gloo)."""

from __future__ import annotations

import sys

import pytest
import torch
from bundle_runs import CRITIC, DATA, LOADER, TEACHER, cli, run_bundle

from monai_coco.networks import MobileUNet

pytestmark = pytest.mark.slow  # runs (or reads) the bundle stages through python -m monai.bundle


def test_two_cpu_processes_distil_one_epoch_and_rank_0_alone_logs_and_saves(trained_bundle):
    configs = repr(trained_bundle.stage("train.yaml", "multi_gpu_train.yaml"))
    result = run_bundle(
        "run", "training", "--config_file", configs, "--bundle_root", str(trained_bundle.root),
        *cli(DATA, LOADER, TEACHER, CRITIC), "--model_name", "ddp.pt",
        launcher=(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"),
    )  # fmt: skip
    log = result.stdout + result.stderr
    # 4 training tiles, batch 2 per process: one iteration each; only rank 0's StatsHandler prints it
    assert log.count("Epoch: 1/1, Iter: 1/1") == 1
    assert "miou" in log
    student = MobileUNet()
    student.load_state_dict(torch.load(trained_bundle.models / "ddp.pt", weights_only=True))  # no "module."
    state = torch.load(trained_bundle.models / "train_state_ddp.pt", weights_only=True)
    assert state["trainer"]["iteration"] == state["trainer"]["epoch_length"] == 1
    assert not any(k.startswith("module.") for k in state["model"])
