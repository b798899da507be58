"""CoCoDistillationLoss and MultiPairCoCoDistillationLoss against the literal N×N formula (naive_coco.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_coco.losses import CoCoDistillationLoss, MultiPairCoCoDistillationLoss, PairwiseSimilarityLoss
from monai_coco.losses.naive_coco import naive_coco_loss


def random_maps(
    batch: int,
    c_student: int,
    c_teacher: int,
    shallow_hw: tuple[int, int],
    student_deep_hw: tuple[int, int],
    teacher_deep_hw: tuple[int, int],
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = [
        (batch, c_student, *shallow_hw),
        (batch, c_student, *student_deep_hw),
        (batch, c_teacher, *shallow_hw),
        (batch, c_teacher, *teacher_deep_hw),
    ]
    return [torch.randn(s, generator=g, dtype=dtype) for s in shapes]


@pytest.mark.parametrize(
    "student_deep_hw, teacher_deep_hw, pool_scale",
    [
        ((6, 10), (6, 10), None),  # one grid
        ((3, 5), (12, 20), None),  # deep maps resized: up for the student, down for the teacher
        ((6, 10), (6, 10), 0.5),  # SKD pooling: 3×5 windows, a 2×2 grid
        ((3, 5), (6, 10), 0.34),  # resize, then 2×3 windows with ceil_mode: a 3×4 grid
    ],
)
def test_equals_the_naive_formula(student_deep_hw, teacher_deep_hw, pool_scale):
    maps = random_maps(2, 3, 5, (6, 10), student_deep_hw, teacher_deep_hw)
    exact = CoCoDistillationLoss(pool_scale=pool_scale, reduction="none")(*maps)
    reference = naive_coco_loss(*maps, pool_scale=pool_scale, reduction="none")
    assert exact.shape == (2,) and exact.dtype == torch.float64
    assert (reference > 1e-3).all()
    torch.testing.assert_close(exact, reference, rtol=1e-5, atol=0.0)


def test_float32_inputs_match_the_float64_formula_even_when_the_terms_cancel():
    """Non-negative (post-ReLU-like) features make every Gram term large; a student close to the teacher
    makes the loss tiny: the float64 Gram identity still matches the literal formula."""
    g = torch.Generator().manual_seed(1)
    teacher = [torch.rand(2, 16, 32, 32, generator=g), torch.rand(2, 16, 32, 32, generator=g)]
    far = [torch.rand(2, 8, 32, 32, generator=g), torch.rand(2, 8, 32, 32, generator=g)]
    near = [t + 1e-3 * torch.rand(t.shape, generator=g) for t in teacher]
    loss = CoCoDistillationLoss(reduction="none")
    for student in (far, near):
        exact = loss(*student, *teacher)
        reference = naive_coco_loss(*(m.double() for m in (*student, *teacher)), reduction="none")
        assert exact.dtype == torch.float32
        torch.testing.assert_close(exact.double(), reference, rtol=1e-5, atol=0.0)
    assert reference.max() < 1e-5  # the "near" case really is a cancellation of large terms


def test_zero_when_the_student_is_the_teacher_times_a_positive_per_pixel_scale():
    g = torch.Generator().manual_seed(2)
    teacher = [torch.randn(2, 4, 5, 7, generator=g, dtype=torch.float64) for _ in range(2)]
    scales = [torch.rand(2, 1, 5, 7, generator=g, dtype=torch.float64) * 3 + 0.5 for _ in range(2)]
    student = [t * s for t, s in zip(teacher, scales)]
    loss = CoCoDistillationLoss(reduction="none")
    assert loss(*student, *teacher).max() < 1e-12
    assert loss(*student[::-1], *teacher).min() > 1e-3  # swapping the student's layers is not the same


def test_invariant_to_a_permutation_of_the_student_channels():
    maps = random_maps(2, 4, 6, (5, 5), (5, 5), (5, 5))
    order = torch.tensor([2, 0, 3, 1])  # one permutation for both student maps: A_S is unchanged
    permuted = [maps[0][:, order], maps[1][:, order], *maps[2:]]
    loss = CoCoDistillationLoss()
    torch.testing.assert_close(loss(*permuted), loss(*maps), rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("pool_scale, fast_mode", [(None, False), (0.5, True)])
def test_gradcheck_in_float64(pool_scale, fast_mode):
    """Full Jacobians without pooling; with pooling, gradcheck's fast mode (random projections), as
    max-pooling calls are slow on a busy 2-core machine."""
    maps = [m.requires_grad_(True) for m in random_maps(2, 2, 3, (3, 4), (2, 2), (3, 4), seed=3)]
    loss = CoCoDistillationLoss(detach_norm=False, pool_scale=pool_scale)
    assert torch.autograd.gradcheck(lambda *m: loss(*m), maps, fast_mode=fast_mode)
    # SKD's detached norm is not the derivative of the value: finite differences tell them apart
    skd = CoCoDistillationLoss(detach_norm=True, pool_scale=pool_scale)
    assert not torch.autograd.gradcheck(lambda *m: skd(*m), maps, fast_mode=fast_mode, raise_exception=False)


def test_bfloat16_autocast_is_finite_and_close_to_float32():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 16, 16, generator=g)
    torch.manual_seed(4)
    convs = [torch.nn.Conv2d(3, c, 3, padding=1) for c in (8, 8, 16, 16)]
    loss = CoCoDistillationLoss()
    reference = loss(*(conv(x) for conv in convs))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = [conv(x) for conv in convs]
        assert features[0].dtype == torch.bfloat16
        value = loss(*features)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    torch.testing.assert_close(value, reference, rtol=5e-2, atol=0.0)
    value.backward()
    assert all(torch.isfinite(c.weight.grad).all() and c.weight.grad.abs().sum() > 0 for c in convs)


def test_no_bfloat16_arithmetic_under_autocast():
    """float32 features near 1 + small offsets: a bfloat16 matmul (8-bit mantissa) changes the literal
    formula by > 10 %; the loss under CPU bfloat16 autocast equals the loss outside it."""
    g = torch.Generator().manual_seed(8)
    maps = [1.0 + 0.02 * torch.randn(2, c, 8, 8, generator=g) for c in (4, 4, 6, 6)]
    loss = CoCoDistillationLoss(reduction="none")
    outside = loss(*maps)
    literal = naive_coco_loss(*maps, reduction="none")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = loss(*maps)
        literal_in_bfloat16 = naive_coco_loss(*maps, reduction="none")  # its einsum runs in bfloat16
    assert ((literal_in_bfloat16 - literal).abs() > 0.1 * literal).all()  # the inputs are sensitive
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, outside, rtol=1e-6, atol=0.0)
    exact = naive_coco_loss(*(m.double() for m in maps), reduction="none")
    torch.testing.assert_close(outside.double(), exact)


def test_never_negative_when_the_two_similarities_are_equal():
    """Student = teacher × a positive per-pixel scale: A_S = A_T, so ‖A_S − A_T‖² = 0 exactly, but the
    three Gram terms, each of order N², round differently; their difference must not go below 0
    (32 images: without the clamp about a third of them come out near −1e-11 / N²)."""
    g = torch.Generator().manual_seed(9)
    teacher = [torch.rand(32, 8, 16, 16, generator=g, dtype=torch.float64) for _ in range(2)]
    scales = [torch.rand(32, 1, 16, 16, generator=g, dtype=torch.float64) * 3 + 0.5 for _ in range(2)]
    student = [t * s for t, s in zip(teacher, scales)]
    per_image = CoCoDistillationLoss(reduction="none")(*student, *teacher)
    assert (per_image >= 0).all()
    assert per_image.max() < 1e-15


@pytest.mark.parametrize("scale", [1e-2, 1e-3, 1e-4])
def test_invariant_to_the_scale_of_features_down_to_tiny_magnitudes(scale):
    """Each pixel's channel vector is divided by ‖f‖₂ + eps: the loss does not change when a network's
    features shrink to 1e-4 of their size (with eps under the square root it would, by 10 % at 1e-4)."""
    maps = random_maps(2, 3, 5, (6, 6), (6, 6), (6, 6), seed=7)
    loss = CoCoDistillationLoss(reduction="none")
    reference = loss(*maps)
    small_student = loss(*(m * scale for m in maps[:2]), *maps[2:])
    small_teacher = loss(*maps[:2], *(m * scale for m in maps[2:]))
    torch.testing.assert_close(small_student, reference, rtol=1e-3, atol=0.0)
    torch.testing.assert_close(small_teacher, reference, rtol=1e-3, atol=0.0)


def test_never_builds_the_n_by_n_matrix():
    """256×256 maps: A would be 65536² entries, 16 GiB per image in float32; the exact loss needs MiBs."""
    g = torch.Generator().manual_seed(5)
    teacher = [torch.rand(1, 2, 256, 256, generator=g) for _ in range(2)]
    student = [t.clone().requires_grad_(True) for t in teacher]
    loss = CoCoDistillationLoss()
    value = loss(*student, *teacher)
    assert value.abs() < 1e-9
    value = loss(student[1], student[0], *teacher)
    value.backward()
    assert value > 1e-3 and all(torch.isfinite(s.grad).all() for s in student)


def test_reductions():
    maps = random_maps(3, 2, 4, (4, 6), (4, 6), (2, 3))
    per_image = CoCoDistillationLoss(reduction="none")(*maps)
    assert per_image.shape == (3,)
    torch.testing.assert_close(CoCoDistillationLoss()(*maps), per_image.mean())
    torch.testing.assert_close(CoCoDistillationLoss(reduction="sum")(*maps), per_image.sum())
    torch.testing.assert_close(CoCoDistillationLoss()(*maps), naive_coco_loss(*maps))


def test_the_gradient_reaches_the_student_only():
    maps = random_maps(2, 3, 5, (6, 10), (3, 5), (6, 10))
    student = [m.requires_grad_(True) for m in maps[:2]]
    CoCoDistillationLoss()(*student, *maps[2:]).backward()
    assert all(s.grad.abs().sum() > 0 for s in student)
    assert all(t.grad is None for t in maps[2:])


def test_mismatched_grids_raise_with_the_four_shapes():
    maps = random_maps(2, 3, 5, (6, 10), (6, 10), (6, 10))
    loss = CoCoDistillationLoss()
    wrong_batch = [maps[0], maps[1], maps[2][:1], maps[3][:1]]
    expected = (
        r"student_shallow \(2, 3, 6, 10\), student_deep \(2, 3, 6, 10\), "
        r"teacher_shallow \(1, 5, 6, 10\), teacher_deep \(1, 5, 6, 10\)"
    )
    with pytest.raises(ValueError, match=expected):
        loss(*wrong_batch)
    with pytest.raises(ValueError, match=r"teacher_shallow \(2, 5, 3, 5\)"):
        loss(maps[0], maps[1], maps[2][..., :3, :5], maps[3])
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        loss(maps[0][0], *maps[1:])
    with pytest.raises(ValueError, match="got student 3/2, teacher 5/5"):
        loss(maps[0], maps[1][:, :2], *maps[2:])


@pytest.mark.parametrize(
    "kwargs", [{"pool_scale": 0.0}, {"pool_scale": 1.5}, {"reduction": "avg"}, {"eps": -1.0}]
)
def test_invalid_settings_raise(kwargs):
    with pytest.raises(ValueError):
        CoCoDistillationLoss(**kwargs)


def test_multi_pair_is_the_weighted_sum_of_single_pairs():
    g = torch.Generator().manual_seed(6)
    students = [torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(3)]
    teachers = [torch.randn(2, 6, 8, 8, generator=g, dtype=torch.float64) for _ in range(3)]
    students[2] = students[2][..., ::2, ::2]  # a coarser deepest tap, resized to its shallow partner
    teachers[2] = teachers[2][..., ::2, ::2]
    single = CoCoDistillationLoss(reduction="none")
    expected = 1.0 * single(students[0], students[1], teachers[0], teachers[1]) + 0.25 * single(
        students[1], students[2], teachers[1], teachers[2]
    )
    multi = MultiPairCoCoDistillationLoss(pairs=((0, 1), (1, 2)), weights=(1.0, 0.25), reduction="none")
    torch.testing.assert_close(multi(*students, *teachers), expected)
    mean = MultiPairCoCoDistillationLoss(pairs=((0, 1), (1, 2)), weights=(1.0, 0.25))
    torch.testing.assert_close(mean(*students, *teachers), expected.mean())


def test_multi_pair_errors():
    maps = random_maps(1, 2, 2, (4, 4), (4, 4), (4, 4))
    with pytest.raises(ValueError, match="n >= 3"):
        MultiPairCoCoDistillationLoss(pairs=((0, 2),))(*maps)
    with pytest.raises(ValueError, match="got 3 maps"):
        MultiPairCoCoDistillationLoss(pairs=((0, 1),))(*maps[:3])
    with pytest.raises(ValueError, match="one weight per pair"):
        MultiPairCoCoDistillationLoss(pairs=((0, 1),), weights=(1.0, 2.0))
    for pairs in ((), ((0, 1, 2),), ((-1, 0),)):
        with pytest.raises(ValueError, match="pairs"):
            MultiPairCoCoDistillationLoss(pairs=pairs)


def skd_similarity(shallow: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
    """SKD's ``similarity`` (networks/sagan_models.py of irfanICMLL/structure_knowledge_distillation)
    written literally, with the deep map as the second operand: ``L2 = ‖f‖₂ + 1e-8`` per pixel,
    **detached**, ``f / L2``, then ``einsum('icm,icn->imn')``."""

    def normalised(f):
        l2 = (((f**2).sum(dim=1)) ** 0.5).reshape(f.shape[0], 1, f.shape[2], f.shape[3]) + 1e-8
        return (f / l2.detach()).reshape(f.shape[0], f.shape[1], -1)

    return torch.einsum("icm,icn->imn", normalised(shallow), normalised(deep))


def skd_coco_loss(s1, s2, t1, t2) -> torch.Tensor:
    """SKD's ``sim_dis_compute`` made cross-layer: ``Σ (A_T − A_S)² / N² / B``."""
    n = s1.shape[-1] * s1.shape[-2]
    return ((skd_similarity(t1, t2) - skd_similarity(s1, s2)) ** 2 / n**2 / s1.shape[0]).sum()


