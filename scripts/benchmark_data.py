"""Data of the benchmarks: the built-in synthetic gastric tiles, MONAI transforms and data loaders.

Training items: RGB ``(3, S, S)`` in [0, 1] and class map ``(S, S)`` (int64, for ``CrossEntropyLoss``),
with the paper's random horizontal and vertical flips. Test items: the same image and a label map
``(1, S, S)`` (for ``monai_coco.metrics``), no augmentation.
"""

from __future__ import annotations

from pathlib import Path

import torch
from monai.data import CacheDataset, DataLoader
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    RandFlipd,
    ScaleIntensityRanged,
    SqueezeDimd,
)

from monai_coco.data import ColorChannelsd, load_paired_datalist, write_synthetic_dataset

KEYS = ("image", "label")


def synthetic_split(folder: Path, n: int, size: int, seed: int, mpp: float) -> list[dict[str, str]]:
    """Write ``n`` synthetic tiles ``S×S`` at ``mpp`` µm/pixel into ``folder`` and return their datalist
    (read back and validated by ``load_paired_datalist``). The same arguments write the same files."""
    write_synthetic_dataset(folder, n=n, size=size, seed=seed, mpp=mpp)
    return load_paired_datalist(folder)


def _loading(in_channels: int) -> list:
    return [
        LoadImaged(keys=KEYS, image_only=True),
        EnsureChannelFirstd(keys=KEYS),
        ColorChannelsd(keys="image", channels=in_channels),
        ScaleIntensityRanged(keys="image", a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0),
    ]


def train_dataset(datalist: list[dict], in_channels: int = 3) -> CacheDataset:
    """Items ``{"image": (C, S, S) float32, "label": (S, S) int64}``, loaded once, randomly flipped."""
    transforms = Compose(
        _loading(in_channels)
        + [
            RandFlipd(keys=KEYS, prob=0.5, spatial_axis=0),
            RandFlipd(keys=KEYS, prob=0.5, spatial_axis=1),
            SqueezeDimd(keys="label", dim=0),
            EnsureTyped(keys="label", dtype=torch.long, track_meta=False),
            EnsureTyped(keys="image", dtype=torch.float32, track_meta=False),
        ]
    )
    return CacheDataset(datalist, transforms, progress=False)


def train_loader(dataset: CacheDataset, batch: int) -> DataLoader:
    """Shuffled batches of :func:`train_dataset` items; MONAI's ``DataLoader`` seeds the flips and the order
    from torch's seed, so ``monai.utils.set_determinism(seed)`` just before it fixes both."""
    return DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=0, drop_last=True)


def test_loader(datalist: list[dict], batch: int, in_channels: int = 3) -> DataLoader:
    """Batches ``{"image": (B, C, S, S), "label": (B, 1, S, S)}`` in file order, no augmentation."""
    transforms = Compose(
        _loading(in_channels) + [EnsureTyped(keys=KEYS, dtype=torch.float32, track_meta=False)]
    )
    return DataLoader(CacheDataset(datalist, transforms, progress=False), batch_size=batch, num_workers=0)
