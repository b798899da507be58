"""Paraphraser (method.md §4): layout, an independent functional reference, and that it learns."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from monai_coco.networks import Paraphraser


def test_shapes_of_factor_and_reconstruction():
    p = Paraphraser(in_channels=8, factor_channels=3)
    x = torch.randn(2, 8, 12, 10)
    z = p.encode(x)
    assert z.shape == (2, 3, 12, 10)
    assert p.decode(z).shape == p(x).shape == x.shape


def test_parameter_count_by_hand():
    c, k = 8, 3
    convs = [(c, c), (c, k), (k, k), (k, k), (k, c), (c, c)]  # 3×3 kernels with biases
    expected = sum(9 * cin * cout + cout for cin, cout in convs)
    assert sum(p.numel() for p in Paraphraser(c, k).parameters()) == expected


def test_forward_equals_a_functional_reference():
    """conv, conv, conv | convT, convT, convT — stride 1, padding 1 — each followed by LeakyReLU(0.1)."""
    torch.manual_seed(0)
    p = Paraphraser(6, 2)
    x = torch.randn(2, 6, 7, 9)
    convs = [m for m in p.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert len(convs) == 6
    norms = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm)
    assert not any(isinstance(m, norms) for m in p.modules())
    h = x
    for i, conv in enumerate(convs):
        op = F.conv2d if i < 3 else F.conv_transpose2d
        h = F.leaky_relu(op(h, conv.weight, conv.bias, stride=1, padding=1), negative_slope=0.1)
        if i == 2:
            torch.testing.assert_close(p.encode(x), h)
    torch.testing.assert_close(p(x), h)


def test_reconstruction_loss_is_the_mse_and_training_lowers_it():
    torch.manual_seed(0)
    p = Paraphraser(8, 4)
    # a compressible post-ReLU "teacher feature": 8 channels mixed from 2 smooth ones
    smooth = F.interpolate(torch.randn(2, 2, 4, 4), size=(8, 8), mode="bilinear")
    x = torch.relu(torch.einsum("oc,bchw->bohw", torch.randn(8, 2), smooth))
    torch.testing.assert_close(p.reconstruction_loss(x), ((p(x) - x) ** 2).mean())
    optimizer = torch.optim.Adam(p.parameters(), lr=1e-2)
    before = p.reconstruction_loss(x).item()
    for _ in range(30):
        optimizer.zero_grad()
        loss = p.reconstruction_loss(x)
        loss.backward()
        optimizer.step()
    assert all(q.grad is not None and q.grad.abs().sum() > 0 for q in p.parameters())
    assert p.reconstruction_loss(x).item() < 0.5 * before


@pytest.mark.parametrize("args", [(0, 3), (8, 0), (8, 2.5)])
def test_invalid_channels_raise(args):
    with pytest.raises(ValueError, match="positive integer"):
        Paraphraser(*args)
