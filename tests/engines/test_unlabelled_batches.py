"""DistillationTrainer on batches mixing annotated and unannotated images (per-sample ``labelled`` flags)."""

from __future__ import annotations

import pytest
import torch
from monai.engines.utils import IterationEvents
from monai.networks.nets import BasicUNet
from tiny_networks import STUDENT_FEATURES, TAPS, TEACHER_FEATURES, tiny_unet

from monai_coco.engines import LABELLED, TEACHER_PRED, DistillationTerm, DistillationTrainer
from monai_coco.losses import CoCoDistillationLoss, PixelwiseKDLoss

FLAGS = torch.tensor([1, 0, 1, 0])


def instance_norm_unet(features, seed) -> BasicUNet:
    """Per-sample normalisation: a sample's logits depend on that sample's image alone."""
    torch.manual_seed(seed)
    return BasicUNet(spatial_dims=2, in_channels=3, out_channels=2, features=features, norm="instance")


def mixed_batch(flags=FLAGS, seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(len(flags), 3, 32, 32, generator=g)
    label = (image.mean(1) > 0.5).long() * flags.view(-1, 1, 1)  # placeholders (zeros) where unlabelled
    return {"image": image, "label": label, LABELLED: flags}


def run_one_step(student, teacher, batch, terms) -> tuple[DistillationTrainer, dict]:
    """One iteration with SGD(lr=0): the trainer, and the student logits and parameters with their grads."""
    trainer = DistillationTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=[batch],
        network=student,
        optimizer=torch.optim.SGD(student.parameters(), lr=0.0),
        loss_function=torch.nn.CrossEntropyLoss(),
        teacher=teacher,
        terms=terms,
        student_taps=TAPS,
        teacher_taps=TAPS,
        decollate=False,
    )
    seen = {}
    trainer.add_event_handler(
        IterationEvents.FORWARD_COMPLETED,
        lambda e: (
            e.state.output["pred"].retain_grad(),
            seen.update(pred=e.state.output["pred"], teacher=e.state.output[TEACHER_PRED]),
        ),
    )
    trainer.add_event_handler(
        IterationEvents.BACKWARD_COMPLETED,
        lambda e: seen.update(params={k: p.grad.clone() for k, p in student.named_parameters()}),
    )
    trainer.run()
    return trainer, seen


def test_cross_entropy_reaches_nothing_from_unlabelled_samples():
    teacher = instance_norm_unet(TEACHER_FEATURES, 1)
    student = instance_norm_unet(STUDENT_FEATURES, 2)
    batch = mixed_batch()
    trainer, seen = run_one_step(student, teacher, batch, terms={})
    pred = seen["pred"]
    # the logits of unlabelled samples get exactly zero gradient
    assert torch.equal(pred.grad[FLAGS == 0], torch.zeros_like(pred.grad[FLAGS == 0]))
    # the labelled rows get exactly the gradient of the mean CE over the labelled pixels
    logits = pred.detach()[FLAGS == 1].requires_grad_(True)
    ce = torch.nn.functional.cross_entropy(logits, batch["label"][FLAGS == 1])
    ce.backward()
    torch.testing.assert_close(pred.grad[FLAGS == 1], logits.grad, rtol=0, atol=0)
    assert trainer.state.output["ce"] == pytest.approx(ce.item(), rel=1e-6)
    # and the student's parameters get the gradient of a batch of the labelled images alone
    labelled_only = {k: v[FLAGS == 1] for k, v in batch.items()}
    _, alone = run_one_step(instance_norm_unet(STUDENT_FEATURES, 2), teacher, labelled_only, terms={})
    for name, grad in seen["params"].items():
        torch.testing.assert_close(grad, alone["params"][name], rtol=1e-5, atol=1e-7)


def test_distillation_terms_see_every_sample():
    teacher, student = tiny_unet(TEACHER_FEATURES, 1), tiny_unet(STUDENT_FEATURES, 2)
    terms = {"kd": DistillationTerm(PixelwiseKDLoss(), 1.0, "logits")}
    trainer, seen = run_one_step(student, teacher, mixed_batch(), terms)
    expected = PixelwiseKDLoss()(seen["pred"].detach(), seen["teacher"])  # the batch mean over all 4 images
    assert trainer.state.output["kd"] == pytest.approx(expected.item(), rel=1e-6)
    assert (seen["pred"].grad[FLAGS == 0].abs().flatten(1).sum(1) > 0).all()


def test_a_batch_without_labels_gives_zero_cross_entropy_and_still_distils():
    teacher, student = tiny_unet(TEACHER_FEATURES, 1), tiny_unet(STUDENT_FEATURES, 2)
    terms = {"coco": DistillationTerm(CoCoDistillationLoss(), 1.0, (0, 1))}
    trainer, seen = run_one_step(student, teacher, mixed_batch(torch.zeros(4, dtype=torch.long)), terms)
    out = trainer.state.output
    assert out["ce"] == 0.0 and out["coco"] > 0 and torch.isfinite(out["loss"])
    assert all(torch.isfinite(g).all() for g in seen["params"].values())
    assert sum(g.abs().sum() for g in seen["params"].values()) > 0


def test_an_all_labelled_flag_changes_nothing_and_a_wrong_length_is_named():
    teacher = tiny_unet(TEACHER_FEATURES, 1)
    batch = mixed_batch(torch.ones(4, dtype=torch.long))
    flagged, _ = run_one_step(tiny_unet(STUDENT_FEATURES, 2), teacher, batch, {})
    plain, _ = run_one_step(
        tiny_unet(STUDENT_FEATURES, 2), teacher, {k: batch[k] for k in ("image", "label")}, {}
    )
    assert flagged.state.output["ce"] == plain.state.output["ce"]
    with pytest.raises(ValueError, match=r"batch\['labelled'\] must hold one flag per sample \(4\), got 3"):
        run_one_step(tiny_unet(STUDENT_FEATURES, 2), teacher, {**batch, LABELLED: torch.ones(3)}, {})
