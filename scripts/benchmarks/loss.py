"""Naive (N×N) vs exact (Gram identity) CoCo loss: forward+backward time and peak memory.

    cd scripts && ../.venv/bin/python -m benchmarks.loss [--sizes 32 64 128] [--exact-only 256] [--threads 2]

Each (method, size) runs in a fresh process: on CPU its peak memory is the growth of the process's
peak resident set during the runs (``ru_maxrss``) over its resident set before them; on CUDA it is
``torch.cuda.max_memory_allocated`` over the memory held before. Inputs: batch ``B``, student maps
``(B, C_s, S, S)``, teacher maps ``(B, C_t, S, S)`` (the raw teacher taps, before a paraphraser), float32;
only the student maps require gradients, as in training. The naive side is the literal formula of the
tests (``monai_coco/losses/naive_coco.py``), the exact side ``monai_coco.losses.CoCoDistillationLoss``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import resource
import statistics
import time
from collections.abc import Sequence

import torch

# naive run: A_S, A_T, their difference, its square and the backward's gradient, float32, per image
NAIVE_TENSORS_PER_IMAGE = 5


def _naive_loss():
    from monai_coco.losses.naive_coco import naive_coco_loss

    return naive_coco_loss


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def _measure(
    method: str,
    size: int,
    batch: int,
    c_student: int,
    c_teacher: int,
    repeats: int,
    device: str,
    threads: int,
) -> dict:
    """One (method, size) measurement; meant to run in a fresh process."""
    from monai_coco.losses import CoCoDistillationLoss

    torch.set_num_threads(threads)
    loss_fn = _naive_loss() if method == "naive" else CoCoDistillationLoss()
    g = torch.Generator().manual_seed(0)
    student = [torch.randn(batch, c_student, size, size, generator=g) for _ in range(2)]
    student = [s.to(device).requires_grad_(True) for s in student]
    teacher = [torch.randn(batch, c_teacher, size, size, generator=g) for _ in range(2)]
    teacher = [t.relu().to(device) for t in teacher]  # post-ReLU teacher taps
    cuda = device.startswith("cuda")

    def step() -> float:
        for s in student:
            s.grad = None
        loss = loss_fn(*student, *teacher)
        loss.backward()
        if cuda:
            torch.cuda.synchronize()
        return loss.item()

    if cuda:
        torch.cuda.synchronize()
        held = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        held = _resident_bytes()
    value = step()  # warm-up
    times, cpu_times = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    if cuda:
        peak = torch.cuda.max_memory_allocated() - held
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - held
    return {
        "method": method,
        "size": size,
        "time_s": statistics.median(times),
        "cpu_s": statistics.median(cpu_times),
        "peak_mib": max(peak, 0) / 2**20,
        "value": value,
        "device": device,
        "threads": threads,
    }


def _in_fresh_process(*args) -> dict:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_measure, *args).result()


def benchmark_coco_loss(
    sizes: Sequence[int] = (32, 64, 128),
    batch: int = 2,
    c_student: int = 24,
    c_teacher: int = 256,
    repeats: int = 3,
    exact_only_sizes: Sequence[int] = (256,),
    device: str | None = None,
    threads: int | None = None,
) -> list[dict]:
    """Forward+backward time (median of ``repeats`` after one warm-up) and peak memory of the naive and
    the exact CoCo loss at ``S×S`` taps for each ``S`` in ``sizes``, and of the exact loss alone at
    ``exact_only_sizes``.

    Returns one dict per run: ``method`` ("naive"/"exact"), ``size``, ``time_s`` (wall), ``cpu_s`` (the
    process's CPU time: on a busy machine with one thread, close to the wall time of a quiet one),
    ``peak_mib``, ``value``
    (the loss, to show the two agree), ``device``, ``threads`` (CPU threads, default torch's); a naive run
    whose matrices would not fit in the available memory has ``time_s = None`` and ``skipped``.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    threads = threads or torch.get_num_threads()
    rows = []
    for size in list(sizes) + list(exact_only_sizes):
        methods = ("naive", "exact") if size in sizes else ("exact",)
        for method in methods:
            need = NAIVE_TENSORS_PER_IMAGE * batch * size**4 * 4
            available = torch.cuda.mem_get_info()[0] if device.startswith("cuda") else _available_bytes()
            setup = (batch, c_student, c_teacher, repeats, device, threads)
            if method == "naive" and available is not None and need > 0.8 * available:
                estimate = f"~{need / 2**30:.1f} GiB"
                skipped = dict.fromkeys(("time_s", "cpu_s", "peak_mib", "value")) | {"skipped": estimate}
                rows.append({"method": method, "size": size, "device": device, "threads": threads, **skipped})
            else:
                rows.append(_in_fresh_process(method, size, *setup))
    return rows


def format_table(rows: list[dict]) -> str:
    """The runs as a text table, then naive/exact ratios of time and memory per size."""
    lines = [f"{'size':>6} {'method':>6} {'time (s)':>10} {'CPU (s)':>10} {'peak (MiB)':>11} {'loss':>12}"]
    for r in rows:
        if r["time_s"] is None:
            lines.append(f"{r['size']:>4}² {r['method']:>6}   skipped: needs {r['skipped']}")
        else:
            lines.append(
                f"{r['size']:>4}² {r['method']:>6} {r['time_s']:>10.4f} {r['cpu_s']:>10.4f} "
                f"{r['peak_mib']:>11.1f} {r['value']:>12.6g}"
            )
    by_key = {(r["size"], r["method"]): r for r in rows if r["time_s"] is not None}
    lines.append("naive / exact:")
    for size in sorted({r["size"] for r in rows}):
        naive, exact = by_key.get((size, "naive")), by_key.get((size, "exact"))
        if naive and exact:
            memory = naive["peak_mib"] / exact["peak_mib"] if exact["peak_mib"] > 0 else float("inf")
            lines.append(
                f"{size:>4}²  time x{naive['time_s'] / exact['time_s']:.1f}  "
                f"CPU x{naive['cpu_s'] / exact['cpu_s']:.1f}  memory x{memory:.1f}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--exact-only", type=int, nargs="*", default=[256])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--c-student", type=int, default=24)
    parser.add_argument("--c-teacher", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    rows = benchmark_coco_loss(
        args.sizes,
        args.batch,
        args.c_student,
        args.c_teacher,
        args.repeats,
        args.exact_only,
        args.device,
        args.threads,
    )
    print(
        f"CoCo loss, forward+backward, B={args.batch}, C_s={args.c_student}, C_t={args.c_teacher}, "
        f"{rows[0]['device']}, {rows[0]['threads']} threads, load average {os.getloadavg()[0]:.1f}"
    )
    print(format_table(rows))


if __name__ == "__main__":
    main()
