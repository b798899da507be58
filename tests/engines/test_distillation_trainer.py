"""DistillationTrainer: a real MONAI engine on tiny BasicUNets (CPU)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
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

from monai_coco.engines import DistillationTerm, DistillationTrainer
from monai_coco.losses import CoCoDistillationLoss, PixelwiseKDLoss
from monai_coco.networks import Paraphraser


def make_trainer(student, teacher, data, terms=None, lr=1e-2, **kwargs) -> DistillationTrainer:
    terms = (
        {"coco": DistillationTerm(CoCoDistillationLoss(), weight=1.0, inputs=(0, 1))}
        if terms is None
        else terms
    )
    kwargs.setdefault("decollate", False)
    return DistillationTrainer(
        device=kwargs.pop("device", torch.device("cpu")),
        max_epochs=kwargs.pop("max_epochs", 1),
        train_data_loader=data,
        network=student,
        optimizer=torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9),
        loss_function=torch.nn.CrossEntropyLoss(),
        teacher=teacher,
        terms=terms,
        student_taps=TAPS,
        teacher_taps=TAPS,
        **kwargs,
    )


def test_step_trains_the_student_and_leaves_the_teacher_bit_identical():
    teacher, student = tiny_unet(TEACHER_FEATURES, 1), tiny_unet(STUDENT_FEATURES, 2)
    teacher.train()  # the trainer must switch it to eval: batch-norm buffers would move otherwise
    student.eval()  # as a validation run leaves it: the trainer must put it back in train()
    before_teacher, before_student = snapshot(teacher), snapshot(student)
    trainer = make_trainer(student, teacher, make_batches(3), max_epochs=2)
    # a validator would flip the student to eval() between epochs
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: student.eval())
    trainer.run()

    assert identical(snapshot(teacher), before_teacher)
    assert not any(p.requires_grad for p in teacher.parameters())
    after = snapshot(student)
    assert not torch.equal(
        after["down_1.convs.conv_0.conv.weight"], before_student["down_1.convs.conv_0.conv.weight"]
    )
    # batch-norm running stats move only in train(): proof that the student ran in train mode
    assert not torch.equal(
        after["conv_0.conv_0.adn.N.running_mean"], before_student["conv_0.conv_0.adn.N.running_mean"]
    )
    assert trainer.state.iteration == 6


def test_output_holds_pred_teacher_pred_loss_and_every_term_as_floats():
    teacher, student = tiny_unet(TEACHER_FEATURES, 1), tiny_unet(STUDENT_FEATURES, 2)
    batch = make_batches(1)
    trainer = make_trainer(student, teacher, batch, lr=0.0)  # lr 0: the student stays as the reference saw it
    trainer.run()
    out = trainer.state.output

    for key in ("image", "label", "pred", "loss", "teacher_pred", "ce", "coco"):
        assert key in out
    assert "terms" not in out
    assert isinstance(out["ce"], float) and isinstance(out["coco"], float)
    assert math.isfinite(out["ce"]) and math.isfinite(out["coco"]) and out["coco"] > 0
    assert out["pred"].shape == out["teacher_pred"].shape == (2, 2, 32, 32)

    image, label = batch[0]["image"], batch[0]["label"]
    student.train()
    s_logits, s_feats = tap_features(student, TAPS, image)
    teacher.eval()
    with torch.no_grad():
        t_logits, t_feats = tap_features(teacher, TAPS, image)
    torch.testing.assert_close(out["pred"].detach(), s_logits.detach())
    torch.testing.assert_close(out["teacher_pred"], t_logits)
    assert out["ce"] == pytest.approx(torch.nn.functional.cross_entropy(s_logits, label).item(), rel=1e-5)
    expected_coco = CoCoDistillationLoss()(*s_feats, *t_feats).item()
    assert out["coco"] == pytest.approx(expected_coco, rel=1e-5)
    assert out["loss"].item() == pytest.approx(out["ce"] + out["coco"], rel=1e-6)


def test_terms_are_weighted_and_fed_from_the_paraphraser_factors():
    teacher, student = tiny_unet(TEACHER_FEATURES, 1), tiny_unet(STUDENT_FEATURES, 2)
    torch.manual_seed(3)
    paraphrasers = torch.nn.ModuleList([Paraphraser(8, 4), Paraphraser(8, 4)])
    before = snapshot(paraphrasers)
    terms = {
        "coco": DistillationTerm(CoCoDistillationLoss(), weight=0.25, inputs=(0, 1)),
        "deep": DistillationTerm(torch.nn.MSELoss(), weight=2.0, inputs=(1,)),  # student 4 ch vs factor 4 ch
        "kd": DistillationTerm(torch.nn.MSELoss(), weight=0.5, inputs="logits"),
    }
    batch = make_batches(1)
    trainer = make_trainer(student, teacher, batch, terms=terms, lr=0.0, paraphrasers=paraphrasers)
    trainer.run()
    out = trainer.state.output

    image = batch[0]["image"]
    student.train()
    s_logits, (s0, s1) = tap_features(student, TAPS, image)
    with torch.no_grad():
        t_logits, (t0, t1) = tap_features(teacher.eval(), TAPS, image)
        f0, f1 = paraphrasers[0].encode(t0), paraphrasers[1].encode(t1)
    assert out["coco"] == pytest.approx(0.25 * CoCoDistillationLoss()(s0, s1, f0, f1).item(), rel=1e-5)
    assert out["deep"] == pytest.approx(2.0 * torch.nn.functional.mse_loss(s1, f1).item(), rel=1e-5)
    assert out["kd"] == pytest.approx(0.5 * torch.nn.functional.mse_loss(s_logits, t_logits).item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(out["ce"] + out["coco"] + out["deep"] + out["kd"], rel=1e-6)
    assert identical(snapshot(paraphrasers), before)
    assert not any(p.requires_grad for p in paraphrasers.parameters())


def test_coco_gradient_reaches_exactly_the_student_layers_upstream_of_the_taps():
    teacher, student = tiny_unet(TEACHER_FEATURES, 1), tiny_unet(STUDENT_FEATURES, 2)
    grads: dict[str, bool] = {}

    def record(engine):
        for name, child in student.named_children():
            grads[name] = any(p.grad is not None and p.grad.abs().sum() > 0 for p in child.parameters())
        assert all(p.grad is None for p in teacher.parameters())

    def no_supervision(pred, label):  # the supervised term contributes exactly zero gradient
        return pred.sum() * 0.0

    trainer = make_trainer(student, teacher, make_batches(1), lr=0.0, optim_set_to_none=True)
    trainer.loss_function = no_supervision
    trainer.add_event_handler(IterationEvents.BACKWARD_COMPLETED, record)
    trainer.run()

    upstream = {"conv_0", "down_1", "down_2", "down_3", "down_4", "upcat_4", "upcat_3"}  # feeds upcat_3
    assert {name for name, has in grads.items() if has} == upstream
    assert set(grads) - upstream == {"upcat_2", "upcat_1", "final_conv"}


def test_teacher_outputs_carry_no_gradient_even_when_unfrozen_after_building_the_trainer():
    """A user who sets requires_grad on the teacher (or its paraphrasers) after the trainer froze them
    still gets a teacher that no distillation term can train: it runs under no_grad."""
    teacher, student = tiny_unet(TEACHER_FEATURES, 1), tiny_unet(STUDENT_FEATURES, 2)
    torch.manual_seed(3)
    paraphrasers = torch.nn.ModuleList([Paraphraser(8, 4), Paraphraser(8, 4)])
    terms = {
        "coco": DistillationTerm(CoCoDistillationLoss(), inputs=(0, 1)),
        "kd": DistillationTerm(torch.nn.MSELoss(), inputs="logits"),
    }
    trainer = make_trainer(student, teacher, make_batches(1), terms=terms, paraphrasers=paraphrasers)
    teacher.requires_grad_(True)
    paraphrasers.requires_grad_(True)
    seen = {}

    def record(engine):
        seen["teacher_pred"] = engine.state.output["teacher_pred"].requires_grad
        seen["teacher_grads"] = [p.grad for p in (*teacher.parameters(), *paraphrasers.parameters())]
        seen["student_grad"] = student.final_conv.weight.grad.abs().sum().item()

    trainer.add_event_handler(IterationEvents.BACKWARD_COMPLETED, record)
    trainer.run()
    assert seen["teacher_pred"] is False
    assert all(g is None for g in seen["teacher_grads"])
    assert seen["student_grad"] > 0  # the terms did backpropagate, into the student


def _events(trainer) -> list[str]:
    fired: list[str] = []
    for event in IterationEvents:
        trainer.add_event_handler(event, lambda e, ev=event: fired.append(ev.name))
    return fired


@pytest.mark.parametrize("set_to_none", [False, True])
def test_without_terms_it_matches_supervised_trainer_with_accumulation(set_to_none):
    """No distillation terms: the same events in the same order, and the same weights as MONAI's own
    SupervisedTrainer after 2 epochs of 3 iterations with accumulation_steps=2 (a flush at epoch end)."""
    data = make_batches(3)
    teacher = tiny_unet(TEACHER_FEATURES, 1)

    results = []
    for kind in ("ours", "monai", "ours_no_accumulation", "no_teacher"):
        student = tiny_unet(STUDENT_FEATURES, 2)
        common = dict(
            device=torch.device("cpu"),
            max_epochs=2,
            train_data_loader=data,
            network=student,
            optimizer=torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9),
            loss_function=torch.nn.CrossEntropyLoss(),
            accumulation_steps=1 if kind == "ours_no_accumulation" else 2,
            optim_set_to_none=set_to_none,
            decollate=False,
        )
        if kind == "monai":
            trainer = SupervisedTrainer(**common)
        elif kind == "no_teacher":
            trainer = DistillationTrainer(teacher=None, terms={}, **common)
        else:
            trainer = DistillationTrainer(
                teacher=teacher, terms={}, student_taps=TAPS, teacher_taps=TAPS, **common
            )
        fired = _events(trainer)
        trainer.run()
        results.append((snapshot(student), fired, trainer.state.output["loss"].item()))

    (ours, ours_events, ours_loss), (monai, monai_events, monai_loss), (plain, _, _), alone = results
    assert ours_events == monai_events == alone[1]
    assert identical(alone[0], monai)  # teacher=None (distill: none) is SupervisedTrainer, bit for bit
    assert ours_events[:4] == ["FORWARD_COMPLETED", "LOSS_COMPLETED", "BACKWARD_COMPLETED", "MODEL_COMPLETED"]
    assert ours.keys() == monai.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], monai[key], rtol=1e-5, atol=1e-6)
    assert ours_loss == pytest.approx(monai_loss, rel=1e-5)  # the unscaled loss, as MONAI reports it
    assert not torch.allclose(ours["final_conv.weight"], plain["final_conv.weight"])


def test_default_taps_and_a_data_parallel_student_give_the_same_step():
    outputs = []
    for wrap in (False, True):
        teacher, student = tiny_unet(TEACHER_FEATURES, 1), tiny_unet(STUDENT_FEATURES, 2)
        teacher.default_taps = student.default_taps = TAPS  # as FANet and MobileUNet declare them
        network = torch.nn.DataParallel(student) if wrap else student  # tap names stay those of the bare net
        trainer = DistillationTrainer(
            device="cpu",
            max_epochs=1,
            train_data_loader=make_batches(1),
            network=network,
            optimizer=torch.optim.SGD(student.parameters(), lr=0.1),
            loss_function=torch.nn.CrossEntropyLoss(),
            teacher=teacher,
            terms={"coco": DistillationTerm(CoCoDistillationLoss(), inputs=(0, 1))},
            decollate=False,
        )
        trainer.run()
        outputs.append((trainer.state.output["coco"], snapshot(student)))
    assert outputs[0][0] == outputs[1][0] > 0
    assert identical(outputs[0][1], outputs[1][1])


def test_default_decollated_output_still_carries_the_term_floats():
    teacher, student = tiny_unet(TEACHER_FEATURES, 1), tiny_unet(STUDENT_FEATURES, 2)
    trainer = make_trainer(student, teacher, make_batches(1), decollate=True)
    trainer.run()
    assert len(trainer.state.output) == 2  # one dict per image
    assert all(math.isfinite(item["coco"]) for item in trainer.state.output)


def test_distillation_term_rejects_bad_arguments_and_calls_the_loss_with_the_chosen_tensors():
    with pytest.raises(ValueError, match="inputs"):
        DistillationTerm(torch.nn.MSELoss(), inputs="features")
    with pytest.raises(ValueError, match="inputs"):
        DistillationTerm(torch.nn.MSELoss(), inputs=())
    with pytest.raises(ValueError, match="weight"):
        DistillationTerm(torch.nn.MSELoss(), weight=-1.0)
    seen = []

    def loss(*tensors):
        seen.append([t.shape[1] for t in tensors])
        return torch.tensor(3.0)

    s_logits, t_logits = torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4)
    s_feats = [torch.zeros(1, 10, 4, 4), torch.zeros(1, 11, 4, 4)]
    t_feats = [torch.zeros(1, 20, 4, 4), torch.zeros(1, 21, 4, 4)]
    assert DistillationTerm(loss, 0.5, "taps")(s_logits, t_logits, s_feats, t_feats).item() == 1.5
    DistillationTerm(loss, 1.0, (1,))(s_logits, t_logits, s_feats, t_feats)
    DistillationTerm(loss, 1.0, "logits")(s_logits, t_logits, s_feats, t_feats)
    assert seen == [[10, 11, 20, 21], [11, 21], [2, 2]]


def test_configuration_errors_name_the_offending_setting():
    teacher, student = tiny_unet(TEACHER_FEATURES, 1), tiny_unet(STUDENT_FEATURES, 2)
    data = make_batches(1)
    mse = torch.nn.MSELoss()
    with pytest.raises(ValueError, match="tap 2"):
        make_trainer(student, teacher, data, terms={"x": DistillationTerm(mse, inputs=(0, 2))})
    with pytest.raises(ValueError, match="distinct"):
        make_trainer(student, teacher, data, terms={"ce": DistillationTerm(mse)})
    with pytest.raises(ValueError, match="teacher_pred"):
        make_trainer(student, teacher, data, terms={"teacher_pred": DistillationTerm(mse)})
    with pytest.raises(ValueError, match="DistillationTerm"):
        make_trainer(student, teacher, data, terms={"coco": (1.0, mse, (0, 1))})
    with pytest.raises(ValueError, match="one paraphraser per teacher tap"):
        make_trainer(student, teacher, data, paraphrasers=[Paraphraser(8, 4)])
    with pytest.raises(ValueError, match="default_taps"):
        DistillationTrainer(
            device="cpu",
            max_epochs=1,
            train_data_loader=data,
            network=student,
            optimizer=torch.optim.SGD(student.parameters(), lr=0.1),
            loss_function=torch.nn.CrossEntropyLoss(),
            teacher=teacher,
            terms={"coco": DistillationTerm(CoCoDistillationLoss(), inputs=(0, 1))},
        )


def test_logit_only_terms_need_no_taps_and_set_no_hooks():
    """kd on networks without default_taps and no tap names: the first step's kd term equals the KD loss
    of the plain forward passes (before the step), and no forward hook is left on either network."""
    teacher, student = tiny_unet(TEACHER_FEATURES, 1), tiny_unet(STUDENT_FEATURES, 2)
    assert getattr(student, "default_taps", None) is None
    data = make_batches(1)
    kd = PixelwiseKDLoss(temperature=2.0)
    student.train(), teacher.eval()
    with torch.no_grad():
        expected = kd(student(data[0]["image"]), teacher(data[0]["image"])).item()
    trainer = DistillationTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=data,
        network=student,
        optimizer=torch.optim.SGD(student.parameters(), lr=0.1),
        loss_function=torch.nn.CrossEntropyLoss(),
        teacher=teacher,
        terms={"kd": DistillationTerm(kd, weight=0.5, inputs="logits")},
        paraphrasers=[Paraphraser(8, 4)],  # ignored: no term reads taps
        decollate=False,
    )
    assert trainer.student_taps is None and trainer.teacher_taps is None and trainer.paraphrasers is None
    assert not any(m._forward_hooks for net in (student, teacher) for m in net.modules())
    trainer.run()
    assert trainer.state.output["kd"] == pytest.approx(0.5 * expected, rel=1e-5)


def test_amp_on_cpu_means_no_autocast_and_the_same_result():
    results, dtypes = [], []
    for amp in (False, True):
        teacher, student = tiny_unet(TEACHER_FEATURES, 1), tiny_unet(STUDENT_FEATURES, 2)
        trainer = make_trainer(student, teacher, make_batches(2), amp=amp)
        trainer.add_event_handler(
            IterationEvents.FORWARD_COMPLETED, lambda e: dtypes.append(e.state.output["pred"].dtype)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MONAI's GradScaler warns that CUDA is absent
            trainer.run()
        results.append(snapshot(student))
    assert identical(*results)
    assert set(dtypes) == {torch.float32}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="AMP runs on CUDA only")
def test_amp_on_cuda_trains_with_finite_terms_and_a_frozen_teacher():
    device = torch.device("cuda")
    teacher = tiny_unet(TEACHER_FEATURES, 1).to(device)
    student = tiny_unet(STUDENT_FEATURES, 2).to(device)
    before_teacher, before_student = snapshot(teacher), snapshot(student)
    data = [{k: v.to(device) for k, v in b.items()} for b in make_batches(3)]
    trainer = make_trainer(student, teacher, data, amp=True, max_epochs=2, device=device)
    precisions = []
    trainer.add_event_handler(
        IterationEvents.FORWARD_COMPLETED, lambda e: precisions.append(e.state.output["pred"].dtype)
    )
    trainer.run()
    out = trainer.state.output
    assert precisions[0] == torch.float16  # the forward pass ran under autocast
    assert trainer.scaler is not None and trainer.scaler.is_enabled()
    assert math.isfinite(out["ce"]) and math.isfinite(out["coco"])
    assert identical(snapshot(teacher), before_teacher)
    assert not identical(snapshot(student), before_student)


def test_terms_without_a_teacher_are_refused():
    student = tiny_unet(STUDENT_FEATURES, 2)
    with pytest.raises(ValueError, match="need a teacher"):
        DistillationTrainer(
            device=torch.device("cpu"),
            max_epochs=1,
            train_data_loader=make_batches(1),
            network=student,
            optimizer=torch.optim.SGD(student.parameters(), lr=0.1),
            loss_function=torch.nn.CrossEntropyLoss(),
            teacher=None,
            terms={"kd": DistillationTerm(PixelwiseKDLoss(), 1.0, "logits")},
        )
