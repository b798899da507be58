"""WGAN-GP adversarial distillation terms (METHOD.md §5), as in Structured Knowledge Distillation
(Liu et al., CVPR 2019) with the Wasserstein GAN gradient penalty (Gulrajani et al., NeurIPS 2017).

A critic ``D`` maps logits ``(B, K, H, W)`` to a score map ``(B, 1, h, w)``; the score of an image is the
mean of its map, ``D̄(x)``, and batch expectations are means over the batch:

- critic:    ``mean D̄(S) − mean D̄(T) + λ_gp · mean (‖∇_x D̄(x̃)‖₂ − 1)²``, ``x̃`` a random interpolation
  of the teacher's (real) and the student's (fake) logits per image;
- generator: ``−mean D̄(S)``.

The penalty is on the gradient of the same per-image mean score whose expectations the critic loss
compares (SKD's code penalises the gradient of the summed map instead, which scales the constraint by
``h·w``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

__all__ = ["critic_loss", "generator_loss", "gradient_penalty"]


def _image_scores(critic: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """``(B,)``: the mean of each image's score map ``critic(logits)`` ``(B, 1, h, w)``."""
    return critic(logits).flatten(1).mean(dim=1)


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP penalty ``mean_b (‖∇_x D̄(x̃_b)‖₂ − 1)²`` with ``x̃ = α·real + (1 − α)·fake``.

    ``α ~ U(0, 1)`` is drawn per image (seed with ``monai.utils.set_determinism``).

    The gradient is taken with ``create_graph=True`` so that the penalty trains the critic; ``real`` and
    ``fake`` are detached.

    Args:
        critic: logits ``(B, K, H, W)`` -> scores ``(B, 1, h, w)``.
        real: teacher logits ``(B, K, H, W)``.
        fake: student logits ``(B, K, H, W)``.

    Returns:
        A scalar, in the dtype of the critic's output (at least float32).
    """
    if real.shape != fake.shape:
        raise ValueError(
            f"gradient_penalty needs real and fake logits of one shape; got {tuple(real.shape)} and "
            f"{tuple(fake.shape)}."
        )
    alpha = torch.rand((real.shape[0],) + (1,) * (real.ndim - 1), device=real.device, dtype=real.dtype)
    mixed = (alpha * real.detach() + (1.0 - alpha) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(_image_scores(critic, mixed).sum(), mixed, create_graph=True)
    grad = grad.flatten(1).to(torch.promote_types(grad.dtype, torch.float32))
    norm = torch.sqrt(grad.pow(2).sum(dim=1) + 1e-12)
    return (norm - 1.0).pow(2).mean()


def critic_loss(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, gp_weight: float = 10.0
) -> torch.Tensor:
    """The critic's WGAN-GP loss ``mean D̄(fake) − mean D̄(real) + gp_weight · gradient_penalty``.

    Both inputs are detached: this loss trains only the critic.

    Args:
        critic: logits ``(B, K, H, W)`` -> scores ``(B, 1, h, w)``.
        real: teacher logits ``(B, K, H, W)``.
        fake: student logits ``(B, K, H, W)``.
        gp_weight: ``λ_gp ≥ 0`` (METHOD.md §5: 10); 0 skips the penalty.
    """
    if gp_weight < 0:
        raise ValueError(f"gp_weight must be >= 0, got {gp_weight}.")
    real, fake = real.detach(), fake.detach()
    loss = _image_scores(critic, fake).mean() - _image_scores(critic, real).mean()
    if gp_weight > 0:
        loss = loss + gp_weight * gradient_penalty(critic, real, fake)
    return loss


def generator_loss(critic: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """The student's adversarial term ``−mean D̄(fake)``.

    The critic runs with detached copies of its parameters (``torch.func.functional_call``; spectral-norm
    parametrisations still apply), so the gradient reaches ``fake`` and never the critic's ``.grad``.

    Args:
        critic: logits ``(B, K, H, W)`` -> scores ``(B, 1, h, w)``.
        fake: student logits ``(B, K, H, W)``.
    """
    frozen = {name: p.detach() for name, p in critic.named_parameters()}
    scores = functional_call(critic, frozen, (fake,))
    return -scores.flatten(1).mean(dim=1).mean()
