"""Each window of the level's grid runs once, and the blend equals one SlidingWindowInferer pass."""

import numpy as np
import pytest
import torch
from monai.inferers import SlidingWindowInferer

from monai_coco.data.tissue import TissueMap
from monai_coco.inference.window_grid import GridSegmenter, WindowGrid


class CountingNet(torch.nn.Module):
    """A small random convolutional net (receptive field 9 px) that counts the windows it sees."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 5, padding=2), torch.nn.Tanh(), torch.nn.Conv2d(4, 2, 5, padding=2)
        )
        self.windows = 0

    def forward(self, x):
        self.windows += x.shape[0]
        return self.body(x)


def _segmenter(net, chunk, mode="gaussian", min_tissue=0.0, overlap=0.25, roi=(32, 32), batch=3):
    return GridSegmenter(
        net, lambda r: r.float() / 255, roi, overlap, mode, batch, 2, chunk, min_tissue, torch.device("cpu")
    )


def _monai(net, image, mode="gaussian", overlap=0.25, roi=(32, 32), predictor=None):
    inferer = SlidingWindowInferer(
        roi, sw_batch_size=3, overlap=overlap, mode=mode, with_coord=predictor is not None
    )
    x = torch.from_numpy(image)[None].float() / 255
    with torch.inference_mode():
        probs = inferer(x, predictor or (lambda w: torch.softmax(net(w), 1)))
    return probs[0].argmax(0).numpy().astype(np.uint8)


def _monai_probability(net, image, mode):
    """MONAI's blended class-1 probability, as ``uint8`` (255 p)."""
    inferer = SlidingWindowInferer((32, 32), sw_batch_size=3, overlap=0.25, mode=mode)
    with torch.inference_mode():
        probs = inferer(torch.from_numpy(image)[None].float() / 255, lambda w: torch.softmax(net(w), 1))
    return (probs[0, 1] * 255).numpy()


@pytest.mark.parametrize("mode", ["gaussian", "constant"])
def test_chunked_pass_equals_one_monai_pass_and_runs_each_window_once(mode):
    image = np.random.default_rng(0).integers(0, 256, (3, 150, 230), dtype=np.uint8)
    net = CountingNet()
    expected = _monai(net, image, mode)
    reference = _monai_probability(net, image, mode)
    grid = WindowGrid(image.shape[1:], (32, 32), 0.25, mode)
    assert [len(s) for s in grid.starts] == [
        6,
        10,
    ]  # stride 24: ceil((150 - 32) / 24) + 1 rows, the last at 118
    assert grid.starts[0][-1] == 118 and grid.starts[1][-1] == 198
    assert 0.1 < expected.mean() < 0.9  # both classes, with many borders between them
    for chunk in (32, 60, 100, 1000):  # 1 window a side per chunk ... the whole level in one chunk
        net.windows = 0
        segmenter = _segmenter(net, chunk, mode)
        bands = list(segmenter.bands(lambda t, u, h, w: image[:, t : t + h, u : u + w], image.shape[1:]))
        labels = np.concatenate([b for _, b, _ in bands])
        probability = np.concatenate([p for _, _, p in bands])
        assert [t for t, _, _ in bands] == list(np.cumsum([0] + [b.shape[0] for _, b, _ in bands[:-1]]))
        assert net.windows == segmenter.windows_run == len(grid) == 60 and segmenter.windows_skipped == 0
        assert (labels == expected).all(), chunk
        assert np.abs(probability - reference).max() <= 0.5 + 1e-3, chunk  # rounded to the nearest 1/255


def test_level_smaller_than_a_window_is_padded_like_monai():
    image = np.random.default_rng(1).integers(0, 256, (3, 20, 90), dtype=np.uint8)
    net = CountingNet()
    grid = WindowGrid(image.shape[1:], (32, 32), 0.25, "constant")
    assert grid.pad == ((6, 6), (0, 0)) and grid.padded_shape == (32, 90)
    labels = _segmenter(net, 40, "constant").segment(image)
    assert labels.shape == (20, 90)
    assert (labels == _monai(net, image, "constant")).all()


def test_skipped_windows_blend_as_background_like_a_skipping_monai_predictor():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (3, 128, 160), dtype=np.uint8)
    tissue_mask = np.zeros((16, 20), bool)
    tissue_mask[4:10, 6:15] = True  # tissue in rows 32..80, columns 48..120
    tissue = TissueMap(tissue_mask, image.shape[1:])
    net = CountingNet()
    grid = WindowGrid(image.shape[1:], (32, 32), 0.25, "gaussian")

    def skipping(windows, coords):
        probs = torch.softmax(net(windows), 1)
        for i, (_, _, ys, xs) in enumerate(coords):
            if tissue.fraction(ys.start, xs.start, ys.stop, xs.stop) < 0.1:
                probs[i] = 0
                probs[i, 0] = 1
        return probs

    expected = _monai(net, image, predictor=skipping)
    segmenter = _segmenter(net, 50, min_tissue=0.1)
    net.windows = 0
    labels = np.concatenate(
        [b for _, b, _ in segmenter.bands(lambda t, u, h, w: image[:, t : t + h, u : u + w], (128, 160),
                                          tissue)]  # fmt: skip
    )
    assert (labels == expected).all()
    assert segmenter.windows_run == net.windows and 0 < segmenter.windows_run < len(grid)
    assert segmenter.windows_run + segmenter.windows_skipped == len(grid) == 35  # 5 x 7 windows
    assert labels[:16].max() == 0 and labels[40:70, 60:100].any()


def test_a_chunk_without_tissue_is_not_read():
    image = np.full((3, 96, 200), 240, np.uint8)
    mask = np.zeros((12, 25), bool)
    mask[:, :4] = True  # tissue only at the left edge
    reads = []

    def read(t, u, h, w):
        reads.append((u, w))
        return image[:, t : t + h, u : u + w]

    segmenter = _segmenter(CountingNet(), 48, min_tissue=0.05)
    list(segmenter.bands(read, image.shape[1:], TissueMap(mask, image.shape[1:])))
    assert reads and max(u + w for u, w in reads) <= 80  # columns >= 80 never read


def test_class_indices_are_torch_argmax_with_its_tie_rule():
    """``GridSegmenter._argmax`` (class by class, in column blocks) equals ``torch.argmax`` over the class
    axis, the first class winning ties, for 2 and 5 classes and a strided view of a band."""
    generator = torch.Generator().manual_seed(0)
    for classes in (2, 5):
        sums = torch.randint(0, 4, (classes, 70, 2100), generator=generator).float()  # many ties
        view = sums[:, 3:65, 5:2090]
        got = GridSegmenter._argmax(view, block=512)
        assert got.dtype == np.uint8 and np.array_equal(got, view.argmax(dim=0).numpy())


def test_one_window_per_call_on_cpu_by_default():
    from monai_coco.inference import SlideInferenceConfig, make_segmenter

    network = torch.nn.Conv2d(3, 2, 1)
    assert make_segmenter(network, SlideInferenceConfig(roi_size=32, runtime="torch")).batch == 1
    sized = SlideInferenceConfig(roi_size=32, runtime="torch", sw_batch_size=3)
    assert make_segmenter(network, sized).batch == 3
