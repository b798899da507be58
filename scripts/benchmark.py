"""Benchmarks of monai_coco in one run: the CoCo loss, the networks, the training cost and the accuracy
protocol (teacher, student alone, distillation arms, paired seeds); writes a Markdown report with PNG plots.
Every training stage is the bundle's own (``bundle/configs``, with the size preset of the mode from
``scripts/benchmarks/configs``), built by ``benchmarks.bundle.load_stage`` (MONAI's ``ConfigWorkflow``).

    python scripts/benchmark.py                    # full CPU mode (benchmark_cpu.yaml, histology.yaml's data)
    python scripts/benchmark.py --sections accuracy  # the accuracy protocol's table alone (2 runs at a time)
    python scripts/benchmark.py --sections curve   # its pool-size curve alone (its own teacher)
    python scripts/benchmark.py --sections compare # KD + CoCo against KD at the curve's largest pool
    python scripts/benchmark.py --gpu              # paper sizes (benchmark_gpu.yaml): 256², FANet 38 M
    python scripts/benchmark.py --smoke --out DIR  # a minute or two, tiny sizes: runs every section for real
    python scripts/benchmark.py --from-json bundle/docs/benchmarks/results.json  # the report only
    python scripts/benchmark.py --dataset-dir DIR  # another data set (any layout the bundle reads); with
                                                   # DIR/unlabelled/ (or --unlabelled-dir) the unlabelled arms

Writes ``OUT/benchmarks.md``, ``OUT/benchmarks/*.png`` and ``OUT/benchmarks/results.json`` (every raw
number), each atomically; ``OUT`` defaults to ``bundle/docs`` (the committed report) for a full cpu or gpu
run and to ``bundle/eval/benchmarks`` for ``--smoke`` or some ``--sections``. Sections: ``--sections loss
networks training accuracy curve compare deployment`` (``accuracy``: the protocol's table of arms; ``curve``:
its pool-size curve; ``compare``: arms at the curve's largest pool on many paired seeds; the three share one
teacher when they run together; the last: whole-slide student inference in
each runtime against plain MONAI, see ``scripts/benchmarks/deployment.py``, and the cost of reading slides
at the training scale exactly, ``scripts/benchmarks/slide_scale.py``, its own page
``benchmarks_slide_scale.md``).
The run is single-threaded by default (``--threads``): on a machine whose cores are shared with other
jobs, more threads than free cores makes PyTorch's CPU kernels spin and the timings meaningless. The
accuracy protocol's training runs go ``--jobs`` at a time, each in its own process (their numbers do not
depend on it); the timed sections run one thing at a time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from benchmarks.bundle import Recipe

from monai_coco.atomic_files import atomic_path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("loss", "networks", "training", "accuracy", "curve", "compare", "deployment")
PROTOCOL = {"accuracy": "table", "curve": "curve", "compare": "compare"}  # section: run_protocol's part
MODE_NOTES = {
    "smoke": " Tiny sizes that only check that every part runs; the figures mean nothing.",
}


def machine_info(threads: int) -> dict[str, str]:
    import monai
    import torch

    import monai_coco

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {
        "CPU": cpu,
        "cores (logical)": str(os.cpu_count()),
        "threads used": str(threads),
        "GPU": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU run)",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "monai_coco": monai_coco.__version__,
        "OS": platform.platform(),
    }
    try:
        with open("/proc/meminfo") as f:
            total = next(int(line.split()[1]) for line in f if line.startswith("MemTotal"))
        info["memory"] = f"{total / 2**20:.0f} GiB"
    except (OSError, StopIteration):
        pass
    return info


def run_loss(preset: Mapping) -> dict:
    import torch
    from benchmarks.loss import benchmark_coco_loss

    setup = dict(batch=2, c_student=24, c_teacher=256, repeats=preset["repeats"])
    rows = benchmark_coco_loss(
        sizes=preset["sizes"],
        batch=setup["batch"],
        c_student=setup["c_student"],
        c_teacher=setup["c_teacher"],
        repeats=preset["repeats"],
        exact_only_sizes=preset["exact_only"],
        threads=torch.get_num_threads(),
    )
    return {"rows": rows, "setup": {**setup, "device": rows[0]["device"] if rows else "?"}}


def run_networks(preset: Mapping, recipe: Recipe) -> dict:
    import torch
    from benchmarks.networks import (
        matmul_peak,
        network_counts,
        sliding_window_throughput,
        tile_throughput,
    )

    from monai_coco.inference.runtimes import build_runtime, installed_runtimes
    from monai_coco.networks import FANet, MobileUNet

    parser = recipe.parser("train.yaml")
    c = parser.get_parsed_content("in_channels")
    features, width = parser.get("teacher_def#features"), parser.get("network_def#width_mult")
    specs = []
    if preset["paper"]:
        specs += [
            ("FANet (teacher)", "paper: features (64, 128, 256, 512)", lambda: FANet(c, 2)),
            ("Mobile U-Net (student)", "paper: width 1.0", lambda: MobileUNet(c, 2)),
        ]
    specs += [
        (
            "FANet (teacher)",
            f"experiment: features {tuple(features)}",
            lambda: FANet(c, 2, features=features),
        ),
        ("Mobile U-Net (student)", f"experiment: width {width}", lambda: MobileUNet(c, 2, width_mult=width)),
    ]
    tile_size, tile_batch = preset["tile_size"], preset["tile_batch"]
    peak = matmul_peak(preset["matmul_n"])
    rows = []
    for name, config, build in specs:
        row = {"name": name, "config": config, **network_counts(build, c, tile_size)}
        paper = config.startswith("paper")
        print(f"  {name} [{config}]: {row['params'] / 1e6:.2f} M, {row['gflops']:.2f} GFLOPs", flush=True)
        rows.append(row)
        if paper and not preset["paper_throughput"]:
            continue
        torch.manual_seed(0)
        network = build()
        row["tile"] = tile_throughput(network, c, tile_size, tile_batch, preset["tile_repeats"])
        # the large tile for the networks a user deploys (the paper's) when they are timed
        if paper == preset["paper_throughput"]:
            row["sliding_window"] = sliding_window_throughput(
                network, preset["large_side"], tile_size, preset["overlap"]
            )
        if paper and name.startswith("Mobile") and "onnxruntime" in installed_runtimes():
            # the deployed student: the same network exported and run by ONNX Runtime (inference.yaml's auto)
            example = torch.rand(tile_batch, c, tile_size, tile_size)
            runtime = build_runtime(network, "onnxruntime", example, torch.device("cpu"))
            exported = {**row, "config": f"{config}, ONNX Runtime", "sliding_window": None}
            exported["tile"] = tile_throughput(runtime, c, tile_size, tile_batch, preset["tile_repeats"])
            rows.append(exported)
    return {
        "networks": rows,
        "matmul_gflops": peak,
        "matmul_n": preset["matmul_n"],
        "tile_size": tile_size,
        "tile_batch": tile_batch,
        "large_side": preset["large_side"],
        "overlap": preset["overlap"],
        "sw_batch_size": 4,
        "in_channels": c,
    }


def run_training(preset: Mapping, recipe: Recipe) -> dict:
    from benchmarks.training import benchmark_training

    iterations, warmup = preset["iterations"], preset["warmup"]
    cost = benchmark_training(recipe, iterations=iterations, warmup=warmup)
    parser = recipe.parser("train.yaml")
    size = parser.get("roi_size")
    setup = {
        "iterations": iterations,
        "warmup": warmup,
        "batch": parser.get("batch_size"),
        "size": size[0],
        "in_channels": parser.get("in_channels"),
        "networks": f"FANet features {tuple(parser.get('teacher_def#features'))}, Mobile U-Net width "
        f"{parser.get('network_def#width_mult')}, critic widths {tuple(parser.get('critic_def#channels'))}",
        "files": recipe.sources,
    }
    return {"cost": cost, "setup": setup}


def check_comparison(settings: Mapping) -> None:
    """Raise ValueError (one line) unless ``settings["compare"]`` (the ``benchmark`` block) names a list of
    protocol arms (:func:`benchmarks.bundle.protocol_arms`, not the curve's own arm, which each is paired
    against) and a list of distinct whole-number seeds: section ``compare`` runs nothing else, and a seed
    given twice would count one pair twice."""
    from benchmarks.accuracy import NO_LAMBDAS
    from benchmarks.bundle import protocol_arms

    comparison = settings.get("compare")
    if not isinstance(comparison, Mapping) or not (comparison.get("arms") and comparison.get("seeds")):
        raise ValueError(
            f"benchmark#compare is {comparison!r}; expected its arms and seeds, e.g. "
            "{arms: [kd_coco_pool], seeds: [0, 1, 2]}"
        )
    arms, seeds, reference = comparison["arms"], comparison["seeds"], settings["curve"]["arm"]
    known = [a.name for a in protocol_arms("kd", NO_LAMBDAS, math.nan, "-")]
    if not isinstance(arms, list) or any(a not in known or a == reference for a in arms):
        others = ", ".join(a for a in known if a != reference)
        raise ValueError(
            f"benchmark#compare#arms is {arms!r}; expected a list of protocol arms other than the curve's "
            f"({reference}), each paired against it: {others}"
        )
    distinct = isinstance(seeds, list) and len(set(map(str, seeds))) == len(seeds)
    if not distinct or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"benchmark#compare#seeds is {seeds!r}; expected a list of distinct whole numbers")


def run_accuracy_section(
    recipe: Recipe, unlabelled_dir: str | None, jobs: int, parts: Sequence[str] = ("table",)
) -> dict:
    """The accuracy protocol's ``parts`` (``"table"``: the arms, section ``accuracy``; ``"curve"``: the
    pool-size curve, section ``curve``; ``"compare"``: section ``compare``) in one run, sharing the teacher;
    the raw numbers and summaries."""
    from benchmarks.accuracy import run_protocol, summarise, summarise_comparison, summarise_curve

    log = lambda line: print("  " + line, flush=True)  # noqa: E731
    result = run_protocol(recipe, unlabelled_dir, log=log, jobs=jobs, parts=tuple(parts))
    confidence, power = float(result["settings"]["confidence"]), float(result["settings"]["power"])
    note = f"Mode: {recipe.mode}." + MODE_NOTES.get(recipe.mode, "")
    return {
        "result": result,
        "summary": summarise(result, confidence, power) if "arms" in result else [],
        "curve": summarise_curve(result, confidence, power),
        "budgets": summarise_comparison(result, confidence, power, "budgets"),
        "comparison": summarise_comparison(result, confidence, power),
        "setup": {"note": note},
    }


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--smoke", action="store_true", help="tiny sizes (benchmark_smoke.yaml): checks the pipeline"
    )
    mode.add_argument("--gpu", action="store_true", help="the paper's sizes (benchmark_gpu.yaml), for a GPU")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder of benchmarks.md and benchmarks/ (default: bundle/docs for a full cpu or gpu run, "
        "the committed report; bundle/eval/benchmarks for --smoke or some --sections)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="bundle root of the runs: data, checkpoints (default: a temporary folder)",
    )
    parser.add_argument(
        "--dataset-dir",
        default=None,
        help="a data folder (default: the built-in synthetic data; in the cpu and gpu modes the "
        "fine-structure data set of histology.yaml, with its unlabelled pool)",
    )
    parser.add_argument(
        "--unlabelled-dir",
        default=None,
        help="unlabelled tiles for the unlabelled arms (default: the data set's unlabelled/ folder if it "
        "exists: the built-in one has it in the cpu and gpu modes); skipped when train.yaml has no "
        "unlabelled_dir setting",
    )
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for PyTorch (default 1)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="training runs of the accuracy protocol at a time, each in its own process of --threads "
        "threads (default: CPU cores // threads; 1 with --gpu); the other sections time one thing at a time",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="only rewrite the report (into --out) from a results.json of an earlier run",
    )
    args = parser.parse_args(argv)
    for name in ("jobs", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be a whole number >= 1, got {getattr(args, name)}")
    if args.out is None:
        full = not args.smoke and set(args.sections) == set(SECTIONS)
        args.out = ROOT / "bundle" / ("docs" if full else "eval/benchmarks")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file; expected a folder")
    if args.from_json is not None:
        from benchmarks.report import write_report

        try:
            results = json.loads(args.from_json.read_text())
            print(f"wrote {write_report(results, args.out)}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            parser.error(f"--from-json {args.from_json}: not a results.json of this script ({exc!r})")
        return results

    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for the loss benchmark's fresh processes
    import torch

    torch.set_num_threads(args.threads)
    from benchmarks.report import PLOT_DIR, write_report

    mode_name = "smoke" if args.smoke else "gpu" if args.gpu else "cpu"
    jobs = args.jobs or (1 if args.gpu else max(1, (os.cpu_count() or 1) // args.threads))
    command = "python " + " ".join(shlex.quote(a) for a in ["scripts/benchmark.py", *(argv or sys.argv[1:])])
    started = time.perf_counter()
    load = os.getloadavg()
    results: dict = {"machine": machine_info(args.threads)}
    if PROTOCOL.keys() & set(args.sections):
        results["machine"]["accuracy: training runs at a time"] = str(jobs)
    print(f"benchmark ({mode_name}) -> {args.out}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        recipe = Recipe(mode_name, args.workdir or Path(scratch), args.dataset_dir)
        preset = recipe.settings
        if "compare" in args.sections:
            try:
                check_comparison(preset)
            except ValueError as exc:
                parser.error(f"--sections compare, benchmark_{mode_name}.yaml: {exc}")
        unlabelled = args.unlabelled_dir
        if unlabelled is None and PROTOCOL.keys() & set(args.sections):
            unlabelled = recipe.unlabelled_dir()
        for section in args.sections:
            print(f"[{section}]", flush=True)
            t = time.perf_counter()
            if section == "loss":
                results["loss"] = run_loss(preset["loss"])
            elif section == "networks":
                results["networks"] = run_networks(preset["networks"], recipe)
            elif section == "training":
                results["training"] = run_training(preset["training"], recipe)
            elif section == "deployment":
                from benchmarks.deployment import benchmark as deployment

                dep = preset["deployment"]
                results["deployment"] = deployment(
                    dep["side"], dep["rounds"], args.threads, recipe.workdir, dep["train_steps"],
                    dep.get("memory_side", 0),
                )  # fmt: skip
                from benchmarks.slide_scale import benchmark as slide_scale
                from benchmarks.slide_scale import write_page

                results["slide_scale"] = slide_scale(  # the deployment's student, trained once
                    dep["side"], dep["rounds"], recipe.workdir / "slide_scale", dep["train_steps"],
                    trained=(recipe.workdir, results["deployment"]["student"]),
                )  # fmt: skip
                print(f"wrote {write_page(results['slide_scale'], args.out)}", flush=True)
            elif "accuracy" not in results:  # the protocol's sections: one run, one teacher
                parts = [part for name, part in PROTOCOL.items() if name in args.sections]
                results["accuracy"] = run_accuracy_section(recipe, unlabelled, jobs, parts)
            print(f"[{section}] {time.perf_counter() - t:.0f} s", flush=True)
    results["machine"] |= {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "command": f"`{command}`",
        "mode": mode_name,
        "wall time": f"{time.perf_counter() - started:.0f} s",
        "load average (1 min) at start / end": f"{load[0]:.1f} / {os.getloadavg()[0]:.1f}",
    }
    path = write_report(results, args.out)
    with atomic_path(args.out / PLOT_DIR / "results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote {path}", flush=True)
    return results


if __name__ == "__main__":
    main()
