"""The procedural H&E gastric tissue: glands, nuclei, stroma, cancer regions and the stain model."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .noise import Coords, Field, Hash

__all__ = ["EOSIN_OD", "HEMATOXYLIN_OD", "SyntheticGastricTissue", "TissueStyle", "derive_seed"]

HEMATOXYLIN_OD = (0.65, 0.70, 0.29)
"""Macenko's reference optical-density vector of hematoxylin (R, G, B)."""
EOSIN_OD = (0.07, 0.99, 0.11)
"""Macenko's reference optical-density vector of eosin (R, G, B)."""


@dataclass(frozen=True)
class _Glands:
    """Where a position lies relative to the nearest gland of one family (benign or tumour)."""

    rho: np.ndarray  # normalised elliptical distance to the gland centre (< 1 inside the gland)
    lumen: np.ndarray  # the gland's lumen radius on the rho scale
    dir_y: np.ndarray  # unit direction from the gland centre
    dir_x: np.ndarray


# random streams (any distinct integers)
_S_TUMOUR, _S_TUMOUR2, _S_DIFF, _S_LYMPH, _S_FIBRE_DIR, _S_STROMA = 1, 2, 3, 4, 5, 6
_S_WARP = 10  # + 0..3 benign/tumour x y/x, + 4..5 fine tumour warp
_S_LUMEN_B, _S_LUMEN_T, _S_CRIB, _S_TISSUE = 20, 21, 22, 23
_S_GLAND = 30  # + family * 8 + attribute
_S_NUC = 60  # + attribute
_S_PIX_FIBRE, _S_PIX_CHROM, _S_PIX_SENSOR = 90, 91, 92
_S_WORLD = 100  # + attribute

# nucleus types: (mean radius um, radius cv, aspect lo, aspect hi, irregularity, H density, density cv,
# chromatin texture)
_BENIGN_EPI, _TUMOUR_EPI, _LYMPHOCYTE, _FIBROBLAST, _SIGNET = range(5)
NucleusType = tuple[float, float, float, float, float, float, float, float]
_NUCLEI: dict[int, NucleusType] = {
    _BENIGN_EPI: (3.0, 0.08, 1.3, 1.7, 0.03, 0.75, 0.08, 0.10),
    _TUMOUR_EPI: (4.6, 0.28, 1.0, 1.8, 0.16, 0.95, 0.22, 0.55),
    _LYMPHOCYTE: (2.5, 0.07, 1.0, 1.15, 0.03, 1.25, 0.08, 0.08),
    _FIBROBLAST: (2.1, 0.10, 2.8, 4.2, 0.03, 0.80, 0.10, 0.10),
    _SIGNET: (3.6, 0.20, 1.2, 2.0, 0.10, 1.05, 0.15, 0.30),
}


