"""Candidate-site detectors: one registry, one factory per detector.

A detector proposes the sites where 64 x 64 windows are cut for the classifier. Every detector
works on the frame at the canonical sampling (0.3 A/px) and returns candidate points (N, 2)
(row, col in canonical px) and one score per point. The factories in :data:`DETECTORS` take the
host ``material`` and the keys of their own ``conf/detector/<name>.yaml``:

- ``unet``: the U-Net pixel predictor's probability map, thresholded into blobs
  (:mod:`stem2d.predict.pixelmap`); the default;
- ``lattice``: sites where the frame departs from a fitted ideal lattice
  (:func:`stem2d.lattice.lattice_points`), no trained model;
- ``fourier``: the original study's FFT high-pass labels (:func:`stem2d.lattice.maksov_points`);
- ``grid``: windows on a regular grid, each site moved to its CAM peak (the original study's
  sliding-window mode), no detector at all.

>>> from stem2d.predict.detectors import build_detector
>>> grid = build_detector("grid", material="WS2", stride_px=32)
>>> grid.name, grid.centred
('grid', False)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stem2d import CANONICAL_PIXEL_SIZE_A
from stem2d.materials import Material, get_material

__all__ = ["DETECTORS", "SiteDetector", "build_detector"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SiteDetector:
    """A candidate-site proposer and how the frame analysis treats its sites.

    Attributes
    ----------
    name : str
        Registry name (``unet``, ``lattice``, ``fourier``, ``grid``).
    propose : callable
        ``propose(canon) -> (points (N, 2), scores (N,))`` on a canonical-sampling frame.
    centred : bool
        The windows are centred on defect sites. False (grid): every site is moved to its CAM
        peak and sites closer than ``merge_dist_A`` are merged; a window the classifier calls
        pristine is simply not a defect (never an unconfirmed candidate).
    merge_dist_A : float
        Sites closer than this are one defect (angstrom).
    """

    name: str
    propose: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    centred: bool = True
    merge_dist_A: float = 1.5

    def __call__(self, canon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.propose(canon)


def unet(
    *,
    material: Material,
    ckpt_path: str | Path | None = None,
    tile_size_px: int | None = None,
    threshold: float = 0.5,
    min_area_px: int = 4,
    max_area_px: int = 400,
    merge_dist_A: float = 1.5,
    bf16: str | bool = "auto",
    runtime: str = "torch",
    device: str = "cpu",
) -> SiteDetector:
    """U-Net probability map -> blobs -> sites (``conf/detector/unet.yaml``).

    Parameters
    ----------
    material : Material
        Unused (the U-Net was trained on WS2); every factory takes it.
    ckpt_path : path, optional
        Pixel-predictor checkpoint; None = the bundled ``stem2d/weights/unet_ws2.ckpt``.
    tile_size_px : int or None
        U-Net tile at 0.3 A/px; None predicts the whole frame as one tile (fastest).
    threshold : float
        Probability threshold of the map.
    min_area_px, max_area_px : int
        Blob area limits at 0.3 A/px.
    merge_dist_A : float
        Blobs closer than this are one defect.
    bf16 : {"auto", True, False}
        Map under bf16 autocast: ``auto`` where the CPU has native bf16
        (:mod:`stem2d.models.precision`, the classifier's rule).
    runtime : {"torch", "auto", "onnxruntime"}
        Where an fp32 map runs (:mod:`stem2d.models.runtime`). Default torch: on the benchmark's
        CPU it maps 402 px frames in 30 ms against ONNX Runtime's 37, 1607 px frames in 0.49 s
        against 1.0 s, and those of the speed preset ``unet_ws2_fast.ckpt`` in 0.36 against 0.85 s
        (one thread, interleaved, best of 4-10, load ~0.8: torch runs the prediction copy of
        :func:`stem2d.models.unet.for_inference`, fused oneDNN convolutions). ``auto``: ONNX Runtime when
        installed and the map is fp32 on the CPU.
    device : {"cpu", "cuda", "auto"}
        Where the U-Net runs (:func:`stem2d.models.runtime.resolve_device`; not yet verified on
        GPU hardware for the whole movie loop).
    """
    from stem2d.models.loading import load_unet
    from stem2d.models.precision import use_bf16
    from stem2d.models.runtime import OnnxPixelNet, onnx_if_chosen, resolve_device
    from stem2d.predict.pixelmap import extract_defects, predict_frame

    device = resolve_device(device)
    net = load_unet(ckpt_path).to(device)
    bf16 = use_bf16(bf16, device_type=device)
    onnx = onnx_if_chosen(runtime, lambda: OnnxPixelNet(net), bf16=bf16, device_type=device, what="U-Net")
    if onnx is not None:
        net = onnx
    log.info("U-Net map on %s: %s, %s", device, "torch" if onnx is None else "onnxruntime",
             "bf16 autocast (native bf16)" if bf16 else "fp32")
    tile = None if tile_size_px is None else int(tile_size_px)
    min_dist_px = float(merge_dist_A) / CANONICAL_PIXEL_SIZE_A

    def propose(canon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        prob = predict_frame(net, canon, tile=tile, bf16=bf16)
        return extract_defects(prob, threshold=float(threshold), min_area_px=int(min_area_px),
                               max_area_px=int(max_area_px), min_dist_px=min_dist_px)

    return SiteDetector("unet", propose, merge_dist_A=float(merge_dist_A))


def _labeler(name: str) -> Callable[..., SiteDetector]:
    def factory(*, material: Material) -> SiteDetector:
        from stem2d.lattice import LABELERS

        labeler = LABELERS[name]

        def propose(canon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            points = labeler(canon, material=material, pixel_size_A=CANONICAL_PIXEL_SIZE_A)
            return points, np.ones(len(points))

        return SiteDetector(name, propose)

    factory.__name__ = name
    factory.__doc__ = f"``stem2d.lattice.LABELERS[{name!r}]`` sites, score 1 (``conf/detector/{name}.yaml``)."
    return factory


lattice = _labeler("lattice")
fourier = _labeler("fourier")


def grid(*, material: Material, stride_px: int = 16, merge_dist_A: float = 1.5) -> SiteDetector:
    """Windows on a grid of ``stride_px`` (at 0.3 A/px), sites moved to their CAM peak and merged
    within ``merge_dist_A`` (``conf/detector/grid.yaml``; the original study's mode)."""
    from stem2d.predict.windows import grid_centres

    def propose(canon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points = grid_centres(canon.shape, stride=int(stride_px))
        return points, np.zeros(len(points))

    return SiteDetector("grid", propose, centred=False, merge_dist_A=float(merge_dist_A))


#: Detector factories by name: ``factory(*, material, **settings) -> SiteDetector``.
DETECTORS: dict[str, Callable[..., SiteDetector]] = {"unet": unet, "lattice": lattice, "fourier": fourier,
                                                     "grid": grid}


def build_detector(name: str, *, material: str | Material = "WS2", **settings) -> SiteDetector:
    """The detector ``name`` of :data:`DETECTORS`, built with its ``settings``.

    Parameters
    ----------
    name : str
        ``unet``, ``lattice``, ``fourier`` or ``grid``.
    material : str or Material, keyword-only
        Host lattice.
    **settings
        The keys of ``conf/detector/<name>.yaml`` (see each factory).

    Raises
    ------
    ValueError
        Unknown name, or a setting the detector does not have.
    """
    if name not in DETECTORS:
        raise ValueError(f"detector {name!r} is not known; choose one of {sorted(DETECTORS)}")
    if isinstance(material, str):
        material = get_material(material)
    try:
        return DETECTORS[name](material=material, **settings)
    except TypeError as err:
        if "unexpected keyword" not in str(err):
            raise
        raise ValueError(f"detector {name!r}: {err} (see conf/detector/{name}.yaml)") from err
