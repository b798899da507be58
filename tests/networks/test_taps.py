import gc
import logging
import weakref

import pytest
import torch
from monai.networks.nets import BasicUNet, FlexibleUNet, SegResNet, UNet
from torch import nn

from monai_coco.networks import FANet, FeatureTaps, MobileUNet, find_taps, network_taps


def tiny_fanet() -> FANet:
    return FANet(3, 2, features=(4, 8, 16, 32)).eval()


@pytest.mark.parametrize(
    ("make", "layer", "shape"),
    [
        (tiny_fanet, "encoder.2", (2, 16, 8, 8)),
        (lambda: MobileUNet(3, 2, width_mult=0.25), "decoder.2", (2, 8, 8, 8)),
        (lambda: UNet(2, 3, 2, (4, 8, 16), (2, 2), num_res_units=0), "model.1.submodule.0", (2, 8, 8, 8)),
        (lambda: BasicUNet(2, 3, 2, features=(4, 4, 8, 8, 16, 4)), "down_2", (2, 8, 8, 8)),
        (lambda: SegResNet(2, 8, in_channels=3, out_channels=2), "down_layers.1", (2, 16, 16, 16)),
        (lambda: FlexibleUNet(3, 2, "resnet10", spatial_dims=2), "encoder.layer1", (2, 64, 8, 8)),
    ],
    ids=["FANet", "MobileUNet", "UNet", "BasicUNet", "SegResNet", "FlexibleUNet"],
)
def test_taps_return_the_unchanged_output_and_the_layer_output(make, layer, shape):
    torch.manual_seed(0)
    net = make().eval()
    x = torch.randn(2, 3, 32, 32)
    seen = []
    own_hook = net.get_submodule(layer).register_forward_hook(lambda m, i, o: seen.append(o))  # reference
    with torch.no_grad(), FeatureTaps(net, [layer]) as taps:
        output, features = taps(x)
        expected = net(x)
    own_hook.remove()
    torch.testing.assert_close(output, expected)
    assert list(features) == [layer]
    assert features[layer].shape == shape
    torch.testing.assert_close(features[layer], seen[0])


def test_features_come_back_in_the_order_of_layers():
    net = tiny_fanet()
    layers = ["decoder.0.up", "encoder.0", "encoder.2"]
    with FeatureTaps(net, layers) as taps:
        _, features = taps(torch.randn(1, 3, 32, 32))
    assert list(features) == layers
    assert taps.layers == tuple(layers)


def test_features_carry_gradients_to_exactly_the_layers_before_them():
    net = MobileUNet(3, 2, width_mult=0.25).train()
    with FeatureTaps(net, ["features.3"]) as taps:
        _, features = taps(torch.randn(2, 3, 64, 64))
    features["features.3"].square().mean().backward()
    for name, p in net.named_parameters():
        before_tap = name.startswith(("features.0.", "features.1.", "features.2.", "features.3."))
        assert (p.grad is not None) == before_tap, name


def test_an_unknown_layer_name_lists_the_closest_valid_names():
    net = tiny_fanet()
    with pytest.raises(ValueError, match=r"FANet has no submodule 'decoder\.0\.upp'.*'decoder\.0\.up'"):
        FeatureTaps(net, ["encoder.2", "decoder.0.upp"])
    with pytest.raises(ValueError, match=r"'features\.3'"):
        FeatureTaps(MobileUNet(width_mult=0.25), ["feature.3"])
    with pytest.raises(ValueError, match=r"top-level submodules: \['encoder', 'pool', 'decoder', 'head'\]"):
        FeatureTaps(net, ["zzzzzz"])
    assert all(not m._forward_hooks for m in net.modules())  # a failed construction leaves no hook behind


@pytest.mark.parametrize(
    ("layers", "message"), [([], "at least one"), (["head", "head"], "repeat"), ("head", "string")]
)
def test_bad_layer_lists_are_refused(layers, message):
    with pytest.raises(ValueError, match=message):
        FeatureTaps(tiny_fanet(), layers)


