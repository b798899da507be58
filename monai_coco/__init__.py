"""monai_coco: CoCo DistillNet (cross-layer correlation distillation) as MONAI parts.

Importing the package loads every subpackage that holds a public class, so that after
``"$import monai_coco"`` a MONAI bundle config resolves short ``_target_`` names.

Docstrings cite the method as ``method.md §N`` and the architecture as ``design.md``: both ship in
``bundle/docs/`` with the bundle (and ``changelog.md``, what each release changed).
"""

__version__ = "0.2.0"

from . import bundle, checkpoints, data, engines, handlers, inference, losses, metrics, networks, settings  # noqa: E402,F401
