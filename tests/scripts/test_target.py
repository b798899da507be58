"""The accuracy protocol's sanity figures: AUC and Pearson by hand, the checkerboard score of an up-sampler's
output, a linear probe, and the tap report on FANet's paper tap against its fused stage."""

from __future__ import annotations

import math

import pytest
import torch
from benchmarks.target import _auc, checkerboard_score, probe_auc, tap_report

from monai_coco.networks import FANet


def test_auc_by_hand_with_ties_and_one_class():
    # pairs (positive, negative): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3 of 4
    assert _auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == pytest.approx(0.75)
    assert _auc(torch.ones(6), torch.tensor([0, 1, 0, 1, 1, 0])) == pytest.approx(0.5)  # all tied
    assert math.isnan(_auc(torch.rand(5), torch.ones(5)))


def test_a_map_set_by_the_2x2_position_scores_one_and_noise_scores_zero():
    rows, cols = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    position = (rows % 2) * 2 + cols % 2
    one_hot = torch.nn.functional.one_hot(position, 4).permute(2, 0, 1)[None].float()  # (1, 4, 16, 16)
    assert checkerboard_score(one_hot.expand(2, -1, -1, -1)) == pytest.approx(1.0)
    noise = torch.randn(2, 8, 16, 16, generator=torch.Generator().manual_seed(0))
    assert abs(checkerboard_score(noise)) < 0.05


def test_the_probe_finds_a_separable_label_and_not_a_random_one():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (2000,), generator=g)
    x = torch.randn(2000, 5, generator=g)
    x[:, 2] += 3.0 * y
    assert probe_auc((x[:1000], y[:1000]), (x[1000:], y[1000:])) > 0.95
    shuffled = y[torch.randperm(2000, generator=g)]
    assert abs(probe_auc((x[:1000], shuffled[:1000]), (x[1000:], shuffled[1000:])) - 0.5) < 0.06


def test_the_tap_report_sees_the_transposed_convolution_s_checkerboard_and_not_the_encoder_s():
    torch.manual_seed(0)
    teacher = FANet(3, 2, features=(4, 8, 16, 32)).eval()
    g = torch.Generator().manual_seed(1)
    images = torch.rand(4, 3, 32, 32, generator=g)
    labels = (torch.nn.functional.avg_pool2d(images.mean(1, keepdim=True), 5, 1, 2) > 0.5).float()
    batches = [{"image": images[:2], "label": labels[:2]}, {"image": images[2:], "label": labels[2:]}]
    taps = ["encoder.2", "decoder.0.up"]
    rows = tap_report({"random": teacher}, taps, batches, pairs=4000, probe_pixels=500)
    by_tap = {row["tap"]: row for row in rows}
    assert set(by_tap) == {"encoder.2", "decoder.0.up", "encoder.2 x decoder.0.up"}
    assert by_tap["decoder.0.up"]["checkerboard_r"] > 0.7 and abs(by_tap["encoder.2"]["checkerboard_r"]) < 0.1
    assert all(0 <= row["label_auc"] <= 1 for row in rows)


def test_the_tap_report_slices_plain_tensors_of_a_data_loader_s_metatensor_batches():
    """A data loader's batches are MONAI MetaTensors, whose per-image metadata makes slicing the gathered
    maps by tile fail (as it did on the CPU protocol's validation batches): the maps are plain tensors."""
    from benchmarks.target import _teacher_maps
    from monai.data import DataLoader, Dataset, MetaTensor

    torch.manual_seed(0)
    teacher = FANet(3, 2, features=(4, 8, 16, 32)).eval()
    g = torch.Generator().manual_seed(2)
    items = [
        {"image": MetaTensor(torch.rand(3, 32, 32, generator=g), meta={"filename_or_obj": f"t{i}.jpg"}),
         "label": MetaTensor((torch.rand(1, 32, 32, generator=g) > 0.5).float(), meta={"id": f"t{i}.png"})}
        for i in range(4)
    ]  # fmt: skip
    batches = list(DataLoader(Dataset(items), batch_size=2))
    maps, label = _teacher_maps(teacher, ["encoder.2", "decoder.0"], batches)
    assert all(type(t) is torch.Tensor for t in (*maps, label)) and label.shape == (4, 1, 8, 8)
    rows = tap_report({"trained": teacher}, ["encoder.2", "decoder.0"], batches, pairs=500, probe_pixels=200)
    assert len(rows) == 3 and all(math.isfinite(row["label_r"]) for row in rows)
