"""Read intermediate features of any network through forward hooks on named submodules.

The network itself is unchanged (its ``forward`` still returns only the logits, so MONAI's inferers,
engines and exporters keep working); :class:`FeatureTaps` returns the logits together with the outputs
of the chosen layers, as torchvision's ``IntermediateLayerGetter`` does but without rebuilding the model.
"""

from __future__ import annotations

import difflib
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ["FeatureTaps", "feature_taps", "tap_channels"]


class FeatureTaps:
    """Forward hooks on named submodules of ``network``.

    Args:
        network: any ``nn.Module`` (MONAI's ``UNet``, ``BasicUNet``, ``SegResNet``, FANet, MobileUNet, ...).
        layers: dotted submodule names as given by ``network.named_modules()``, e.g. ``"encoder.2"``;
            FANet and MobileUNet name their METHOD §2 layers in ``default_taps``.

    ``taps(x)`` runs ``network(x)`` and returns ``(output, {name: feature})`` with the features in the
    order of ``layers``, each the tensor the layer returned (``(B, C, h, w)`` for a conv layer). The hooks
    record only during ``taps(x)`` (a plain ``network(x)`` records nothing) and nothing is kept after the
    call returns. Hooks are removed by :meth:`close` or on leaving a ``with FeatureTaps(...) as taps:``
    block.

    Raises:
        ValueError: a name in ``layers`` is not a submodule (the message lists the closest valid names), or
            is given twice; at call time, a tapped layer did not run or ran more than once.
    """

    def __init__(self, network: nn.Module, layers: Sequence[str]) -> None:
        if isinstance(layers, str):
            raise ValueError(f"layers must be a sequence of layer names, got the string {layers!r}.")
        self.layers: tuple[str, ...] = tuple(layers)
        if not self.layers:
            raise ValueError("layers must name at least one submodule.")
        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layers must not repeat a name, got {self.layers}.")
        modules = dict(network.named_modules())
        modules.pop("", None)
        for name in self.layers:
            if name not in modules:
                close = difflib.get_close_matches(name, list(modules), n=6, cutoff=0.5)
                top_level = [child for child, _ in network.named_children()]
                hint = f"closest valid names: {close}" if close else f"top-level submodules: {top_level}"
                raise ValueError(f"{type(network).__name__} has no submodule {name!r}; {hint}.")
        self.network = network
        self._recording = False
        self._features: dict[str, list[Any]] = {}
        self._handles: list[RemovableHandle] = [
            modules[name].register_forward_hook(self._make_hook(name)) for name in self.layers
        ]

    def _make_hook(self, name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if self._recording:
                self._features.setdefault(name, []).append(output)

        return hook

    def __call__(self, x: torch.Tensor) -> tuple[Any, dict[str, Any]]:
        """Run the network on ``x`` ``(B, C, H, W)``; return ``(output, {layer name: feature})``."""
        if not self._handles:
            raise RuntimeError("FeatureTaps is closed; create a new one to tap the network again.")
        self._features = {}
        self._recording = True
        try:
            output = self.network(x)
            recorded = self._features
        finally:
            self._recording = False
            self._features = {}
        features: dict[str, Any] = {}
        for name in self.layers:
            calls = recorded.get(name, [])
            if len(calls) != 1:
                raise ValueError(
                    f"tapped layer {name!r} of {type(self.network).__name__} ran {len(calls)} times in one "
                    "forward pass; tap a layer that runs exactly once."
                )
            features[name] = calls[0]
        return output, features

    def close(self) -> None:
        """Remove the hooks (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> FeatureTaps:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._handles else "closed"
        return f"FeatureTaps({type(self.network).__name__}, layers={self.layers}, {state})"


def _default_taps(network: nn.Module) -> Sequence[str]:
    """``network.default_taps``; ``ValueError`` when the network names none."""
    layers = getattr(network, "default_taps", None)
    if layers is None:
        raise ValueError(f"{type(network).__name__} has no default_taps: name the layers to tap.")
    return layers


def feature_taps(network: nn.Module, layers: Sequence[str] | None) -> FeatureTaps:
    """``FeatureTaps`` on ``layers``, or on the network's ``default_taps`` when ``layers`` is None.

    Layer names are those of the bare network, also when it is wrapped in ``DistributedDataParallel`` or
    ``DataParallel`` (as a multi-GPU config does).

    Raises:
        ValueError: ``layers`` is None and the network has no ``default_taps``.
    """
    wrapped = isinstance(network, (nn.DataParallel, nn.parallel.DistributedDataParallel))
    bare = network.module if wrapped else network
    if layers is None:
        layers = _default_taps(bare)
    return FeatureTaps(network, [f"module.{name}" if wrapped else name for name in layers])


def tap_channels(
    network: nn.Module, in_channels: int, layers: Sequence[str] | None = None, size: int = 64
) -> list[int]:
    """Channels ``C`` of the features ``(B, C, h, w)`` at ``layers``, in their order.

    Used to size a paraphraser per teacher tap (its factor channels = the student's tap channels)
    whatever the networks' widths. The network runs once in ``eval()`` mode without gradients (so batch
    norm statistics are untouched) on a ``(1, in_channels, size, size)`` zero image on its own device;
    its training flag is restored.

    Args:
        network: any network whose ``forward`` takes ``(B, in_channels, H, W)``.
        in_channels: the image channels it takes.
        layers: dotted submodule names; default ``network.default_taps``.
        size: side of the probe image; a multiple of the network's ``size_divisor``.
    """
    if layers is None:
        layers = _default_taps(network)
    reference = next(iter(network.parameters()), None)
    device = reference.device if reference is not None else torch.device("cpu")
    was_training = network.training
    network.eval()
    try:
        with FeatureTaps(network, list(layers)) as taps, torch.no_grad():
            _, features = taps(torch.zeros(1, in_channels, size, size, device=device))
    finally:
        network.train(was_training)
    return [int(features[name].shape[1]) for name in layers]