@dataclass(frozen=True)
class TissueStyle:
    """The look of a world: cell mix, stain densities per compartment, stain and scanner variation.

    The defaults are the built-in gastric data set's. Densities are stain concentrations (optical density
    per unit stain vector); ``(lo, hi)`` ranges are drawn once per world from its seed.

    Args:
        nuclei: per nucleus type (benign epithelium, tumour epithelium, lymphocyte, fibroblast, signet
            ring: indices 0..4) ``(mean radius um, radius cv, aspect lo, aspect hi, outline irregularity,
            hematoxylin density, density cv, chromatin texture)``.
        stroma_tumour, stroma_benign: stroma ``(eosin, eosin slow variation, fibre contrast, hematoxylin)``
            inside and outside the tumour region.
        epithelium_tumour: tumour gland cytoplasm ``(eosin, hematoxylin)``; ``None`` gives tumour glands the
            benign glands' cytoplasm (pale apical mucin over a basal rim).
        epithelium_apical, epithelium_basal: benign gland cytoplasm ``(eosin, hematoxylin)``.
        tumour_epithelium_rate: share of nucleus lattice sites in tumour epithelium that hold a nucleus.
        stroma_cells_tumour: in tumour stroma, share of lattice sites holding ``(lymphocyte, fibroblast,
            signet-ring cell)`` nuclei (signet rings scaled by how poorly differentiated the tumour is).
        stroma_cells_benign: in benign stroma, ``(lymphocyte, lymphocytes added at full aggregate strength,
            fibroblast)``.
        lymph_level: range of the threshold of the lymphoid aggregate field (higher: fewer aggregates).
        stain_jitter: amplitude of the per-world jitter of each stain vector component.
        concentration_jitter: amplitude of the per-world relative jitter of each stain's concentration.
        blur: range of the optical blur sigma, in pixels at 1 um/px or finer (scaled by px/um above).
        sensor_noise: range of the amplitude of the uniform sensor noise, in grey levels.
    """

    nuclei: Mapping[int, NucleusType] = field(default_factory=lambda: dict(_NUCLEI))
    stroma_tumour: tuple[float, float, float, float] = (0.40, 0.05, 1.4, 0.07)
    stroma_benign: tuple[float, float, float, float] = (0.30, 0.06, 0.9, 0.06)
    epithelium_tumour: tuple[float, float] | None = (0.34, 0.16)
    epithelium_apical: tuple[float, float] = (0.12, 0.13)
    epithelium_basal: tuple[float, float] = (0.30, 0.08)
    tumour_epithelium_rate: float = 0.22
    stroma_cells_tumour: tuple[float, float, float] = (0.03, 0.06, 0.10)
    stroma_cells_benign: tuple[float, float, float] = (0.06, 0.75, 0.035)
    lymph_level: tuple[float, float] = (0.4, 1.5)
    stain_jitter: float = 0.12
    concentration_jitter: float = 0.6
    blur: tuple[float, float] = (0.45, 0.45)
    sensor_noise: tuple[float, float] = (4.0, 4.0)

    def __post_init__(self) -> None:
        if set(self.nuclei) != set(_NUCLEI):
            raise ValueError(
                f"nuclei must describe the nucleus types {sorted(_NUCLEI)}, got {sorted(self.nuclei)}."
            )


def _line_mean(a: np.ndarray, dy: float, dx: float, half: int) -> np.ndarray:
    """Mean of ``a`` along a segment of 2 * half + 1 pixels in direction (dy, dx) (wraps at the border)."""
    out = np.zeros_like(a)
    for t in range(-half, half + 1):
        out += np.roll(a, (int(round(t * dy)), int(round(t * dx))), axis=(0, 1))
    return out / np.float32(2 * half + 1)


