"""Read intermediate features of any network through forward hooks on named submodules.

The network itself is unchanged (its ``forward`` still returns only the logits, so MONAI's inferers,
engines and exporters keep working); :class:`FeatureTaps` returns the logits together with the outputs
of the chosen layers, as torchvision's ``IntermediateLayerGetter`` does but without rebuilding the model.
"""

import difflib
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ["FeatureTaps"]


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

    def __enter__(self) -> "FeatureTaps":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._handles else "closed"
        return f"FeatureTaps({type(self.network).__name__}, layers={self.layers}, {state})"
