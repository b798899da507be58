"""Accuracy of the teacher, the student and every distillation method, at one equal training budget.

Stage 0 trains the teacher (``FANet``) with cross-entropy (MONAI ``SupervisedTrainer``); stage 1 the
paraphrasers on its frozen taps (``ParaphraserTrainer``); stage 2 trains one student (``MobileUNet``) per
method and seed, from the same initialisation per seed, on the same batches (``SupervisedTrainer`` for
the student alone, ``DistillationTrainer`` — plus ``AdversarialDistillationHandler`` — for the others).
Every run is scored on a held-out test set by MONAI's ``SupervisedEvaluator`` with
``PathologySegmentationMetric`` (one confusion matrix over all test pixels): ACC and mIoU.

The teacher and the paraphrasers are trained once (seed ``seeds[0]``) and shared by every student, so the
students' spread across seeds is the students' own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from benchmark_data import synthetic_split, test_loader, train_dataset, train_loader
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import LrScheduleHandler, from_engine
from monai.utils import set_determinism

from monai_coco.engines import DistillationTerm, DistillationTrainer, ParaphraserTrainer
from monai_coco.handlers import AdversarialDistillationHandler, PathologySegmentationMetric
from monai_coco.losses import (
    AttentionTransferLoss,
    ChannelWiseDistillationLoss,
    CoCoDistillationLoss,
    FSPLoss,
    PairwiseSimilarityLoss,
    PixelwiseKDLoss,
)
from monai_coco.networks import FANet, FeatureTaps, LogitCritic, MobileUNet, Paraphraser


@dataclass(frozen=True)
class AccuracySettings:
    """The experiment: data, networks and the (equal) training budget of every student.

    The defaults are the full benchmark's, sized for a 2-core CPU: 64×64 tiles at 4 µm/px (a 256 µm field,
    like the paper's 1024 px windows resized to 256 px at about 1 µm/px), a FANet at a quarter of the
    paper's widths, a Mobile U-Net at half width (taps of 16 channels) and a small critic; chosen so that
    the teacher clearly beats the student without distillation (at width 1.0 the gap was within about two
    seed standard deviations).

    Baseline weights are those of each method's public code (not tuned here): KD 10 (SKD's λ_pi), pair-wise
    1 (the CoCo weight, as it is CoCo's same-layer case), AT 1000 per tap (Zagoruyko's β), FSP 1, CWD 3 at
    τ = 1 (mmrazor's logit CWD); CoCo λ = 1 and adversarial λ = 0.1 (METHOD §6).
    """

    size: int = 64
    mpp: float = 4.0
    n_train: int = 64
    n_test: int = 32
    data_seed: int = 100
    batch: int = 8
    in_channels: int = 3
    teacher_features: tuple[int, ...] = (16, 32, 64, 128)
    student_width: float = 0.5
    critic_channels: tuple[int, ...] = (16, 32, 64, 128)
    teacher_epochs: int = 15
    paraphraser_epochs: int = 10
    student_epochs: int = 10
    lr: float = 3e-3
    paraphraser_lr: float = 1e-3
    weight_decay: float = 2e-4
    seeds: tuple[int, ...] = (0, 1, 2)
    lambda_coco: float = 1.0
    lambda_adv: float = 0.1
    lambda_sweep: tuple[float, ...] = (1e-2, 1e2)
    methods: tuple[str, ...] = field(default=())  # empty: every method of METHODS

    def method_names(self) -> tuple[str, ...]:
        return self.methods or tuple(METHODS)


@dataclass(frozen=True)
class Method:
    """One student recipe: its distillation terms (given λ_coco), paraphrasers, critic."""

    label: str
    terms: Callable[[float], dict[str, DistillationTerm]]
    paraphrasers: bool = False
    adversarial: bool = False


def _coco(weight: float) -> dict[str, DistillationTerm]:
    return {"coco": DistillationTerm(CoCoDistillationLoss(), weight, (0, 1))}


METHODS: dict[str, Method] = {
    "student": Method("student, no distillation", lambda w: {}),
    "kd": Method("+ pixel-wise KD", lambda w: {"kd": DistillationTerm(PixelwiseKDLoss(), 10.0, "logits")}),
    "pairwise": Method(
        "+ pair-wise (SKD)", lambda w: {"pairwise": DistillationTerm(PairwiseSimilarityLoss(), 1.0, (1,))}
    ),
    "at": Method(
        "+ AT",
        lambda w: {f"at{i}": DistillationTerm(AttentionTransferLoss(), 1000.0, (i,)) for i in (0, 1)},
    ),
    "fsp": Method(
        "+ FSP (on paraphraser factors)",
        lambda w: {"fsp": DistillationTerm(FSPLoss(), 1.0, (0, 1))},
        paraphrasers=True,
    ),
    "cwd": Method(
        "+ CWD", lambda w: {"cwd": DistillationTerm(ChannelWiseDistillationLoss(tau=1.0), 3.0, "logits")}
    ),
    "coco": Method("+ CoCo", _coco),
    "coco_pm": Method("+ CoCo + paraphraser", _coco, paraphrasers=True),
    "coco_pm_ad": Method("+ CoCo + paraphraser + adversarial", _coco, paraphrasers=True, adversarial=True),
}
SWEPT_METHOD = "coco_pm"


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def tap_channels(network: torch.nn.Module, in_channels: int, size: int) -> list[int]:
    """Channels of ``network.default_taps`` on a ``(1, in_channels, size, size)`` input."""
    device = next(network.parameters()).device
    was_training = network.training
    network.eval()
    with FeatureTaps(network, network.default_taps) as taps, torch.no_grad():
        _, features = taps(torch.zeros(1, in_channels, size, size, device=device))
    network.train(was_training)
    return [features[name].shape[1] for name in network.default_taps]


def _poly_schedule(optimizer: torch.optim.Optimizer, iterations: int) -> LrScheduleHandler:
    """Poly(0.9) learning rate decay per iteration (METHOD §6), as a MONAI handler."""
    scheduler = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=max(iterations, 1), power=0.9)
    return LrScheduleHandler(scheduler, print_lr=False, epoch_level=False)


def _adam(network: torch.nn.Module, settings: AccuracySettings) -> torch.optim.Optimizer:
    return torch.optim.Adam(network.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)


def evaluate(network: torch.nn.Module, loader) -> dict[str, float]:
    """ACC and mIoU of ``network`` over every pixel of ``loader`` (MONAI ``SupervisedEvaluator``)."""

    def metric(name: str) -> PathologySegmentationMetric:
        return PathologySegmentationMetric(
            name, output_transform=from_engine(["pred", "label"]), save_details=False
        )

    evaluator = SupervisedEvaluator(
        device=_device(),
        val_data_loader=loader,
        network=network,
        key_val_metric={"miou": metric("miou")},
        additional_metrics={"acc": metric("accuracy")},
    )
    evaluator.run()
    return {"acc": float(evaluator.state.metrics["acc"]), "miou": float(evaluator.state.metrics["miou"])}


def train_teacher(settings: AccuracySettings, loader) -> FANet:
    """Stage 0: FANet with cross-entropy, ``teacher_epochs`` epochs."""
    set_determinism(settings.seeds[0])
    teacher = FANet(settings.in_channels, 2, features=settings.teacher_features).to(_device())
    optimizer = _adam(teacher, settings)
    trainer = SupervisedTrainer(
        device=_device(),
        max_epochs=settings.teacher_epochs,
        train_data_loader=loader,
        network=teacher,
        optimizer=optimizer,
        loss_function=torch.nn.CrossEntropyLoss(),
        train_handlers=[_poly_schedule(optimizer, settings.teacher_epochs * len(loader))],
        decollate=False,
    )
    trainer.run()
    return teacher.eval()


def train_paraphrasers(
    settings: AccuracySettings, teacher: torch.nn.Module, factor_channels: Sequence[int], loader
) -> torch.nn.ModuleList:
    """Stage 1: one paraphraser per teacher tap (factor = the student's tap channels).

    Adam, not METHOD §4's SGD (lr 3e-4): within this CPU budget (tens of iterations) that SGD leaves the
    reconstruction error at about 1 (an untrained paraphraser), Adam at 1e-3 brings it to about 0.1-0.2."""
    set_determinism(settings.seeds[0])
    channels = tap_channels(teacher, settings.in_channels, settings.size)
    paraphrasers = torch.nn.ModuleList(Paraphraser(c, k) for c, k in zip(channels, factor_channels))
    paraphrasers = paraphrasers.to(_device())
    optimizer = torch.optim.Adam(paraphrasers.parameters(), lr=settings.paraphraser_lr)
    trainer = ParaphraserTrainer(
        device=_device(),
        max_epochs=settings.paraphraser_epochs,
        train_data_loader=loader,
        network=paraphrasers,
        optimizer=optimizer,
        teacher=teacher,
        train_handlers=[_poly_schedule(optimizer, settings.paraphraser_epochs * len(loader))],
        decollate=False,
    )
    trainer.run()
    return paraphrasers.eval()


def reconstruction_error(teacher: torch.nn.Module, paraphrasers: torch.nn.ModuleList, loader) -> list[float]:
    """Per teacher tap, ``Σ‖paraphraser(f) − f‖² / Σ‖f‖²`` over ``loader``'s images (0 is perfect, 1 is
    as bad as predicting zeros)."""
    error = [0.0] * len(paraphrasers)
    energy = [0.0] * len(paraphrasers)
    with FeatureTaps(teacher, teacher.default_taps) as taps, torch.no_grad():
        for batch in loader:
            _, features = taps(batch["image"].to(_device()))
            for i, (name, paraphraser) in enumerate(zip(teacher.default_taps, paraphrasers)):
                f = features[name].double()
                error[i] += (paraphraser(f.float()).double() - f).pow(2).sum().item()
                energy[i] += f.pow(2).sum().item()
    return [e / max(n, 1e-30) for e, n in zip(error, energy)]


def new_student(settings: AccuracySettings, seed: int) -> MobileUNet:
    """The student at its seeded initialisation (the same for every method of one seed)."""
    set_determinism(seed)
    return MobileUNet(settings.in_channels, 2, width_mult=settings.student_width).to(_device())


def method_parts(
    settings: AccuracySettings, method: Method, paraphrasers: torch.nn.ModuleList | None, lambda_coco: float
) -> tuple[dict[str, DistillationTerm], torch.nn.ModuleList | None, AdversarialDistillationHandler | None]:
    """The method's distillation terms, its paraphrasers (or None) and its adversarial handler (or None,
    else a new ``LogitCritic`` with METHOD §5's Adam)."""
    adversarial = None
    if method.adversarial:
        critic = LogitCritic(2, channels=settings.critic_channels).to(_device())
        optimizer = torch.optim.Adam(critic.parameters(), lr=2e-5, betas=(0.9, 0.99))
        adversarial = AdversarialDistillationHandler(critic, optimizer, weight=settings.lambda_adv)
    return method.terms(lambda_coco), paraphrasers if method.paraphrasers else None, adversarial


def student_trainer(
    settings: AccuracySettings,
    student: torch.nn.Module,
    loader,
    teacher: torch.nn.Module,
    terms: Mapping[str, DistillationTerm],
    paraphrasers: torch.nn.ModuleList | None = None,
    adversarial: AdversarialDistillationHandler | None = None,
    handlers: Sequence = (),
) -> SupervisedTrainer:
    """The engine of one student run: MONAI's ``SupervisedTrainer`` for the student alone (no terms, no
    critic), else ``DistillationTrainer``. ``handlers`` attach first, the adversarial handler last."""
    optimizer = _adam(student, settings)
    handlers = [*handlers, _poly_schedule(optimizer, settings.student_epochs * len(loader))]
    common = dict(
        device=_device(),
        max_epochs=settings.student_epochs,
        train_data_loader=loader,
        network=student,
        optimizer=optimizer,
        loss_function=torch.nn.CrossEntropyLoss(),
        decollate=False,
    )
    if not terms and adversarial is None:
        return SupervisedTrainer(**common, train_handlers=handlers)
    return DistillationTrainer(
        **common,
        teacher=teacher,
        terms=terms,
        paraphrasers=paraphrasers,
        train_handlers=handlers + ([adversarial] if adversarial is not None else []),
    )


def _scores(row: Mapping) -> str:
    return f"acc {row['acc']:.4f} miou {row['miou']:.4f} ({row['train_s']:.0f} s)"


def run_accuracy(settings: AccuracySettings, workdir: Path, log: Callable[[str], None] = print) -> dict:
    """The whole experiment. Returns ``{"teacher": {acc, miou, train_s}, "paraphraser_error": [per tap],
    "runs": [{method, lambda_coco, seed, acc, miou, train_s}, ...], "settings": {...}}``."""
    train_list = synthetic_split(
        workdir / "train", settings.n_train, settings.size, settings.data_seed, settings.mpp
    )
    test_list = synthetic_split(
        workdir / "test", settings.n_test, settings.size, settings.data_seed + 1, settings.mpp
    )
    tests = test_loader(test_list, settings.batch, settings.in_channels)
    train_set = train_dataset(train_list, settings.in_channels)
    set_determinism(settings.seeds[0])
    loader = train_loader(train_set, settings.batch)

    start = time.perf_counter()
    teacher = train_teacher(settings, loader)
    teacher_row = {**evaluate(teacher, tests), "train_s": time.perf_counter() - start}
    log(f"teacher: {_scores(teacher_row)}")

    names = settings.method_names()
    factor_channels = tap_channels(new_student(settings, 0), settings.in_channels, settings.size)
    paraphrasers, relative_error = None, []
    if any(METHODS[n].paraphrasers for n in names) or settings.lambda_sweep:
        start = time.perf_counter()
        paraphrasers = train_paraphrasers(settings, teacher, factor_channels, loader)
        relative_error = reconstruction_error(teacher, paraphrasers, tests)
        seconds = time.perf_counter() - start
        log(f"paraphrasers: relative reconstruction error {relative_error} ({seconds:.0f} s)")

    plan = [(n, settings.lambda_coco) for n in names]
    plan += [(SWEPT_METHOD, w) for w in settings.lambda_sweep if w != settings.lambda_coco]
    runs = []
    for seed in settings.seeds:
        for name, lambda_coco in plan:
            method = METHODS[name]
            student = new_student(settings, seed)
            parts = method_parts(settings, method, paraphrasers, lambda_coco)
            set_determinism(seed)  # the same batches and flips for every method of this seed
            loader = train_loader(train_set, settings.batch)
            trainer = student_trainer(settings, student, loader, teacher, *parts)
            start = time.perf_counter()
            trainer.run()
            row = {
                "method": name,
                "lambda_coco": lambda_coco,
                "seed": seed,
                **evaluate(student, tests),
                "train_s": time.perf_counter() - start,
            }
            runs.append(row)
            log(f"seed {seed} {name} λ={lambda_coco:g}: {_scores(row)}")
    set_determinism(None)
    return {
        "teacher": teacher_row,
        "paraphraser_error": relative_error,
        "runs": runs,
        "tap_channels": {
            "student": factor_channels,
            "teacher": tap_channels(teacher, settings.in_channels, settings.size),
        },
    }


def describe(settings: AccuracySettings) -> str:
    """The experiment's settings as a Markdown list."""
    s = settings
    per_epoch = s.n_train // s.batch
    return "\n".join(
        [
            f"- Data: `monai_coco.data.write_synthetic_dataset`, {s.n_train} training and {s.n_test} test "
            f"tiles of {s.size}×{s.size} px at {s.mpp} µm/px (data seeds {s.data_seed}, {s.data_seed + 1}), "
            "RGB in [0, 1], random horizontal and vertical flips (the paper's augmentation).",
            f"- Teacher: FANet features {s.teacher_features}, cross-entropy, {s.teacher_epochs} epochs "
            f"({s.teacher_epochs * per_epoch} iterations). Paraphrasers: {s.paraphraser_epochs} epochs, "
            f"Adam lr {s.paraphraser_lr:g} (METHOD §4's SGD at 3e-4 does not train them in so few "
            f"iterations). Both trained once (seed {s.seeds[0]}) and shared by every student.",
            f"- Every student: Mobile U-Net width {s.student_width}, **{s.student_epochs} epochs = "
            f"{s.student_epochs * per_epoch} iterations of batch {s.batch}**, Adam lr {s.lr:g}, weight decay "
            f"{s.weight_decay:g}, poly(0.9) decay; for one seed, every method starts from the same weights "
            f"and sees the same batches and flips; seeds {list(s.seeds)}.",
            f"- Weights: CoCo λ = {s.lambda_coco:g} on the (shallow, deep) taps; adversarial λ = "
            f"{s.lambda_adv:g}, critic widths {s.critic_channels}, Adam 2e-5; KD 10 (τ = 1); pair-wise 1 "
            "(deep tap); AT 1000 per tap; FSP 1; CWD 3 (τ = 1): each method's published default, not tuned "
            "here. FSP needs equal student and teacher channels: it compares with the paraphraser factors.",
        ]
    )


def summarise(result: Mapping, settings: AccuracySettings) -> list[dict]:
    """One row per (method, λ), in run order: mean and sample std over seeds of ACC, mIoU and train time,
    the share of the teacher–student gap closed, ``(m − m_student) / (m_teacher − m_student)``, and
    ``is_main`` (λ is the main λ_coco, not a sweep value)."""
    import statistics

    groups: dict[tuple[str, float], list[dict]] = {}
    for run in result["runs"]:
        groups.setdefault((run["method"], run["lambda_coco"]), []).append(run)

    def stats(values: list[float]) -> tuple[float, float]:
        return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else float("nan"))

    base = groups.get(("student", settings.lambda_coco))
    teacher = result["teacher"]
    rows = []
    for (name, lam), runs in groups.items():
        row = {
            "method": name,
            "label": METHODS[name].label,
            "lambda_coco": lam,
            "n": len(runs),
            "is_main": lam == settings.lambda_coco,
        }
        for key in ("acc", "miou", "train_s"):
            row[key], row[f"{key}_std"] = stats([r[key] for r in runs])
        for key in ("acc", "miou"):
            if base:
                student_mean = stats([r[key] for r in base])[0]
                gap = teacher[key] - student_mean
                row[f"{key}_gap_closed"] = (row[key] - student_mean) / gap if gap > 0 else float("nan")
            else:
                row[f"{key}_gap_closed"] = float("nan")
        rows.append(row)
    return rows
