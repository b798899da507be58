"""One candidate of the deployment and slide-scale benchmarks, run in a fresh process of its own (its peak RSS
is its own); prints one JSON line. Imports nothing of the ``benchmarks`` package, so that it also runs beside
an older ``monai_coco`` taken from git (the 0.1.0 release, the code before the slide work): the benchmark
copies this file next to that package and runs the copy, and Python puts a script's folder first on its
path, so ``monai_coco`` is that one's.

    python scripts/benchmarks/candidates.py deployment torch --slide S --workdir W --threads 1
    python scripts/benchmarks/candidates.py slide_scale exact_20x --slide S --workdir W

``W`` holds the trained student (``student.pt``; for ``onnxruntime`` also ``student.onnx``), written by
``benchmarks.deployment.train_student`` and ``export_student``; masks and outputs go there too.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

RELEASE_0_1_0 = "release_0.1.0"  # the deployment candidate of the 0.1.0 release's code
DEPLOYMENT = ("monai", RELEASE_0_1_0, "torch", "torchscript", "onnxruntime")
SLIDE_SCALE = ("before", "exact_20x", "exact_40x")
ROI, OVERLAP = 256, 0.25  # the deployment's windows
SCALE_MPP = 2.0  # the slide-scale benchmark's scale
ONNX_FILE = "student.onnx"
STUDENT_FILE = "student.pt"


def student(workdir: Path):
    """The Mobile U-Net student (the paper's, width 1.0) with the weights saved in ``workdir``: this
    process's ``monai_coco``'s network (the 0.1.0 release's for its candidate)."""
    import torch

    from monai_coco.networks import MobileUNet

    network = MobileUNet(3, 2)
    network.load_state_dict(torch.load(workdir / STUDENT_FILE, weights_only=True))
    return network.eval()


def done(start: float) -> tuple[float, float]:
    """Seconds since ``start`` and this process's peak RSS so far (MiB): Linux's ``VmHWM``, which starts
    afresh with the candidate's own program. (``ru_maxrss`` keeps the high-water mark of the process that
    forked it across ``exec``: a candidate started by a large benchmark process would report that one's.)"""
    seconds = time.perf_counter() - start
    try:
        status = Path("/proc/self/status").read_text()
        return seconds, int(status.split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError, ValueError):  # not Linux
        return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_deployment(name: str, slide: Path, out: Path, threads: int) -> dict:
    """Run one deployment candidate on ``slide`` (level 0) in this process; its mask goes to
    ``out/<slide stem>_<name>.npy``. Time and peak RSS are taken when the candidate's job is done, before the
    mask file is read back to compare. This package's candidates also give the tissue fraction of the level
    that their tissue mask found."""
    import torch

    torch.set_num_threads(threads)
    network = student(out)
    start = time.perf_counter()
    if name == RELEASE_0_1_0:  # the 0.1.0 release's whole-slide inference (monai_coco.data then)
        import tifffile

        from monai_coco.data import SlideInferenceConfig as ReleasedConfig
        from monai_coco.data import infer_file as released_infer_file

        config = ReleasedConfig(roi_size=ROI, overlap=OVERLAP, device="cpu")
        result = released_infer_file(network, slide, out / name, config)
        seconds, peak = done(start)
        mask = tifffile.imread(result.mask, key=0)
        run, grid = result.windows_run, result.windows_run + result.windows_skipped  # margins counted again
    elif name == "monai":
        from monai.data import WSIReader
        from monai.inferers import SlidingWindowInferer

        reader = WSIReader(backend="tifffile", channel_dim=0)
        wsi = reader.read(str(slide))
        image, _ = reader.get_data(wsi, level=0)
        inferer = SlidingWindowInferer(ROI, overlap=OVERLAP)
        with torch.inference_mode():  # blends class probabilities, as this package does (not logits)
            image = torch.from_numpy(np.asarray(image, np.float32) / 255)[None]
            probabilities = inferer(image, lambda x: torch.softmax(network(x), dim=1))
        mask = probabilities[0].argmax(0).numpy().astype(np.uint8)
        seconds, peak = done(start)
        from monai_coco.inference.window_grid import WindowGrid

        windows = len(WindowGrid(mask.shape, (ROI, ROI), OVERLAP, "constant"))
        run, grid = windows, windows
    else:
        import tifffile

        from monai_coco.inference import SlideInferenceConfig, infer_file

        config = SlideInferenceConfig(
            roi_size=ROI,
            overlap=OVERLAP,
            runtime=name,
            num_threads=threads,
            device="cpu",
            onnx_model=out / ONNX_FILE if name == "onnxruntime" else None,
        )
        result = infer_file(network, slide, out / name, config)
        seconds, peak = done(start)
        mask = tifffile.imread(result.mask, key=0)
        run, grid = result.windows_run, result.windows_run + result.windows_skipped
        tissue = result.tissue_pixels / mask.size
    np.save(out / f"{slide.stem}_{name}.npy", mask)
    return {
        "candidate": name,
        "seconds": seconds,
        "mpix_per_s": mask.size / seconds / 1e6,
        "windows_run": run,
        "windows_in_grid": grid,
        "peak_rss_mib": peak,
        **({"tissue_fraction": tissue} if name in ("torch", "torchscript", "onnxruntime") else {}),
    }


def run_slide_scale(name: str, slide: Path, out: Path) -> dict:
    """One slide-scale candidate in this process: seconds, peak RSS (MiB, ``VmHWM``), windows run; its mask
    saved as ``out/<name>.npy``."""
    import tifffile
    import torch

    torch.set_num_threads(1)
    network = student(out)
    start = time.perf_counter()
    from monai_coco.inference import SlideInferenceConfig, infer_file

    settings = {"level": 2} if name == "before" else {"mpp": SCALE_MPP}  # before: the level at 2 µm/px, named
    config = SlideInferenceConfig(roi_size=ROI, runtime="torch", device="cpu", num_threads=1, **settings)
    result = infer_file(network, slide, out / name, config)
    seconds, peak = done(start)
    mask = tifffile.imread(result.mask, key=0)
    np.save(out / f"{name}.npy", mask)
    return {"candidate": name, "seconds": seconds, "peak_rss_mib": peak, "windows_run": result.windows_run,
            "mpix": mask.size / 1e6, "level": result.level}  # fmt: skip


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("benchmark", choices=("deployment", "slide_scale"))
    parser.add_argument("candidate", choices=DEPLOYMENT + SLIDE_SCALE)
    parser.add_argument("--slide", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.candidate not in (DEPLOYMENT if args.benchmark == "deployment" else SLIDE_SCALE):
        parser.error(f"{args.candidate} is no candidate of the {args.benchmark} benchmark")
    if args.benchmark == "deployment":
        result = run_deployment(args.candidate, args.slide, args.workdir, args.threads)
    else:
        result = run_slide_scale(args.candidate, args.slide, args.workdir)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
