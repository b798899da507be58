"""AdversarialDistillationHandler on a real DistillationTrainer (tiny BasicUNets, small LogitCritic, CPU)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents

from monai_coco.checkpoints import load_checkpoint, save_checkpoint
from monai_coco.engines import DistillationTerm, DistillationTrainer
from monai_coco.handlers import AdversarialDistillationHandler
from monai_coco.losses import CoCoDistillationLoss
from monai_coco.networks import LogitCritic

TAPS = ("down_2", "upcat_3")  # both at 1/4 resolution


def params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters only: spectral norm's power-iteration buffers move on every train-mode forward."""
    return {k: p.detach().clone() for k, p in module.named_parameters()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def distillation_trainer(student, teacher, data, handlers=(), terms=None, **kwargs) -> DistillationTrainer:
    terms = {"coco": DistillationTerm(CoCoDistillationLoss(), inputs=(0, 1))} if terms is None else terms
    kwargs.setdefault("decollate", False)
    return DistillationTrainer(
        device=kwargs.pop("device", "cpu"),
        max_epochs=kwargs.pop("max_epochs", 2),
        train_data_loader=data,
        network=student,
        optimizer=torch.optim.SGD(student.parameters(), lr=1e-2, momentum=0.9),
        loss_function=torch.nn.CrossEntropyLoss(),
        teacher=teacher,
        terms=terms,
        student_taps=TAPS,
        teacher_taps=TAPS,
        train_handlers=list(handlers),
        **kwargs,
    )


def test_critic_changes_only_in_its_own_step_after_the_student_step(student, teacher, critic, batches):
    handler = AdversarialDistillationHandler(critic, torch.optim.Adam(critic.parameters(), lr=1e-3))
    trainer = distillation_trainer(student, teacher, batches)
    seen: dict[str, list] = {"start": [], "backward": [], "before_step": [], "after_step": []}
    grads_after_backward = []
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: seen["start"].append(params(critic)))
    trainer.add_event_handler(
        IterationEvents.BACKWARD_COMPLETED,
        lambda e: (
            seen["backward"].append(params(critic)),
            grads_after_backward.append(
                [None if p.grad is None else p.grad.clone() for p in critic.parameters()]
            ),
        ),
    )
    trainer.add_event_handler(
        IterationEvents.MODEL_COMPLETED, lambda e: seen["before_step"].append(params(critic))
    )
    handler.attach(trainer)
    trainer.add_event_handler(
        IterationEvents.MODEL_COMPLETED, lambda e: seen["after_step"].append(params(critic))
    )
    teacher_before = copy.deepcopy(teacher.state_dict())
    student_before = params(student)
    trainer.run()

    assert len(seen["start"]) == 6
    for start, backward, before, after in zip(*seen.values()):
        assert same(start, backward) and same(backward, before)  # the student's forward/backward/step
        assert not same(before, after)  # the critic's own step
    # the generator term's backward never fills the critic's .grad (first iteration: nothing else has)
    assert all(g is None for g in grads_after_backward[0])
    # later iterations: still exactly the grads the previous critic step left
    assert all(g is not None for g in grads_after_backward[1])
    assert all(torch.equal(a, b) for a, b in zip(teacher_before.values(), teacher.state_dict().values()))
    assert not same(student_before, params(student))


def test_output_holds_adv_and_critic_and_adv_is_the_weighted_generator_term(
    student, teacher, critic, batches
):
    handler = AdversarialDistillationHandler(
        critic, torch.optim.Adam(critic.parameters(), lr=1e-3), weight=0.3
    )
    trainer = distillation_trainer(student, teacher, batches[:1], max_epochs=1)
    reference = {}

    def before_handler(engine):  # the critic and logits exactly as the handler will see them
        reference["critic"] = copy.deepcopy(critic)
        reference["pred"] = engine.state.output["pred"].detach().clone()

    trainer.add_event_handler(IterationEvents.FORWARD_COMPLETED, before_handler)
    handler.attach(trainer)
    trainer.run()
    out = trainer.state.output

    expected_adv = (
        -0.3 * reference["critic"](reference["pred"]).mean().item()
    )  # one image's map mean, then batch
    assert out["adv"] == pytest.approx(expected_adv, rel=1e-5, abs=1e-7)
    assert isinstance(out["critic"], float) and math.isfinite(out["critic"])
    assert out["loss"].item() == pytest.approx(out["ce"] + out["coco"] + out["adv"], rel=1e-6)