def test_a_layer_must_run_exactly_once_per_forward():
    net = tiny_fanet()
    with FeatureTaps(net, ["pool"]) as taps, pytest.raises(ValueError, match="'pool' of FANet ran 3 times"):
        taps(torch.randn(1, 3, 32, 32))

    class WithUnusedLayer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Conv2d(1, 1, 1)
            self.unused = nn.Conv2d(1, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    with FeatureTaps(WithUnusedLayer(), ["unused"]) as taps, pytest.raises(ValueError, match="ran 0 times"):
        taps(torch.randn(1, 1, 4, 4))


def test_hooks_are_removed_on_close_and_on_leaving_the_with_block():
    net = tiny_fanet()
    tapped = [net.get_submodule(name) for name in FANet.default_taps]
    taps = FeatureTaps(net, FANet.default_taps)
    assert all(len(m._forward_hooks) == 1 for m in tapped)
    taps.close()
    taps.close()  # idempotent
    assert all(len(m._forward_hooks) == 0 for m in tapped)
    with pytest.raises(RuntimeError, match="closed"):
        taps(torch.randn(1, 3, 32, 32))

    with pytest.raises(KeyError), FeatureTaps(net, FANet.default_taps):
        assert all(len(m._forward_hooks) == 1 for m in tapped)
        raise KeyError("an error inside the block")
    assert all(len(m._forward_hooks) == 0 for m in tapped)


def test_no_feature_is_kept_between_calls():
    net = tiny_fanet()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad(), FeatureTaps(net, ["encoder.2"]) as taps:  # no autograd graph to keep tensors alive
        _, features = taps(x)
        returned = weakref.ref(features["encoder.2"])
        del features
        # a plain forward while the taps are open records nothing either
        plain = []
        layer = net.get_submodule("encoder.2")
        spy = layer.register_forward_hook(lambda m, i, o: plain.append(weakref.ref(o)))
        net(x)
        spy.remove()
        gc.collect()
        assert returned() is None
        assert plain[0]() is None


# ---------------------------------------------------------------- taps found by a probe forward pass
@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (tiny_fanet, list(FANet.default_taps)),  # FANet's pair, found without reading default_taps
        # the deep tap is the decoder stage after its skip fusion, never the up-sampling before it
        (lambda: BasicUNet(2, 3, 2, features=(4, 4, 8, 8, 16, 4)), ["down_2", "upcat_3"]),
        (lambda: BasicUNet(2, 3, 2, features=(4, 4, 8, 16, 16, 4)), ["down_2", "upcat_3"]),
        (lambda: SegResNet(2, 8, in_channels=3, out_channels=2), ["down_layers.2", "up_layers.0"]),
        (lambda: FlexibleUNet(3, 2, "resnet10", spatial_dims=2), ["encoder.layer1", "decoder.blocks.2"]),
        # a strided block (efficientnet's) holds 1/4-resolution layers but is not itself one: its
        # predecessor is the encoder tap; squeeze-excitation (1×1) and padding layers are passed over.
        # No decoder layer has its 24 channels (nor has the up-sampling): the fused stage
        (lambda: FlexibleUNet(3, 2, "efficientnet-b0", spatial_dims=2),
         ["encoder._blocks.1", "decoder.blocks.2"]),
    ],
    ids=["FANet", "BasicUNet", "BasicUNet-wide", "SegResNet", "FlexibleUNet-resnet", "FlexibleUNet-effnet"],
)  # fmt: skip
def test_find_taps_picks_the_last_encoder_layer_and_the_fused_decoder_stage_at_a_quarter(make, expected):
    torch.manual_seed(0)
    net = make().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    layers = find_taps(net, in_channels=3, size=64)
    assert layers == expected
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # untouched
    with torch.no_grad(), FeatureTaps(net.eval(), layers) as taps:
        _, features = taps(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape[-2:]) for f in features.values()] == [(16, 16), (16, 16)]


class _OnlyTheUpSamplerMatches(nn.Module):
    """1/2, 1/4, 1/8 encoder; at 1/4 the up-sampling has the encoder's 8 channels, the fused stage 4."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1, self.enc2 = nn.Conv2d(3, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, 2, 1)
        self.bottleneck = nn.Conv2d(8, 16, 3, 2, 1)
        self.up = nn.ConvTranspose2d(16, 8, 2, 2)
        self.fuse = nn.Conv2d(16, 4, 3, 1, 1)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.enc2(self.enc1(x))
        fused = self.fuse(torch.cat([self.up(self.bottleneck(skip)), skip], dim=1))
        return self.head(nn.functional.interpolate(fused, scale_factor=4.0))


def test_find_taps_takes_an_up_sampler_only_when_nothing_else_has_the_channels_and_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger="monai_coco.networks.taps"):
        assert find_taps(_OnlyTheUpSamplerMatches(), 3, size=32) == ["enc2", "up"]
    assert "the deep tap up is an up-sampler's output" in caplog.text


def test_find_taps_takes_the_level_closest_to_a_quarter_when_there_is_no_quarter():
    net = UNet(2, 3, 2, channels=(4, 8), strides=(2,), num_res_units=0)  # one down-sampling: 1/2 only
    with pytest.raises(ValueError, match="name its taps"):
        find_taps(net, 3, size=32)
    net = BasicUNet(2, 3, 2, features=(4, 4, 8, 8, 16, 4))
    assert find_taps(net, 3, size=32) == ["down_2", "upcat_3"]  # 8x8: still 1/4 of 32


def test_network_taps_logs_the_layers_and_their_source(caplog):
    net = BasicUNet(2, 3, 2, features=(4, 4, 8, 8, 16, 4))
    with caplog.at_level(logging.INFO, logger="monai_coco.networks.taps"):
        assert network_taps(net, 3, setting="student_taps") == ["down_2", "upcat_3"]
        assert network_taps(net, 3, ["down_1", "upcat_2"], setting="teacher_taps") == ["down_1", "upcat_2"]
        assert network_taps(tiny_fanet(), 3) == list(FANet.default_taps)
    first, second, third = caplog.messages
    assert "student_taps of BasicUNet (found by a probe forward pass)" in first
    assert "down_2 (C=8, 16x16" in first and "upcat_3 (C=8, 16x16" in first
    assert "--student_taps \"['down_2','upcat_3']\"" in first
    assert "teacher_taps of BasicUNet (given)" in second and "down_1 (C=4, 32x32" in second
    assert "default_taps" in third
    with pytest.raises(ValueError, match="closest valid names"):
        network_taps(net, 3, ["down_9"])
