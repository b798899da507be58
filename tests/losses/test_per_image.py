"""PerImageLoss, the base of every distillation loss: float32 or better, with autocast off inside."""

from __future__ import annotations

import torch

from monai_coco.losses.per_image import PerImageLoss


class GramLoss(PerImageLoss):
    """Per image ``Σ (F Fᵀ)``: one matmul in the input dtype, which autocast would run in bfloat16."""

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.reduced(self._per_image, feature)

    @staticmethod
    def _per_image(feature: torch.Tensor) -> torch.Tensor:
        x = feature.flatten(2)
        return torch.bmm(x, x.transpose(1, 2)).sum(dim=(1, 2))


def test_autocast_is_off_inside_and_the_result_is_float32():
    """Values 1 + k/1000 need more than bfloat16's 8-bit mantissa: a bfloat16 matmul visibly changes
    the sum; inside the loss the same float32 inputs give the float32 value under CPU bfloat16 autocast."""
    feature = 1.0 + torch.arange(2 * 3 * 50, dtype=torch.float32).reshape(2, 3, 50) / 1000
    feature = feature.reshape(2, 3, 5, 10)
    loss = GramLoss(reduction="none")
    outside = loss(feature)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = loss(feature)
        x = feature.flatten(2)
        in_bfloat16 = torch.bmm(x, x.transpose(1, 2)).float().sum(dim=(1, 2))
    assert ((in_bfloat16 - outside).abs() > 1e-4 * outside).all()  # the inputs are sensitive
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, outside, rtol=1e-6, atol=0.0)
    torch.testing.assert_close(outside.double(), GramLoss(reduction="none")(feature.double()))


def test_half_inputs_are_computed_and_returned_in_float32_and_float64_stays():
    feature = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    loss = GramLoss()
    assert loss(feature.bfloat16()).dtype == torch.float32
    torch.testing.assert_close(loss(feature.bfloat16()), loss(feature.bfloat16().float()), rtol=0.0, atol=0.0)
    assert loss(feature.double()).dtype == torch.float64
