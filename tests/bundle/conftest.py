"""A tiny bundle run through every stage once per test session, with the real ``python -m monai.bundle``.

The bundle's configs are copied to ``<tmp>/configs`` and run with ``--bundle_root <tmp>`` and overrides
that make everything tiny (bundle_runs.py): 64² synthetic tiles (4 train, 2 val, 2 test), a 512² slide,
a narrow teacher and critic, one epoch of batch 2; training and evaluation with ``--tracking mlflow`` (one
SQLite store, ``<tmp>/mlruns.db``). Stages chain (teacher -> paraphrasers -> student distilled by the paper's
method, CoCo + critic -> evaluation -> inference on a tile and the slide), so each test reads the files they
left.
"""

from __future__ import annotations

import shutil

import pytest
from bundle_runs import (
    CRITIC,
    DATA,
    LOADER,
    PAPER,
    TEACHER,
    TrainedBundle,
    cli,
    config_arg,
    copy_bundle,
    run_bundle,
)


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory) -> TrainedBundle:
    root = copy_bundle(tmp_path_factory.mktemp("bundle"))
    logs: dict[str, str] = {}

    def stage(name: str, config: str, *overrides: str, run_id: str = "training") -> None:
        result = run_bundle("run", run_id, "--config_file", config_arg(root / "configs", config),
                            "--bundle_root", str(root), *overrides)  # fmt: skip
        logs[name] = result.stdout + result.stderr

    tracking = ("--tracking", "mlflow")
    stage("teacher", "train_teacher.yaml", *cli(DATA, LOADER, TEACHER), *tracking)
    stage("paraphraser", "train_paraphraser.yaml", *cli(DATA, LOADER, TEACHER), *tracking)
    stage("distill", "train.yaml", *cli(DATA, LOADER, TEACHER, CRITIC, PAPER), *tracking)
    stage("evaluate", "evaluate.yaml", *cli(DATA, {"num_workers": 0}), *tracking, run_id="evaluating")
    inputs = root / "inference_inputs"  # one synthetic test tile and the synthetic slide
    inputs.mkdir()
    shutil.copy(root / "data" / "synthetic" / "test" / "gastric_0000.jpg", inputs)
    shutil.copy(root / "data" / "synthetic" / "slide" / "gastric_slide.tif", inputs)
    stage("inference", "inference.yaml", *cli(DATA), "--dataset_dir", str(inputs), "--level", "1",
          "--output_dir", str(root / "outputs"), run_id="inference")  # fmt: skip
    return TrainedBundle(root, logs)
