"""Slide-scale benchmark: what reading a slide at the network's training scale exactly costs.

One synthetic tissue (``write_synthetic_slide``'s world, the section filling the slide) in two layouts: a
20x pyramid (0.5, 1, 2, 4, ... µm/px, halving levels) and a 40x pyramid as Aperio scanners write it (0.25,
1, 4 µm/px: levels 4 times apart). The paper's student (Mobile U-Net, 256² windows, eager torch, one
thread), trained briefly by the bundle's ``train.yaml`` as the deployment benchmark trains it
(``benchmarks.deployment.train_student``: its masks hold both classes, so that agreement compares
decisions), segments it at 2 µm/px. Candidates, each in a fresh process
(its own peak RSS, :mod:`benchmarks.candidates` run as a script), interleaved round by round, times as
medians:

* ``before``: this repository before the slide work (``git archive BEFORE``, run there:
  ``benchmarks.deployment.extract_package``), the 20x slide at its level 2 (2 µm/px: no resampling), as
  that code read it;
* ``exact_20x``: this package on the 20x slide, ``mpp=2``: level 2 as it is (the no-resampling path through
  the new front door; the goal: at least 95 % of ``before``'s throughput);
* ``exact_40x``: this package on the 40x slide, ``mpp=2``: level 1 (1 µm/px) resampled by 2 (the cost of
  resampling, against ``exact_20x``), and how far its input is from the 20x level (mean absolute difference
  of the two views, grey levels) and how many mask pixels agree.

    cd scripts && python -m benchmarks.slide_scale --side 4096 --rounds 3  # bundle/docs/benchmarks_slide_*
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

import numpy as np

from benchmarks import candidates
from benchmarks.candidates import ROI, STUDENT_FILE
from benchmarks.candidates import SCALE_MPP as MPP

REPO = Path(__file__).resolve().parents[2]
BEFORE = "dabcd7e"  # the last commit before slides were read at the training scale, from any scanner
CANDIDATES = candidates.SLIDE_SCALE


def write_slides(workdir: Path, side: int) -> dict[str, Path]:
    """The 20x slide (``side`` px at 0.5 µm/px, halving pyramid) and the same tissue as a 40x slide (2 x side
    px at 0.25 µm/px, levels 1, 4, 16 times reduced: 2x2 means of the 0.25 µm/px rendering)."""
    import tifffile

    from monai_coco.data.synthetic import write_synthetic_slide

    slide20, _ = write_synthetic_slide(workdir / "slide_20x.tif", size=side)
    fine, _ = write_synthetic_slide(workdir / "render_40x.tif", size=2 * side, mpp=0.25)
    slide40 = workdir / "slide_40x.tif"
    with tifffile.TiffFile(fine) as tif, tifffile.TiffWriter(slide40, bigtiff=True) as out:
        levels = tif.series[0].levels
        for i, index in enumerate(i for i in (0, 2, 4) if i < len(levels)):  # 0.25, 1, 4 µm/px (small: no 4)
            level = levels[index].asarray()
            out.write(level, tile=(256, 256), compression="jpeg", compressionargs={"level": 90},
                      photometric="rgb", subfiletype=1 if i else 0, metadata=None,
                      resolution=(1e4 / (0.25 * 4**i),) * 2, resolutionunit="CENTIMETER")  # fmt: skip
    return {"20x": slide20, "40x": slide40}


def view_difference(slides: dict[str, Path]) -> float:
    """Mean absolute difference (grey levels) of the 40x slide seen at 2 µm/px and the 20x slide's level
    at 2 µm/px, over the common pixels."""
    from monai_coco.data import Slide

    with Slide(slides["20x"]) as a, Slide(slides["40x"]) as b:
        va, vb = a.view(mpp=MPP), b.view(mpp=MPP)
        h, w = min(va.shape[0], vb.shape[0]), min(va.shape[1], vb.shape[1])
        total, count = 0.0, 0
        for top in range(0, h, 512):
            rows = min(512, h - top)
            x = va.read(top, 0, rows, w).astype(np.int16)
            y = vb.read(top, 0, rows, w).astype(np.int16)
            total += float(np.abs(x - y).sum())
            count += x.size
    return total / count


def benchmark(
    side: int, rounds: int, workdir: Path, train_steps: int = 60, trained: tuple[Path, dict] | None = None
) -> dict:
    """Every candidate ``rounds`` times, interleaved, on the 20x and 40x slides of ``side`` pixels, the
    student trained for ``train_steps`` iterations, or ``trained``: ``(folder holding its student file,
    its train_student record)`` of a student already trained so (the deployment section's), reused."""
    from benchmarks.deployment import extract_package, run_in_process, train_student

    slides = write_slides(workdir, side)
    if trained is None:
        student = train_student(workdir, train_steps)
    else:
        shutil.copyfile(trained[0] / STUDENT_FILE, workdir / STUDENT_FILE)
        student = trained[1]
    scripts = {name: candidates.__file__ for name in CANDIDATES}
    scripts["before"] = extract_package(BEFORE, workdir / "before")
    names = [name for name in CANDIDATES if scripts[name] is not None]
    runs: dict[str, list[dict]] = {c: [] for c in names}
    for _ in range(rounds):
        for name in names:
            slide = slides["40x" if name == "exact_40x" else "20x"]
            run = run_in_process(scripts[name], "slide_scale", name, slide, workdir, OMP_NUM_THREADS="1")
            runs[name].append(run)
    rows = {n: {**r[-1], "seconds": statistics.median(x["seconds"] for x in r)} for n, r in runs.items()}
    reference = np.load(workdir / "exact_20x.npy")
    for name, row in rows.items():
        mask = np.load(workdir / f"{name}.npy")
        row["mask_agreement"] = float((mask == reference).mean()) if mask.shape == reference.shape else None
        row["mpix_per_s"] = row["mpix"] / row["seconds"]
    return {"side": side, "rounds": rounds, "rows": rows, "view_mad": view_difference(slides),
            "tumour_fraction": float((reference == 1).mean()), "student": student, "runs": runs}  # fmt: skip


def report(results: dict) -> str:
    rows = results["rows"]
    base = rows["exact_20x"]["seconds"]
    lines = [
        "# Slide scale: the cost of reading at the training µm/px exactly",
        "",
        f"`python -m benchmarks.slide_scale --side {results['side']} --rounds {results['rounds']}` "
        "(in `scripts/`) "
        "(also run by `scripts/benchmark.py`'s deployment section) "
        f"(one thread, each candidate a fresh process, interleaved; medians of {results['rounds']} rounds). "
        "The same synthetic tissue as a 20x pyramid (0.5 µm/px, halving levels) and as a 40x Aperio-style "
        "pyramid (0.25, 1, 4 µm/px); the paper's student at 2 µm/px, eager torch.",
        "",
        "| candidate | slide, level read | seconds | MP/s at 2 µm/px | × `exact_20x` time | windows run | "
        "peak RSS MiB | mask = `exact_20x` |",
        "|---|---|---|---|---|---|---|---|",
    ]
    what = {"before": "20x, level 2 (before this change)", "exact_20x": "20x, level 2 as it is",
            "exact_40x": "40x, level 1 resampled by 2"}  # fmt: skip
    for name, row in rows.items():
        agreement = "—" if row["mask_agreement"] is None else f"{100 * row['mask_agreement']:.2f} %"
        lines.append(
            f"| `{name}` | {what[name]} | {row['seconds']:.2f} | {row['mpix_per_s']:.2f} | "
            f"{row['seconds'] / base:.3f} | {row['windows_run']} | {row['peak_rss_mib']:.0f} | {agreement} |"
        )
    lines += ["", f"The student's mask of `exact_20x` is {100 * results['tumour_fraction']:.1f} % tumour."]
    lines += ["", "Mean absolute difference of the two 2 µm/px views (40x resampled against the 20x level): "
              f"{results['view_mad']:.2f} grey levels (JPEG, each pyramid's reductions)."]  # fmt: skip
    if "before" in rows:
        ratio = rows["before"]["seconds"] / base
        lines += ["", f"Throughput of the no-resampling path against the code before: {100 * ratio:.1f} % "
                  f"(goal ≥ 95 %)."]  # fmt: skip
    for note in results.get("separate", []):  # measurements made outside this script, with their command
        lines += ["", note]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--candidate", choices=CANDIDATES, default=None, help="run one candidate (internal)")
    parser.add_argument("--slide", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "bundle" / "docs")
    args = parser.parse_args(argv)
    if args.side < 4 * ROI or args.rounds < 1:
        parser.error(f"--side must be at least {4 * ROI} and --rounds at least 1")
    if args.candidate:
        if args.slide is None or args.workdir is None:
            parser.error("--candidate needs --slide and --workdir")
        result = candidates.run_slide_scale(args.candidate, args.slide, args.workdir)
        print(json.dumps(result))
        return result
    with tempfile.TemporaryDirectory() as scratch:
        results = benchmark(args.side, args.rounds, args.workdir or Path(scratch))
    write_page(results, args.out)
    print(report(results))
    return results


def write_page(results: dict, out: Path) -> Path:
    """``out/benchmarks_slide_scale.md`` and ``out/benchmarks/slide_scale_results.json``, atomically."""
    from monai_coco.atomic_files import atomic_path

    (out / "benchmarks").mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "benchmarks" / "slide_scale_results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=1))
    with atomic_path(out / "benchmarks_slide_scale.md") as tmp:
        tmp.write_text(report(results))
    return out / "benchmarks_slide_scale.md"


if __name__ == "__main__":
    main()
