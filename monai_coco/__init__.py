"""monai_coco: CoCo DistillNet (cross-layer correlation distillation) as MONAI parts.

Importing the package loads every subpackage that holds a public class, so that after
``"$import monai_coco"`` a MONAI bundle config resolves short ``_target_`` names.
"""

__version__ = "0.1.0"

from . import checkpoints, data, engines, handlers, inference, losses, metrics, networks  # noqa: E402,F401
