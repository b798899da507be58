"""WGAN-GP adversarial distillation terms (method.md §5), as in Structured Knowledge Distillation
(Liu et al., CVPR 2019) with the Wasserstein GAN gradient penalty (Gulrajani et al., NeurIPS 2017).

A critic ``D`` maps logits ``(B, K, H, W)`` to a score map ``(B, 1, h, w)``. As in SKD's code
(``CriterionAdv``, ``CriterionAdvForG``, ``CriterionAdditionalGP`` in ``utils/criterion.py`` of
github.com/irfanICMLL/structure_knowledge_distillation, the CoCo authors' base), expectations are means over
every score of the batch, ``mean D(x)`` (= the batch mean of each image's mean score, ``D̄(x)``):

- critic:    ``mean D(S) − mean D(T) + λ_gp · mean_b (‖∇_x Σ D(x̃)_b‖₂ − 1)²``, ``x̃`` a random
  interpolation of the teacher's (real) and the student's (fake) logits per image;
- generator: ``−mean D(S)``.

The penalty's convention (``gp_score``): SKD takes the input gradient of the **summed** score map
(``autograd.grad(D(x̃), x̃, grad_outputs=ones)``), the default here (``"sum"``). ``"mean"`` takes it of each
image's mean score ``D̄``, the score the expectations compare; its gradient is ``h·w`` times smaller, so the
penalty lets the critic be ``h·w`` times steeper (169× with the 13×13 map of 256² logits) and the student's
adversarial gradient grows with it: ``λ_adv = 0.1`` under ``"mean"`` acts like ≈ 17 under ``"sum"``. With a
1×1 score map (64² logits) the two agree.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

__all__ = ["GP_SCORES", "critic_loss", "generator_loss", "gradient_penalty"]

GP_SCORES = ("sum", "mean")
"""The gradient penalty's conventions: the gradient of the summed score map (SKD) or of its mean."""


def _image_scores(critic: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """``(B,)``: the mean of each image's score map ``critic(logits)`` ``(B, 1, h, w)``."""
    return critic(logits).flatten(1).mean(dim=1)


def _check_gp_score(gp_score: str) -> str:
    if gp_score not in GP_SCORES:
        raise ValueError(f"gp_score must be one of {GP_SCORES}, got {gp_score!r}.")
    return gp_score


def gradient_penalty(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, gp_score: str = "sum"
) -> torch.Tensor:
    """WGAN-GP penalty ``mean_b (‖∇_x s(x̃_b)‖₂ − 1)²`` with ``x̃ = α·real + (1 − α)·fake``.

    ``α ~ U(0, 1)`` is drawn per image (seed with ``monai.utils.set_determinism``). The image's score
    ``s`` is the sum of its score map (``gp_score="sum"``, SKD's ``CriterionAdditionalGP``, the default) or
    its mean (``"mean"``: ``h·w`` times smaller gradients, see the module docstring).

    The gradient is taken with ``create_graph=True`` so that the penalty trains the critic; ``real`` and
    ``fake`` are detached.

    Args:
        critic: logits ``(B, K, H, W)`` -> scores ``(B, 1, h, w)``.
        real: teacher logits ``(B, K, H, W)``.
        fake: student logits ``(B, K, H, W)``.
        gp_score: ``"sum"`` (SKD) or ``"mean"``.

    Returns:
        A scalar, in the dtype of the critic's output (at least float32).

    Raises:
        ValueError: ``real`` and ``fake`` of different shapes, or an unknown ``gp_score``.
    """
    _check_gp_score(gp_score)
    if real.shape != fake.shape:
        raise ValueError(
            f"gradient_penalty needs real and fake logits of one shape; got {tuple(real.shape)} and "
            f"{tuple(fake.shape)}."
        )
    alpha = torch.rand((real.shape[0],) + (1,) * (real.ndim - 1), device=real.device, dtype=real.dtype)
    mixed = (alpha * real.detach() + (1.0 - alpha) * fake.detach()).requires_grad_(True)
    scores = critic(mixed).flatten(1)
    scores = scores.sum(dim=1) if gp_score == "sum" else scores.mean(dim=1)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    grad = grad.flatten(1).to(torch.promote_types(grad.dtype, torch.float32))
    norm = torch.sqrt(grad.pow(2).sum(dim=1) + 1e-12)
    return (norm - 1.0).pow(2).mean()


def critic_loss(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, gp_weight: float = 10.0, gp_score: str = "sum"
) -> torch.Tensor:
    """The critic's WGAN-GP loss ``mean D(fake) − mean D(real) + gp_weight · gradient_penalty``.

    Both inputs are detached: this loss trains only the critic.

    Args:
        critic: logits ``(B, K, H, W)`` -> scores ``(B, 1, h, w)``.
        real: teacher logits ``(B, K, H, W)``.
        fake: student logits ``(B, K, H, W)``.
        gp_weight: ``λ_gp ≥ 0`` (method.md §5: 10); 0 skips the penalty.
        gp_score: the penalty's convention, ``"sum"`` (SKD, default) or ``"mean"`` (:func:`gradient_penalty`).

    Raises:
        ValueError: ``gp_weight < 0`` or an unknown ``gp_score``.
    """
    if gp_weight < 0:
        raise ValueError(f"gp_weight must be >= 0, got {gp_weight}.")
    _check_gp_score(gp_score)
    real, fake = real.detach(), fake.detach()
    loss = _image_scores(critic, fake).mean() - _image_scores(critic, real).mean()
    if gp_weight > 0:
        loss = loss + gp_weight * gradient_penalty(critic, real, fake, gp_score)
    return loss


def generator_loss(critic: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """The student's adversarial term ``−mean D(fake)``, over every score (SKD's ``CriterionAdvForG``).

    The critic runs with detached copies of its parameters (``torch.func.functional_call``; spectral-norm
    parametrisations still apply), so the gradient reaches ``fake`` and never the critic's ``.grad``.

    Args:
        critic: logits ``(B, K, H, W)`` -> scores ``(B, 1, h, w)``.
        fake: student logits ``(B, K, H, W)``.
    """
    frozen = {name: p.detach() for name, p in critic.named_parameters()}
    scores = functional_call(critic, frozen, (fake,))
    return -scores.flatten(1).mean(dim=1).mean()
