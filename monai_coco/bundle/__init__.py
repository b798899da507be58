"""The bundle glue (top floor, ``bundle/docs/design.md``): what the configs of ``bundle/configs``
call to check their settings and stop with one line, and to load what an earlier stage made.

- :mod:`~monai_coco.bundle.checks`: checks of settings of their own kind (paths, devices, output folders);
- :mod:`~monai_coco.bundle.overrides`: the command-line guard against ``--id`` overrides no config uses;
- :mod:`~monai_coco.bundle.stages`: prerequisites, the annotated data list, the unannotated pool;
- :mod:`~monai_coco.bundle.preprocessing`: the preprocessing record beside each checkpoint;
- :mod:`~monai_coco.bundle.folder`: a bundle folder written from the bundle the package ships
  (``python -m monai_coco.bundle init DIR``).

Settings of a plain type and range are declared in :mod:`monai_coco.settings`.
"""

from monai_coco.bundle import checks, folder, overrides, preprocessing, stages  # noqa: F401
