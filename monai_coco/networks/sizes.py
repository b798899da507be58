"""The input-size rule shared by the networks: H and W multiples of the network's down-sampling factor."""

import torch


def check_spatial_size(x: torch.Tensor, divisor: int, network: str, reason: str) -> None:
    """Raise ``ValueError`` unless the spatial size of ``x`` ``(B, C, H, W)`` is a multiple of ``divisor``.

    Args:
        x: the network's input ``(B, C, H, W)``.
        divisor: the factor H and W must be multiples of.
        network: the network's name, for the message.
        reason: why (e.g. ``"three 2x poolings"``), for the message.
    """
    if x.shape[-2] % divisor != 0 or x.shape[-1] % divisor != 0:
        raise ValueError(
            f"{network} takes H and W that are multiples of {divisor} ({reason}), got "
            f"H={x.shape[-2]}, W={x.shape[-1]}; pad or crop the image "
            f"(e.g. monai.transforms.DivisiblePad(k={divisor}))."
        )
