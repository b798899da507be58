"""Each runtime computes the eager student's logits (within 1e-4) and the same whole-image mask."""

import numpy as np
import pytest
import torch

from monai_coco.inference import SlideInferenceConfig, make_segmenter, segment_image
from monai_coco.inference.runtimes import RUNTIMES, OnnxRuntime, build_runtime, installed_runtimes
from monai_coco.networks import MobileUNet


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    net = MobileUNet(3, 2, width_mult=0.25).eval()
    for module in net.modules():  # trained-looking BatchNorm statistics, so that folding them matters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():  # centre the class-1 logit so that both classes occur
        logits = net(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2)))
        net.head.bias[1] -= (logits[:, 1] - logits[:, 0]).median()
    return net


def test_the_onnx_runtime_is_installed_for_these_tests():
    assert installed_runtimes() == ("torch", "torchscript", "onnxruntime")


@pytest.mark.parametrize("name", ["torchscript", "onnxruntime"])
def test_compiled_runtimes_give_the_eager_logits(student, name):
    example = torch.rand(2, 3, 64, 64)
    runtime = build_runtime(student, name, example, torch.device("cpu"), num_threads=1)
    assert runtime.name == name
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))  # another batch size
    with torch.inference_mode():
        expected = student(x)
    got = runtime(x)
    assert got.shape == (3, 2, 64, 64)
    assert (got - expected).abs().max() < 1e-4
    assert (got - expected).abs().max() < 1e-3 * expected.abs().max()


def test_auto_takes_onnxruntime_on_cpu_and_eager_torch_elsewhere(student):
    runtime = build_runtime(student, "auto", torch.rand(2, 3, 64, 64), torch.device("cpu"))
    assert isinstance(runtime, OnnxRuntime)


def test_auto_falls_back_to_eager_torch_when_a_compiled_runtime_differs(caplog):
    class Stateful(torch.nn.Module):
        """Differs between calls: traced or exported, it cannot reproduce the eager logits."""

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 1)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return self.conv(x) + self.calls

    runtime = build_runtime(Stateful(), "auto", torch.rand(1, 3, 32, 32), torch.device("cpu"))
    assert runtime.name == "torch" and "using torch" in caplog.text


def test_whole_image_masks_agree_across_runtimes(student):
    image = np.random.default_rng(0).integers(0, 256, (3, 96, 160), dtype=np.uint8)
    masks = {
        name: segment_image(student, image, SlideInferenceConfig(roi_size=64, chunk_size=64, runtime=name))
        for name in ("torch", "torchscript", "onnxruntime")
    }
    assert 0.05 < masks["torch"].mean() < 0.95
    for name in ("torchscript", "onnxruntime"):
        assert (masks[name] == masks["torch"]).mean() >= 0.999


def test_bad_runtime_settings_are_named():
    with pytest.raises(ValueError, match="SlideInferenceConfig.runtime"):
        SlideInferenceConfig(runtime="tensorrt")
    with pytest.raises(ValueError, match="SlideInferenceConfig.num_threads"):
        SlideInferenceConfig(num_threads=0)
    with pytest.raises(ValueError, match=r"runtime must be one of"):
        build_runtime(torch.nn.Conv2d(3, 2, 1), "tvm", torch.rand(1, 3, 8, 8), torch.device("cpu"))
    assert RUNTIMES[0] == "auto"
    segmenter = make_segmenter(torch.nn.Conv2d(3, 2, 1), SlideInferenceConfig(roi_size=32, runtime="torch"))
    assert segmenter.runtime.name == "torch"


def test_a_network_the_exporter_cannot_take_runs_eagerly_under_auto_and_is_one_line_when_asked_for(caplog):
    """A FANet at 64² windows pools to a size ONNX cannot express (adaptive pooling to a non-factor size):
    ``auto`` falls back to eager torch with a warning; ``onnxruntime`` asked for is a ValueError naming it."""
    from monai_coco.networks import FANet

    torch.manual_seed(0)
    network = FANet(3, 2, features=(8, 16, 32, 64)).eval()
    example = torch.rand(1, 3, 64, 64)
    with caplog.at_level("WARNING"):
        runtime = build_runtime(network, "auto", example, torch.device("cpu"))
    assert runtime.name == "torch" and "inference runtime 'onnxruntime' cannot take FANet" in caplog.text
    expected = r"inference runtime 'onnxruntime' cannot take FANet at windows of \(64, 64\)"
    with pytest.raises(ValueError, match=expected):
        build_runtime(network, "onnxruntime", example, torch.device("cpu"))


def test_an_onnx_file_with_a_fixed_batch_gets_the_windows_in_groups_of_it(student, tmp_path):
    """A graph exported at batch 2 (no dynamic axis) runs 5 windows as 2 + 2 + 1 (padded): the logits
    equal eager torch's, and a file of other weights, a file that is no ONNX model and a runtime other
    than ONNX Runtime are each refused in one line naming the setting."""
    from monai.networks.utils import convert_to_onnx

    def export(network, path):
        convert_to_onnx(network, (torch.rand(2, 3, 64, 64),), filename=str(path), dynamo=False)
        return path

    model = export(student, tmp_path / "student.onnx")
    x = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    runtime = build_runtime(student, "auto", x[:2], torch.device("cpu"), num_threads=1, onnx_model=model)
    assert isinstance(runtime, OnnxRuntime) and runtime.batch == 2
    with torch.no_grad():
        assert (runtime(x) - student(x)).abs().max() < 1e-4

    torch.manual_seed(5)
    other = export(MobileUNet(3, 2, width_mult=0.25).eval(), tmp_path / "other.onnx")
    with pytest.raises(ValueError, match=r"onnx_model .*other.onnx is not this checkpoint's network"):
        build_runtime(student, "onnxruntime", x[:2], torch.device("cpu"), onnx_model=other)
    junk = tmp_path / "junk.onnx"
    for content in (b"not a model", b""):
        junk.write_bytes(content)
        with pytest.raises(ValueError, match=r"junk.onnx is not an ONNX model ONNX Runtime can load"):
            build_runtime(student, "onnxruntime", x[:2], torch.device("cpu"), onnx_model=junk)
    other_size = (torch.rand(2, 3, 32, 32),)  # exported at 32² windows, run at 64²
    convert_to_onnx(student, other_size, filename=str(tmp_path / "w32.onnx"), dynamo=False)
    with pytest.raises(ValueError, match=r"takes windows of \(3, 32, 32\), not the configured \(3, 64, 64\)"):
        build_runtime(student, "onnxruntime", x[:2], torch.device("cpu"), onnx_model=tmp_path / "w32.onnx")
    with pytest.raises(ValueError, match="runtime must be 'auto' or 'onnxruntime', got 'torchscript'"):
        SlideInferenceConfig(runtime="torchscript", onnx_model=model)
    expected = r"SlideInferenceConfig.onnx_model=.*missing.onnx'\) is not valid; expected None or an existing"
    with pytest.raises(ValueError, match=expected):
        SlideInferenceConfig(onnx_model=tmp_path / "missing.onnx")
