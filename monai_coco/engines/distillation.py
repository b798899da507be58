"""Knowledge distillation from a frozen teacher into a student, as a MONAI trainer."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Union

import torch
from monai.utils.enums import CommonKeys as Keys
from torch.optim import Optimizer

from monai_coco.engines.multi_term import MultiTermTrainer
from monai_coco.engines.teacher_cache import TeacherOutputCache
from monai_coco.networks.taps import FeatureTaps, feature_taps

__all__ = ["DistillationTerm", "DistillationTrainer", "LABELLED", "TEACHER_PRED", "feature_taps"]

TEACHER_PRED = "teacher_pred"
"""Key of the teacher's logits ``(B, K, H, W)`` in the trainer's output."""

LABELLED = "labelled"
"""Batch key of the per-sample flag ``(B,)``: 1 where the image has a mask, 0 for an image alone (whose
``label`` is a placeholder of the right shape); a batch without it is labelled throughout."""

TermInputs = Union[str, Sequence[int]]


class DistillationTerm:
    """One weighted distillation loss and the student/teacher tensors it compares.

    Args:
        loss: a loss module, e.g. ``CoCoDistillationLoss()`` or a baseline of ``monai_coco.losses``.
        weight: its weight in the student's loss (method.md §6: λ_coco = 1; the useful range is wide).
        inputs: which tensors the loss gets:

            - ``"logits"``: ``loss(student_logits, teacher_logits)``, both ``(B, K, H, W)``;
            - ``"taps"``: every tap, students' first: ``loss(s_0, …, s_n, t_0, …, t_n)``;
            - a sequence of tap indices, e.g. ``(0, 1)`` -> ``loss(s_0, s_1, t_0, t_1)``, ``(1,)`` ->
              ``loss(s_1, t_1)``. Student features are ``(B, C_s, h, w)``; teacher features are the
              frozen paraphrasers' factors when the trainer has paraphrasers, else the raw tap features.
    """

    def __init__(self, loss: Callable[..., torch.Tensor], weight: float = 1.0, inputs: TermInputs = "taps"):
        if not callable(loss):
            raise ValueError(f"loss must be a callable loss module, got {type(loss).__name__}.")
        weight = float(weight)
        if not weight >= 0.0 or weight == float("inf"):
            raise ValueError(f"weight must be a finite number >= 0, got {weight!r}.")
        if isinstance(inputs, str):
            if inputs not in ("logits", "taps"):
                raise ValueError(f"inputs must be 'logits', 'taps' or tap indices, got {inputs!r}.")
        else:
            inputs = tuple(inputs)
            if not inputs or not all(isinstance(i, int) and i >= 0 for i in inputs):
                raise ValueError(f"inputs must be a non-empty sequence of tap indices >= 0, got {inputs!r}.")
        self.loss = loss
        self.weight = weight
        self.inputs = inputs

    def __call__(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        student_features: Sequence[torch.Tensor],
        teacher_features: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        """The weighted loss, a scalar tensor."""
        if self.inputs == "logits":
            return self.weight * self.loss(student_logits, teacher_logits)
        taps = range(len(student_features)) if self.inputs == "taps" else self.inputs
        args = [student_features[i] for i in taps] + [teacher_features[i] for i in taps]
        return self.weight * self.loss(*args)

    def __repr__(self) -> str:
        return f"DistillationTerm({self.loss!r}, weight={self.weight}, inputs={self.inputs!r})"


class DistillationTrainer(MultiTermTrainer):
    """MONAI ``SupervisedTrainer`` that distils a frozen teacher into the student ``network``.

    Each iteration (events and ``amp`` / ``accumulation_steps`` / ``optim_set_to_none`` as in
    ``SupervisedTrainer``, see :class:`~monai_coco.engines.multi_term.MultiTermTrainer`):

    - the student runs in ``train()`` and its tap features are kept;
    - the teacher runs in ``eval()`` under ``torch.no_grad()`` (its parameters have
      ``requires_grad=False``), and its tap features pass through the frozen paraphraser encoders;
    - ``FORWARD_COMPLETED`` fires (the ``AdversarialDistillationHandler`` adds ``adv`` here);
    - loss = ``loss_function(student_logits, labels)`` (named ``loss_name``) on the labelled samples only
      + Σ each term on every sample (see *Unannotated images*);
    - after the step ``engine.state.output`` holds ``IMAGE``, ``LABEL``, ``PRED`` (student logits
      ``(B, K, H, W)``), ``LOSS``, ``"teacher_pred"`` (teacher logits) and every term's weighted value
      as a float (``ce``, ``coco``, ``adv``, ...), so ``LOSS`` equals their sum.

    Unannotated images: a batch may carry a per-sample flag ``batch[labelled_key]`` ``(B,)`` (1: the image
    has a mask; 0: an image alone, its ``label`` a placeholder). The supervised term is then
    ``loss_function`` on the labelled samples alone, so with a mean-reduced loss it is the mean over the
    labelled pixels, and the logits of an unlabelled sample get exactly zero gradient from it; a batch with
    no labelled sample gives a supervised term of exactly 0 (no NaN). The distillation terms, and the
    adversarial handler's, see every sample: they need no labels (method.md §6). One mixed loader keeps
    MONAI's contracts (one batch per iteration, events, ``amp``, accumulation, epoch length); note that
    the student's batch norm (train mode) still pools statistics over all the batch's samples. A batch
    without the key is labelled throughout, and ``loss_function`` sees it unchanged.

    Args:
        device, max_epochs, train_data_loader, network, optimizer, loss_function: as in
            ``SupervisedTrainer``; ``network`` is the student, ``optimizer`` holds its parameters only.
        teacher: the trained teacher network; frozen here. None (with no ``terms``) trains the student alone
            with ``loss_function``, exactly as ``SupervisedTrainer`` does (the bundle's ``distill: none``).
        terms: ``{name: DistillationTerm}``, e.g. ``{"coco": DistillationTerm(CoCoDistillationLoss(),
            1.0, (0, 1))}``.
        student_taps: names of the student layers whose outputs are the features, ordered as the
            teacher's; default ``network.default_taps`` (:func:`~monai_coco.networks.network_taps` finds
            them for any network). Not used, and not needed, when every term compares logits only
            (``kd``, ``cwd``): then no hooks are set.
        teacher_taps: the same for the teacher; default ``teacher.default_taps``.
        paraphrasers: one frozen ``Paraphraser`` per teacher tap (e.g. an ``nn.ModuleList``), whose
            ``encode`` turns a teacher feature into its factor; None uses the raw teacher features.
            Ignored when no term uses taps.
        loss_name: the name of the supervised term in the output.
        labelled_key: the batch key of the per-sample labelled flag (default ``"labelled"``).
        teacher_cache: a :class:`~monai_coco.engines.teacher_cache.TeacherOutputCache`: the teacher's logits
            and (paraphrased) tap features of each distinct input are computed once, alone, and reused;
            None runs the teacher on every batch.
        kwargs: any other ``SupervisedTrainer`` argument (``epoch_length``, ``train_handlers``, ``amp``,
            ``accumulation_steps``, ``optim_set_to_none``, ``key_train_metric``, ...).
    """

    reserved_keys = MultiTermTrainer.reserved_keys | {TEACHER_PRED}

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable,
        network: torch.nn.Module,
        optimizer: Optimizer,
        loss_function: Callable,
        teacher: torch.nn.Module | None,
        terms: Mapping[str, DistillationTerm],
        student_taps: Sequence[str] | None = None,
        teacher_taps: Sequence[str] | None = None,
        paraphrasers: Sequence[torch.nn.Module] | None = None,
        loss_name: str = "ce",
        labelled_key: str = LABELLED,
        teacher_cache: TeacherOutputCache | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(device, max_epochs, train_data_loader, network, optimizer, loss_function, **kwargs)
        self.terms = dict(terms)
        self.loss_name = loss_name
        self.labelled_key = labelled_key
        self.teacher_cache = teacher_cache
        for name, term in terms.items():
            if not isinstance(term, DistillationTerm):
                raise ValueError(f"terms['{name}'] must be a DistillationTerm, got {type(term).__name__}.")
        if teacher is None and terms:
            raise ValueError(f"the distillation terms {list(terms)} need a teacher; got teacher=None.")
        names = [loss_name, *terms]
        if len(set(names)) != len(names) or self.reserved_keys.intersection(names):
            raise ValueError(
                f"term names {names} must be distinct and differ from {sorted(self.reserved_keys)}."
            )
        self.teacher = None if teacher is None else teacher.requires_grad_(False).eval()
        self.student_taps: FeatureTaps | None = None
        self.teacher_taps: FeatureTaps | None = None
        self.paraphrasers = None
        if teacher is None or all(term.inputs == "logits" for term in terms.values()):
            return  # the student alone, or logit-only terms: no taps, no hooks
        self.student_taps = feature_taps(network, student_taps)
        self.teacher_taps = feature_taps(teacher, teacher_taps)
        n_taps = len(self.teacher_taps.layers)
        if len(self.student_taps.layers) != n_taps:
            raise ValueError(
                f"student_taps {list(self.student_taps.layers)} and teacher_taps "
                f"{list(self.teacher_taps.layers)} must pair up one to one."
            )
        for name, term in terms.items():
            if not isinstance(term.inputs, str) and max(term.inputs) >= n_taps:
                raise ValueError(f"terms['{name}'] uses tap {max(term.inputs)} but there are {n_taps} taps.")
        if paraphrasers is not None:
            if len(paraphrasers) != n_taps:
                raise ValueError(f"give one paraphraser per teacher tap ({n_taps}), got {len(paraphrasers)}.")
            self.paraphrasers = torch.nn.ModuleList(paraphrasers).requires_grad_(False).eval()

    def forward(
        self, inputs: torch.Tensor, targets: torch.Tensor | None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Student and teacher forward passes; returns ``(student_features, teacher_features)``."""
        output = self.state.output
        if self.student_taps is None:  # the student alone, or logit-only terms
            output[Keys.PRED], student_features = self.network(inputs), []
        else:
            output[Keys.PRED], student = self.student_taps(inputs)
            student_features = [student[name] for name in self.student_taps.layers]
        if self.teacher is None:
            return student_features, []
        if self.teacher_cache is None:
            output[TEACHER_PRED], teacher_features = self.run_teacher(inputs)
        else:
            output[TEACHER_PRED], teacher_features = self.teacher_cache(self.run_teacher, inputs)
        return student_features, list(teacher_features)

    def run_teacher(self, inputs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The frozen teacher on ``inputs`` ``(B, C, H, W)``, without gradient: its logits ``(B, K, H, W)``
        and, when a term uses taps, its tap features (through the paraphraser encoders when given)."""
        self.teacher.eval()
        with torch.no_grad():
            if self.teacher_taps is None:
                return self.teacher(inputs), []
            logits, teacher = self.teacher_taps(inputs)
            features = [teacher[name] for name in self.teacher_taps.layers]
            if self.paraphrasers is not None:
                self.paraphrasers.eval()
                features = [p.encode(f) for p, f in zip(self.paraphrasers, features)]
        return logits, features

    def loss_terms(
        self, context: tuple[list[torch.Tensor], list[torch.Tensor]], targets: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """The supervised term and every distillation term, in float32."""
        student_features = [f.float() for f in context[0]]
        teacher_features = [f.float() for f in context[1]]
        student_logits = self.state.output[Keys.PRED].float()
        terms = {self.loss_name: self.supervised_term(student_logits, targets)}
        if self.teacher is None:
            return terms
        teacher_logits = self.state.output[TEACHER_PRED].float()
        for name, term in self.terms.items():
            terms[name] = term(student_logits, teacher_logits, student_features, teacher_features)
        return terms

    def supervised_term(self, student_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``loss_function`` on the samples whose ``labelled_key`` flag is set (all when the batch has no
        flag); exactly 0, with a graph, when none is."""
        batch = self.state.batch
        flag = batch.get(self.labelled_key) if isinstance(batch, Mapping) else None
        if flag is None:
            return self.loss_function(student_logits, targets).mean()
        labelled = torch.as_tensor(flag, device=student_logits.device).reshape(-1).bool()
        if labelled.shape[0] != student_logits.shape[0]:
            raise ValueError(
                f"batch['{self.labelled_key}'] must hold one flag per sample ({student_logits.shape[0]}), "
                f"got {labelled.shape[0]}."
            )
        if bool(labelled.all()):
            return self.loss_function(student_logits, targets).mean()
        if not bool(labelled.any()):
            return student_logits.sum() * 0.0
        return self.loss_function(student_logits[labelled], targets[labelled]).mean()
