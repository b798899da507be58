"""The benchmarks of monai_coco, run by ``python scripts/benchmark.py`` (Python puts ``scripts/`` on its path
for that script, so this package imports as ``benchmarks``; the tests reach it through pytest's
``pythonpath``, ``pyproject.toml``). Each section on its own, from ``scripts/``:
``python -m benchmarks.loss``, ``python -m benchmarks.deployment``, ``python -m benchmarks.slide_scale``.

- :mod:`benchmarks.bundle`: :func:`~benchmarks.bundle.load_stage`, the one loader of every bundle stage the
  benchmarks run (MONAI's ``ConfigWorkflow``), and the accuracy protocol's recipe and arms;
- ``configs/``: the benchmark's presets (``benchmark.yaml``, ``benchmark_<mode>.yaml``), overlays of the
  bundle's configs (``bundle/configs``), not bundle configs themselves;
- :mod:`benchmarks.loss`, :mod:`benchmarks.networks`, :mod:`benchmarks.training`, :mod:`benchmarks.accuracy`
  (with :mod:`benchmarks.target` and :mod:`benchmarks.stats`), :mod:`benchmarks.deployment` and
  :mod:`benchmarks.slide_scale` (with :mod:`benchmarks.candidates`, one candidate per process): the sections;
- :mod:`benchmarks.report`: the Markdown report and its plots.
"""
