"""A fine-structure variant of the synthetic gastric world: slides whose cancer is told by nuclei and glands.

In the built-in data set the cancer region is also a colour region (denser stroma, darker cytoplasm), so a
small network with a short view segments it from colour alone, and a big teacher knows nothing extra. This
variant takes colour away as a cue and leaves the label to fine structure a small network misreads.

What it models (scale 1.5 µm/px by default, 1–2 µm/px intended; nuclei 3–12 px across):

- tumour (mask 1): crowded, distorted, fused glands with cribriform and slit-like lumens, solid nests where
  poorly differentiated; nuclear atypia: large (mean radius 4.4 µm against 3.0 µm benign epithelium and
  2.5 µm lymphocytes), pleomorphic (radius cv 0.28), irregular outlines, coarse chromatin, stratified;
  scattered signet-ring-like cells in the stroma;
- benign (mask 0) with its mimics: regular round glands with one row of small basal nuclei, dense
  lymphocyte infiltrates (small, round, very dark nuclei in sheets, the darkest tissue of a slide),
  reactive stroma (as dense, fibrous and cellular as the tumour's desmoplastic stroma);
- matched colour: stroma and gland cytoplasm have the same stain densities in both classes, and the
  benign infiltrates bring as much hematoxylin as the tumour's nuclei, so the mean colour of tumour and of
  benign tissue is the same within a slide (to a few grey levels) and a colour threshold cannot find cancer;
- slides: a slide is one world (one seed); its tiles are far-apart windows of it, so they share its stain
  (vectors jittered by ±0.08, concentrations by ±40 %, illumination) and its scanner (optical blur sigma
  0.3–1.1 px, sensor noise 2–8 grey levels, JPEG quality 70–95). Data sets split by slide: no slide gives
  tiles to two splits, so test tiles come from slides never seen in training.

What it does not model: real cell biology (nuclei are soft ellipses with a wobbly outline and noise
chromatin, no mitoses, nucleoli or membranes), 3-D section effects, folds, pen marks, bubbles, tissue
edges and glass (tiles are all tissue), intestinal metaplasia, ulcer and the other gastric entities, or the
gradation of grades: the label is a binary region drawn from a smooth random field, and glands inside it
are all tumour. Stain and scanner variation are parametric jitter, not a model of a real lab or scanner.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .noise import Hash
from .world import SyntheticGastricTissue, TissueStyle, derive_seed

__all__ = ["HISTOLOGY_STYLE", "HistologySlide"]

_TUMOUR_EPI = 1  # index of tumour epithelium in TissueStyle.nuclei
_S_SLIDE = 7  # random stream of the per-slide settings (any integer distinct from derive_seed's)

HISTOLOGY_STYLE = TissueStyle(
    nuclei={**TissueStyle().nuclei, _TUMOUR_EPI: (4.4, 0.28, 1.0, 1.8, 0.16, 0.66, 0.22, 0.55)},
    stroma_tumour=(0.36, 0.05, 1.15, 0.065),
    stroma_benign=(0.36, 0.05, 1.15, 0.065),
    epithelium_tumour=None,
    stroma_cells_tumour=(0.05, 0.05, 0.10),
    stroma_cells_benign=(0.10, 0.9, 0.05),
    lymph_level=(0.15, 0.35),
    stain_jitter=0.16,
    concentration_jitter=0.8,
    blur=(0.3, 1.1),
    sensor_noise=(2.0, 8.0),
)
"""The look of the fine-structure data set: no colour difference between tumour and benign compartments,
more lymphoid infiltrates and reactive stroma in benign tissue, stronger stain and scanner variation."""


@dataclass(frozen=True)
class HistologySlide:
    """One synthetic slide of the fine-structure data set, and its tiles.

    Args:
        seed: the data set's seed.
        index: the slide's number in the data set; slide ``index`` depends only on ``(seed, index)``.
        mpp: micrometres per pixel of the tiles.
        tile_size: tile side in pixels.

    The slide's world has the tumour fraction and the JPEG quality drawn from its seed: ``tumour_offset``
    in [-0.4, 0.8] (cancer covers about a fifth to two thirds of the slide) and ``quality`` in [70, 95].
    """

    seed: int
    index: int
    mpp: float = 1.5
    tile_size: int = 128

    @cached_property
    def world(self) -> SyntheticGastricTissue:
        """The slide's world (its tissue, stain and scanner)."""
        u = Hash(self.seed).uniform(_S_SLIDE, self.index)
        return SyntheticGastricTissue(
            derive_seed(self.seed, self.index),
            mpp=self.mpp,
            tumour_offset=float(-0.4 + 1.2 * u),
            tumour_scale_um=130.0,
            style=HISTOLOGY_STYLE,
        )

    @property
    def quality(self) -> int:
        """JPEG quality of the slide's scanner, in [70, 95]."""
        return 70 + int(26 * Hash(self.seed).uniform(_S_SLIDE + 1, self.index))

    def tile(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Tile ``k`` (>= 0) of the slide: windows on a grid of 8 per row, 2 tile sides apart.

        Returns:
            ``(rgb, mask)``: rgb uint8 ``(tile_size, tile_size, 3)``, mask uint8 ``(tile_size, tile_size)``
            in {0, 1} (1 = cancer).
        """
        step = 3 * self.tile_size
        return self.world.render((k // 8) * step, (k % 8) * step, self.tile_size, self.tile_size)
