"""Physics-randomised training crops of whole frames for the pixel-wise defect network (the U-Net).

Where :func:`stem2d.sim.randomized.randomized_tile` renders one defect at the centre of a 64 px
tile for the classifier, a *frame crop* is a region of one MX2 monolayer (any material of
:data:`stem2d.materials.MATERIALS`: pure hosts, S/Se alloys, Janus layers) holding several point
defects of random site classes (``conf/classes/sites.yaml``) at random columns, rendered with the
same randomised physics: geometry and scan distortion, contrast / channelling / probe / detector
(:mod:`stem2d.sim.physics`), acquisition and processing
(:func:`stem2d.sim.randomized.detect_and_process`). As a real frame, it is acquired at its own
pixel size (``pixel_size_range_A``) and then resampled to the analysis sampling of 0.3 A/px,
exactly as the pipeline resamples every frame before the U-Net.

A crop comes with the defect sites in crop pixels; :mod:`stem2d.data.randomized_frames` turns them
into the training mask (a disk per site, :func:`stem2d.data.labels.defect_mask`). The per-column
S/Se composition of an alloy is *not* a defect: alloy columns carry no site, only the defects
placed here do. Every random number comes from ``rng``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stem2d import CANONICAL_PIXEL_SIZE_A
from stem2d.classes import SITE_CLASS_KINDS, ClassSet, parse_kind
from stem2d.lattice.scale import resample, resample_factors, to_resampled_coords
from stem2d.materials import Material, get_material
from stem2d.sim.augment import AugmentParams, random_geometry
from stem2d.sim.lattice import (
    Columns,
    hollow_directions,
    lattice_vectors_A,
    mx2_columns,
)
from stem2d.sim.physics import (
    KERNEL_RADIUS_PX,
    ImagePhysics,
    PhysicsRanges,
    draw_physics,
)
from stem2d.sim.processing import ProcessingRanges
from stem2d.sim.randomized import detect_and_process, render_clean, scene_to_tile_px
from stem2d.sim.scene import _chalcogen_layers, draw_composition, place_defect

#: The site classes whose kinds are placed as defects (every class but pristine).
DEFECT_CLASSES = ClassSet.from_mapping(SITE_CLASS_KINDS)


@dataclass(frozen=True)
class FrameSettings:
    """Sizes and ranges of a frame crop (uniform draws unless said otherwise).

    Attributes
    ----------
    crop_px : side of the crop at 0.3 A/px (a multiple of 16 for the U-Net).
    pixel_size_range_A : acquisition pixel size before resampling to 0.3 A/px.
    density_per_nm2 : point-defect density, drawn log-uniformly per crop.
    min_defect_distance_A : smallest distance between two defect sites (two sites closer than
        the U-Net's blob merge distance would be one blob).
    max_dopant_offset_A : a metal-site substitution moves up to this far towards a hollow
        (Mo configuration B); its site moves with it.
    class_weights : relative draw weight of site classes (name, weight) pairs; classes not named
        weigh 1 (empty: every class the material holds equally likely).
    """

    crop_px: int = 160
    pixel_size_range_A: tuple[float, float] = (0.2, 0.4)
    density_per_nm2: tuple[float, float] = (0.3, 2.0)
    min_defect_distance_A: float = 3.0
    max_dopant_offset_A: float = 0.6
    class_weights: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if int(self.crop_px) < 32 or int(self.crop_px) % 16:
            raise ValueError(f"crop_px={self.crop_px} must be a multiple of 16 and >= 32")
        lo, hi = (float(v) for v in self.pixel_size_range_A)
        if not 0 < lo <= hi:
            raise ValueError(f"pixel_size_range_A={[lo, hi]} must be an ordered (min, max) > 0")
        dlo, dhi = (float(v) for v in self.density_per_nm2)
        if not 0 <= dlo <= dhi:
            raise ValueError(f"density_per_nm2={[dlo, dhi]} must be an ordered (min, max) >= 0")
        if self.min_defect_distance_A < 0 or self.max_dopant_offset_A < 0:
            raise ValueError(f"min_defect_distance_A={self.min_defect_distance_A} and max_dopant_offset_A="
                             f"{self.max_dopant_offset_A} must be >= 0")
        weights = dict(self.class_weights.items() if hasattr(self.class_weights, "items") else self.class_weights)
        unknown = sorted(set(weights) - set(DEFECT_CLASSES.names))
        if unknown or any(float(w) < 0 for w in weights.values()):
            raise ValueError(f"class_weights={weights}: names from {list(DEFECT_CLASSES.names)}, weights >= 0")
        object.__setattr__(self, "class_weights", tuple((str(k), float(v)) for k, v in weights.items()))
        object.__setattr__(self, "crop_px", int(self.crop_px))
        object.__setattr__(self, "pixel_size_range_A", (lo, hi))
        object.__setattr__(self, "density_per_nm2", (dlo, dhi))

    def scene_radius_A(self, params: AugmentParams) -> float:
        """Radius of a scene that covers the rendered area at the coarsest pixel size, smallest
        zoom and largest shear, plus the probe kernel's reach."""
        px = self.pixel_size_range_A[1]
        side_A = (self.crop_px * CANONICAL_PIXEL_SIZE_A / px + 2) * px
        s = params.max_shear
        shear_norm = (s + np.sqrt(s * s + 4.0)) / 2.0
        return (np.sqrt(0.5) * side_A + params.max_shift_px * px) * shear_norm / params.zoom_range[0] \
            + KERNEL_RADIUS_PX * px + 2.0


@dataclass(frozen=True)
class FrameScene:
    """Columns of a monolayer region and its defects, positions in angstrom from its centre.

    ``pos_A`` (N, 2) float32 and ``atoms`` (N, 2) int8 as :class:`stem2d.sim.scene.Scene`;
    ``defects_A`` (D, 2) float64 defect sites; ``kinds`` their resolved kind names.
    """

    pos_A: np.ndarray
    atoms: np.ndarray
    defects_A: np.ndarray
    kinds: tuple[str, ...]
    material: str
    second_fraction: float


@dataclass(frozen=True)
class RandomizedFrame:
    """A rendered crop at 0.3 A/px: ``clean`` (noise-free, host-metal peak ~1) and ``image``
    (acquired and processed), both float32 (S, S); ``points`` (D, 2) float64 defect sites in crop
    pixels (sites up to a few pixels outside the crop included, their disks reach in);
    ``kinds`` their kinds; the acquisition ``pixel_size_A``, processing type and drawn physics."""

    clean: np.ndarray
    image: np.ndarray
    points: np.ndarray
    kinds: tuple[str, ...]
    material: str
    pixel_size_A: float
    processing: str
    physics: ImagePhysics


def frame_scene(material: Material, *, radius_A: float, density_per_nm2: float, rng=None,
                min_defect_distance_A: float = 3.0, max_dopant_offset_A: float = 0.6,
                second_fraction: float | None = None,
                class_weights: tuple[tuple[str, float], ...] = ()) -> FrameScene:
    """A disc of monolayer with Poisson-many point defects of random site classes.

    Each defect draws a site class uniformly among those ``material`` holds, then one of its kinds,
    then a free column of that site (a hollow for adatoms) at least ``min_defect_distance_A`` from
    every earlier defect. Alloys and Janus layers first get their chalcogen composition (not
    defects).

    Parameters
    ----------
    material : Material
    radius_A : float
        Columns within this distance of the centre are kept.
    density_per_nm2 : float
        Mean number of defects per nm^2 of the disc.
    rng : int, Generator or None
    min_defect_distance_A, max_dopant_offset_A : float
        See :class:`FrameSettings`.
    second_fraction : float or None
        Fraction of the second chalcogen of an alloy (None: uniform in the material's range).
    class_weights : tuple of (str, float)
        Relative draw weights of site classes (others 1); empty: uniform.

    Returns
    -------
    FrameScene
    """
    rng = np.random.default_rng(rng)
    mat, x = draw_composition(material, second_fraction, rng)
    vecs = lattice_vectors_A(mat.a_A, 0.0)
    origin = radius_A + rng.uniform(0.0, 1.0, size=2) @ vecs
    columns = mx2_columns(mat, extent_A=(2 * radius_A, 2 * radius_A), origin_A=tuple(origin), margin_A=0.0)
    columns = Columns(columns.pos_A - radius_A, columns.site, columns.atoms)
    columns = _chalcogen_layers(columns, mat, x, rng)
    inside = np.hypot(*columns.pos_A.T) <= radius_A
    pool = [(name, kinds) for name, kinds in DEFECT_CLASSES.kinds_in(mat).items() if kinds]
    n = int(rng.poisson(density_per_nm2 * np.pi * (radius_A / 10.0) ** 2))
    weights = dict(class_weights)
    p = np.array([weights.get(name, 1.0) for name, _ in pool]) if weights else None
    free = {"M": inside & (columns.site == "M"), "X": inside & (columns.site == "X")}
    lattice_pos = columns.pos_A.astype(np.float64)
    hollow = (2.0 / 3.0) * (vecs[0] + vecs[1])
    directions = hollow_directions(0.0)
    parsed = {k: parse_kind(k, mat) for _, ks in pool for k in ks}
    sites, kinds = [], []
    for _ in range(n):
        c = int(rng.integers(len(pool))) if p is None else int(rng.choice(len(pool), p=p / p.sum()))
        _, options = pool[c]
        kind = parsed[options[int(rng.integers(len(options)))]]
        candidates = np.flatnonzero(free["M" if kind.site == "H" else kind.site])
        if candidates.size == 0:
            continue
        j = int(candidates[rng.integers(candidates.size)])
        site = lattice_pos[j].copy()
        moved = kind.site == "M" and kind.occupant_z and max_dopant_offset_A > 0
        if kind.site == "H":
            site += hollow
        elif moved:
            site += rng.uniform(0.0, max_dopant_offset_A) * directions[rng.integers(3)]
        if sites and np.hypot(*(np.asarray(sites) - site).T).min() < min_defect_distance_A:
            continue  # a hollow or a displaced dopant too close to an earlier site
        columns = place_defect(columns, kind, j, rng)
        if kind.site == "H":
            columns.pos_A[-1] = site
        elif moved:
            columns.pos_A[j] = site
        near = np.hypot(*(lattice_pos - site).T) < min_defect_distance_A
        for mask in free.values():
            mask &= ~near
        sites.append(site)
        kinds.append(kind.name)
    keep = np.hypot(*columns.pos_A.T) <= radius_A
    defects = np.asarray(sites, dtype=np.float64).reshape(-1, 2)
    return FrameScene(columns.pos_A[keep].astype(np.float32), columns.atoms[keep].astype(np.int8), defects,
                      tuple(kinds), material.name, x if material.mixed else 0.0)


def render_frame(scene: FrameScene, *, settings: FrameSettings = FrameSettings(),
                 params: AugmentParams = AugmentParams(), physics: PhysicsRanges = PhysicsRanges(),
                 processing: ProcessingRanges = ProcessingRanges(), rng=None) -> RandomizedFrame:
    """Acquire a scene at a random pixel size with randomised physics, then resample to 0.3 A/px.

    In the order of the microscope and the pipeline: a pixel size in
    ``settings.pixel_size_range_A``; geometry and scan distortion (``params``: rotation, mirror,
    shear, zoom, shift); image physics drawn from ``physics``; detector, acquisition and
    processing (``params``, ``processing``) at that pixel size; resampling to 0.3 A/px
    (:func:`stem2d.lattice.scale.resample`, as the pipeline does) and the top-left
    ``crop_px`` square. ``params.tile_size_px`` and ``params.pixel_size_A`` are not used.

    Returns
    -------
    RandomizedFrame
    """
    rng = np.random.default_rng(rng)
    px = float(rng.uniform(*settings.pixel_size_range_A))
    n = int(np.ceil(settings.crop_px * CANONICAL_PIXEL_SIZE_A / px)) + 2
    geometry = random_geometry(rng, params=params)
    drawn = draw_physics(physics, host_metal=get_material(scene.material).metal, rng=rng)
    clean = render_clean(scene, drawn, matrix=geometry.matrix, shift_px=geometry.shift_px, pixel_size_A=px,
                         tile_size_px=n)
    points = scene_to_tile_px(scene.defects_A, geometry.matrix, geometry.shift_px, pixel_size_A=px, tile_size_px=n)
    image, kind = detect_and_process(clean, drawn, params=params, processing=processing, pixel_size_A=px, rng=rng)
    factors = resample_factors(clean.shape, from_pixel_size_A=px)
    s = settings.crop_px
    clean = resample(clean, from_pixel_size_A=px)[:s, :s]
    image = resample(image, from_pixel_size_A=px)[:s, :s]
    points = to_resampled_coords(points, factors).reshape(-1, 2)
    near = np.all((points > -4.0) & (points < s + 3.0), axis=1)
    return RandomizedFrame(clean.astype(np.float32), image.astype(np.float32), points[near],
                           tuple(k for k, ok in zip(scene.kinds, near) if ok), scene.material, px, kind, drawn)


def randomized_frame(material: Material, *, settings: FrameSettings = FrameSettings(),
                     params: AugmentParams = AugmentParams(), physics: PhysicsRanges = PhysicsRanges(),
                     processing: ProcessingRanges = ProcessingRanges(), rng=None,
                     second_fraction: float | None = None) -> RandomizedFrame:
    """A scene of ``material`` (:func:`frame_scene`, density drawn log-uniformly in
    ``settings.density_per_nm2``) rendered by :func:`render_frame`, all from one ``rng``."""
    rng = np.random.default_rng(rng)
    lo, hi = settings.density_per_nm2
    density = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if lo > 0 else float(rng.uniform(lo, hi))
    scene = frame_scene(material, radius_A=settings.scene_radius_A(params), density_per_nm2=density, rng=rng,
                        min_defect_distance_A=settings.min_defect_distance_A,
                        max_dopant_offset_A=settings.max_dopant_offset_A, second_fraction=second_fraction,
                        class_weights=settings.class_weights)
    return render_frame(scene, settings=settings, params=params, physics=physics, processing=processing, rng=rng)


__all__ = ["DEFECT_CLASSES", "FrameScene", "FrameSettings", "RandomizedFrame", "frame_scene", "randomized_frame",
           "render_frame"]
