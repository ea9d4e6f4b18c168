"""One physics-randomised training tile from a :class:`~stem2d.sim.scene.Scene`.

In the order things happen at the microscope: specimen geometry and scan distortion (rotation,
mirror, non-orthogonal scan axes as a shear, pixel-size error as a zoom, detector centring error
as a shift; applied to the column positions, so no interpolation), image physics (contrast,
channelling, probe: :mod:`stem2d.sim.physics`), detector response (gamma), acquisition (blur,
contamination, scan-line jitter, shot noise, read-out noise: :func:`stem2d.sim.imaging.acquire`),
black level, the processing the frame went through (:mod:`stem2d.sim.processing`), then
optionally one of the original study's skimage noises. Every random number comes from ``rng``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stem2d.materials import get_material
from stem2d.sim.augment import AugmentParams, add_skimage_noise, random_acquisition, random_geometry
from stem2d.sim.imaging import acquire
from stem2d.sim.physics import ImagePhysics, PhysicsRanges, draw_physics, probe_kernel, render_columns
from stem2d.sim.processing import ProcessingRanges, process
from stem2d.sim.scene import Scene


@dataclass(frozen=True)
class RandomizedTile:
    """A rendered sample: clean tile (host metal peak ~1), final image, defect (row, col) in
    tile pixels (NaN for pristine), noise-mode index, processing type and the drawn physics."""

    clean: np.ndarray
    image: np.ndarray
    pos: np.ndarray
    noise: int
    processing: str
    physics: ImagePhysics


def scene_to_tile_px(points_A: np.ndarray, matrix: np.ndarray, shift_px: np.ndarray, *,
                     pixel_size_A: float, tile_size_px: int) -> np.ndarray:
    """Map scene points (row, col in angstrom from the scene centre) to tile pixels."""
    c = (tile_size_px - 1) / 2.0
    return (np.asarray(points_A, dtype=np.float64) / pixel_size_A) @ matrix.T + c + shift_px


def render_clean(scene: Scene, physics: ImagePhysics, *, matrix: np.ndarray, shift_px: np.ndarray,
                 pixel_size_A: float, tile_size_px: int) -> np.ndarray:
    """Noise-free tile of a scene under one geometry and one physics (before the detector)."""
    material = get_material(scene.material)
    pos = scene_to_tile_px(scene.pos_A, matrix, shift_px, pixel_size_A=pixel_size_A,
                           tile_size_px=tile_size_px)
    weights = physics.column_weights(scene.atoms.astype(np.int64), material.z_metal)
    kernel = probe_kernel(physics, pixel_size_A=pixel_size_A)
    return render_columns(pos, weights, kernel=kernel, shape=(tile_size_px, tile_size_px),
                          pixel_size_A=pixel_size_A)


def detect_and_process(clean: np.ndarray, physics: ImagePhysics, *, params: AugmentParams,
                       processing: ProcessingRanges, pixel_size_A: float, rng) -> tuple[np.ndarray, str]:
    """Detector response, acquisition and processing of a noise-free image (tiles and frames alike).

    Detector gamma, then :func:`stem2d.sim.imaging.acquire` (blur, contamination, scan-line
    jitter, shot and read-out noise) with settings drawn from ``params``, the black level, then one
    drawn processing type (:func:`stem2d.sim.processing.process`).

    Returns
    -------
    image : ndarray, float64, shape of ``clean``; kind : str, the processing type applied.
    """
    signal_ = np.power(np.clip(clean, 0.0, None), physics.detector_gamma)
    acq = random_acquisition(rng, params=params)
    counts = acquire(signal_, pixel_size_A=pixel_size_A, acq=acq, blur_px=rng.uniform(0.0, params.max_blur_px),
                     rng=rng).astype(np.float64)
    counts += physics.detector_offset * acq.peak_counts(pixel_size_A)
    return process(counts, ranges=processing, pixel_size_A=pixel_size_A, rng=rng)


def randomized_tile(
    scene: Scene,
    *,
    params: AugmentParams = AugmentParams(),
    physics: PhysicsRanges = PhysicsRanges(),
    processing: ProcessingRanges = ProcessingRanges(),
    rng=None,
    noise: int | None = None,
) -> RandomizedTile:
    """Render one augmented, physics-randomised sample of ``scene``.

    Parameters
    ----------
    scene : Scene
    params : AugmentParams
        Geometry and acquisition ranges (``max_shear`` is the scan non-orthogonality).
    physics : PhysicsRanges
    processing : ProcessingRanges
    rng : int, Generator or None
    noise : int or None
        Index into ``params.noise_modes``; None draws it.

    Returns
    -------
    RandomizedTile; ``image`` float64.
    """
    rng = np.random.default_rng(rng)
    material = get_material(scene.material)
    size, px = params.tile_size_px, params.pixel_size_A
    geometry = random_geometry(rng, params=params)
    drawn = draw_physics(physics, host_metal=material.metal, rng=rng)
    clean = render_clean(scene, drawn, matrix=geometry.matrix, shift_px=geometry.shift_px,
                         pixel_size_A=px, tile_size_px=size)
    pos = scene_to_tile_px(scene.defect_A, geometry.matrix, geometry.shift_px, pixel_size_A=px,
                           tile_size_px=size)
    if noise is None:
        noise = int(rng.choice(len(params.noise_modes), p=params.noise_probabilities))
    image, kind = detect_and_process(clean, drawn, params=params, processing=processing, pixel_size_A=px,
                                     rng=rng)
    mode = params.noise_modes[noise]
    if mode != "dose":
        image = add_skimage_noise(image, mode, rng=rng)
    return RandomizedTile(clean, image, pos, noise, kind, drawn)
