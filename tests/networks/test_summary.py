import re
import subprocess
import sys

import pytest
import torch
from torch import nn

from monai_coco.networks import FANet, MobileUNet
from monai_coco.networks.summary import count_flops, count_parameters, main


def test_count_parameters_by_hand():
    conv = nn.Conv2d(3, 4, kernel_size=3)
    assert count_parameters(conv) == 3 * 4 * 9 + 4
    conv.bias.requires_grad_(False)
    assert count_parameters(conv) == 112
    assert count_parameters(conv, trainable_only=True) == 108


@pytest.mark.parametrize(
    ("layer", "shape", "macs", "thop_macs"),
    [
        # every output element: C_in x k x k multiply-adds
        (nn.Conv2d(3, 4, 3, padding=1), (2, 3, 8, 8), 2 * 4 * 8 * 8 * 3 * 9, 2 * 4 * 8 * 8 * 3 * 9),
        # depthwise: one input channel per output channel
        (nn.Conv2d(4, 4, 3, padding=1, groups=4), (1, 4, 6, 6), 4 * 36 * 9, 4 * 36 * 9),
        # transposed 2x2, stride 2: each *input* element meets 2 x 2 x 2 weights; thop charges per output
        (nn.ConvTranspose2d(4, 2, 2, stride=2), (1, 4, 5, 5), 25 * 4 * 2 * 4, (2 * 10 * 10) * 4 * 4),
    ],
    ids=["conv", "depthwise", "transposed"],
)
def test_count_flops_in_each_convention_by_hand(layer, shape, macs, thop_macs):
    assert count_flops(layer, shape) == 2 * macs
    assert count_flops(layer, shape, convention="macs") == macs
    assert count_flops(layer, shape, convention="thop") == thop_macs


def test_count_flops_restores_the_training_flag_and_refuses_unknown_conventions():
    net = nn.Sequential(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1)).train()
    count_flops(net, (1, 1, 4, 4))
    assert net.training and net[1].num_batches_tracked == 0  # counted in eval mode: statistics untouched
    with pytest.raises(ValueError, match="convention must be one of"):
        count_flops(net, (1, 1, 4, 4), convention="gflops")


def test_teacher_flops_match_the_paper_in_the_thop_convention():
    with torch.device("meta"):  # no memory, no arithmetic: FLOPs come from shapes alone
        net = FANet(in_channels=1, out_channels=2)
    shape = (1, 1, 256, 256)
    macs = count_flops(net, shape, "macs")
    thop = count_flops(net, shape, "thop")
    assert count_flops(net, shape) == 2 * macs
    # thop over-charges the three 2x2 stride-2 transposed convs (512->256 at 32x32, 256->128 at 64x64,
    # 128->64 at 128x128 input pixels, 2**29 multiply-adds each) by a factor of 4
    assert thop - macs == 3 * 3 * 2**29
    assert abs(thop - 171.556e9) / 171.556e9 < 0.15


def test_student_flops_match_the_paper_in_the_thop_convention():
    with torch.device("meta"):
        net = MobileUNet(in_channels=1, out_channels=2)
    shape = (1, 1, 256, 256)
    macs = count_flops(net, shape, "macs")
    thop = count_flops(net, shape, "thop")
    # the four 4x4 stride-2 transposed convs: C_in x C_out x 16 per input pixel, x 4 in thop's count
    real = 16 * (1280 * 96 * 8**2 + 96 * 32 * 16**2 + 32 * 24 * 32**2 + 24 * 16 * 64**2)
    assert thop - macs == 3 * real
    assert abs(thop - 1.492e9) / 1.492e9 < 0.15
    assert abs(macs - 1.492e9) / 1.492e9 > 0.30  # plain multiply-adds would not reproduce the paper's figure


def test_summary_main_prints_parameters_and_every_flop_convention(capsys):
    main(["FANet", "--in-channels", "1", "--size", "256"])
    out = capsys.readouterr().out
    with torch.device("meta"):
        net = FANet(in_channels=1)
    params = float(re.search(r"parameters\s+([\d.]+) M", out).group(1))
    assert params == round(count_parameters(net) / 1e6, 3)
    flops = float(re.search(r"FLOPs \(2 per mult-add\)\s+([\d.]+) G", out).group(1))
    macs = float(re.search(r"MACs\s+\(mult-adds\)\s+([\d.]+) G", out).group(1))
    paper_convention = float(re.search(r"GFLOPs, paper convention\s+([\d.]+) G", out).group(1))
    assert flops == pytest.approx(2 * macs, abs=2e-3)
    assert paper_convention == pytest.approx(count_flops(net, (1, 1, 256, 256), "thop") / 1e9, abs=1e-3)
    assert "171.556 GFLOPs" in out  # the paper's figure, shown for this exact setting


def test_summary_runs_as_a_module():
    command = [sys.executable, "-m", "monai_coco.networks.summary", "MobileUNet", "--in-channels", "1"]
    result = subprocess.run(
        [*command, "--size", "256"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert re.search(r"parameters\s+4\.682 M", result.stdout)
    assert re.search(r"GFLOPs, paper convention\s+1\.49\d G", result.stdout)
