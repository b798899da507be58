"""Networks: parameters, counted FLOPs, inference throughput on tiles and through the sliding-window path,
and this machine's fp32 matrix-multiply rate as the yardstick of the achieved GFLOP/s.

FLOPs are counted by ``monai_coco.networks.summary.count_flops`` (``torch.utils.flop_counter``, 2 FLOPs per
multiply-add) on the ``meta`` device; the papers' "GFLOPs" column (``thop`` multiply-adds) is given beside.
Throughput is fp32, ``eval()`` and ``torch.inference_mode()``; the large tile goes through
``monai_coco.data.segment_image`` (MONAI's ``SlidingWindowInferer``, softmax blending, argmax), every window
run.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from monai_coco.inference import SlideInferenceConfig, segment_image
from monai_coco.networks.summary import count_flops, count_parameters


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def matmul_peak(n: int = 4096, repeats: int = 3) -> float:
    """Best fp32 ``torch.matmul`` rate of ``n×n`` matrices on this device, GFLOP/s (``2n³`` per product)."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(_device()) for _ in range(2))
    torch.matmul(a, b)  # warm-up
    best = math.inf
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        torch.matmul(a, b)
        _sync()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def network_counts(build: Callable[[], torch.nn.Module], in_channels: int, size: int) -> dict[str, float]:
    """Parameters and forward FLOPs of one ``(1, in_channels, size, size)`` tile, counted on ``meta``."""
    with torch.device("meta"):
        model = build()
    shape = (1, in_channels, size, size)
    return {
        "params": count_parameters(model),
        "gflops": count_flops(model, shape, "flops") / 1e9,
        "paper_gflops": count_flops(model, shape, "thop") / 1e9,
    }


def tile_throughput(
    network: Callable[[torch.Tensor], torch.Tensor],
    in_channels: int,
    size: int,
    batch: int = 1,
    repeats: int = 3,
) -> dict[str, float]:
    """Median forward time of a ``(batch, in_channels, size, size)`` batch after one warm-up:
    ``{"s_per_batch", "tiles_per_s", "mpix_per_s"}``. ``network``: a module (moved to the device, eval) or
    an inference runtime of :mod:`monai_coco.inference.runtimes` (run as it is)."""
    if isinstance(network, torch.nn.Module):
        network = network.to(_device()).eval()
    x = torch.rand(batch, in_channels, size, size, generator=torch.Generator().manual_seed(0)).to(_device())
    times = []
    with torch.inference_mode():
        network(x)
        for _ in range(repeats):
            _sync()
            start = time.perf_counter()
            network(x)
            _sync()
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {
        "s_per_batch": seconds,
        "tiles_per_s": batch / seconds,
        "mpix_per_s": batch * size * size / seconds / 1e6,
    }


def sliding_window_windows(side: int, roi: int, overlap: float) -> int:
    """Number of windows MONAI's ``SlidingWindowInferer`` runs over a ``side×side`` image."""
    stride = max(int(roi * (1 - overlap)), 1)
    per_side = 1 if side <= roi else math.ceil((side - roi) / stride) + 1
    return per_side * per_side


def sliding_window_throughput(
    network: torch.nn.Module, side: int, roi: int = 256, overlap: float = 0.25, sw_batch_size: int = 4
) -> dict[str, float]:
    """Time of ``segment_image`` on one random RGB ``side×side`` ``uint8`` tile (the time does not depend
    on the content: every window runs), fp32: ``{"seconds", "windows", "windows_per_s", "mpix_per_s"}``."""
    image = np.random.default_rng(0).integers(0, 256, (3, side, side), dtype=np.uint8)
    config = SlideInferenceConfig(
        roi_size=roi,
        overlap=overlap,
        sw_batch_size=sw_batch_size,
        amp=False,
        chunk_size=max(side, roi),
        device=str(_device()),
        runtime="torch",
    )
    _sync()
    start = time.perf_counter()
    segment_image(network, image, config)
    _sync()
    seconds = time.perf_counter() - start
    windows = sliding_window_windows(side, roi, overlap)
    return {
        "seconds": seconds,
        "windows": windows,
        "windows_per_s": windows / seconds,
        "mpix_per_s": side * side / seconds / 1e6,
    }
