"""The tests' one tiny-network kit: teacher/student networks, data and reference helpers (32×32, CPU).

On the path of every test through pytest's ``pythonpath`` (``pyproject.toml``)."""

from __future__ import annotations

import torch
from monai.networks.nets import BasicUNet

# both taps at 1/4 resolution: the encoder's second down-sampling and the decoder's first-but-one stage
TAPS = ("down_2", "upcat_3")
TEACHER_FEATURES = (4, 4, 8, 8, 8, 4)  # tap channels: 8
STUDENT_FEATURES = (2, 2, 4, 4, 4, 2)  # tap channels: 4


def tiny_unet(features: tuple[int, ...], seed: int, norm: str | tuple = "batch") -> BasicUNet:
    """A BasicUNet, batch norm by default (so train()/eval() changes its buffers and outputs); ``norm``
    as MONAI's (its default: ``("instance", {"affine": True})``)."""
    torch.manual_seed(seed)
    return BasicUNet(spatial_dims=2, in_channels=3, out_channels=2, features=features, norm=norm)


def make_batches(n: int, size: int = 32, batch: int = 2, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``n`` batches of images ``(B, 3, H, W)`` and class maps ``(B, H, W)`` that depend on the image."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        image = torch.rand(batch, 3, size, size, generator=g)
        label = (image.mean(1) > 0.5).long()
        out.append({"image": image, "label": label})
    return out


def tap_features(net: torch.nn.Module, layers: tuple[str, ...], x: torch.Tensor):
    """Reference tap reader, independent of FeatureTaps: ``(logits, [feature per layer])``."""
    found: dict[str, torch.Tensor] = {}
    handles = [
        net.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: found.__setitem__(name, o))
        for name in layers
    ]
    try:
        logits = net(x)
    finally:
        for h in handles:
            h.remove()
    return logits, [found[name] for name in layers]


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every parameter and buffer."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
