"""The slide level whose scale (µm/px) is nearest to the scale the network was trained at.

A network trained on tiles at ``m`` µm/px sees tissue structures at a fixed size in pixels; run on a
level at another scale it sees them larger or smaller. :func:`choose_level` picks the level nearest in
log-scale (a factor 2 too coarse and a factor 2 too fine are equally far) and says which, and how far
off it is, in one line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

__all__ = ["choose_level", "SCALE_TOLERANCE"]

SCALE_TOLERANCE = 1.25  # a level within this factor of the training scale is taken without a warning


def choose_level(
    level_mpps: Optional[Sequence[float]], train_mpp: float, name: str, level: Optional[int] = None
) -> tuple[int, Optional[str]]:
    """The level to segment, and a one-line warning or ``None``.

    Args:
        level_mpps: µm/px of each level of the slide (level 0 first), or ``None`` when the file does not
            say.
        train_mpp: µm/px of the training tiles the network saw.
        name: the slide's name, for the message.
        level: a level asked for explicitly; ``None`` picks the level nearest to ``train_mpp``.

    Returns:
        ``(level, warning)``: ``warning`` names both scales when the slide has no scale (then level 0, or
        ``level``) or when the level's scale differs from ``train_mpp`` by more than
        :data:`SCALE_TOLERANCE` times; otherwise ``None``.
    """
    if not level_mpps:
        return (level or 0), (
            f"{name}: the slide does not record its µm/px; segmenting level {level or 0} as if it were at "
            f"the network's training scale of {train_mpp:g} µm/px."
        )
    if level is None:
        level = min(range(len(level_mpps)), key=lambda i: abs(math.log(level_mpps[i] / train_mpp)))
    mpp = level_mpps[level]
    if max(mpp / train_mpp, train_mpp / mpp) > SCALE_TOLERANCE:
        return level, (
            f"{name}: level {level} is at {mpp:.3g} µm/px, but the network was trained at {train_mpp:g} "
            f"µm/px (factor {mpp / train_mpp:.2f}); results may degrade."
        )
    return level, None
