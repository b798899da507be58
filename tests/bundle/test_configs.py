"""Every config parses and builds every top-level id; the network exports to TorchScript as the bundle
specification expects (``verify_net_in_out``, ``ckpt_export``)."""

from __future__ import annotations

import socket

import ignite.distributed as idist
import pytest
import torch
import torch.distributed as dist
from bundle_runs import TINY, applicable
from monai.bundle import ConfigParser
from monai.bundle.scripts import ckpt_export, verify_net_in_out

from monai_coco.networks import MobileUNet

pytestmark = pytest.mark.slow  # runs (or reads) the bundle stages through python -m monai.bundle

ACTIONS = {"initialize", "training", "evaluating", "inference", "finalize"}  # run things
SINGLE = ("train_teacher.yaml", "train_paraphraser.yaml", "train.yaml", "evaluate.yaml", "inference.yaml")


def _parser(bundle, *configs: str, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(bundle.stage(*configs))
    parser.read_meta(bundle.config("metadata.json"))
    parser.update({"bundle_root": str(bundle.root), **applicable(parser.get(), TINY), **overrides})
    parser.parse()
    return parser


def _build_every_id(parser: ConfigParser) -> set[str]:
    """Build every top-level id but the actions; training stages skip ``checkpoint_network`` (the network
    of evaluation and inference, loaded from ``<ckpt_dir>/<model_name>``, which a training stage writes)."""
    training = not {"evaluating", "inference"} & set(parser.get())
    built = set()
    for key in parser.get():
        if key not in ACTIONS and key != "_meta_" and not (training and key == "checkpoint_network"):
            parser.get_parsed_content(key)
            built.add(key)
    return built


@pytest.mark.parametrize("config", SINGLE)
def test_every_top_level_id_builds(trained_bundle, config):
    built = _build_every_id(_parser(trained_bundle, config))
    assert {"bundle_root", "dataset_dir", "ckpt_dir", "device", "network_def", "prerequisites"} <= built


def test_the_run_keys_named_in_the_docs_exist(trained_bundle):
    for config, run_id in [("train_teacher.yaml", "training"), ("train_paraphraser.yaml", "training"),
                           ("train.yaml", "training"), ("evaluate.yaml", "evaluating"),
                           ("inference.yaml", "inference")]:  # fmt: skip
        keys = set(_parser(trained_bundle, config).get())
        assert {run_id, "initialize"} <= keys, config


@pytest.mark.parametrize("distill", ["coco", "kd", "kd_coco", "pairwise", "at", "fsp", "cwd", "none"])
def test_each_distill_choice_builds_its_trainer(trained_bundle, distill):
    parser = _parser(trained_bundle, "train.yaml", distill=distill)
    trainer = parser.get_parsed_content("train#trainer")
    assert type(trainer).__name__ == "DistillationTrainer"
    if distill == "none":  # the student alone: no teacher, no terms
        assert trainer.teacher is None and trainer.terms == {}
        return
    expected = {"at": ["at0", "at1"], "kd_coco": ["kd", "coco"]}.get(distill, [distill])
    assert list(trainer.terms) == expected
    assert (trainer.paraphrasers is not None) == (distill in ("coco", "kd_coco", "pairwise", "at", "fsp"))
    if "coco" in expected:  # the variant's setting reaches the loss
        assert trainer.terms["coco"].loss.standardize is False
        standardized = _parser(trained_bundle, "train.yaml", distill=distill, coco_standardize=True)
        assert standardized.get_parsed_content("train#trainer").terms["coco"].loss.standardize is True


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_the_paraphraser_task_weight_reaches_the_trainer_and_gives_the_paraphrasers_their_heads(
    trained_bundle, weight
):
    parser = _parser(trained_bundle, "train_paraphraser.yaml", paraphraser_task_weight=weight)
    trainer = parser.get_parsed_content("train#trainer")
    assert trainer.task_weight == weight
    assert all((p.segmentation_head is not None) == (weight > 0) for p in trainer.network)


@pytest.mark.parametrize("base", ["train_teacher.yaml", "train.yaml"])
def test_multi_gpu_layer_builds_every_id_in_a_one_process_group(trained_bundle, base):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        parser = _parser(trained_bundle, base, "multi_gpu_train.yaml")
        _build_every_id(parser)
        assert isinstance(parser.get_parsed_content("network"), torch.nn.parallel.DistributedDataParallel)
        assert type(parser.get_parsed_content("train#dataloader").sampler).__name__ == "DistributedSampler"
    finally:
        # ignite.distributed caches the process group it saw: finalize through it so that later tests in
        # this process see a serial (non-distributed) world again
        idist.get_world_size()
        idist.finalize()
        assert not dist.is_initialized()


def test_verify_net_in_out_passes_for_the_student(trained_bundle):
    verify_net_in_out(
        net_id="network_def",
        meta_file=trained_bundle.config("metadata.json"),
        config_file=trained_bundle.stage("inference.yaml"),
        device="cpu",
    )


def test_ckpt_export_writes_torchscript_equal_to_the_checkpoint(trained_bundle, tmp_path):
    ts = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(ts),
        ckpt_file=str(trained_bundle.models / "model.pt"),
        meta_file=trained_bundle.config("metadata.json"),
        config_file=trained_bundle.stage("inference.yaml"),
    )
    network = MobileUNet()
    network.load_state_dict(torch.load(trained_bundle.models / "model.pt", weights_only=True))
    exported = torch.jit.load(str(ts))
    x = torch.rand(2, 3, 96, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = network.eval()(x)
        torch.testing.assert_close(exported.eval()(x), expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(expected, MobileUNet().eval()(x))  # the weights matter: trained, not initial
