"""Read intermediate features of any network through forward hooks on named submodules.

The network itself is unchanged (its ``forward`` still returns only the logits, so MONAI's inferers,
engines and exporters keep working); :class:`FeatureTaps` returns the logits together with the outputs
of the chosen layers, as torchvision's ``IntermediateLayerGetter`` does but without rebuilding the model.
"""

from __future__ import annotations

import difflib
import logging
import math
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ["FeatureTaps", "feature_taps", "find_taps", "network_taps", "tap_channels"]

# layers whose output is an up-sampled map: a tap there encodes the up-sampler's pattern (method.md §2)
_UP_SAMPLERS = (nn.ConvTranspose2d, nn.Upsample, nn.PixelShuffle)  # nn.Upsampling* subclass nn.Upsample

logger = logging.getLogger(__name__)


class FeatureTaps:
    """Forward hooks on named submodules of ``network``.

    Args:
        network: any ``nn.Module`` (MONAI's ``UNet``, ``BasicUNet``, ``SegResNet``, FANet, MobileUNet, ...).
        layers: dotted submodule names as given by ``network.named_modules()``, e.g. ``"encoder.2"``;
            FANet and MobileUNet name their method.md §2 layers in ``default_taps``.

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
        raise ValueError(
            f"{type(network).__name__} has no default_taps: name the layers to tap "
            "(or let network_taps find them)."
        )
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
    return [shape[0] for shape in _tap_shapes(network, in_channels, layers, size)]


def _tap_shapes(
    network: nn.Module, in_channels: int, layers: Sequence[str], size: int
) -> list[tuple[int, ...]]:
    """``(C, h, w)`` of each tap on a ``(1, in_channels, size, size)`` zero image, in ``eval()`` without
    gradients on the network's own device; its training flag is restored."""
    reference = next(iter(network.parameters()), None)
    device = reference.device if reference is not None else torch.device("cpu")
    was_training = network.training
    network.eval()
    try:
        with FeatureTaps(network, list(layers)) as taps, torch.no_grad():
            _, features = taps(torch.zeros(1, in_channels, size, size, device=device))
    finally:
        network.train(was_training)
    return [tuple(int(d) for d in features[name].shape[1:]) for name in layers]


def _probe(network: nn.Module, in_channels: int, size: int) -> list[tuple[str, int, Any]]:
    """``[(name, k, output)]`` in the order the submodules finished, for each submodule that ran exactly
    once on a ``(1, in_channels, size, size)`` zero image and returned a ``(1, C, size / 2^k, size / 2^k)``
    tensor with ``size / 2^k > 1`` (padding layers, global pooling and lists are left out)."""
    finished: list[tuple[str, Any]] = []
    handles = [
        module.register_forward_hook(lambda m, i, o, name=name: finished.append((name, o)))
        for name, module in network.named_modules()
        if name
    ]
    reference = next(iter(network.parameters()), None)
    device = reference.device if reference is not None else torch.device("cpu")
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            network(torch.zeros(1, in_channels, size, size, device=device))
    finally:
        network.train(was_training)
        for handle in handles:
            handle.remove()
    runs: dict[str, int] = {}
    for name, _ in finished:
        runs[name] = runs.get(name, 0) + 1
    records = []
    for name, output in finished:
        if runs[name] != 1 or not isinstance(output, torch.Tensor) or output.ndim != 4:
            continue
        h, w = output.shape[-2:]
        k = math.log2(size / h) if h > 0 else -1.0
        if h == w and 1 < h <= size and k == int(k):
            records.append((name, int(k), output))
    return records


