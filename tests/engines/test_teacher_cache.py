"""TeacherOutputCache: the frozen teacher runs once per distinct input, and training is unchanged by it."""

from __future__ import annotations

import pytest
import torch
from tiny_networks import (
    STUDENT_FEATURES,
    TAPS,
    TEACHER_FEATURES,
    make_batches,
    snapshot,
    tap_features,
    tiny_unet,
)

from monai_coco.engines import DistillationTerm, DistillationTrainer, TeacherOutputCache
from monai_coco.losses import CoCoDistillationLoss, PixelwiseKDLoss
from monai_coco.networks import Paraphraser


class CountingTeacher(torch.nn.Module):
    """Wraps a network; counts the samples it is run on."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network
        self.samples = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.samples += x.shape[0]
        return self.network(x)


def _flipped_epochs(epochs: int) -> list[dict[str, torch.Tensor]]:
    """Two images, each shown in a flip state that depends on the epoch: 2 images x 2 states in all."""
    images = make_batches(1, batch=2)[0]
    batches = []
    for epoch in range(epochs):
        dims = [2] if epoch % 2 else [3]
        flip = {"image": dims, "label": [d - 1 for d in dims]}  # labels (B, H, W)
        batches.append({k: v.flip(flip[k]) for k, v in images.items()})
    return batches


def _train(cache, terms, paraphrasers=None, epochs=4):
    teacher = CountingTeacher(tiny_unet(TEACHER_FEATURES, 1))
    student = tiny_unet(STUDENT_FEATURES, 2)
    data = _flipped_epochs(epochs)
    trainer = DistillationTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=data, network=student,
        optimizer=torch.optim.SGD(student.parameters(), lr=1e-2, momentum=0.9),
        loss_function=torch.nn.CrossEntropyLoss(), teacher=teacher, terms=terms,
        student_taps=TAPS, teacher_taps=[f"network.{t}" for t in TAPS], paraphrasers=paraphrasers,
        teacher_cache=cache, decollate=False,
    )  # fmt: skip
    trainer.run()
    return snapshot(student), teacher.samples, trainer


@pytest.mark.parametrize(
    "terms",
    [{"coco": DistillationTerm(CoCoDistillationLoss(), 1.0, (0, 1))},
     {"kd": DistillationTerm(PixelwiseKDLoss(), 1.0, "logits")}],
    ids=["taps", "logits"],
)  # fmt: skip
def test_the_teacher_runs_once_per_distinct_input_and_training_is_unchanged(terms):
    reference, samples, _ = _train(None, terms)
    assert samples == 8  # 4 iterations of 2 samples
    cache = TeacherOutputCache()
    cached, cached_samples, trainer = _train(cache, terms)
    assert cached_samples == 4 and (cache.misses, cache.hits, len(cache)) == (4, 4, 4)  # 2 images x 2 flips
    # the same student, up to the float rounding of a batch of 1 against a batch of 2 in the teacher
    assert reference.keys() == cached.keys()
    for name in reference:
        torch.testing.assert_close(cached[name], reference[name], rtol=1e-5, atol=1e-6)


def test_cached_outputs_are_the_teachers_own_on_each_sample_with_paraphrased_factors():
    torch.manual_seed(3)
    paraphrasers = torch.nn.ModuleList([Paraphraser(8, 4), Paraphraser(8, 4)])
    terms = {"coco": DistillationTerm(CoCoDistillationLoss(), 1.0, (0, 1))}
    cache = TeacherOutputCache()
    _, _, trainer = _train(cache, terms, paraphrasers, epochs=1)
    image = _flipped_epochs(1)[0]["image"]
    teacher = trainer.teacher.network.eval()
    with torch.no_grad():
        for sample in image:
            logits, (t0, t1) = tap_features(teacher, TAPS, sample[None])
            expected = (logits[0], paraphrasers[0].encode(t0)[0], paraphrasers[1].encode(t1)[0])
            key = next(k for k, row in cache._store.items() if torch.equal(row[0], expected[0]))
            assert all(torch.equal(a, b) for a, b in zip(cache._store[key], expected))


def test_a_full_cache_computes_without_storing_and_zero_bytes_turns_it_off():
    row_bytes = (2 * 32 * 32 + 8 * 8 * 8 * 2) * 4  # logits (2, 32, 32) and two taps (8, 8, 8), float32
    terms = {"coco": DistillationTerm(CoCoDistillationLoss(), 1.0, (0, 1))}
    small = TeacherOutputCache(max_bytes=2 * row_bytes)
    _, samples, _ = _train(small, terms)
    assert len(small) == 2 and small.nbytes == 2 * row_bytes and samples == 6  # 2 stored, 2 recomputed twice
    off = TeacherOutputCache(max_bytes=0)
    _, samples, _ = _train(off, terms)
    assert samples == 8 and len(off) == 0
    with pytest.raises(ValueError, match="max_bytes must be an integer >= 0"):
        TeacherOutputCache(max_bytes=-1)


def test_the_key_is_the_exact_input():
    cache = TeacherOutputCache()
    runs = []

    def teacher(x):
        runs.append(x.shape[0])
        return x * 2, [x]

    x = torch.rand(3, 1, 4, 4)
    x[1] = x[0]  # a repeat within the batch: computed once
    cache(teacher, x)
    assert runs == [1, 1] and len(cache) == 2 and cache.hits == 1
    nudged = x.clone()
    nudged[0, 0, 0, 0] = torch.nextafter(nudged[0, 0, 0, 0], torch.tensor(2.0))  # one ulp: a new input
    logits, (features,) = cache(teacher, nudged)
    assert len(cache) == 3 and torch.equal(logits, nudged * 2) and torch.equal(features, nudged)
    cache(teacher, x.double())  # another dtype: other keys
    assert len(cache) == 5
