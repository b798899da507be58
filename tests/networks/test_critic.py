"""LogitCritic (method.md §5): output sizes from 64×64 to 1024×1024, tanh input, spectral norm, attention."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parametrize

from monai_coco.networks import LogitCritic
from monai_coco.networks.critic import SelfAttention2d

SMALL = (4, 8, 8, 16)


def test_score_map_sizes_small_widths():
    torch.manual_seed(0)
    critic = LogitCritic(in_channels=2, channels=SMALL)
    assert critic(torch.randn(2, 2, 64, 64)).shape == (2, 1, 1, 1)
    assert critic(torch.randn(1, 2, 96, 128)).shape == (1, 1, 3, 5)  # ⌊side/16⌋ − 3


@pytest.mark.parametrize("side, out", [(64, 1), (256, 13), (1024, 61)])
def test_score_map_sizes_default_widths_on_the_meta_device(side, out):
    """Shapes at full width without memory or compute: the meta device."""
    critic = LogitCritic(in_channels=3).to("meta")
    assert critic(torch.empty(2, 3, side, side, device="meta")).shape == (2, 1, out, out)


def test_inputs_go_through_tanh():
    torch.manual_seed(0)
    critic = LogitCritic(channels=SMALL).eval()  # eval: spectral norm does not step its power iteration
    sign = torch.randint(0, 2, (1, 2, 64, 64)).float() * 2 - 1
    torch.testing.assert_close(critic(30 * sign), critic(60 * sign))  # tanh saturates: both ±1
    assert not torch.allclose(critic(0.1 * sign), critic(0.2 * sign))


def test_stride_two_convs_are_spectrally_normalised():
    torch.manual_seed(0)
    critic = LogitCritic(channels=SMALL)
    x = torch.randn(1, 2, 64, 64)
    for _ in range(3):  # a few more power iterations (15 run at construction)
        critic(x)
    convs = [m for m in critic.features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4 and all(parametrize.is_parametrized(m, "weight") for m in convs)
    assert [(m.kernel_size, m.stride, m.padding) for m in convs] == [((4, 4), (2, 2), (1, 1))] * 4
    for conv in convs:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.05)
    assert not parametrize.is_parametrized(critic.head, "weight")


def test_attention_follows_the_third_and_fourth_conv():
    kinds = [type(m).__name__ for m in LogitCritic(channels=SMALL).features]
    conv = ["ParametrizedConv2d", "LeakyReLU"]
    assert kinds == conv * 2 + (conv + ["SelfAttention2d"]) * 2


def test_self_attention_against_a_per_pixel_reference():
    torch.manual_seed(0)
    block = SelfAttention2d(16)
    with torch.no_grad():
        block.gamma.fill_(0.7)
    x = torch.randn(2, 16, 3, 4)
    q, k, v = (proj(x).flatten(2) for proj in (block.query, block.key, block.value))
    expected = x.flatten(2).clone()
    for b in range(2):
        for i in range(12):
            weights = torch.softmax(torch.stack([q[b, :, i] @ k[b, :, j] for j in range(12)]), dim=0)
            expected[b, :, i] += 0.7 * sum(weights[j] * v[b, :, j] for j in range(12))
    torch.testing.assert_close(block(x), expected.view_as(x))
    with torch.no_grad():
        block.gamma.zero_()
    torch.testing.assert_close(block(x), x)  # SAGAN starts as the identity


def test_bad_inputs_raise():
    critic = LogitCritic(in_channels=2, channels=SMALL)
    with pytest.raises(ValueError, match=r"H, W >= 64; got \(1, 2, 32, 64\)"):
        critic(torch.randn(1, 2, 32, 64))
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        critic(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="two positive widths"):
        LogitCritic(channels=(8,))
