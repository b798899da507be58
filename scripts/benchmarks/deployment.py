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
* ``release_0.1.0``: the 0.1.0 release's ``infer_file`` (eager student, chunks that re-run the windows of
  their margins), the deployment goals' baseline, from the repository's git history (``git archive 841d065``)
  into the work folder, and run there (:func:`extract_package`); left out when no git history is at hand.

Each candidate calls the network with its own default number of windows per call: MONAI's
``SlidingWindowInferer`` 1, 0.1.0's ``infer_file`` 4, this package's 1 on CPU (``sw_batch_size=None``).
Every candidate process starts with the glibc malloc setting the docs give for deployment
(``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` at 1 GiB), the baselines included, so the ratios
compare code, not allocator settings. Each reports megapixels of the level per second, windows run
against windows in the grid, peak RSS, and the fraction of mask pixels equal to the eager ``torch``
candidate's.

Every candidate runs the same student, trained beforehand by the bundle's ``train.yaml``
(:func:`train_student`) so that its masks hold both classes: the mask agreement column compares real
decisions, and the report gives the eager mask's tumour fraction and its Dice against the slide's own tumour
mask. Each candidate is :mod:`benchmarks.candidates` run as a script in a fresh process.

Two slides of the same side (:data:`SLIDES`): ``dense``, whose tissue section fills the slide (the worst
case for tissue skipping: most windows hold tissue), and ``sparse``, the same kind of section over 0.6 of
the slide's sides with glass around it, as in a scan of a smaller section. The plain MONAI baseline
runs every window of either; this package runs the windows that hold tissue, so its ratio depends on the
slide, and both are reported.

    cd scripts && python -m benchmarks.deployment --side 4096 --rounds 2   # one candidate: --candidate NAME
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import candidates
from benchmarks.bundle import CONFIGS, load_stage, run_stage, training_record
from benchmarks.candidates import ONNX_FILE, RELEASE_0_1_0, ROI, STUDENT_FILE

CANDIDATES = candidates.DEPLOYMENT
RELEASE = "841d065"  # the commit of the monai_coco 0.1.0 release, the deployment goals' baseline
REPO = Path(__file__).resolve().parents[2]
MALLOC = {"MALLOC_MMAP_THRESHOLD_": "1073741824", "MALLOC_TRIM_THRESHOLD_": "1073741824"}  # docs/README.md
SLIDES = (("dense", 1.0), ("sparse", 0.6))  # (name, section_fraction of write_synthetic_slide)
STUDENT_MPP = 0.5  # the slides' level 0, which the candidates read: the student's training tiles' scale
STUDENT_TILES, STUDENT_BATCH = 16, 4  # training tiles (256², the paper's student's) and batch


def train_student(workdir: Path, steps: int) -> dict:
    """The paper's student (Mobile U-Net, width 1.0) trained by the bundle's ``train.yaml`` alone
    (``--distill none``: cross-entropy, the bundle's optimiser and schedule, random flips) for about
    ``steps`` iterations (whole epochs of :data:`STUDENT_TILES` synthetic 256² tiles at the slides'
    level-0 scale, :data:`STUDENT_MPP` µm/px, of another seed than the benchmark slides), its bundle in
    ``workdir/student_bundle`` (a fresh run, never resumed); the checkpoint at its best validation mIoU
    is saved as ``workdir/student.pt`` (the network's state dict, which every candidate loads).

    A randomly initialised student labels every pixel background, so its masks agree in every runtime
    whatever the arithmetic: the agreement column only means something for a student whose masks hold
    both classes, with the margins that training gives. Returns the iterations, the seconds, the stage's
    record (best validation mIoU and epoch, epochs) and its overrides.
    """
    import torch

    from monai_coco.checkpoints import load_checkpoint
    from monai_coco.networks import MobileUNet

    root = workdir / "student_bundle"
    shutil.rmtree(root / "models", ignore_errors=True)
    shutil.copytree(CONFIGS, root / "configs", dirs_exist_ok=True)  # the run's snapshot of the configs
    per_epoch = math.ceil(STUDENT_TILES / STUDENT_BATCH)
    overrides = {
        "distill": "none",
        "mpp": STUDENT_MPP,
        "synthetic#n_train": STUDENT_TILES,
        "synthetic#n_val": 4,
        "synthetic#n_test": 1,
        "synthetic#slide_size": 0,
        "synthetic#seed": 1,
        "batch_size": STUDENT_BATCH,
        "num_workers": 0,
        "epochs": max(1, math.ceil(steps / per_epoch)),
        "model_name": STUDENT_FILE,
        "train#dataloader#generator": "$torch.Generator().manual_seed(@seed)",  # as the benchmark's runs
        "train#dataset#progress": False,
        "validate#dataset#progress": False,
    }
    done = run_stage(load_stage([root / "configs" / "base.yaml", root / "configs" / "train.yaml"],
                                {"bundle_root": str(root), **overrides}))  # fmt: skip
    network = MobileUNet(3, 2)
    load_checkpoint(root / "models" / STUDENT_FILE, {"model": network})
    torch.save(network.state_dict(), workdir / STUDENT_FILE)
    record = training_record(done)
    return {
        "steps": record["epochs"] * per_epoch,
        "seconds": record["train_s"],
        **record,
        "overrides": {k: v for k, v in overrides.items() if "progress" not in k and "generator" not in k},
    }


def extract_package(commit: str, folder: Path) -> Path | None:
    """``monai_coco`` of ``commit`` (``git archive``) under ``folder``, with a copy of
    :mod:`benchmarks.candidates` beside it: running that copy imports that ``monai_coco`` (a script's folder
    comes first on Python's path). Returns the copy's path, None without the repository's git history (e.g.
    a source archive)."""
    script = folder / Path(candidates.__file__).name
    if not (folder / "monai_coco").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        command = ["git", "-C", str(REPO), "archive", commit, "monai_coco"]
        archive = subprocess.run(command, capture_output=True)
        if archive.returncode != 0:
            print(f"{folder.name} left out: no git history of {commit} at {REPO}", file=sys.stderr)
            return None
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    shutil.copyfile(candidates.__file__, script)
    return script


def run_in_process(script: str | Path, benchmark: str, name: str, slide: Path, workdir: Path, **env) -> dict:
    """``python <script> <benchmark> <name> --slide ... --workdir ...`` (a :mod:`benchmarks.candidates`) in a
    fresh process, with the deployment's malloc setting and ``env``; its JSON line."""
    command = [sys.executable, str(script), benchmark, name, "--slide", str(slide), "--workdir", str(workdir)]
    command += ["--threads", env.pop("threads", "1")]
    env = {**os.environ, **MALLOC, **env}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def benchmark(
    side: int, rounds: int, threads: int, workdir: Path, train_steps: int = 150, memory_side: int = 0
) -> dict:
    """Every candidate ``rounds`` times, interleaved, on each of the synthetic ``side x side`` slides of
    :data:`SLIDES`, with the student :func:`train_student` trains for ``train_steps`` iterations; and, given
    ``memory_side`` (0: none), the peak memory of deployment on a large slide (:func:`large_slide_memory`)."""
    from monai_coco.data.synthetic import write_synthetic_slide

    slides = {
        name: write_synthetic_slide(workdir / f"slide_{name}.tif", size=side, tile=256, section_fraction=part)
        for name, part in SLIDES
    }
    student = train_student(workdir, train_steps)
    export_s = export_student(workdir / ONNX_FILE)
    scripts = {name: candidates.__file__ for name in CANDIDATES}
    scripts[RELEASE_0_1_0] = extract_package(RELEASE, workdir / RELEASE_0_1_0)
    names = [name for name in CANDIDATES if scripts[name] is not None]
    runs: dict[tuple[str, str], list[dict]] = {(s, c): [] for s in slides for c in names}
    for _ in range(rounds):
        for slide, name in runs:
            path = slides[slide][0]
            runs[slide, name].append(
                run_in_process(scripts[name], "deployment", name, path, workdir, threads=str(threads))
            )
    return {
        "side": side,
        "rounds": rounds,
        "threads": threads,
        "slides": [
            _slide_rows(workdir, name, part, *slides[name], {c: runs[name, c] for c in names})
            for name, part in SLIDES
        ],
        "export_s": export_s,
        "student": student,
        "int8": int8_probe(workdir, slides["dense"][0]),
        **({"memory": large_slide_memory(workdir, memory_side)} if memory_side else {}),
    }


def large_slide_memory(workdir: Path, side: int) -> dict:
    """The ``onnxruntime`` candidate, as deployed (one thread, the ONNX file, the README's malloc settings),
    once on a ``side x side`` synthetic slide whose section fills it, at level 0 (0.5 µm/px: every output at
    full resolution, the GeoJSON traced from the whole-level mask): seconds and peak RSS (``VmHWM``), the
    figure of the deployment goal "peak RSS ≤ 1 GiB at 20,000²". The slide is removed afterwards."""
    from monai_coco.data.synthetic import write_synthetic_slide

    path, truth = write_synthetic_slide(workdir / "slide_memory.tif", size=side, tile=256, section_fraction=1)
    try:
        run = run_in_process(candidates.__file__, "deployment", "onnxruntime", path, workdir, threads="1")
    finally:
        outputs = (workdir / "onnxruntime").glob(f"{path.stem}_*")
        for leftover in (path, truth, workdir / f"{path.stem}_onnxruntime.npy", *outputs):
            leftover.unlink(missing_ok=True)
    return {"side": side, **run}


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
        r["speed_vs_release"] = base[RELEASE_0_1_0] / r["seconds"] if RELEASE_0_1_0 in base else math.nan
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
    path.write_bytes(export_onnx(candidates.student(path.parent), example))
    return time.perf_counter() - start


def int8_probe(workdir: Path, slide: Path, windows: int = 32, repeats: int = 20) -> dict:
    """What approximate arithmetic would buy: the exported student quantized to int8 by ONNX Runtime's
    ``quantize_static`` (QDQ, per-channel int8 weights, uint8 activations, MinMax calibration on ``windows``
    random windows of another synthetic slide, seed 1), against the float32 file, one thread: median
    milliseconds per window over ``repeats`` calls each (interleaved), and the fraction of pixels whose
    class agrees on ``windows`` random windows of the benchmark slide (the mean, and the worst window's).

    Not a runtime of this package: masks must equal the checkpoint's on 99.9 % of pixels (a goal)."""
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
            self.feeds = iter(sample(calibration))

        def get_next(self):
            return next(self.feeds, None)

    from monai_coco.data.synthetic import write_synthetic_slide

    # another synthetic slide than the benchmark's (seed 1), for the calibration windows
    calibration, _ = write_synthetic_slide(workdir / "calibration_slide.tif", size=1024, seed=1, tile=256)
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


def table(slide: dict) -> str:
    """Markdown table of one slide's rows (an entry of :func:`benchmark`'s ``slides``)."""
    lines = [
        "| candidate | MP/s | × MONAI | × 0.1.0 release | × eager | windows run / in grid | peak RSS (MiB) "
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
        result = candidates.run_deployment(args.candidate, args.slide, args.workdir, args.threads)
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
