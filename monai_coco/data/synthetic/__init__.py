"""Built-in synthetic gastric H&E data set: tiles with known cancer masks, and a pyramidal slide.

The tissue is procedural and defined in *world* coordinates (level-0 pixels): every random quantity is
a hash of the world seed and of lattice or pixel coordinates, so any window renders the same pixels
whatever region it is rendered with. Tiles are independent worlds; a slide is one large world rendered
tile by tile, so a 20,000 x 20,000 slide never needs a whole level in memory.

The picture (sizes in micrometres, converted with ``mpp``):

- benign gastric mucosa: round or oval glands (lumen, pale apical mucin, one row of small basal
  nuclei) in a lamina propria of fibrous stroma with fibroblasts and lymphocytes, which gather in
  dense, dark lymphoid aggregates;
- cancer: a smooth random region of the world (the mask) with crowded, distorted, fused glands,
  cribriform and irregular lumens, solid nests where the tumour is poorly differentiated, stratified
  large pleomorphic hyperchromatic nuclei with coarse chromatin and irregular outlines, single
  signet-ring-like cells in a desmoplastic stroma;
- colour: Beer-Lambert, ``I = I0 * exp(-(c_H * h + c_E * e))`` with the Macenko reference stain
  vectors h = (0.65, 0.70, 0.29) and e = (0.07, 0.99, 0.11), jittered per world (stain vectors,
  concentrations, illumination), then optical blur and sensor noise.

Cancer is not told apart by colour alone: benign lymphoid aggregates are as dark as tumour, both
classes hold nuclei, and the stain varies between images; the cues are nuclear size, shape and
texture and the gland architecture, and the mask includes the tumour's stroma, so context matters.

Command line::

    python -m monai_coco.data.synthetic --out DIR --n 64 --size 512 --seed 0 --slide-size 2048

writes ``DIR/gastric_0000.jpg`` + ``DIR/gastric_0000.png`` (mask in {0, 1}), ... and
``DIR/slide/gastric_slide.tif`` (pyramidal RGB, JPEG tiles) + ``DIR/slide/gastric_slide_mask.tif``
(the mask pyramid, deflate). The same arguments give the same bytes.

A second data set, :mod:`~monai_coco.data.synthetic.histology`, takes colour away as a cue: cancer is told
by nuclear atypia and gland architecture at 1.5 µm/px, against benign mimics, with tiles from slides split
between train, val and test (``--histology``; :func:`histology_dataset` generates it once and caches it).
"""

from .dataset import SYNTHETIC_SPLITS, histology_dataset, synthetic_dataset
from .histology import HISTOLOGY_STYLE, HistologySlide
from .world import EOSIN_OD, HEMATOXYLIN_OD, SyntheticGastricTissue, TissueStyle
from .writers import (
    HISTOLOGY_SPLITS,
    synthetic_tile,
    write_histology_dataset,
    write_synthetic_dataset,
    write_synthetic_slide,
)

__all__ = [
    "EOSIN_OD",
    "HEMATOXYLIN_OD",
    "HISTOLOGY_SPLITS",
    "HISTOLOGY_STYLE",
    "HistologySlide",
    "SYNTHETIC_SPLITS",
    "SyntheticGastricTissue",
    "TissueStyle",
    "histology_dataset",
    "synthetic_dataset",
    "synthetic_tile",
    "write_histology_dataset",
    "write_synthetic_dataset",
    "write_synthetic_slide",
]
