"""The baseline distillation losses against values computed by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from monai_coco.losses import (
    AttentionTransferLoss,
    ChannelWiseDistillationLoss,
    FSPLoss,
    PairwiseSimilarityLoss,
    PixelwiseKDLoss,
)
from monai_coco.losses.naive_coco import naive_coco_loss


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def softmax(values: list[float]) -> list[float]:
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_pixelwise_kd_by_hand(tau):
    # (1, 2 classes, 1, 2 pixels): pixel 0 student (0, 0), teacher (ln 3, 0);
    # pixel 1 student (0, ln 3), teacher (0, 0)
    student = t([[[[0.0, 0.0]], [[0.0, math.log(3)]]]])
    teacher = t([[[[math.log(3), 0.0]], [[0.0, 0.0]]]])
    pixel0 = kl(softmax([math.log(3) / tau, 0.0]), softmax([0.0, 0.0]))
    pixel1 = kl(softmax([0.0, 0.0]), softmax([0.0, math.log(3) / tau]))
    if tau == 1.0:
        assert pixel0 == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    expected = tau**2 * (pixel0 + pixel1) / 2
    assert PixelwiseKDLoss(temperature=tau)(student, teacher).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_pixelwise_kd_with_three_classes_is_kl_teacher_to_student(tau):
    """One pixel, three classes: KL(p_T ‖ p_S) and KL(p_S ‖ p_T) differ, so the order is checked."""
    student = t([[[[0.0]], [[0.0]], [[0.0]]]])  # p_S = (1/3, 1/3, 1/3)
    teacher = t([[[[math.log(2) * tau]], [[0.0]], [[0.0]]]])  # p_T = (1/2, 1/4, 1/4) at temperature τ
    expected = tau**2 * (0.5 * math.log(1.5) + 0.5 * math.log(0.75))  # τ² Σ p_T ln(p_T / p_S)
    reverse = tau**2 * (math.log(2 / 3) / 3 + 2 / 3 * math.log(4 / 3))  # τ² Σ p_S ln(p_S / p_T)
    assert expected == pytest.approx(tau**2 * 0.5 * math.log(9 / 8), rel=1e-12)
    assert abs(expected - reverse) > 1e-3 * tau**2
    assert PixelwiseKDLoss(temperature=tau)(student, teacher).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_channel_wise_distillation_by_hand(tau):
    # (1, 2 channels, 1, 2 pixels): channel 0 differs, channel 1 is the same for both
    student = t([[[[0.0, 0.0]], [[1.0, -1.0]]]])
    teacher = t([[[[math.log(3), 0.0]], [[1.0, -1.0]]]])
    channel0 = kl(softmax([math.log(3) / tau, 0.0]), softmax([0.0, 0.0]))
    expected = tau**2 * (channel0 + 0.0) / 2  # τ²/C · Σ_c KL
    assert ChannelWiseDistillationLoss(tau=tau)(student, teacher).item() == pytest.approx(expected, rel=1e-12)


def test_attention_transfer_by_hand():
    # student (1, 2, 1, 2): pixel vectors (1, 0) and (2, 1); teacher (1, 1, 1, 2): (2) and (0)
    student = t([[[[1.0, 2.0]], [[0.0, 1.0]]]])
    teacher = t([[[[2.0, 0.0]]]])
    q_student = [0.5 / math.sqrt(6.5), 2.5 / math.sqrt(6.5)]  # mean_c f² = (0.5, 2.5), L2-normalised
    q_teacher = [1.0, 0.0]
    expected = ((q_student[0] - q_teacher[0]) ** 2 + (q_student[1] - q_teacher[1]) ** 2) / 2
    assert AttentionTransferLoss(p=2)(student, teacher).item() == pytest.approx(expected, rel=1e-12)
    q_student = [0.5 / math.sqrt(2.5), 1.5 / math.sqrt(2.5)]  # p = 1: mean_c |f| = (0.5, 1.5)
    expected = ((q_student[0] - 1.0) ** 2 + q_student[1] ** 2) / 2
    assert AttentionTransferLoss(p=1)(student, teacher).item() == pytest.approx(expected, rel=1e-12)


def test_fsp_by_hand():
    # one network: shallow (1, 1, 1, 2), deep (1, 2, 1, 2); G = F1 F2ᵀ / N with N = 2
    student = [t([[[[1.0, 2.0]]]]), t([[[[1.0, 0.0]], [[3.0, 1.0]]]])]  # G_S = [[1, 5]] / 2
    teacher = [t([[[[0.0, 1.0]]]]), t([[[[1.0, 1.0]], [[2.0, 0.0]]]])]  # G_T = [[1, 0]] / 2
    expected = ((0.5 - 0.5) ** 2 + (2.5 - 0.0) ** 2) / 2
    assert FSPLoss()(*student, *teacher).item() == pytest.approx(expected, rel=1e-12)


def test_fsp_needs_equal_channels():
    maps = [torch.rand(1, c, 4, 4) for c in (2, 3, 2, 4)]
    with pytest.raises(ValueError, match="student 2/3, teacher 2/4"):
        FSPLoss()(*maps)


def test_pairwise_similarity_by_hand():
    # student pixels (1, 0) and (1, 1): cosine 1/√2; teacher pixels (1, 0, 0) and (0, 2, 0): cosine 0
    student = t([[[[1.0, 1.0]], [[0.0, 1.0]]]])
    teacher = t([[[[1.0, 0.0]], [[0.0, 2.0]], [[0.0, 0.0]]]])
    expected = 2 * (1 / math.sqrt(2)) ** 2 / 2**2  # Σ_ij (S_T − S_S)² / N²
    loss = PairwiseSimilarityLoss(pool_scale=None, eps=0.0)  # eps = 0: the formula exactly
    assert loss(student, teacher).item() == pytest.approx(expected, rel=1e-12)


def test_pairwise_similarity_pools_as_skd():
    """1×4 maps, pool_scale 0.5 -> 1×2 windows: the pooled pixels are those of the hand-checked case."""
    student = t([[[[1, 0, 0, 1]], [[0, 0, 1, 0]]]])
    teacher = t([[[[1, 0, 0, 0]], [[0, 0, 2, 0]], [[0, 0, 0, 0]]]])
    assert PairwiseSimilarityLoss(eps=0.0)(student, teacher).item() == pytest.approx(0.25, rel=1e-12)


@pytest.mark.parametrize("pool_scale", [None, 0.5])
def test_pairwise_similarity_is_the_literal_n_by_n_formula_on_one_layer(pool_scale):
    """Against naive_coco.py, which builds the (N, N) matrices S = F̂ᵀF̂ with shallow = deep = the layer."""
    g = torch.Generator().manual_seed(0)
    student = torch.randn(2, 3, 6, 5, generator=g, dtype=torch.float64)
    teacher = torch.randn(2, 7, 6, 5, generator=g, dtype=torch.float64)
    reference = naive_coco_loss(student, student, teacher, teacher, pool_scale=pool_scale, reduction="none")
    assert (reference > 1e-3).all()
    torch.testing.assert_close(
        PairwiseSimilarityLoss(pool_scale=pool_scale, reduction="none")(student, teacher),
        reference,
        rtol=1e-10,
        atol=0.0,
    )


def _cases(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(3, 2, 4, 4, generator=g), torch.randn(3, 2, 4, 4, generator=g))
    feature = (torch.randn(3, 4, 4, 4, generator=g), torch.randn(3, 6, 4, 4, generator=g))
    pairs = [torch.randn(3, c, 4, 4, generator=g) for c in (2, 3, 2, 3)]
    return [
        (PixelwiseKDLoss, {"temperature": 2.0}, logits),
        (ChannelWiseDistillationLoss, {"tau": 4.0}, logits),
        (AttentionTransferLoss, {}, feature),
        (PairwiseSimilarityLoss, {"pool_scale": None}, feature),
        (FSPLoss, {}, pairs),
    ]


@pytest.mark.parametrize("cls, kwargs, inputs", _cases(), ids=lambda x: getattr(x, "__name__", ""))
def test_reductions_and_zero_for_identical_inputs(cls, kwargs, inputs):
    per_image = cls(reduction="none", **kwargs)(*inputs)
    assert per_image.shape == (3,) and (per_image > 1e-4).all()
    torch.testing.assert_close(cls(**kwargs)(*inputs), per_image.mean())
    torch.testing.assert_close(cls(reduction="sum", **kwargs)(*inputs), per_image.sum())
    n = len(inputs) // 2
    same = cls(**kwargs)(*inputs[:n], *inputs[:n])
    assert same.abs() < 1e-6


@pytest.mark.parametrize("cls, kwargs, inputs", _cases(), ids=lambda x: getattr(x, "__name__", ""))
def test_bfloat16_autocast_gives_float32(cls, kwargs, inputs):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = cls(**kwargs)(*(x.bfloat16() for x in inputs))
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, cls(**kwargs)(*(x.bfloat16().float() for x in inputs)))


def test_invalid_arguments_raise():
    for make in (
        lambda: PixelwiseKDLoss(temperature=0.0),
        lambda: ChannelWiseDistillationLoss(tau=-1.0),
        lambda: AttentionTransferLoss(p=0.0),
        lambda: PairwiseSimilarityLoss(pool_scale=2.0),
    ):
        with pytest.raises(ValueError):
            make()
    with pytest.raises(ValueError, match=r"student \(1, 2, 4, 4\), teacher \(1, 3, 4, 4\)"):
        PixelwiseKDLoss()(torch.rand(1, 2, 4, 4), torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"teacher_feature \(1, 2, 4, 2\)"):
        AttentionTransferLoss()(torch.rand(1, 2, 4, 4), torch.rand(1, 2, 4, 2))