def find_taps(network: nn.Module, in_channels: int, size: int = 64) -> list[str]:
    """A (shallow, deep) pair of layer names found by a probe forward pass, for a network without
    ``default_taps``.

    The network runs once on a ``(1, in_channels, size, size)`` zero image (``eval()``, no gradients;
    batch-norm statistics untouched). Of the layers that run once and return a feature map
    ``(1, C, size / 2^k, size / 2^k)``, the bottleneck is the deepest ``k`` in the order the layers finish:
    layers finishing before its first layer are the encoder side, those finishing after its last layer the
    decoder side. At a level ``k`` seen on both sides, the shallow tap is the last encoder-side layer (not
    inside a strided block) and the deep tap the first whole decoder block at that level (one not inside
    another: the stage after its skip fusion) with the shallow tap's channel count (CoCo pairs a network's
    two maps channel by channel, method.md §3), else the first decoder layer there with that count, else the
    first whole block. Up-samplers' outputs (transposed convolutions, ``Upsample``, ``PixelShuffle``, and
    modules returning their tensor) are never the deep tap: their cosine geometry encodes the up-sampler's
    2×2 pattern, not the tissue (method.md §2), unless no level has an equal-channel pair without them: then
    an up-sampler's output with the shallow tap's channel count is taken, with a warning. The level is the
    one closest to 1/4 resolution (``k = 2``, the paper's taps; ties go to the coarser level) among those
    with an equal-channel pair, else the closest level. For FANet this finds its ``default_taps``: the
    encoder's stage 3 and the first decoder stage (after the skip fusion), both at 1/4 resolution.

    Args:
        network: any 2D segmentation network taking ``(B, in_channels, H, W)``.
        in_channels: the image channels it takes.
        size: side of the probe image, a multiple of the network's size divisor (pixels).

    Raises:
        ValueError: no reduced resolution is reached both before and after the bottleneck (name the
            layers by hand).
    """
    records = _probe(network, in_channels, size)
    name = type(network).__name__
    bottleneck = max((k for _, k, _ in records), default=0)
    if bottleneck < 2:
        raise ValueError(f"{name} does not reduce a {size}-pixel probe image below half size and back; "
                         "name its taps (layer names) by hand.")  # fmt: skip
    first = next(i for i, (_, k, _) in enumerate(records) if k == bottleneck)
    last = max(i for i, (_, k, _) in enumerate(records) if k == bottleneck)
    encoder, decoder = records[:first], records[last + 1 :]
    levels = {k for _, k, _ in encoder if k > 0} & {k for _, k, _ in decoder if k > 0}
    if not levels:
        raise ValueError(f"{name} has no encoder-side and decoder-side layers at one reduced resolution; "
                         "name its taps (layer names) by hand.")  # fmt: skip
    levels_of = {n: k for n, k, _ in records}
    outputs = {n: o for n, _, o in records}
    modules = dict(network.named_modules())
    upsampled = {id(o) for n, _, o in records if isinstance(modules[n], _UP_SAMPLERS)}
    pairs = _tap_pairs(levels, encoder, decoder, levels_of, outputs, exclude=upsampled)
    if not any(equal for _, _, equal in pairs):  # CoCo needs equal channels: an up-sampler's, with a warning
        fallback = _tap_pairs(levels, encoder, decoder, levels_of, outputs, exclude=set())
        if any(equal for _, _, equal in fallback):
            pairs = fallback
            shallow, deep, _ = next(p for p in pairs if p[2])
            logger.warning("%s: no decoder layer with %s's channel count but up-samplers; the deep tap %s is "
                           "an up-sampler's output, whose geometry is its 2x2 pattern (method.md §2): name "
                           "other taps if you can", name, shallow, deep)  # fmt: skip
    if not pairs:
        raise ValueError(f"{name} has no decoder-side layer but up-samplers at a reduced resolution; "
                         "name its taps (layer names) by hand.")  # fmt: skip
    shallow, deep, _ = next((p for p in pairs if p[2]), pairs[0])
    return [shallow, deep]


def _tap_pairs(
    levels: set[int],
    encoder: list[tuple[str, int, Any]],
    decoder: list[tuple[str, int, Any]],
    levels_of: dict[str, int],
    outputs: dict[str, Any],
    exclude: set[int],
) -> list[tuple[str, str, bool]]:
    """Per level, closest to 1/4 first: ``(shallow, deep, same channel count)`` (see :func:`find_taps`),
    the deep tap never a layer whose output tensor's ``id`` is in ``exclude``."""
    pairs = []
    for level in sorted(levels, key=lambda k: (abs(k - 2), -k)):
        candidates = [n for n, k, _ in encoder if k == level]
        whole = [n for n in candidates if all(levels_of.get(a, level) <= level for a in _ancestors(n))]
        shallow = (whole or candidates)[-1]  # not inside a strided block (whose output is deeper)
        channels = outputs[shallow].shape[1]
        at_level = [(n, o) for n, k, o in decoder if k == level and id(o) not in exclude]
        if not at_level:
            continue
        names = {n for n, _ in at_level}
        blocks = [(n, o) for n, o in at_level if not names.intersection(_ancestors(n))]  # whole blocks
        matching = [(n, o) for n, o in blocks + at_level if o.shape[1] == channels]
        deep, output = (matching or blocks)[0]
        pairs.append((shallow, deep, output.shape[1] == channels))
    return pairs


def _ancestors(name: str) -> list[str]:
    """``"a.b.c"`` -> ``["a.b", "a"]``, innermost first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def network_taps(
    network: nn.Module,
    in_channels: int,
    layers: Sequence[str] | None = None,
    setting: str = "taps",
    size: int = 64,
) -> list[str]:
    """The layers to tap on ``network``, logged with where they came from.

    ``layers`` when given (checked to be submodules), else the network's ``default_taps`` (FANet,
    MobileUNet), else :func:`find_taps`. One INFO line on the ``monai_coco.networks.taps`` logger names
    the network, the layers, each feature's shape on a ``size``-pixel probe and the setting that overrides
    them, e.g. ``student_taps``.

    Raises:
        ValueError: a name in ``layers`` is not a submodule; no taps can be found (see :func:`find_taps`).
    """
    if layers is not None:
        source, layers = "given", list(layers)
    elif getattr(network, "default_taps", None) is not None:
        source, layers = "the network's default_taps", list(network.default_taps)
    else:
        source, layers = "found by a probe forward pass", find_taps(network, in_channels, size)
    shapes = _tap_shapes(network, in_channels, layers, size)
    logger.info(
        "%s of %s (%s): %s; override with --%s \"%s\"",
        setting, type(network).__name__, source,
        ", ".join(f"{n} (C={s[0]}, {s[1]}x{s[2]} on a {size}x{size} probe)" for n, s in zip(layers, shapes)),
        setting, str(layers).replace(" ", ""),
    )  # fmt: skip
    return layers
