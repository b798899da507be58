"""The engines, terms and handlers build from a MONAI bundle config with short ``_target_`` names."""

from __future__ import annotations

import math

import torch
from monai.bundle import ConfigParser
from tiny_networks import STUDENT_FEATURES, TEACHER_FEATURES, identical, snapshot, tiny_unet

from monai_coco.checkpoints import save_checkpoint

NETWORKS = {
    "imports": ["$import torch", "$import monai_coco"],
    "taps": ["down_2", "upcat_3"],
    "teacher": {
        "_target_": "BasicUNet",
        "spatial_dims": 2,
        "in_channels": 3,
        "out_channels": 2,
        "features": list(TEACHER_FEATURES),
        "norm": "batch",
    },
    "data": "$[{'image': torch.rand(2, 3, 32, 32), 'label': torch.randint(0, 2, (2, 32, 32))} for i in '01']",
}


def test_distillation_stage_from_config_with_teacher_weights_critic_and_resume(tmp_path):
    teacher_file = tmp_path / "teacher.pt"
    trained_teacher = tiny_unet(TEACHER_FEATURES, 5)
    save_checkpoint(teacher_file, {"model": trained_teacher})
    config = {
        **NETWORKS,
        "teacher_file": str(teacher_file),
        "student": {
            "_target_": "BasicUNet",
            "spatial_dims": 2,
            "in_channels": 3,
            "out_channels": 2,
            "features": list(STUDENT_FEATURES),
        },
        "critic": {"_target_": "LogitCritic", "in_channels": 2, "channels": [8, 16]},
        "optimizer": {"_target_": "torch.optim.Adam", "params": "$@student.parameters()", "lr": 3e-3},
        "adversarial": {
            "_target_": "AdversarialDistillationHandler",
            "critic": "@critic",
            "optimizer": {
                "_target_": "torch.optim.Adam",
                "params": "$@critic.parameters()",
                "lr": 2e-5,
                "betas": [0.9, 0.99],
            },
            "weight": 0.1,
        },
        "trainer": {
            "_target_": "DistillationTrainer",
            "device": "$torch.device('cpu')",
            "max_epochs": 2,
            "train_data_loader": "@data",
            "network": "@student",
            "optimizer": "@optimizer",
            "loss_function": "$torch.nn.CrossEntropyLoss()",
            "teacher": "@teacher",
            "terms": {
                "coco": {
                    "_target_": "DistillationTerm",
                    "loss": {"_target_": "CoCoDistillationLoss"},
                    "weight": 1.0,
                    "inputs": [0, 1],
                }
            },
            "student_taps": "@taps",
            "teacher_taps": "@taps",
            "decollate": False,
            "train_handlers": [
                "@adversarial",
                {
                    "_target_": "ResumableCheckpoint",
                    "path": str(tmp_path / "state.pt"),
                    "save_dict": {
                        "model": "@student",
                        "optimizer": "@optimizer",
                        "adversarial": "@adversarial",
                    },
                },
            ],
        },
        "initialize": ["$monai_coco.engines.load_checkpoint(@teacher_file, {'model': @teacher})"],
        "run": ["$@trainer.run()"],
    }
    parser = ConfigParser(config)
    parser.parse()
    for expression in ("initialize", "run"):
        parser.get_parsed_content(expression)

    trainer = parser.get_parsed_content("trainer")
    assert identical(snapshot(trainer.teacher), snapshot(trained_teacher))
    assert trainer.state.epoch == 2
    assert all(math.isfinite(trainer.state.output[k]) for k in ("ce", "coco", "adv", "critic"))
    saved = torch.load(tmp_path / "state.pt", weights_only=True)
    assert set(saved) == {"model", "optimizer", "adversarial", "trainer", "random_states", "record",
                          "data_pass"}  # fmt: skip
    assert set(saved["adversarial"]) == {"critic", "optimizer", "scaler"}


def test_paraphraser_stage_from_config(tmp_path):
    config = {
        **NETWORKS,
        "paraphrasers": {
            "_target_": "torch.nn.ModuleList",
            "modules": [
                {"_target_": "Paraphraser", "in_channels": 8, "factor_channels": 4},
                {"_target_": "Paraphraser", "in_channels": 8, "factor_channels": 4},
            ],
        },
        "trainer": {
            "_target_": "ParaphraserTrainer",
            "device": "cpu",
            "max_epochs": 1,
            "train_data_loader": "@data",
            "network": "@paraphrasers",
            "optimizer": {
                "_target_": "torch.optim.SGD",
                "params": "$@paraphrasers.parameters()",
                "lr": 3e-4,
                "momentum": 0.9,
                "weight_decay": 2e-4,
            },
            "teacher": "@teacher",
            "teacher_taps": "@taps",
            "train_handlers": [
                {
                    "_target_": "CheckpointSaver",
                    "save_dir": str(tmp_path),
                    "save_dict": {"paraphrasers": "@paraphrasers"},
                    "save_final": True,
                    "final_filename": "paraphraser.pt",
                }
            ],
        },
    }
    parser = ConfigParser(config)
    trainer = parser.get_parsed_content("trainer")
    trainer.run()
    saved = torch.load(tmp_path / "paraphraser.pt", weights_only=True)  # one state dict for both taps
    assert identical(saved, snapshot(parser.get_parsed_content("paraphrasers")))
    assert {k.split(".")[0] for k in saved} == {"0", "1"}
