import pytest
import torch
import torch.nn.functional as F

from monai_coco.networks import FeatureTaps, MobileUNet
from monai_coco.networks.mobile_unet import InvertedResidual
from monai_coco.networks.summary import count_parameters


def make(width_mult: float = 1.0, in_channels: int = 3, out_channels: int = 2) -> MobileUNet:
    torch.manual_seed(0)
    return MobileUNet(in_channels, out_channels, width_mult=width_mult)


@pytest.mark.parametrize(
    ("width_mult", "size", "tap_channels"), [(1.0, (32, 32), 24), (1.0, (64, 96), 24), (0.5, (96, 64), 16)]
)
def test_logits_and_taps_have_the_expected_shapes(width_mult, size, tap_channels):
    net = make(width_mult, in_channels=1, out_channels=3).eval()
    x = torch.randn(2, 1, *size)
    with FeatureTaps(net, MobileUNet.default_taps) as taps:
        logits, features = taps(x)
    assert logits.shape == (2, 3, *size)
    for name in MobileUNet.default_taps:
        assert features[name].shape == (2, tap_channels, size[0] // 4, size[1] // 4), name


def test_default_taps_are_features_0_to_4_and_the_third_decoder_stage():
    net = make().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), FeatureTaps(net, MobileUNet.default_taps) as taps:
        _, features = taps(x)
        # independent recomputation: every encoder output, then the first three decoder stages
        outputs, h = [], x
        for layer in net.features:
            h = layer(h)
            outputs.append(h)
        second = net.decoder[1](net.decoder[0](outputs[18], outputs[13]), outputs[6])
        third = net.decoder[2](second, outputs[3])
    torch.testing.assert_close(features["features.3"], outputs[3])
    torch.testing.assert_close(features["decoder.2"], third)


def test_encoder_is_torchvision_mobilenet_v2_features_by_parameter_count():
    # torchvision's mobilenet_v2 has 3,504,872 parameters, 1,281,000 of them in the 1280 -> 1000 classifier
    assert count_parameters(make().features) == 3_504_872 - 1_281_000


def test_parameter_count_matches_the_paper_student():
    with torch.device("meta"):
        net = MobileUNet(in_channels=1, out_channels=2)
    params = count_parameters(net)
    assert abs(params - 4.64e6) / 4.64e6 < 0.10
    assert params == 4_682_298  # regression guard for the default architecture


def test_width_mult_shrinks_every_layer():
    assert count_parameters(make(0.5)) < 0.5 * count_parameters(make(1.0))
    with pytest.raises(ValueError, match="width_mult"):
        MobileUNet(width_mult=0.0)


@pytest.mark.parametrize("size", [(48, 32), (32, 40), (16, 16)])
def test_sizes_that_are_not_multiples_of_32_are_refused_with_the_rule(size):
    with pytest.raises(ValueError, match=rf"multiples of 32.*H={size[0]}, W={size[1]}"):
        make(0.25)(torch.randn(1, 3, *size))


def test_gradients_reach_every_parameter():
    # 64x64, not 32x32: at a 1x1 bottleneck a BN bias feeding a (depthwise-centre, then 1x1) conv and a
    # training-mode BN is a per-channel constant that the next BN removes, so its gradient is exactly 0
    net = make().train()
    x = torch.randn(2, 3, 64, 64)
    labels = torch.randint(0, 2, (2, 64, 64))
    F.cross_entropy(net(x), labels).backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_inverted_residual_shortcut_only_when_shape_is_kept():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    for in_channels, out_channels, stride, expected in [(8, 8, 1, x), (8, 16, 1, 0.0), (8, 8, 2, 0.0)]:
        block = InvertedResidual(in_channels, out_channels, stride, expand_ratio=6).eval()
        projection_bn = block.conv[-1].adn.N
        torch.nn.init.zeros_(projection_bn.weight)  # the block body now outputs zeros
        with torch.no_grad():
            out = block(x)
        torch.testing.assert_close(out, torch.zeros_like(out) + expected)
    assert len(InvertedResidual(8, 8, 1, expand_ratio=1).conv) == 2  # no expansion conv at t = 1


def test_output_depends_on_each_skip_connection():
    """Each decoder stage receives the encoder's last feature map at its resolution, and zeroing that
    skip (only on the skip path, the encoder unchanged) changes the logits. In train mode: batch-norm on
    batch statistics keeps every stage's signal at unit scale (at initialisation in eval mode the deep
    stages' contribution has shrunk below float32 resolution)."""
    net = make(width_mult=0.25).train()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    encoder: dict[int, torch.Tensor] = {}
    for index in net.skip_indices:
        net.features[index].register_forward_hook(lambda m, i, y, index=index: encoder.__setitem__(index, y))
    received: list[torch.Tensor] = []
    hooks = [stage.register_forward_pre_hook(lambda m, a: received.append(a[1])) for stage in net.decoder]
    with torch.no_grad():
        reference = net(x)
    for hook in hooks:
        hook.remove()
    assert len(received) == len(net.decoder) == len(net.skip_indices) == 4
    for skip, index in zip(received, reversed(net.skip_indices)):
        assert skip is encoder[index]  # deepest skip first: 1/16, 1/8, 1/4, 1/2 of the input
    for stage in net.decoder:
        hook = stage.register_forward_pre_hook(lambda m, args: (args[0], torch.zeros_like(args[1])))
        with torch.no_grad():
            without_skip = net(x)
        hook.remove()
        assert (without_skip - reference).abs().max() > 1e-2 * reference.abs().max()


def test_eval_mode_is_deterministic():
    net = make().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(x), rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore:.*torch.jit")  # deprecated in recent PyTorch, still used by MONAI
def test_scripted_and_traced_networks_match_eager_on_another_size():
    net = make(0.5).eval()
    x = torch.randn(2, 3, 64, 96)
    scripted = torch.jit.script(net)
    traced = torch.jit.trace(net, torch.randn(1, 3, 32, 32))
    with torch.no_grad():
        expected = net(x)
        torch.testing.assert_close(scripted(x), expected)
        torch.testing.assert_close(traced(x), expected)
    with pytest.raises(torch.jit.Error, match="multiples of 32"):
        scripted(torch.randn(1, 3, 48, 32))