class SyntheticGastricTissue:
    """A procedural world of H&E gastric mucosa with cancer regions; ``render`` draws any window of it.

    Args:
        seed: the world's seed; every structure and the stain follow from it.
        mpp: micrometres per pixel of the rendered level (1.0 for tiles, 0.5 for a 20x slide).
        tumour_offset: threshold of the unit-variance tumour field; larger means less cancer (0.0 gives
            about half, 1.0 about a sixth). ``None`` draws it from the seed (a fifth of the worlds have no
            cancer at all). ``math.inf`` disables cancer.
        tumour_scale_um: size of the cancer regions (lattice spacing of the tumour field).
        section: ``(height, width)`` in pixels of a tissue section centred in that frame, with glass
            around it and one tumour focus always inside it (for slides); ``None`` puts tissue everywhere
            (tiles).
        style: cell mix, stain densities and stain/scanner variation (:class:`TissueStyle`).
    """

    def __init__(
        self,
        seed: int,
        mpp: float = 1.0,
        tumour_offset: float | None = None,
        tumour_scale_um: float | None = None,
        section: tuple[int, int] | None = None,
        style: TissueStyle | None = None,
    ) -> None:
        if mpp <= 0:
            raise ValueError(f"mpp must be > 0 micrometres per pixel, got {mpp}.")
        self.rng = rng = Hash(seed)
        self.mpp = float(mpp)
        self.style = st = style if style is not None else TissueStyle()
        world = [rng.value(_S_WORLD, k) for k in range(16)]
        if tumour_offset is None:
            tumour_offset = math.inf if world[0] < 0.2 else -0.9 + 2.0 * world[1]
        self.tumour_offset = float(tumour_offset)
        scale = tumour_scale_um if tumour_scale_um is not None else 170.0 + 130.0 * world[2]
        self.section = section
        if section is not None:  # centre and radius of the slide's guaranteed tumour focus
            self.focus = (
                (section[0] * (0.3 + 0.4 * world[4]), section[1] * (0.3 + 0.4 * world[5])),
                min(section) / 6,
            )
        px = 1.0 / self.mpp  # pixels per micrometre
        self.px = px
        self.tumour = (Field(rng, _S_TUMOUR, scale * px), Field(rng, _S_TUMOUR2, 0.4 * scale * px))
        self.differentiation = Field(rng, _S_DIFF, 220 * px)
        self.lymph = Field(rng, _S_LYMPH, 60 * px)
        # higher: fewer aggregates
        self.lymph_level = st.lymph_level[0] + (st.lymph_level[1] - st.lymph_level[0]) * world[3]
        self.fibre_dir = Field(rng, _S_FIBRE_DIR, 90 * px)
        self.stroma = Field(rng, _S_STROMA, 35 * px)
        self.warps = {
            "benign": [Field(rng, _S_WARP + k, 55 * px) for k in (0, 1)],
            "tumour": [Field(rng, _S_WARP + k, 40 * px) for k in (2, 3)]
            + [Field(rng, _S_WARP + k, 14 * px) for k in (4, 5)],
        }
        self.lumen_noise = {
            "benign": Field(rng, _S_LUMEN_B, 14 * px),
            "tumour": Field(rng, _S_LUMEN_T, 7 * px),
        }
        self.cribriform = Field(rng, _S_CRIB, 5 * px)
        self.tissue_edge = Field(rng, _S_TISSUE, 180 * px)
        # stain: Macenko vectors jittered, concentrations scaled, illumination
        jit = [rng.value(_S_WORLD, 20 + k) - 0.5 for k in range(12)]
        h = np.asarray(HEMATOXYLIN_OD) + st.stain_jitter * np.asarray(jit[0:3])
        e = np.asarray(EOSIN_OD) + st.stain_jitter * np.asarray(jit[3:6])
        self.stain = np.stack([h / np.linalg.norm(h), e / np.linalg.norm(e)]).astype(np.float32)  # (2, 3)
        self.concentration = (1.0 + st.concentration_jitter * jit[6], 1.0 + st.concentration_jitter * jit[7])
        self.illumination = np.float32(246 + 14 * jit[8]) + np.asarray(jit[9:12], np.float32) * 8
        scanner = [rng.value(_S_WORLD, 40 + k) for k in range(2)]
        self.blur = st.blur[0] + (st.blur[1] - st.blur[0]) * scanner[0]
        self.sensor_noise = st.sensor_noise[0] + (st.sensor_noise[1] - st.sensor_noise[0]) * scanner[1]

    # ------------------------------------------------------------------ fields
    def _tumour_field(self, c: Coords) -> np.ndarray:
        if math.isinf(self.tumour_offset):
            return np.full(c.y.shape, -1.0, np.float32)
        fine = c.field(self.tumour[1])
        t = (c.field(self.tumour[0]) + 0.35 * fine) / np.float32(1.06) - np.float32(self.tumour_offset)
        if self.section is not None:
            (fy, fx), r = self.focus
            t = np.maximum(t, 1 - ((c.y - fy) ** 2 + (c.x - fx) ** 2) / (r * r) + 0.4 * fine)
            t = np.minimum(t, self._tissue_field(c))
        return t.astype(np.float32)

    def _tissue_field(self, c: Coords) -> np.ndarray:
        """> 0 on tissue: an ellipse inscribed in ``section`` with a rough border."""
        if self.section is None:
            return np.ones(c.y.shape, np.float32)
        h, w = self.section
        r = np.hypot((c.y - h / 2) / (0.44 * h), (c.x - w / 2) / (0.46 * w))
        return (1.0 - r + 0.06 * c.field(self.tissue_edge)).astype(np.float32)

    def _glands(self, family: str, c: Coords) -> _Glands:
        """Scan the 3 x 3 jittered-lattice cells around each position for the nearest gland."""
        px = self.px
        fy, fx, *fine = self.warps[family]
        amp = 7 * px if family == "benign" else 14 * px
        wy = c.y + amp * c.field(fy)
        wx = c.x + amp * c.field(fx)
        if fine:
            wy = wy + 3 * px * c.field(fine[0])
            wx = wx + 3 * px * c.field(fine[1])
        benign = family == "benign"
        spacing = (72 if benign else 52) * px
        s = _S_GLAND + (0 if benign else 8)
        cy, cx = np.floor(wy / spacing).astype(np.int64), np.floor(wx / spacing).astype(np.int64)
        ly, lx = np.arange(cy.min() - 1, cy.max() + 2), np.arange(cx.min() - 1, cx.max() + 2)
        gy, gx = np.meshgrid(ly, lx, indexing="ij")
        u = [self.rng.uniform(s + k, gy, gx) for k in range(7)]
        centre = Coords((gy + 0.2 + 0.6 * u[0]) * spacing, (gx + 0.2 + 0.6 * u[1]) * spacing)
        t = self._tumour_field(centre)
        if benign:
            present = (t <= 0) & (u[2] < 0.88)
            radius = (26 + 9 * u[3]) * px
            aspect = 1.0 + 0.5 * u[4]
            lumen = 0.32 + 0.16 * u[5]
        else:
            present = (t > 0) & (u[2] < 0.95)
            radius = (16 + 16 * u[3]) * px
            aspect = 1.0 + 0.8 * u[4]
            lumen = (0.1 + 0.45 * u[5]) / (1 + np.exp(-2.5 * centre.field(self.differentiation)))
        # rows of diag(1/a, 1/b) @ rotation: (oy, ox) -> elliptical coordinates; absent glands far away
        angle = 2 * math.pi * u[6]
        ia, ib = np.sqrt(aspect) / radius, 1 / (radius * np.sqrt(aspect))
        flat = [
            x.astype(np.float32).ravel()
            for x in (
                np.where(present, centre.y, -1e9),
                np.where(present, centre.x, -1e9),
                ia * np.sin(angle),
                ia * np.cos(angle),
                ib * np.cos(angle),
                -ib * np.sin(angle),
                lumen,
            )
        ]
        base = (cy - ly[0]) * lx.size + (cx - lx[0])
        best = np.full(c.y.shape, np.inf, np.float32)
        best_index = np.zeros(c.y.shape, np.int64)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                index = base + (dy * lx.size + dx)
                oy, ox = wy - flat[0].take(index), wx - flat[1].take(index)
                rho2 = np.square(flat[2].take(index) * oy + flat[3].take(index) * ox)
                rho2 += np.square(flat[4].take(index) * oy + flat[5].take(index) * ox)
                better = rho2 < best
                best = np.where(better, rho2, best)
                best_index = np.where(better, index, best_index)
        oy, ox = wy - flat[0].take(best_index), wx - flat[1].take(best_index)
        norm = np.hypot(oy, ox) + np.float32(1e-6)
        return _Glands(np.sqrt(best), flat[6].take(best_index), oy / norm, ox / norm)

    def _structure(self, c: Coords) -> dict[str, np.ndarray]:
        """Per-position tissue structure: tumour field, gland geometry, compartments."""
        tumour = self._tumour_field(c)
        tissue = self._tissue_field(c) > 0
        benign = self._glands("benign", c)
        malign = self._glands("tumour", c)
        use_t = malign.rho < benign.rho  # the nearer gland wins
        g = _Glands(*(np.where(use_t, m, b) for m, b in zip(vars(malign).values(), vars(benign).values())))
        rough = np.where(
            use_t, 0.25 * c.field(self.lumen_noise["tumour"]), 0.10 * c.field(self.lumen_noise["benign"])
        )
        lumen_edge = g.lumen * (1 + rough)
        in_gland = (g.rho < 1) & tissue
        lumen = in_gland & (g.rho < lumen_edge)
        diff = 1 / (1 + np.exp(-2.5 * c.field(self.differentiation)))
        crib = in_gland & use_t & (c.field(self.cribriform) > 2.4 - 0.9 * diff) & (g.rho < 0.85)
        lumen |= crib
        return {
            "tumour": tumour,
            "tissue": tissue,
            "rho": g.rho,
            "lumen_edge": lumen_edge,
            "dir_y": g.dir_y,
            "dir_x": g.dir_x,
            "tumour_gland": use_t,
            "gland": in_gland & ~lumen,
            "lumen": lumen,
            "diff": diff,
        }

    # ------------------------------------------------------------------ nuclei
    def _nuclei(self, y0: int, x0: int, h: int, w: int, margin: int) -> dict[str, np.ndarray]:
        """Nuclei whose centre lies in the window grown by ``margin``: one candidate per lattice cell."""
        px = self.px
        step = 4.5 * px
        iy = np.arange(math.floor((y0 - margin) / step), math.ceil((y0 + h + margin) / step) + 1)
        ix = np.arange(math.floor((x0 - margin) / step), math.ceil((x0 + w + margin) / step) + 1)
        gy, gx = np.meshgrid(iy, ix, indexing="ij")
        gy, gx = gy.ravel(), gx.ravel()
        u = [self.rng.uniform(_S_NUC + k, gy, gx) for k in range(10)]
        y = ((gy + u[0]) * step).astype(np.float32)
        x = ((gx + u[1]) * step).astype(np.float32)
        c = Coords(y, x)
        st = self._structure(c)
        lymph = np.clip(c.field(self.lymph) - self.lymph_level, 0, 1) * 1.4
        tumour = st["tumour"] > 0
        stroma = st["tissue"] & ~st["gland"] & ~st["lumen"]
        basal = st["gland"] & (st["rho"] > np.maximum(st["lumen_edge"], 0.68)) & (st["rho"] < 0.97)
        kind = np.full(y.shape, -1)
        p = u[2]
        tg = st["gland"] & st["tumour_gland"]
        bg = st["gland"] & ~st["tumour_gland"]
        kind[bg & basal & (p < 0.55)] = _BENIGN_EPI
        kind[bg & ~basal & (p < 0.02)] = _BENIGN_EPI
        style = self.style
        kind[tg & (st["rho"] > st["lumen_edge"] + 0.04) & (p < style.tumour_epithelium_rate)] = _TUMOUR_EPI
        (t_lymph, t_fibro, t_signet), (b_lymph, b_aggregate, b_fibro) = (
            style.stroma_cells_tumour,
            style.stroma_cells_benign,
        )
        s_lymph = np.where(tumour, t_lymph, b_lymph + b_aggregate * lymph)
        s_fibro = np.where(tumour, t_fibro, b_fibro)
        s_signet = np.where(tumour, t_signet * (1 - st["diff"]), 0.0)
        kind[stroma & (p < s_lymph)] = _LYMPHOCYTE
        kind[stroma & (p >= s_lymph) & (p < s_lymph + s_fibro)] = _FIBROBLAST
        kind[stroma & (p >= s_lymph + s_fibro) & (p < s_lymph + s_fibro + s_signet)] = _SIGNET
        keep = kind >= 0
        kind, y, x, u = kind[keep], y[keep], x[keep], [v[keep] for v in u]
        table = np.asarray([style.nuclei[k] for k in range(len(_NUCLEI))], np.float64)[kind]
        mean_r, cv, asp_lo, asp_hi, irr, dens, dens_cv, chrom = table.T
        z = np.sqrt(-2 * np.log(u[3] + 1e-12)) * np.cos(2 * math.pi * u[4])
        radius = mean_r * np.clip(1 + cv * z, 0.6, 2.2) * px
        aspect = asp_lo + (asp_hi - asp_lo) * u[5]
        angle = 2 * math.pi * u[6]
        radial = kind == _BENIGN_EPI
        angle = np.where(radial, np.arctan2(st["dir_y"][keep], st["dir_x"][keep]), angle)
        fibro = kind == _FIBROBLAST
        angle = np.where(fibro, math.pi * c.field(self.fibre_dir)[keep], angle)
        density = dens * np.clip(1 + dens_cv * (2 * u[7] - 1) * 1.7, 0.4, 2.0)
        return {
            "y": y,
            "x": x,
            "kind": kind,
            "a": radius * np.sqrt(aspect),
            "b": radius / np.sqrt(aspect),
            "angle": angle,
            "irr": irr,
            "phase": 2 * math.pi * u[8],
            "density": density,
            "chrom": chrom,
            "u": u[9],
        }

    @staticmethod
    def _splat(
        shape: tuple[int, int],
        y0: int,
        x0: int,
        n: dict[str, np.ndarray],
        weights: Sequence[np.ndarray],
        scale: float = 1.0,
        shift: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        """Sum soft elliptical blobs (nuclei) into (h, w) canvases, one per weight vector."""
        h, w = shape
        outs = [np.zeros(h * w, np.float64) for _ in weights]
        a, b = (n["a"] * scale).astype(np.float32), (n["b"] * scale).astype(np.float32)
        cy, cx = n["y"].astype(np.float64) - y0, n["x"].astype(np.float64) - x0
        if shift is not None:
            cy, cx = cy + shift[0], cx + shift[1]
        iy, ix = np.floor(cy), np.floor(cx)
        # sub-pixel phase from world coordinates only, so any window renders the same values
        ry, rx = (iy - cy).astype(np.float32), (ix - cx).astype(np.float32)
        iy, ix = iy.astype(np.int64), ix.astype(np.int64)
        extent = a * (1 + 1.7 * n["irr"]) + 1.5
        bucket = np.ceil(np.log(extent) / np.log(1.4)).astype(np.int64)  # patch radii grow by 1.4x
        for k in np.unique(bucket):
            sel = np.flatnonzero(bucket == k)
            radius = int(math.ceil(1.4**k))
            off = np.arange(-radius, radius + 1)
            py = iy[sel, None, None] + off[None, :, None]
            px = ix[sel, None, None] + off[None, None, :]
            fy = ry[sel, None, None] + off[None, :, None].astype(np.float32)
            fx = rx[sel, None, None] + off[None, None, :].astype(np.float32)
            co, si = np.cos(n["angle"][sel])[:, None, None], np.sin(n["angle"][sel])[:, None, None]
            aa, bb = a[sel, None, None], b[sel, None, None]
            along, across = (fx * co + fy * si) / aa, (fy * co - fx * si) / bb
            rho = np.sqrt(along * along + across * across) + np.float32(1e-6)
            # outline wobble r(theta) = 1 + irr * (sin(2 theta + p) + 0.7 sin(3 theta - 2 p)), no arctan
            c1, s1 = along / rho, across / rho
            ph = n["phase"][sel, None, None]
            sin2, cos2 = 2 * s1 * c1, c1 * c1 - s1 * s1
            sin3, cos3 = s1 * (3 - 4 * s1 * s1), c1 * (4 * c1 * c1 - 3)
            wobble = (
                sin2 * np.cos(ph) + cos2 * np.sin(ph) + 0.7 * (sin3 * np.cos(2 * ph) - cos3 * np.sin(2 * ph))
            )
            rho = rho / (1 + n["irr"][sel, None, None] * wobble)
            value = np.clip((1 - rho) * bb + 0.5, 0, 1)  # about one pixel of soft edge
            inside = (py >= 0) & (py < h) & (px >= 0) & (px < w) & (value > 0)
            flat = (py * w + px)[inside]
            for out, wt in zip(outs, weights):
                out += np.bincount(flat, (value * wt[sel, None, None])[inside], minlength=h * w)
        return [o.reshape(h, w).astype(np.float32) for o in outs]

    # ------------------------------------------------------------------ rendering
    def render(self, y0: int, x0: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Render world pixels [y0, y0+height) x [x0, x0+width).

        Returns:
            ``(rgb, mask)``: rgb uint8 ``(H, W, 3)``; mask uint8 ``(H, W)`` in {0, 1} (1 = cancer).
        """
        px = self.px
        m = int(math.ceil(10 * px)) + 8  # margin for the fibre, chromatin and blur filters
        Y0, X0, H, W = y0 - m, x0 - m, height + 2 * m, width + 2 * m
        c = Coords.pixels(Y0, X0, H, W)
        st = self._structure(c)
        tissue, gland, lumen, tumour = st["tissue"], st["gland"], st["lumen"], st["tumour"] > 0
        tumour_gland = st["tumour_gland"]
        stroma = tissue & ~gland & ~lumen

        # stroma: fibres along a slowly turning direction
        noise = self.rng.pixel_uniform(_S_PIX_FIBRE, Y0, X0, H, W)
        theta = np.pi * c.field(self.fibre_dir)
        half = max(2, int(round(5 * px)))
        fibre = np.zeros((H, W), np.float32)
        for phi in np.arange(4) * np.pi / 4:
            fibre += np.cos(theta - phi) ** 4 * _line_mean(
                noise, float(np.sin(phi)), float(np.cos(phi)), half
            )
        fibre = ndimage.gaussian_filter(fibre, 0.6) * 3.0
        local = c.field(self.stroma)
        style = self.style
        (te, tl, tf, th), (be, bl, bf, bh) = style.stroma_tumour, style.stroma_benign
        e_stroma = np.where(tumour, te + tl * local, be + bl * local) * (1 + np.where(tumour, tf, bf) * fibre)
        h_stroma = np.where(tumour, th, bh) + 0.01 * local

        # epithelium: pale apical mucin in benign glands, amphophilic tumour cytoplasm (by default)
        apical = st["rho"] < st["lumen_edge"] + 0.45 * (1 - st["lumen_edge"])
        (ae, ah), (ce, ch) = style.epithelium_apical, style.epithelium_basal
        e_epi, h_epi = np.where(apical, ae, ce), np.where(apical, ah, ch)
        if style.epithelium_tumour is not None:
            e_epi = np.where(tumour_gland, style.epithelium_tumour[0], e_epi)
            h_epi = np.where(tumour_gland, style.epithelium_tumour[1], h_epi)

        e = np.where(stroma, e_stroma, np.where(gland, e_epi, 0.035))
        hem = np.where(stroma, h_stroma, np.where(gland, h_epi, 0.012))
        e = np.where(tissue, e, 0.015).astype(np.float32)
        hem = np.where(tissue, hem, 0.008).astype(np.float32)

        # nuclei (and the clear cytoplasm of signet-ring cells)
        nuc = self._nuclei(Y0, X0, H, W, margin=int(math.ceil(45 * px)))
        nd, nc = self._splat((H, W), Y0, X0, nuc, [nuc["density"], nuc["density"] * nuc["chrom"]])
        signet = nuc["kind"] == _SIGNET
        ring = {k: v[signet] for k, v in nuc.items()}
        shift_angle = 2 * np.pi * ring["u"]
        (clear,) = self._splat(
            (H, W),
            Y0,
            X0,
            ring,
            [np.ones(signet.sum())],
            scale=2.3,
            shift=(-1.3 * ring["a"] * np.sin(shift_angle), -1.3 * ring["a"] * np.cos(shift_angle)),
        )
        clear = np.clip(clear, 0, 1)
        e = e * (1 - 0.75 * clear) + 0.03 * clear
        hem = hem * (1 - 0.5 * clear) + 0.05 * clear
        chrom = (
            ndimage.gaussian_filter(self.rng.pixel_uniform(_S_PIX_CHROM, Y0, X0, H, W), 0.8 * max(px, 1))
            * 5.0
        )
        nuclear = 1.5 * np.tanh(nd / 1.5) + np.clip(nc, 0, 1.5) * chrom
        hem = hem + nuclear
        e = e * (1 - 0.5 * np.clip(nd, 0, 1))

        # Beer-Lambert, optics and sensor
        blur = self.blur * max(px, 1)
        hem = ndimage.gaussian_filter(hem, blur) * np.float32(self.concentration[0])
        e = ndimage.gaussian_filter(e, blur) * np.float32(self.concentration[1])
        od = hem[..., None] * self.stain[0] + e[..., None] * self.stain[1]
        rgb = self.illumination * np.exp(-od)
        rgb += self.sensor_noise * self.rng.pixel_uniform(_S_PIX_SENSOR, Y0, X0, H, W)[..., None]
        rgb = np.clip(np.round(rgb), 0, 255).astype(np.uint8)[m:-m, m:-m]
        mask = (tumour & tissue).astype(np.uint8)[m:-m, m:-m]
        return np.ascontiguousarray(rgb), np.ascontiguousarray(mask)


def derive_seed(seed: int, index: int) -> int:
    """Seed of the ``index``-th world of a family seeded with ``seed`` (e.g. the tiles of a data set)."""
    return int(Hash(seed).bits(_S_WORLD + 99, index) >> np.uint64(1))