def test_reported_critic_loss_is_teacher_real_versus_student_fake_before_the_step(
    student, teacher, critic, batches
):
    """gp_weight 0: the critic loss is exactly mean D(student logits) − mean D(teacher logits), with the
    critic as it was before its step; swapping real and fake would flip its sign."""
    optimizer = torch.optim.Adam(critic.parameters(), lr=1e-2)
    handler = AdversarialDistillationHandler(critic, optimizer, gp_weight=0.0)
    trainer = distillation_trainer(student, teacher, batches[:1], max_epochs=1)
    reference = {}

    def before_critic_step(engine):
        reference["critic"] = copy.deepcopy(critic).train()
        reference["real"] = engine.state.output["teacher_pred"].detach().clone()
        reference["fake"] = engine.state.output["pred"].detach().clone()

    trainer.add_event_handler(IterationEvents.MODEL_COMPLETED, before_critic_step)
    handler.attach(trainer)
    trainer.run()
    d = reference["critic"]
    with torch.no_grad():
        expected = (d(reference["fake"]).mean() - d(reference["real"]).mean()).item()
    assert abs(expected) > 1e-4  # the sign is visible
    assert trainer.state.output["critic"] == pytest.approx(expected, rel=1e-5)
    assert not same(params(d), params(critic))  # and the critic did step afterwards


def test_generator_gradient_reaches_the_student(student, teacher, critic, batches):
    handler = AdversarialDistillationHandler(
        critic, torch.optim.Adam(critic.parameters(), lr=1e-3), weight=1.0
    )
    trainer = distillation_trainer(student, teacher, batches[:1], handlers=[handler], terms={}, max_epochs=1)
    trainer.loss_function = lambda pred, label: pred.sum() * 0.0  # only the adversarial term has a gradient
    grads = []
    trainer.add_event_handler(
        IterationEvents.BACKWARD_COMPLETED,
        lambda e: grads.append(student.final_conv.weight.grad.abs().sum().item()),
    )
    trainer.run()
    assert grads[0] > 0


def test_critic_steps_and_decollated_output(student, teacher, critic, batches):
    optimizer = torch.optim.Adam(critic.parameters(), lr=1e-3)
    handler = AdversarialDistillationHandler(critic, optimizer, critic_steps=3)
    trainer = distillation_trainer(
        student, teacher, batches, handlers=[handler], max_epochs=1, decollate=True
    )
    trainer.run()
    assert optimizer.state_dict()["state"][0]["step"].item() == 3 * 3
    assert [sorted(item)[:2] for item in trainer.state.output] == [["adv", "ce"], ["adv", "ce"]]
    assert all(math.isfinite(item["critic"]) for item in trainer.state.output)


def test_state_round_trips_through_a_checkpoint_and_a_wrong_critic_is_named(
    tmp_path, student, teacher, critic, batches
):
    optimizer = torch.optim.Adam(critic.parameters(), lr=1e-3)
    handler = AdversarialDistillationHandler(critic, optimizer)
    distillation_trainer(student, teacher, batches, handlers=[handler], max_epochs=1).run()
    path = save_checkpoint(tmp_path / "state.pt", {"adversarial": handler})

    torch.manual_seed(9)
    critic2 = LogitCritic(in_channels=2, channels=(8, 16))
    optimizer2 = torch.optim.Adam(critic2.parameters(), lr=1e-3)
    handler2 = AdversarialDistillationHandler(critic2, optimizer2)
    load_checkpoint(path, {"adversarial": handler2})
    assert same(params(critic2), params(critic))
    torch.testing.assert_close(
        optimizer2.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"]
    )

    wide = LogitCritic(in_channels=2, channels=(16, 16))
    wrong = AdversarialDistillationHandler(wide, torch.optim.Adam(wide.parameters()))
    with pytest.raises(
        ValueError, match=r"state.pt.*'adversarial'.*critic.*'features.0.bias' has shape \(8,\)"
    ):
        load_checkpoint(path, {"adversarial": wrong})


