"""Whole-slide deployment benchmark: the student in each runtime against a plain MONAI baseline, one slide.

Candidates, each run in a fresh process (so that its peak RSS is its own), interleaved round by round so
that a shared machine's load falls on all of them alike; speed is reported as ratios of median times:

* ``monai``: the plain MONAI way: ``WSIReader`` reads the whole level, one ``SlidingWindowInferer`` pass of
  the eager student over it (every window, no tissue skipping), blending the windows' softmax
  probabilities as this package does (blending logits instead changes 0.3 % of a trained student's
  pixels, where windows overlap);
* ``torch``, ``torchscript``, ``onnxruntime``: :func:`monai_coco.inference.infer_file` in that runtime
  (each window of the level's grid once, tissue skipping, mask pyramid, GeoJSON and summary written);
  ``onnxruntime`` loads the student's ONNX file exported once beforehand, as deployed (``onnx_model``; the
  export's seconds are reported on their own);
* ``v0.1.0``: the released 0.1.0 package's ``infer_file`` (eager student, chunks that re-run the windows
  of their margins), the "today" of issue 13, taken from the repository's git history
  (``git archive 841d065``) into the work folder; left out when no git history is at hand.

Each candidate calls the network with its own default number of windows per call: MONAI's
``SlidingWindowInferer`` 1, 0.1.0's ``infer_file`` 4, this package's 1 on CPU (``sw_batch_size=None``).
Every candidate process starts with the glibc malloc setting the docs give for deployment
(``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` at 1 GiB), the baselines included, so the ratios
compare code, not allocator settings. Each reports megapixels of the level per second, windows run
against windows in the grid, peak RSS, and the fraction of mask pixels equal to the eager ``torch``
candidate's.

Every candidate runs the same student, trained beforehand (:func:`train_student`) so that its masks
hold both classes: the mask agreement column compares real decisions, and the report gives the eager
mask's tumour fraction and its Dice against the slide's own tumour mask.

Two slides of the same side (:data:`SLIDES`): ``dense``, whose tissue section fills the slide (the worst
case for tissue skipping: most windows hold tissue), and ``sparse``, the same kind of section over 0.6 of
the slide's sides with glass around it, as in a scan of a smaller section. The plain MONAI baseline
runs every window of either; this package runs the windows that hold tissue, so its ratio depends on the
slide, and both are reported.

    python scripts/benchmark_deployment.py --side 4096 --rounds 2   # one candidate: --candidate NAME
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CANDIDATES = ("monai", "v0.1.0", "torch", "torchscript", "onnxruntime")
RELEASE = "841d065"  # the commit of monai_coco 0.1.0, issue 13's "today"
REPO = Path(__file__).resolve().parents[1]
MALLOC = {"MALLOC_MMAP_THRESHOLD_": "1073741824", "MALLOC_TRIM_THRESHOLD_": "1073741824"}  # docs/README.md
ROI, OVERLAP = 256, 0.25
ONNX_FILE = "student.onnx"
STUDENT_FILE = "student.pt"
SLIDES = (("dense", 1.0), ("sparse", 0.6))  # (name, section_fraction of write_synthetic_slide)


def _student(workdir: Path):
    """The Mobile U-Net student with the weights :func:`train_student` saved in ``workdir``."""
    import torch

    from monai_coco.networks import MobileUNet  # 0.1.0's for the v0.1.0 candidate (first on its PYTHONPATH)

    network = MobileUNet(3, 2)
    network.load_state_dict(torch.load(workdir / STUDENT_FILE, weights_only=True))
    return network.eval()


def train_student(workdir: Path, steps: int, side: int = 1024, batch: int = 4) -> dict:
    """Train the student ``steps`` Adam steps (lr 3e-3, MONAI's ``DiceCELoss``, seed 0) on random ``ROI``
    crops of a synthetic slide of another seed than the benchmark's, and save its weights in ``workdir``.

    A randomly initialised student labels every pixel background, so its masks agree in every runtime
    whatever the arithmetic: the agreement column only means something for a student whose masks hold
    both classes, with the margins that training gives. Returns the steps, the seconds and the last loss.
    """
    import tifffile
    import torch
    from monai.losses import DiceCELoss

    from monai_coco.data.synthetic import write_synthetic_slide
    from monai_coco.networks import MobileUNet

    start = time.perf_counter()
    slide, mask_path = write_synthetic_slide(workdir / "train_slide.tif", size=side, seed=1, tile=256)
    image = torch.from_numpy(tifffile.imread(slide, key=0)).permute(2, 0, 1).float() / 255
    label = torch.from_numpy(tifffile.imread(mask_path, key=0)).long()
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    network = MobileUNet(3, 2).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True)
    for _ in range(steps):
        corners = torch.randint(0, side - ROI + 1, (batch, 2), generator=generator).tolist()
        x = torch.stack([image[:, r : r + ROI, c : c + ROI] for r, c in corners])
        y = torch.stack([label[None, r : r + ROI, c : c + ROI] for r, c in corners])
        optimizer.zero_grad()
        loss = loss_function(network(x), y)
        loss.backward()
        optimizer.step()
    torch.save(network.state_dict(), workdir / STUDENT_FILE)
    return {"steps": steps, "seconds": time.perf_counter() - start, "last_loss": float(loss.detach())}


def run_candidate(name: str, slide: Path, out: Path, threads: int) -> dict:
    """Run one candidate on ``slide`` (level 0) in this process; its mask goes to
    ``out/<slide stem>_<name>.npy``. Time and peak RSS are taken when the candidate's job is done, before the
    mask file is read back to compare. This package's candidates also give the tissue fraction of the level
    that their tissue mask found."""
    import torch

    torch.set_num_threads(threads)
    network = _student(out)
    start = time.perf_counter()
    if name == "v0.1.0":
        from monai_coco.data import SlideInferenceConfig as ReleasedConfig
        from monai_coco.data import infer_file as released_infer_file

        config = ReleasedConfig(roi_size=ROI, overlap=OVERLAP, device="cpu")
        result = released_infer_file(network, slide, out / name, config)
        seconds, peak = _done(start)
        import tifffile

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
        seconds, peak = _done(start)
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
        seconds, peak = _done(start)
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


def _done(start: float) -> tuple[float, float]:
    """Seconds since ``start`` and this process's peak RSS so far (MiB): Linux's ``VmHWM``, which starts
    afresh with the candidate's own program. (``ru_maxrss`` keeps the high-water mark of the process that
    forked it across ``exec``: a candidate started by a large benchmark process would report that one's.)"""
    seconds = time.perf_counter() - start
    try:
        status = Path("/proc/self/status").read_text()
        return seconds, int(status.split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError, ValueError):  # not Linux
        return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def benchmark(side: int, rounds: int, threads: int, workdir: Path, train_steps: int = 150) -> dict:
    """Every candidate ``rounds`` times, interleaved, on each of the synthetic ``side x side`` slides of
    :data:`SLIDES`, with the student :func:`train_student` trains for ``train_steps`` steps."""
    from monai_coco.data.synthetic import write_synthetic_slide

    slides = {
        name: write_synthetic_slide(workdir / f"slide_{name}.tif", size=side, tile=256, section_fraction=part)
        for name, part in SLIDES
    }
    student = train_student(workdir, train_steps)
    export_s = export_student(workdir / ONNX_FILE)
    candidates = [name for name in CANDIDATES if name != "v0.1.0" or _extract_release(workdir / "v0.1.0")]
    runs: dict[tuple[str, str], list[dict]] = {(s, c): [] for s in slides for c in candidates}
    for _ in range(rounds):
        for slide, name in runs:
            command = [sys.executable, __file__, "--candidate", name, "--slide", str(slides[slide][0])]
            command += ["--workdir", str(workdir), "--threads", str(threads)]
            env = {**os.environ, **MALLOC}
            if name == "v0.1.0":
                env["PYTHONPATH"] = str(workdir / "v0.1.0")
            done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
            runs[slide, name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {
        "side": side,
        "rounds": rounds,
        "threads": threads,
        "slides": [
            _slide_rows(workdir, name, part, *slides[name], {c: runs[name, c] for c in candidates})
            for name, part in SLIDES
        ],
        "export_s": export_s,
        "student": student,
        "int8": int8_probe(workdir, slides["dense"][0]),
    }


def _slide_rows(workdir: Path, slide: str, part: float, path: Path, truth: Path, runs: dict) -> dict:
    """One slide's rows from its candidates' ``runs`` (median seconds, ratios, agreement with the eager
    ``torch`` mask), the eager mask's tumour fraction and Dice against the slide's tumour mask, and the
    level's tissue fraction."""
    import tifffile

    reference = np.load(workdir / f"{path.stem}_torch.npy")
    tumour = reference == 1
    truth_tumour = tifffile.imread(truth, key=0) == 1
    tumour_fraction = float(tumour.mean())  # of the eager mask: both classes, or agreement is moot
    if not 0 < tumour_fraction < 1:
        print(f"warning: the student's mask of the {slide} slide is one class: the agreement column "
              "compares nothing; train it longer (--train-steps)", file=sys.stderr)  # fmt: skip
    rows = []
    for name, results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        agree = float((np.load(workdir / f"{path.stem}_{name}.npy") == reference).mean())
        rows.append(
            {**results[-1], "seconds": seconds, "mpix_per_s": reference.size / seconds / 1e6, "agree": agree}
        )
    base = {r["candidate"]: r["seconds"] for r in rows}
    for r in rows:
        r["speed_vs_monai"] = base["monai"] / r["seconds"]
        r["speed_vs_eager"] = base["torch"] / r["seconds"]
        r["speed_vs_release"] = base["v0.1.0"] / r["seconds"] if "v0.1.0" in base else math.nan
    return {
        "name": slide,
        "section_fraction": part,
        "tissue_fraction": next(r["tissue_fraction"] for r in rows if r["candidate"] == "torch"),
        "tumour_fraction": tumour_fraction,
        "dice": float(2 * (tumour & truth_tumour).sum() / max(1, tumour.sum() + truth_tumour.sum())),
        "rows": rows,
    }


def export_student(path: Path) -> float:
    """The student's ONNX file (:func:`monai_coco.inference.runtimes.export_onnx`: MONAI's
    ``convert_to_onnx``, the function of ``python -m monai.bundle onnx_export``, dynamic batch axis); returns
    the seconds it took."""
    import torch

    from monai_coco.inference.runtimes import export_onnx

    start = time.perf_counter()
    example = torch.rand(2, 3, ROI, ROI, generator=torch.Generator().manual_seed(0))
    path.write_bytes(export_onnx(_student(path.parent), example))
    return time.perf_counter() - start


def int8_probe(workdir: Path, slide: Path, windows: int = 32, repeats: int = 20) -> dict:
    """What approximate arithmetic would buy: the exported student quantized to int8 by ONNX Runtime's
    ``quantize_static`` (QDQ, per-channel int8 weights, uint8 activations, MinMax calibration on ``windows``
    random windows of the training slide), against the float32 file, one thread: median milliseconds per
    window over ``repeats`` calls each (interleaved), and the fraction of pixels whose class agrees on
    ``windows`` random windows of the benchmark slide (the mean, and the worst window's).

    Not a runtime of this package: the masks must equal the checkpoint's on 99.9 % of pixels (issue 13)."""
    import onnxruntime
    import tifffile
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    generator = np.random.default_rng(0)

    def sample(path: Path) -> list[dict]:
        level = tifffile.imread(path, key=0)
        corners = generator.integers(0, np.array(level.shape[:2]) - ROI + 1, size=(windows, 2))
        crops = [level[r : r + ROI, c : c + ROI].transpose(2, 0, 1)[None] for r, c in corners]
        return [{"image": (crop / 255).astype(np.float32)} for crop in crops]

    class Calibration(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(sample(workdir / "train_slide.tif"))

        def get_next(self):
            return next(self.feeds, None)

    prepared, quantized = workdir / "student_prepared.onnx", workdir / "student_int8.onnx"
    quant_pre_process(str(workdir / ONNX_FILE), str(prepared))
    quantize_static(
        str(prepared),
        str(quantized),
        Calibration(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = {
        name: onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for name, path in (("float32", workdir / ONNX_FILE), ("int8", quantized))
    }
    feeds = sample(slide)
    classes = {name: [session.run(None, f)[0].argmax(1) for f in feeds] for name, session in sessions.items()}
    agree = [float((a == b).mean()) for a, b in zip(classes["float32"], classes["int8"])]
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(repeats):
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(None, feeds[0])
            times[name].append(time.perf_counter() - start)
    ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
    return {
        "float32_ms": ms["float32"],
        "int8_ms": ms["int8"],
        "agree_mean": float(np.mean(agree)),
        "agree_min": float(np.min(agree)),
        "windows": windows,
    }


def _extract_release(folder: Path) -> bool:
    """The 0.1.0 package (``RELEASE``) under ``folder``, from the repository's git history; False without
    one (e.g. a source archive)."""
    if (folder / "monai_coco").is_dir():
        return True
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", RELEASE, "monai_coco"], capture_output=True)
    if archive.returncode != 0:
        print(f"v0.1.0 left out: no git history of {RELEASE} at {REPO}", file=sys.stderr)
        return False
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return True


def table(slide: dict) -> str:
    """Markdown table of one slide's rows (an entry of :func:`benchmark`'s ``slides``)."""
    lines = [
        "| candidate | MP/s | × MONAI | × 0.1.0 | × eager | windows run / in grid | peak RSS (MiB) "
        "| mask = eager |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in slide["rows"]:
        windows = f"{r['windows_run']} / {r['windows_in_grid']}"
        lines.append(
            f"| {r['candidate']} | {r['mpix_per_s']:.3f} | {r['speed_vs_monai']:.2f} | "
            f"{r.get('speed_vs_release', math.nan):.2f} | {r['speed_vs_eager']:.2f} | {windows} | "
            f"{r['peak_rss_mib']:.0f} | {100 * r['agree']:.3f} % |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-steps", type=int, default=150)
    parser.add_argument("--candidate", choices=CANDIDATES, default=None, help="run one candidate (internal)")
    parser.add_argument("--slide", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    for name in ("side", "rounds", "threads", "train_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a whole number >= 1, got {getattr(args, name)}")
    if args.side < ROI:  # the int8 probe and the grid need at least one whole window
        parser.error(f"--side must be at least the window, {ROI}, got {args.side}")
    if args.candidate:
        folder = args.workdir or Path("/nonexistent")
        needed = [args.slide or folder / "--slide"] + [folder / f for f in (STUDENT_FILE, ONNX_FILE)]
        if not all(path.is_file() for path in needed):
            parser.error(
                f"--candidate needs --slide (a slide file) and a --workdir holding {STUDENT_FILE} and "
                f"{ONNX_FILE} (a full run writes them in its work folder)"
            )
        result = run_candidate(args.candidate, args.slide, args.workdir, args.threads)
        print(json.dumps(result))
        return result
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch)
        results = benchmark(args.side, args.rounds, args.threads, workdir, args.train_steps)
    for slide in results["slides"]:
        print(f"{slide['name']} slide, tissue {100 * slide['tissue_fraction']:.1f} % of the level")
        print(table(slide))
    return results


if __name__ == "__main__":
    main()
