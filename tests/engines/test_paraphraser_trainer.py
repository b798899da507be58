"""ParaphraserTrainer: stage 1 learns to reconstruct the frozen teacher's tap features."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_networks import (
    STUDENT_FEATURES,
    TAPS,
    TEACHER_FEATURES,
    identical,
    make_batches,
    snapshot,
    tap_features,
    tiny_unet,
)

from monai_coco.checkpoints import load_checkpoint, save_checkpoint
from monai_coco.engines import DistillationTerm, DistillationTrainer, ParaphraserTrainer
from monai_coco.losses import CoCoDistillationLoss
from monai_coco.networks import Paraphraser


def reconstruction_mse(paraphrasers, teacher, data) -> list[float]:
    """Reference: the mean over batches of MSE(paraphraser(feature), feature), per tap."""
    totals = [0.0] * len(TAPS)
    with torch.no_grad():
        for batch in data:
            _, feats = tap_features(teacher.eval(), TAPS, batch["image"])
            for i, (p, f) in enumerate(zip(paraphrasers, feats)):
                totals[i] += torch.nn.functional.mse_loss(p(f), f).item() / len(data)
    return totals


def make_paraphrasers(seed: int = 3) -> torch.nn.ModuleList:
    torch.manual_seed(seed)
    return torch.nn.ModuleList([Paraphraser(8, 4), Paraphraser(8, 4)])


def test_paraphraser_stage_lowers_the_reconstruction_error_and_leaves_the_teacher_untouched():
    teacher = tiny_unet(TEACHER_FEATURES, 1)
    teacher.train()
    before_teacher = snapshot(teacher)
    paraphrasers = make_paraphrasers()
    data = make_batches(4)
    start = reconstruction_mse(paraphrasers, teacher, data)
    teacher.train()

    trainer = ParaphraserTrainer(
        device="cpu",
        max_epochs=15,
        train_data_loader=data,
        network=paraphrasers,
        optimizer=torch.optim.Adam(paraphrasers.parameters(), lr=3e-3),
        teacher=teacher,
        teacher_taps=TAPS,
        decollate=False,
    )
    trainer.run()
    end = reconstruction_mse(paraphrasers, teacher, data)

    assert identical(snapshot(teacher), before_teacher)
    for before, after in zip(start, end):
        assert after < 0.5 * before
    out = trainer.state.output
    assert set(out) >= {"mse[down_2]", "mse[upcat_3]", "loss"}
    assert all(math.isfinite(out[k]) for k in ("mse[down_2]", "mse[upcat_3]"))
    assert out["loss"].item() == pytest.approx(out["mse[down_2]"] + out["mse[upcat_3]"], rel=1e-6)


def test_saved_paraphrasers_load_into_the_distillation_stage(tmp_path):
    teacher = tiny_unet(TEACHER_FEATURES, 1)
    trained = make_paraphrasers(seed=3)
    path = save_checkpoint(tmp_path / "paraphraser.pt", {"paraphrasers": trained})

    fresh = make_paraphrasers(seed=4)
    load_checkpoint(path, {"paraphrasers": fresh})
    assert identical(snapshot(fresh), snapshot(trained))

    student = tiny_unet(STUDENT_FEATURES, 2)
    batch = make_batches(1)
    trainer = DistillationTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=batch,
        network=student,
        optimizer=torch.optim.SGD(student.parameters(), lr=0.0),
        loss_function=torch.nn.CrossEntropyLoss(),
        teacher=teacher,
        terms={"coco": DistillationTerm(CoCoDistillationLoss(), inputs=(0, 1))},
        student_taps=TAPS,
        teacher_taps=TAPS,
        paraphrasers=fresh,
        decollate=False,
    )
    trainer.run()
    _, student_feats = tap_features(student.train(), TAPS, batch[0]["image"])
    with torch.no_grad():
        _, teacher_feats = tap_features(teacher.eval(), TAPS, batch[0]["image"])
        factors = [p.encode(f) for p, f in zip(trained, teacher_feats)]
    expected = CoCoDistillationLoss()(*student_feats, *factors).item()
    assert trainer.state.output["coco"] == pytest.approx(expected, rel=1e-5)


def test_one_paraphraser_per_tap_is_required():
    teacher = tiny_unet(TEACHER_FEATURES, 1)
    one = torch.nn.ModuleList([Paraphraser(8, 4)])
    with pytest.raises(ValueError, match="one paraphraser per teacher tap"):
        ParaphraserTrainer(
            device="cpu",
            max_epochs=1,
            train_data_loader=make_batches(1),
            network=one,
            optimizer=torch.optim.SGD(one.parameters(), lr=0.1),
            teacher=teacher,
            teacher_taps=TAPS,
        )


def test_the_task_term_is_the_cross_entropy_with_the_teacher_s_probabilities_and_reaches_encoder_and_head():
    """By hand: ``task_weight · mean_pixels(−Σ_c p_T log softmax(head(factor)))``; its gradient reaches the
    encoder and the head and not the decoder; without the term the stage is the paper's."""
    teacher = tiny_unet(TEACHER_FEATURES, 1).eval()
    torch.manual_seed(5)
    paraphrasers = torch.nn.ModuleList([Paraphraser(8, 4, num_classes=2), Paraphraser(8, 4, num_classes=2)])
    batch = make_batches(1)[0]
    trainer = ParaphraserTrainer(
        device="cpu", max_epochs=1, train_data_loader=[batch], network=paraphrasers,
        optimizer=torch.optim.SGD(paraphrasers.parameters(), lr=0.0), teacher=teacher, teacher_taps=TAPS,
        task_weight=0.5, decollate=False,
    )  # fmt: skip
    terms = trainer.loss_terms(trainer.forward(batch["image"], None), None)
    assert set(terms) == {"mse[down_2]", "mse[upcat_3]", "task[down_2]", "task[upcat_3]"}
    logits, features = tap_features(teacher, TAPS, batch["image"])
    target = torch.softmax(logits, dim=1)
    for name, paraphraser, feature in zip(TAPS, paraphrasers, features):
        conv = paraphraser.segmentation_head
        head = torch.nn.functional.conv2d(paraphraser.encoder(feature), conv.weight, conv.bias)
        head = torch.nn.functional.interpolate(head, size=(32, 32), mode="bilinear", align_corners=False)
        expected = 0.5 * -(target * torch.log_softmax(head, dim=1)).sum(1).mean()
        torch.testing.assert_close(terms[f"task[{name}]"], expected)
    terms["task[down_2]"].backward()
    reached = {n.split(".")[0] for n, p in paraphrasers[0].named_parameters() if p.grad is not None}
    assert reached == {"encoder", "segmentation_head"}  # not the decoder
    assert all(p.grad is None for p in paraphrasers[1].parameters())  # the other tap's paraphraser
    with pytest.raises(ValueError, match="needs paraphrasers with a segmentation head"):
        ParaphraserTrainer(
            device="cpu", max_epochs=1, train_data_loader=[batch], network=make_paraphrasers(),
            optimizer=torch.optim.SGD(paraphrasers.parameters(), lr=0.0), teacher=teacher, teacher_taps=TAPS,
            task_weight=1.0,
        )  # fmt: skip