def test_bad_settings_and_a_plain_trainer_are_refused(student, critic, batches):
    optimizer = torch.optim.Adam(critic.parameters())
    with pytest.raises(ValueError, match="critic_steps"):
        AdversarialDistillationHandler(critic, optimizer, critic_steps=0)
    with pytest.raises(ValueError, match="weight"):
        AdversarialDistillationHandler(critic, optimizer, weight=-0.1)
    plain = SupervisedTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=batches,
        network=student,
        optimizer=torch.optim.SGD(student.parameters(), lr=0.1),
        loss_function=torch.nn.CrossEntropyLoss(),
    )
    with pytest.raises(ValueError, match="needs a DistillationTrainer"):
        AdversarialDistillationHandler(critic, optimizer).attach(plain)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="AMP runs on CUDA only")
def test_amp_on_cuda_uses_the_handlers_own_scaler(student, teacher, critic, batches):
    device = torch.device("cuda")
    student, teacher, critic = student.to(device), teacher.to(device), critic.to(device)
    data = [{k: v.to(device) for k, v in b.items()} for b in batches]
    handler = AdversarialDistillationHandler(critic, torch.optim.Adam(critic.parameters(), lr=1e-3), amp=True)
    trainer = distillation_trainer(student, teacher, data, handlers=[handler], amp=True, device=device)
    before = params(critic)
    trainer.run()
    out = trainer.state.output
    assert handler.scaler.is_enabled() and handler.scaler is not trainer.scaler
    assert all(math.isfinite(out[k]) for k in ("ce", "coco", "adv", "critic"))
    assert not same(before, params(critic))


def test_critic_lr_decays_by_poly_each_iteration_and_resumes_from_a_checkpoint(
    tmp_path, student, teacher, critic, batches
):
    optimizer = torch.optim.Adam(critic.parameters(), lr=3e-5)
    schedule = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=6, power=0.9)
    handler = AdversarialDistillationHandler(critic, optimizer, lr_scheduler=schedule)
    trainer = distillation_trainer(student, teacher, batches, max_epochs=1)  # 3 of the 6 iterations
    used = []  # the LR of each iteration's critic step
    trainer.add_event_handler(
        IterationEvents.MODEL_COMPLETED, lambda e: used.append(optimizer.param_groups[0]["lr"])
    )
    handler.attach(trainer)
    trainer.run()
    # the authors' poly: lr_k = base · (1 − k / total)^0.9 for the k-th critic step, k = 0, 1, 2
    assert used == pytest.approx([3e-5 * (1 - k / 6) ** 0.9 for k in range(3)], rel=1e-12)
    path = save_checkpoint(tmp_path / "state.pt", {"adversarial": handler})

    critic2 = copy.deepcopy(critic)
    optimizer2 = torch.optim.Adam(critic2.parameters(), lr=3e-5)
    schedule2 = torch.optim.lr_scheduler.PolynomialLR(optimizer2, total_iters=6, power=0.9)
    load_checkpoint(
        path, {"adversarial": AdversarialDistillationHandler(critic2, optimizer2, lr_scheduler=schedule2)}
    )
    assert schedule2.last_epoch == 3
    assert optimizer2.param_groups[0]["lr"] == pytest.approx(3e-5 * (1 - 3 / 6) ** 0.9, rel=1e-12)

    no_schedule = save_checkpoint(
        tmp_path / "plain.pt",
        {"adversarial": AdversarialDistillationHandler(critic, torch.optim.Adam(critic.parameters()))},
    )
    with pytest.raises(ValueError, match="lr_scheduler"):
        load_checkpoint(
            no_schedule,
            {"adversarial": AdversarialDistillationHandler(critic2, optimizer2, lr_scheduler=schedule2)},
        )


def test_handler_passes_its_gp_convention_to_the_critic_loss(student, teacher, critic, batches):
    """With a 5×5 score map the two penalty conventions give different critic losses on one batch."""
    losses = {}
    for gp_score in ("sum", "mean"):
        critic_copy = copy.deepcopy(critic)
        handler = AdversarialDistillationHandler(
            critic_copy, torch.optim.SGD(critic_copy.parameters(), lr=0.0), gp_score=gp_score
        )
        trainer = distillation_trainer(copy.deepcopy(student), teacher, batches[:1], [handler], max_epochs=1)
        torch.manual_seed(0)
        trainer.run()
        losses[gp_score] = trainer.state.output["critic"]
    assert abs(losses["sum"] - losses["mean"]) > 0.01 * abs(losses["mean"])
    with pytest.raises(ValueError, match="gp_score"):
        AdversarialDistillationHandler(critic, torch.optim.Adam(critic.parameters()), gp_score="max")