def test_detach_norm_keeps_the_value_and_gives_skds_gradient():
    maps = random_maps(2, 3, 5, (4, 6), (4, 6), (4, 6), seed=7)
    grads = {}
    for detach in (True, False):
        student = [m.clone().requires_grad_(True) for m in maps[:2]]
        value = CoCoDistillationLoss(detach_norm=detach)(*student, *maps[2:])
        value.backward()
        grads[detach] = [s.grad for s in student]
        grads[detach, "value"] = value.detach()
    torch.testing.assert_close(grads[True, "value"], grads[False, "value"], rtol=1e-12, atol=0.0)

    student = [m.clone().requires_grad_(True) for m in maps[:2]]
    reference = skd_coco_loss(*student, *maps[2:])
    reference.backward()
    torch.testing.assert_close(grads[True, "value"], reference.detach(), rtol=1e-10, atol=0.0)
    for ours, skd in zip(grads[True], (s.grad for s in student)):
        torch.testing.assert_close(ours, skd, rtol=1e-9, atol=1e-15)


def test_the_exact_gradient_is_the_detached_one_without_its_radial_part():
    """With eps = 0, pixel by pixel: ∂L/∂f = (I − û ûᵀ) g / ‖f‖ against SKD's g / ‖f‖, û = f / ‖f‖."""
    maps = random_maps(2, 3, 5, (4, 6), (4, 6), (4, 6), seed=7)
    grads = {}
    for detach in (True, False):
        student = [m.clone().requires_grad_(True) for m in maps[:2]]
        CoCoDistillationLoss(eps=0.0, detach_norm=detach)(*student, *maps[2:]).backward()
        grads[detach] = [s.grad for s in student]
    for f, exact, detached in zip(maps[:2], grads[False], grads[True]):
        u = f / f.norm(dim=1, keepdim=True)
        radial = u * (u * detached).sum(dim=1, keepdim=True)
        torch.testing.assert_close(exact, detached - radial, rtol=1e-9, atol=1e-15)
        assert radial.abs().max() > 0.1 * detached.abs().max()  # the two conventions do differ


