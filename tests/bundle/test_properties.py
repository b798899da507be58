"""MONAI's workflow properties: MONAI Label, MONAI Deploy's bundle operator and NVFlare's ``MonaiAlgo``
drive a bundle through them (``ConfigWorkflow(..., workflow_type=...).check_properties()``)."""

from __future__ import annotations

import pytest
import torch
from bundle_runs import TINY
from monai.bundle import ConfigWorkflow
from monai.data import Dataset
from monai.engines import Evaluator, Trainer
from monai.inferers import Inferer, SimpleInferer, SlidingWindowInferer

from monai_coco.engines import DistillationTrainer

STAGES = [  # (stage overlay, MONAI workflow type, the workflow's run id)
    ("train_teacher.yaml", "train", "training"),
    ("train_paraphraser.yaml", "train", "training"),
    ("train.yaml", "train", "training"),
    ("evaluate.yaml", "infer", "evaluating"),
    ("inference.yaml", "infer", "inference"),
]


@pytest.mark.slow
@pytest.mark.parametrize("overlay, workflow_type, run_id", STAGES, ids=[s[0] for s in STAGES])
def test_each_stage_has_the_properties_of_its_workflow_type(trained_bundle, overlay, workflow_type, run_id):
    inference = overlay == "inference.yaml"
    inputs = {"dataset_dir": str(trained_bundle.root / "inference_inputs")} if inference else {}
    workflow = ConfigWorkflow(
        config_file=trained_bundle.stage(overlay),
        meta_file=trained_bundle.config("metadata.json"),
        workflow_type=workflow_type,
        run_id=run_id,
        bundle_root=str(trained_bundle.root),
        **TINY,  # the trained bundle's settings (a training state of other settings is refused)
        **inputs,
    )
    workflow.initialize()
    assert workflow.check_properties() == []  # the required ones, and the optional ones at their IDs
    if workflow_type == "train":
        assert isinstance(workflow.trainer, Trainer) and isinstance(workflow.train_inferer, SimpleInferer)
        assert workflow.max_epochs == workflow.trainer.state.max_epochs
        assert len(workflow.train_dataset) > 0
    else:
        assert isinstance(workflow.evaluator, Evaluator) and isinstance(workflow.inferer, Inferer)
        assert isinstance(workflow.dataset, Dataset) and len(workflow.dataset) > 0
    if overlay == "train.yaml":
        assert isinstance(workflow.trainer, DistillationTrainer)
    if overlay == "inference.yaml":  # the slide and the tile, each an item; the windows as MONAI's inferer
        assert sorted(item["image"].rsplit("/", 1)[1] for item in workflow.dataset) == [
            "gastric_0000.jpg", "gastric_slide.tif"
        ]  # fmt: skip
        assert isinstance(workflow.inferer, SlidingWindowInferer)
        assert tuple(workflow.inferer.roi_size) == tuple(workflow.parser["roi_size"])


@pytest.mark.slow
def test_evaluation_and_inference_build_no_teacher(trained_bundle):
    """Neither stage's parsed networks hold the teacher (FANet) or a critic."""
    for overlay, workflow_type, run_id in STAGES[3:]:
        workflow = ConfigWorkflow(
            config_file=trained_bundle.stage(overlay), workflow_type=workflow_type, run_id=run_id,
            meta_file=trained_bundle.config("metadata.json"), bundle_root=str(trained_bundle.root), **TINY,
        )  # fmt: skip
        workflow.initialize()
        assert workflow.check_properties() == []
        built = [type(m).__name__ for m in workflow.parser.ref_resolver.resolved_content.values()
                 if isinstance(m, torch.nn.Module)]  # fmt: skip
        assert "MobileUNet" in built and not {"FANet", "Critic"} & set(built), (overlay, built)
