"""WGAN-GP terms, checked by hand on a linear critic and on a small LogitCritic."""

from __future__ import annotations

import math

import pytest
import torch

from monai_coco.losses.adversarial import critic_loss, generator_loss, gradient_penalty
from monai_coco.networks import LogitCritic

B, K, H, W = 2, 2, 2, 3
WEIGHT = (3.0, -4.0)  # ‖w‖ = 5
BIAS = 0.5


def linear_critic() -> torch.nn.Conv2d:
    """D(x) = w·x + b at every pixel: a (B, 1, H, W) score map whose input gradient is known."""
    critic = torch.nn.Conv2d(K, 1, kernel_size=1).double()
    with torch.no_grad():
        critic.weight.copy_(torch.tensor(WEIGHT, dtype=torch.float64).view(1, K, 1, 1))
        critic.bias.fill_(BIAS)
    return critic


def image_scores_by_hand(x: torch.Tensor) -> torch.Tensor:
    """D̄(x) per image: the mean over pixels of w·x + b."""
    return (WEIGHT[0] * x[:, 0] + WEIGHT[1] * x[:, 1]).mean(dim=(1, 2)) + BIAS


def logits(seed: int) -> torch.Tensor:
    return torch.randn(B, K, H, W, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("gp_score, side", [("sum", math.sqrt(H * W)), ("mean", 1 / math.sqrt(H * W))])
def test_gradient_penalty_of_a_linear_critic_by_hand(gp_score, side):
    # ∇_x Σ_pixels D = w at every pixel: ‖∇‖ = ‖w‖·√(H·W) (SKD's convention); of the mean: ‖w‖ / √(H·W)
    critic = linear_critic()
    expected = (5 * side - 1) ** 2
    penalty = gradient_penalty(critic, logits(0), logits(1), gp_score=gp_score)
    assert penalty.item() == pytest.approx(expected, rel=1e-9)
    # d/dw (‖w‖·s − 1)² = 2 (‖w‖·s − 1) · s · w / ‖w‖: the penalty trains the critic (create_graph)
    grad_w, grad_b = torch.autograd.grad(penalty, (critic.weight, critic.bias), allow_unused=True)
    expected_w = [2 * (5 * side - 1) * side * w / 5 for w in WEIGHT]
    torch.testing.assert_close(grad_w.flatten(), torch.tensor(expected_w, dtype=torch.float64))
    assert grad_b is None  # the input gradient does not depend on the bias


def skd_gradient_penalty(critic, real, fake):
    """SKD's ``CriterionAdditionalGP`` (utils/criterion.py of irfanICMLL/structure_knowledge_distillation),
    written out literally: α per image, the gradient of the whole score map with ``grad_outputs`` of ones,
    the per-image L2 norm, ``mean (‖g‖ − 1)²``."""
    alpha = torch.rand(real.size(0), 1, 1, 1, dtype=real.dtype).expand_as(real)
    interpolated = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = critic(interpolated)
    grad = torch.autograd.grad(
        outputs=out,
        inputs=interpolated,
        grad_outputs=torch.ones(out.size(), dtype=out.dtype),
        retain_graph=True,
        create_graph=True,
        only_inputs=True,
    )[0]
    grad = grad.view(grad.size(0), -1)
    return torch.mean((torch.sqrt(torch.sum(grad**2, dim=1)) - 1) ** 2)


def test_gradient_penalty_is_skds_on_a_logit_critic_and_the_mean_convention_is_not():
    critic = small_critic().double()
    real, fake = (
        torch.randn(3, 2, 80, 80, dtype=torch.float64, generator=torch.Generator().manual_seed(s))
        for s in (0, 1)
    )
    assert critic(real).shape[-2:] == (2, 2)  # a score map of 4 scores: the conventions differ
    critic.eval()  # spectral norm's power iteration would move between the two calls
    torch.manual_seed(5)
    reference = skd_gradient_penalty(critic, real, fake)
    torch.manual_seed(5)
    ours = gradient_penalty(critic, real, fake)
    torch.testing.assert_close(ours, reference, rtol=1e-9, atol=1e-12)
    # the penalty's gradient for the critic too (it trains the critic)
    head = critic.head.weight
    torch.testing.assert_close(torch.autograd.grad(ours, head)[0], torch.autograd.grad(reference, head)[0])
    torch.manual_seed(5)
    swapped = gradient_penalty(critic, real, fake, gp_score="mean")
    assert abs(swapped.item() - reference.item()) > 0.01 * reference.item()


def test_critic_loss_by_hand_and_it_trains_only_the_critic():
    real, fake = logits(0), logits(1).requires_grad_(True)
    critic = linear_critic()
    loss = critic_loss(critic, real, fake, gp_weight=10.0)
    expected = image_scores_by_hand(fake).mean() - image_scores_by_hand(real).mean()
    expected = expected.item() + 10.0 * (5 * math.sqrt(H * W) - 1) ** 2
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    loss.backward()
    assert fake.grad is None
    assert critic.weight.grad.abs().sum() > 0
    no_penalty = critic_loss(critic, real, fake, gp_weight=0.0)
    assert no_penalty.item() == pytest.approx(expected - 10.0 * (5 * math.sqrt(H * W) - 1) ** 2, rel=1e-9)


def test_generator_term_reaches_the_student_logits_and_not_the_critic():
    critic = linear_critic()
    fake = logits(1).requires_grad_(True)
    loss = generator_loss(critic, fake)
    # SKD's CriterionAdvForG: −mean over every score of the map
    assert loss.item() == pytest.approx(-critic(fake.detach()).mean().item(), rel=1e-12)
    assert loss.item() == pytest.approx(-image_scores_by_hand(fake.detach()).mean().item(), rel=1e-12)
    loss.backward()
    # d(−mean_b mean_pixels w·x)/dx = −w / (B·H·W)
    expected = -torch.tensor(WEIGHT, dtype=torch.float64).view(1, K, 1, 1) / (B * H * W)
    torch.testing.assert_close(fake.grad, expected.expand(B, K, H, W))
    assert critic.weight.grad is None and critic.bias.grad is None


def small_critic() -> LogitCritic:
    torch.manual_seed(0)
    critic = LogitCritic(in_channels=2, channels=(4, 8, 8, 16))
    with torch.no_grad():  # switch the attention blocks on (γ starts at 0)
        for block in critic.modules():
            if hasattr(block, "gamma"):
                block.gamma.fill_(0.5)
    return critic


def test_generator_term_through_a_spectral_norm_critic_leaves_its_gradients_empty():
    critic = small_critic()
    fake = torch.randn(1, 2, 64, 64, requires_grad=True)
    generator_loss(critic, fake).backward()
    assert torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in critic.parameters())


def test_critic_loss_double_backward_through_spectral_norm_and_attention():
    critic = small_critic()
    real, fake = torch.randn(2, 2, 64, 64), torch.randn(2, 2, 64, 64)
    loss = critic_loss(critic, real, fake)
    loss.backward()
    grads = {name: p.grad for name, p in critic.named_parameters()}
    assert torch.isfinite(loss) and all(g is not None and torch.isfinite(g).all() for g in grads.values())
    # the final bias cancels in D̄(fake) − D̄(real) and does not change ∇_x D̄; every other parameter learns
    assert grads.pop("head.bias").abs().item() < 1e-6
    assert all(g.abs().sum() > 0 for g in grads.values())


def test_invalid_arguments_raise():
    critic = linear_critic()
    with pytest.raises(ValueError, match="gp_weight"):
        critic_loss(critic, logits(0), logits(1), gp_weight=-1.0)
    with pytest.raises(ValueError, match="gp_score must be one of"):
        critic_loss(critic, logits(0), logits(1), gp_score="max")
    with pytest.raises(ValueError, match=r"\(2, 2, 2, 3\) and \(2, 2, 2, 2\)"):
        gradient_penalty(critic, logits(0), logits(1)[..., :2])