def test_multi_pair_and_pairwise_pass_detach_norm_on():
    maps = random_maps(2, 3, 5, (4, 6), (4, 6), (4, 6), seed=8)
    for detach in (True, False):
        single = [m.clone().requires_grad_(True) for m in maps[:2]]
        CoCoDistillationLoss(detach_norm=detach)(*single, *maps[2:]).backward()
        multi = [m.clone().requires_grad_(True) for m in maps[:2]]
        MultiPairCoCoDistillationLoss([(0, 1)], detach_norm=detach)(*multi, *maps[2:]).backward()
        torch.testing.assert_close(multi[1].grad, single[1].grad, rtol=1e-12, atol=0.0)
        same_layer = [maps[0].clone().requires_grad_(True) for _ in range(2)]
        CoCoDistillationLoss(detach_norm=detach)(*same_layer, maps[2], maps[2]).backward()
        pairwise = maps[0].clone().requires_grad_(True)
        PairwiseSimilarityLoss(pool_scale=None, detach_norm=detach)(pairwise, maps[2]).backward()
        torch.testing.assert_close(pairwise.grad, same_layer[0].grad + same_layer[1].grad)


def test_standardized_coco_equals_the_naive_formula_on_numpy_standardized_maps():
    """The variant against an independent reference: every channel standardised over its image's pixels in
    numpy (float64), then the literal N×N formula."""
    g = torch.Generator().manual_seed(3)
    maps = [torch.randn(2, 4, 8, 8, generator=g) * 3 + 5 for _ in range(2)] + [
        torch.randn(2, 6, 8, 8, generator=g) - 2 for _ in range(2)
    ]

    def standardized(m: torch.Tensor) -> torch.Tensor:
        a = m.double().numpy()
        mean = a.mean(axis=(2, 3), keepdims=True)
        std = np.sqrt(((a - mean) ** 2).mean(axis=(2, 3), keepdims=True) + 1e-8)
        return torch.from_numpy((a - mean) / std)

    loss = CoCoDistillationLoss(standardize=True, reduction="none")(*(m.double() for m in maps))
    reference = naive_coco_loss(*(standardized(m) for m in maps), reduction="none")
    torch.testing.assert_close(loss, reference, rtol=1e-9, atol=1e-12)


def test_standardized_coco_ignores_each_channel_s_offset_and_scale_and_the_paper_s_does_not():
    g = torch.Generator().manual_seed(4)
    maps = [torch.randn(1, 5, 8, 8, generator=g) for _ in range(4)]
    scale = torch.rand(1, 5, 1, 1, generator=g) * 10 + 0.1
    shift = torch.randn(1, 5, 1, 1, generator=g) * 10
    moved = [maps[0] * scale + shift, *maps[1:]]
    for standardize, same in ((True, True), (False, False)):
        loss = CoCoDistillationLoss(standardize=standardize)
        before, after = loss(*maps), loss(*moved)
        assert torch.allclose(before, after, rtol=1e-5) == same, (standardize, before, after)
    with pytest.raises(ValueError, match="standardize must be True or False"):
        CoCoDistillationLoss(standardize="yes")
