"""Parameter and FLOP counts of a network, and a command line that prints them.

FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode` on a real forward pass, in one of
three conventions (``convention=``):

- ``"flops"`` (default): FlopCounterMode's own count, a multiply-add is 2 FLOPs.
- ``"macs"``: multiply-adds, half of ``"flops"``.
- ``"thop"``: multiply-adds as the ``thop`` profiler counts them, which charges a transposed convolution
  per *output* element (4x its real cost at stride 2). This is the convention of the CoCo DistillNet /
  Graph Flow papers' "GFLOPs" column, the only one that reproduces both of its figures: 171.6 G for
  FANet (here 169.0 G; 164.2 G real multiply-adds) and 1.49 G for Mobile U-Net (here 1.49 G; 0.96 G real
  multiply-adds), at ``in_channels=1``, 256x256. Plain ``"macs"`` would miss the student's figure by 35 %,
  ``"flops"`` both figures by about 30 % or more.

Command line::

    python -m monai_coco.networks.summary FANet --in-channels 1 --size 256

The network is built on PyTorch's ``meta`` device, so no memory is allocated and no arithmetic is run:
the summary of FANet at 256x256 takes well under a second.
"""

import argparse
from typing import Callable, Optional, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from .fanet import FANet
from .mobile_unet import MobileUNet

__all__ = ["FLOP_CONVENTIONS", "count_flops", "count_parameters", "main"]

FLOP_CONVENTIONS = ("flops", "macs", "thop")

NETWORKS: dict[str, Callable[..., nn.Module]] = {"FANet": FANet, "MobileUNet": MobileUNet}

# the papers' figures at in_channels=1, 256x256: (parameters, "GFLOPs" = thop multiply-adds)
PAPER_FIGURES: dict[str, tuple[float, float]] = {
    "FANet": (38.250e6, 171.556e9),
    "MobileUNet": (4.640e6, 1.492e9),
}


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``model`` (only those with ``requires_grad`` if ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _convolution_by_output(
    x_shape: list[int],
    w_shape: list[int],
    _bias,
    _stride,
    _padding,
    _dilation,
    transposed: bool,
    *args,
    out_shape: list[int],
    **kwargs,
) -> int:
    """FlopCounterMode formula for ``aten.convolution`` that charges transposed convolutions per output
    element, as ``thop`` does (2 FLOPs per multiply-add, like every FlopCounterMode formula)."""
    return conv_flop_count(x_shape, w_shape, out_shape, transposed=False)


_THOP_MAPPING = {
    op: _convolution_by_output
    for op in (torch.ops.aten.convolution, torch.ops.aten._convolution, torch.ops.aten.cudnn_convolution)
}


def count_flops(model: nn.Module, input_shape: Sequence[int], convention: str = "flops") -> int:
    """Count the floating-point operations of one forward pass of ``model`` on a zero input of shape
    ``input_shape`` (e.g. ``(1, 1, 256, 256)`` for ``(B, C, H, W)``), with FlopCounterMode.

    The model runs in eval mode without gradients (its training flag is restored afterwards), on the
    device and in the dtype of its first parameter; a model built on the ``meta`` device is counted
    without doing any arithmetic. ``convention`` is ``"flops"``, ``"macs"`` or ``"thop"`` (see the
    module docstring).
    """
    if convention not in FLOP_CONVENTIONS:
        raise ValueError(f"convention must be one of {FLOP_CONVENTIONS}, got {convention!r}.")
    reference = next(iter(model.parameters()), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None and reference.is_floating_point() else torch.float32
    counter = FlopCounterMode(display=False, custom_mapping=_THOP_MAPPING if convention == "thop" else None)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(torch.zeros(tuple(input_shape), device=device, dtype=dtype))
    finally:
        model.train(was_training)
    flops = counter.get_total_flops()
    return flops if convention == "flops" else flops // 2


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Print the parameters and FLOPs (all three conventions) of FANet or MobileUNet."""
    parser = argparse.ArgumentParser(
        prog="python -m monai_coco.networks.summary",
        description="Parameters and FLOPs of a monai_coco network.",
    )
    parser.add_argument("network", choices=sorted(NETWORKS), help="network class")
    parser.add_argument("--in-channels", type=int, default=3, help="image channels (default 3; paper: 1)")
    parser.add_argument("--out-channels", type=int, default=2, help="output classes (default 2)")
    parser.add_argument("--size", type=int, default=256, help="square input size H = W (default 256)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    args = parser.parse_args(argv)

    with torch.device("meta"):
        model = NETWORKS[args.network](in_channels=args.in_channels, out_channels=args.out_channels)
    shape = (args.batch, args.in_channels, args.size, args.size)
    params = count_parameters(model)
    flops = count_flops(model, shape, "flops")
    thop = count_flops(model, shape, "thop")
    print(f"{args.network}  input {shape}")
    print(f"  parameters               {params / 1e6:9.3f} M")
    print(f"  FLOPs (2 per mult-add)   {flops / 1e9:9.3f} G   torch.utils.flop_counter.FlopCounterMode")
    print(f"  MACs  (mult-adds)        {flops / 2e9:9.3f} G")
    print(f"  GFLOPs, paper convention {thop / 1e9:9.3f} G   thop: mult-adds, transposed convs per output")
    if (args.in_channels, args.out_channels, args.size, args.batch) == (1, 2, 256, 1):
        paper_params, paper_flops = PAPER_FIGURES[args.network]
        print(f"  paper                    {paper_params / 1e6:9.3f} M,  {paper_flops / 1e9:.3f} GFLOPs")


if __name__ == "__main__":
    main()
