"""Benchmarks of monai_coco in one run: the CoCo loss, the networks, the training cost and the accuracy of
every distillation method on the built-in synthetic data; writes a Markdown report with PNG plots.

    .venv/bin/python scripts/benchmark.py --quick            # about 5 min on 2 CPU cores
    .venv/bin/python scripts/benchmark.py                    # full: 3 seeds, about 45-60 min on 2 CPU cores
    .venv/bin/python scripts/benchmark.py --smoke --out DIR  # seconds, tiny sizes: checks the pipeline
    .venv/bin/python scripts/benchmark.py --from-json bundle/docs/benchmarks/results.json  # report only

Writes ``OUT/benchmarks.md``, ``OUT/benchmarks/*.png`` and ``OUT/benchmarks/results.json`` (every raw
number); ``OUT`` defaults to ``bundle/docs``. Sections: ``--sections loss networks training accuracy
deployment`` (the last: whole-slide student inference in each runtime against plain MONAI, see
``scripts/benchmark_deployment.py``).
The run is single-threaded by default (``--threads``): on a machine whose cores are shared with other
jobs, more threads than free cores makes PyTorch's CPU kernels spin and the timings meaningless.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
# the sibling benchmark_* modules, and the package of this checkout (also when run from another folder)
for _path in (SCRIPTS.parent, SCRIPTS):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

SECTIONS = ("loss", "networks", "training", "accuracy", "deployment")


@dataclass(frozen=True)
class Preset:
    """Sizes and budgets of one benchmark mode."""

    loss_sizes: tuple[int, ...]
    loss_exact_only: tuple[int, ...]
    loss_repeats: int
    paper_networks: bool  # also count the paper-size FANet / Mobile U-Net (besides the experiment's)
    paper_throughput: bool  # time the paper-size networks (else the experiment's get the large tile)
    tile_size: int
    tile_batch: int
    tile_repeats: int
    large_side: int
    deployment_side: int  # side of the synthetic slide of the deployment section
    overlap: float
    matmul_n: int
    train_iterations: int
    accuracy: dict  # AccuracySettings arguments


PRESETS = {
    "full": Preset(
        loss_sizes=(32, 64, 128),
        loss_exact_only=(256,),
        loss_repeats=3,
        paper_networks=True,
        paper_throughput=True,
        tile_size=256,
        tile_batch=1,
        tile_repeats=2,
        large_side=2048,
        deployment_side=4096,
        overlap=0.0,
        matmul_n=4096,
        train_iterations=10,
        accuracy={},  # AccuracySettings' defaults: 3 seeds, λ_coco sweep 1e-2, 1e2
    ),
    "quick": Preset(
        loss_sizes=(32, 64),
        loss_exact_only=(256,),
        loss_repeats=1,
        paper_networks=True,
        paper_throughput=False,
        tile_size=256,
        tile_batch=1,
        tile_repeats=1,
        large_side=512,
        deployment_side=2048,
        overlap=0.0,
        matmul_n=2048,
        train_iterations=2,
        accuracy=dict(
            teacher_epochs=10,
            paraphraser_epochs=4,
            student_epochs=6,
            seeds=(0,),
            lambda_sweep=(),
        ),
    ),
    "smoke": Preset(
        loss_sizes=(8,),
        loss_exact_only=(),
        loss_repeats=1,
        paper_networks=False,
        paper_throughput=False,
        tile_size=32,
        tile_batch=1,
        tile_repeats=1,
        large_side=64,
        deployment_side=512,
        overlap=0.0,
        matmul_n=128,
        train_iterations=1,
        accuracy=dict(
            size=32,
            mpp=4.0,
            n_train=4,
            n_test=2,
            batch=2,
            teacher_features=(4, 8, 16, 32),
            student_width=0.25,
            critic_channels=(4, 8),
            teacher_epochs=1,
            paraphraser_epochs=1,
            student_epochs=1,
            seeds=(0,),
            lambda_sweep=(1e2,),
        ),
    ),
}


MODE_NOTES = {
    "quick": " A pipeline check: one seed and a budget too short for the networks to converge; the "
    "accuracy figures of this mode are not evidence for or against any method (run the full mode).",
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


def run_loss(preset: Preset) -> dict:
    import torch
    from benchmark_loss import benchmark_coco_loss

    setup = dict(batch=2, c_student=24, c_teacher=256, repeats=preset.loss_repeats)
    rows = benchmark_coco_loss(
        sizes=preset.loss_sizes,
        batch=setup["batch"],
        c_student=setup["c_student"],
        c_teacher=setup["c_teacher"],
        repeats=preset.loss_repeats,
        exact_only_sizes=preset.loss_exact_only,
        threads=torch.get_num_threads(),
    )
    return {"rows": rows, "setup": {**setup, "device": rows[0]["device"] if rows else "?"}}


def run_networks(preset: Preset, settings) -> dict:
    import torch
    from benchmark_networks import (
        matmul_peak,
        network_counts,
        sliding_window_throughput,
        tile_throughput,
    )

    from monai_coco.networks import FANet, MobileUNet

    c = settings.in_channels
    specs = []
    if preset.paper_networks:
        specs += [
            ("FANet (teacher)", "paper: features (64, 128, 256, 512)", lambda: FANet(c, 2)),
            ("Mobile U-Net (student)", "paper: width 1.0", lambda: MobileUNet(c, 2)),
        ]
    specs += [
        (
            "FANet (teacher)",
            f"experiment: features {settings.teacher_features}",
            lambda: FANet(c, 2, features=settings.teacher_features),
        ),
        (
            "Mobile U-Net (student)",
            f"experiment: width {settings.student_width}",
            lambda: MobileUNet(c, 2, width_mult=settings.student_width),
        ),
    ]
    peak = matmul_peak(preset.matmul_n)
    rows = []
    for name, config, build in specs:
        row = {"name": name, "config": config, **network_counts(build, c, preset.tile_size)}
        paper = config.startswith("paper")
        print(f"  {name} [{config}]: {row['params'] / 1e6:.2f} M, {row['gflops']:.2f} GFLOPs", flush=True)
        rows.append(row)
        if paper and not preset.paper_throughput:
            continue
        torch.manual_seed(0)
        network = build()
        row["tile"] = tile_throughput(network, c, preset.tile_size, preset.tile_batch, preset.tile_repeats)
        # the large tile for the networks a user deploys (the paper's) when they are timed
        if paper == preset.paper_throughput:
            row["sliding_window"] = sliding_window_throughput(
                network, preset.large_side, preset.tile_size, preset.overlap
            )
    return {
        "networks": rows,
        "matmul_gflops": peak,
        "matmul_n": preset.matmul_n,
        "tile_size": preset.tile_size,
        "tile_batch": preset.tile_batch,
        "large_side": preset.large_side,
        "overlap": preset.overlap,
        "sw_batch_size": 4,
        "in_channels": c,
    }


def run_training(preset: Preset, settings) -> dict:
    import torch
    from benchmark_training import benchmark_training

    g = torch.Generator().manual_seed(0)
    size, batch = settings.size, settings.batch
    batches = [
        {
            "image": torch.rand(batch, settings.in_channels, size, size, generator=g),
            "label": torch.randint(0, 2, (batch, size, size), generator=g),
        }
        for _ in range(2)
    ]
    cost = benchmark_training(settings, batches, iterations=preset.train_iterations, warmup=1)
    setup = {
        "iterations": preset.train_iterations,
        "warmup": 1,
        "batch": batch,
        "size": size,
        "in_channels": settings.in_channels,
        "networks": f"FANet features {settings.teacher_features}, Mobile U-Net width "
        f"{settings.student_width}, critic widths {settings.critic_channels}",
    }
    return {"cost": cost, "setup": setup}


def run_accuracy_section(settings, workdir: Path, preset_name: str) -> dict:
    from benchmark_accuracy import SWEPT_METHOD, describe, run_accuracy, summarise

    result = run_accuracy(settings, workdir, log=lambda line: print("  " + line, flush=True))
    setup = {
        "settings": dataclasses.asdict(settings),
        "swept_method": SWEPT_METHOD,
        "description": describe(settings) + f"\n- Mode: {preset_name}." + MODE_NOTES.get(preset_name, ""),
    }
    return {"result": result, "summary": summarise(result, settings), "setup": setup}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="1 seed, smaller sizes (about 5 min on 2 cores)")
    mode.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks the pipeline only")
    parser.add_argument(
        "--out",
        type=Path,
        default=SCRIPTS.parent / "bundle" / "docs",
        help="folder of benchmarks.md and benchmarks/ (default bundle/docs)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="folder for the synthetic data (default: a temporary folder)",
    )
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for PyTorch (default 1)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="override the mode's seeds")
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="only rewrite the report (into --out) from a results.json of an earlier run",
    )
    args = parser.parse_args(argv)
    if args.from_json is not None:
        from benchmark_report import write_report

        results = json.loads(args.from_json.read_text())
        print(f"wrote {write_report(results, args.out)}")
        return results

    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for the loss benchmark's fresh processes
    import torch

    torch.set_num_threads(args.threads)
    from benchmark_accuracy import AccuracySettings
    from benchmark_report import PLOT_DIR, write_report

    preset_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    preset = PRESETS[preset_name]
    accuracy = dict(preset.accuracy, **({"seeds": tuple(args.seeds)} if args.seeds else {}))
    settings = AccuracySettings(**accuracy)
    command = "python " + " ".join(shlex.quote(a) for a in ["scripts/benchmark.py", *(argv or sys.argv[1:])])
    started = time.perf_counter()
    load = os.getloadavg()
    results: dict = {"machine": machine_info(args.threads)}
    print(f"benchmark ({preset_name}) -> {args.out}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch)
        for section in args.sections:
            print(f"[{section}]", flush=True)
            t = time.perf_counter()
            if section == "loss":
                results["loss"] = run_loss(preset)
            elif section == "networks":
                results["networks"] = run_networks(preset, settings)
            elif section == "training":
                results["training"] = run_training(preset, settings)
            elif section == "deployment":
                from benchmark_deployment import benchmark as deployment

                rounds = 1 if preset_name == "smoke" else 2
                results["deployment"] = deployment(preset.deployment_side, rounds, args.threads, workdir)
            else:
                results["accuracy"] = run_accuracy_section(settings, workdir, preset_name)
            print(f"[{section}] {time.perf_counter() - t:.0f} s", flush=True)
    results["machine"] |= {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "command": f"`{command}`",
        "mode": preset_name,
        "wall time": f"{time.perf_counter() - started:.0f} s",
        "load average (1 min) at start / end": f"{load[0]:.1f} / {os.getloadavg()[0]:.1f}",
    }
    path = write_report(results, args.out)
    (args.out / PLOT_DIR / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote {path}", flush=True)
    return results


if __name__ == "__main__":
    main()
