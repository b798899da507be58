import pytest
import torch

from monai_coco.networks import FANet, FeatureTaps
from monai_coco.networks.fanet import SelectiveKernelConv, SKResidualBlock, StripPooling
from monai_coco.networks.summary import count_parameters

SMALL = (8, 16, 32, 64)


def small_fanet(in_channels: int = 3, out_channels: int = 2) -> FANet:
    torch.manual_seed(0)
    return FANet(in_channels, out_channels, features=SMALL)


@pytest.mark.parametrize(
    ("in_channels", "out_channels", "size"), [(3, 2, (32, 32)), (1, 3, (64, 96)), (3, 2, (40, 24))]
)
def test_logits_and_taps_have_the_expected_shapes(in_channels, out_channels, size):
    net = small_fanet(in_channels, out_channels).eval()
    x = torch.randn(2, in_channels, *size)
    with FeatureTaps(net, FANet.default_taps) as taps:
        logits, features = taps(x)
    assert logits.shape == (2, out_channels, *size)
    quarter = (size[0] // 4, size[1] // 4)
    for name in FANet.default_taps:
        assert features[name].shape == (2, SMALL[2], *quarter), name


def test_default_taps_are_encoder_stage_3_and_the_first_decoder_stage_after_its_skip_fusion():
    net = small_fanet().eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad(), FeatureTaps(net, FANet.default_taps) as taps:
        _, features = taps(x)
        # independent recomputation of both layers from the network's parts
        c1 = net.encoder[0](x)
        c2 = net.encoder[1](net.pool(c1))
        c3 = net.encoder[2](net.pool(c2))
        c4 = net.encoder[3](net.pool(c3))
        stage = net.decoder[0]
        fused = stage.attention(stage.block(torch.cat([stage.up(c4), c3], dim=1)))
    torch.testing.assert_close(features["encoder.2"], c3)
    torch.testing.assert_close(features["decoder.0"], fused)


@pytest.mark.parametrize("size", [(36, 32), (32, 30), (4, 8)])
def test_sizes_that_are_not_multiples_of_8_are_refused_with_the_rule(size):
    net = small_fanet()
    with pytest.raises(ValueError, match=rf"multiples of 8.*H={size[0]}, W={size[1]}"):
        net(torch.randn(1, 3, *size))


def test_constructor_validates_its_settings():
    with pytest.raises(ValueError, match="4 stage widths"):
        FANet(features=(8, 16, 32))
    with pytest.raises(ValueError, match="3 decoder stages"):
        FANet(features=SMALL, strip_pool_sizes=((3, 6),))


def test_parameter_count_matches_the_paper_teacher():
    with torch.device("meta"):
        net = FANet(in_channels=1, out_channels=2)
    params = count_parameters(net)
    assert abs(params - 38.25e6) / 38.25e6 < 0.10
    assert params == 38_278_210  # regression guard for the default architecture


def test_selective_kernel_conv_parameter_count_by_hand():
    # 5x5 and 3x3 branches (no bias) + BN, squeeze 8 -> 4 (+bias), excite 4 -> 2*8 (+bias)
    expected = (8 * 8 * 25 + 16) + (8 * 8 * 9 + 16) + (8 * 4 + 4) + (4 * 16 + 16)
    assert count_parameters(SelectiveKernelConv(8)) == expected


def test_selective_kernel_conv_weights_are_a_convex_combination_of_the_branches():
    torch.manual_seed(0)
    sk = SelectiveKernelConv(6, kernel_sizes=(3, 3)).eval()
    sk.branches[1].load_state_dict(sk.branches[0].state_dict())  # two identical branches
    x = torch.randn(2, 6, 9, 7)
    with torch.no_grad():
        # softmax weights over branches sum to 1, so two equal branches give that branch back
        torch.testing.assert_close(sk(x), sk.branches[0](x))


def test_sk_residual_block_is_the_shortcut_when_the_body_ends_in_zero():
    torch.manual_seed(0)
    block = SKResidualBlock(4, 4).eval()
    last_bn = block.body[2].adn.N
    torch.nn.init.zeros_(last_bn.weight)
    torch.nn.init.zeros_(last_bn.bias)
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), torch.relu(x))


def test_strip_pooling_links_pixels_along_rows_and_columns_only():
    torch.manual_seed(0)
    strip = StripPooling(4).eval()
    x = torch.randn(1, 4, 24, 24)
    shifted = x.clone()
    shifted[..., 0, 0] += 10.0
    with torch.no_grad():
        change = (strip(shifted) - strip(x)).abs().sum(dim=1)[0]
    assert change[0, 23] > 1e-4  # same row, far away: the H x 1 strip
    assert change[23, 0] > 1e-4  # same column, far away: the 1 x W strip
    assert change[23, 23] == 0  # neither: beyond every 3x3 conv and square-pool cell
    assert strip(torch.randn(2, 4, 7, 10)).shape == (2, 4, 7, 10)


def test_eval_mode_is_deterministic_and_train_mode_uses_dropout():
    net = small_fanet().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(x), rtol=0, atol=0)
        net.head[0].train()  # only the dropout in train mode: BatchNorm statistics stay fixed
        assert not torch.equal(net(x), net(x))


@pytest.mark.filterwarnings("ignore:.*torch.jit")  # deprecated in recent PyTorch, still used by MONAI
def test_scripted_and_traced_networks_match_eager_on_another_size():
    net = small_fanet().eval()
    x = torch.randn(2, 3, 48, 40)
    scripted = torch.jit.script(net)
    traced = torch.jit.trace(net, torch.randn(1, 3, 32, 32))
    with torch.no_grad():
        expected = net(x)
        torch.testing.assert_close(scripted(x), expected)
        torch.testing.assert_close(traced(x), expected)
    with pytest.raises(torch.jit.Error, match="multiples of 8"):
        scripted(torch.randn(1, 3, 36, 32))
