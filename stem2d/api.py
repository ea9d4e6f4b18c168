"""The notebook API: one call per task, numpy or a path in, tables and arrays out.

>>> import stem2d
>>> frame, truth = stem2d.simulate_frame(shape=(256, 256), pixel_size_A=0.25, rng=0)
>>> defects = stem2d.find_defects(frame, pixel_size_A=0.25)          # doctest: +SKIP
>>> result = stem2d.analyze_movie("movie.tif")                       # doctest: +SKIP
>>> result.detections.head(); result.tracks; result.evolution.diffusion   # doctest: +SKIP
>>> rgb = result.overlay(0); result.save("run1")                      # doctest: +SKIP

These are the functions ``python infer.py`` runs (:mod:`stem2d.predict`): the same detections
come out of either, with the same defaults (``conf/infer.yaml``, ``conf/detector/unet.yaml``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stem2d.classes import ClassSet
from stem2d.materials import get_material

__all__ = ["analyze_movie", "find_defects", "load_classifier", "simulate_frame"]

log = logging.getLogger(__name__)


def load_classifier(ckpt_path: str | Path | None = None, *, material: str = "WS2",
                    classes: Sequence[str] | None = None):
    """The CAM classifier for inference (eval mode).

    Parameters
    ----------
    ckpt_path : path, optional
        A ``train.py`` checkpoint or a slim export; None = the bundled weights of ``material``
        (``stem2d/weights/cam_cnn_<material>.ckpt``) when they ship with ``classes``, else the WS2
        weights.
    material : str, keyword-only, default "WS2"
    classes : sequence of str, optional
        Refuse a checkpoint whose class names differ (None: accept its own).

    Returns
    -------
    TileClassifier
        A plain ``nn.Module`` (:mod:`stem2d.models.inference`; no Lightning): ``model.class_names``;
        classify windows with :func:`stem2d.predict.classify.classify_tiles`.

    Examples
    --------
    >>> model = stem2d.load_classifier()                  # doctest: +SKIP
    >>> model.class_names                                 # doctest: +SKIP
    ['pristine', 'mo_dopant', 's_vacancy', 'w_vacancy', 'w_dopant']
    """
    from stem2d.models.loading import classifier_path_for
    from stem2d.models.loading import load_classifier as _load

    if ckpt_path is None and classes is not None:
        ckpt_path = classifier_path_for(material, tuple(classes))
    elif ckpt_path is None and material != "WS2":
        own = _own_class_set(material)
        ckpt_path = classifier_path_for(material, own.names) if own is not None else None
    return _load(ckpt_path, expected_classes=None if classes is None else list(classes))


def simulate_frame(*, material: str = "WS2", shape: tuple[int, int] = (512, 512), pixel_size_A: float = 0.25,
                   dose_e_per_A2: float = 5e4, rng: int | np.random.Generator | None = None
                   ) -> tuple[np.ndarray, pd.DataFrame]:
    """One simulated HAADF-STEM frame with its true defects (frame 0 of :func:`stem2d.sim.movie.simulate_movie`).

    Parameters
    ----------
    material : str, keyword-only, default "WS2"
    shape : (int, int), default (512, 512)
        Frame size in px.
    pixel_size_A : float, default 0.25
        Angstrom per px.
    dose_e_per_A2 : float, default 5e4
        Electron dose of the frame (shot noise).
    rng : int, Generator or None
        Seed.

    Returns
    -------
    frame : ndarray, float32, (H, W)
        Detector counts.
    truth : DataFrame
        ``row, col, class, kind`` (+ ``frame, track, config``) of every defect in the frame.

    Examples
    --------
    >>> frame, truth = simulate_frame(shape=(128, 128), rng=0)
    >>> frame.shape, frame.dtype.name
    ((128, 128), 'float32')
    """
    from stem2d.sim.movie import MovieConfig, simulate_movie

    movie = simulate_movie(MovieConfig(material=material, n_frames=1, frame_shape=tuple(shape),
                                       pixel_size_A=float(pixel_size_A), dose_e_per_A2=float(dose_e_per_A2)),
                           rng=rng, classes=_class_set(None, material))
    return np.asarray(movie.frames[0], dtype=np.float32), movie.truth.reset_index(drop=True)


def find_defects(image: np.ndarray, *, pixel_size_A: float | None = None, material: str = "WS2",
                 detector: str = "unet", detector_settings: Mapping[str, Any] | None = None,
                 classifier=None, classes: Mapping[str, Sequence[str]] | ClassSet | str | None = None,
                 unconfirmed: str = "unknown", evidence: bool = True) -> pd.DataFrame:
    """Find and classify the point defects of one frame.

    Parameters
    ----------
    image : ndarray, (H, W)
        One HAADF-STEM frame (counts or any linear intensity).
    pixel_size_A : float, optional
        Angstrom per px; None measures it from the lattice.
    material : str, keyword-only, default "WS2"
        Host lattice: WS2, MoS2, WSe2, MoSe2.
    detector : str, default "unet"
        ``unet``, ``lattice``, ``fourier`` or ``grid`` (:data:`stem2d.predict.detectors.DETECTORS`).
    detector_settings : mapping, optional
        Keys of ``conf/detector/<detector>.yaml``, e.g. ``{"threshold": 0.4}``.
    classifier : TileClassifier or path, optional
        From :func:`load_classifier`, or a checkpoint path; None = the bundled weights of ``material``.
    classes : mapping, ClassSet or str, optional
        The defect kinds of the classifier's classes, or the name of a ``conf/classes`` set
        (``"mos2"``); None = the material's own set when its classifier ships, else the default.
    unconfirmed : {"unknown", "drop", "relabel"}, default "unknown"
        What becomes of a candidate the classifier or its column does not confirm.
    evidence : bool, default True
        Add ``sublattice, intensity_rel, p_class`` (column quantification) to every row.

    Returns
    -------
    DataFrame
        One row per defect: ``frame`` (0), ``row``, ``col`` (input px), ``class``, ``score``, then
        the evidence (``sublattice``, ``intensity_rel``, ``p_class``, ``region``, ...; see the
        README's "Checking a call"); unconfirmed candidates have class ``unknown``.

    Examples
    --------
    >>> frame, truth = stem2d.simulate_frame(shape=(256, 256), pixel_size_A=0.25, rng=1)  # doctest: +SKIP
    >>> defects = stem2d.find_defects(frame, pixel_size_A=0.25)                            # doctest: +SKIP
    >>> defects.columns[:8].tolist()                                                       # doctest: +SKIP
    ['frame', 'row', 'col', 'class', 'score', 'sublattice', 'intensity_rel', 'p_class']
    >>> defects.groupby("class").size()                                                    # doctest: +SKIP
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image: expected one 2D frame, got shape {image.shape} (use analyze_movie for a stack)")
    result = analyze_movie(image[None], pixel_size_A=pixel_size_A, material=material, detector=detector,
                           detector_settings=detector_settings, classifier=classifier, classes=classes,
                           unconfirmed=unconfirmed, evidence=evidence, evolve=False)
    return result.detections


def analyze_movie(frames_or_path, *, pixel_size_A: float | None = None, material: str = "WS2",
                  detector: str = "unet", detector_settings: Mapping[str, Any] | None = None,
                  classifier=None, classes: Mapping[str, Sequence[str]] | ClassSet | str | None = None,
                  unconfirmed: str = "unknown", evidence: bool = True, max_frames: int | None = None,
                  dataset: str | None = None, evolve: bool = True, evolution: Mapping[str, Any] | None = None,
                  dose_per_frame: float | None = None, video_dir: str | Path | None = None,
                  threads: int = 1, progress: bool = False):
    """Find, classify and follow the defects of a movie, frame by frame (streaming, like ``infer.py``).

    Parameters
    ----------
    frames_or_path : array (T, H, W), sequence of (H, W) arrays, or path
        The movie; a path is read lazily with :func:`stem2d.io.readers.read_movie` (``.dm3/.dm4``,
        ``.emd``, ``.tif``, ``.npy/.npz``, ``.h5``, ``.mp4``, a folder of images); a
        ``<stem>_truth.csv`` beside it is used to score the run.
    pixel_size_A : float, optional
        Angstrom per px; None measures it from the lattice of frame 0.
    material, detector, detector_settings, classifier, classes, unconfirmed, evidence
        As in :func:`find_defects`.
    max_frames : int, optional
        Only the first N frames.
    dataset : str, optional
        Dataset inside an HDF5/NPZ file.
    evolve : bool, default True
        Track the defects and analyse their evolution (diffusion, transitions, lifetimes).
    evolution : mapping, optional
        Settings of :func:`stem2d.evolution.evolve` (``search_range_A``, ``memory``, ...).
    dose_per_frame : float, optional
        e/A^2 per frame (counts vs accumulated dose).
    video_dir : path, optional
        Write ``overlay.mp4`` and ``overlay.gif`` there as the frames stream.
    threads : int, default 1
        Torch and BLAS threads.
    progress : bool, default False
        Progress bar.

    Returns
    -------
    MovieResult
        ``.detections`` (DataFrame), ``.drift_px``, ``.tracks``, ``.evolution``, ``.summary``;
        ``.overlay(k)`` -> RGB array of frame k; ``.save(folder)`` writes the run folder of ``infer.py``.

    Examples
    --------
    >>> result = stem2d.analyze_movie("movie.tif", max_frames=20)     # doctest: +SKIP
    >>> result.detections.groupby("class").size()                    # doctest: +SKIP
    >>> result.evolution.diffusion["hop_rate_per_frame"]             # doctest: +SKIP
    >>> plt.imshow(result.overlay(0)); result.save("run1")           # doctest: +SKIP
    """
    from stem2d.models.temperature import load_temperature
    from stem2d.predict.detectors import build_detector
    from stem2d.predict.movie import MovieSettings, MovieSource
    from stem2d.predict.movie import analyze_movie as _analyze

    class_set = _class_set(classes, material)
    model, ckpt = _classifier(classifier, material, class_set)
    if isinstance(frames_or_path, (str, Path)):
        source = MovieSource.from_path(frames_or_path, dataset=dataset)
    else:
        frames = frames_or_path if hasattr(frames_or_path, "__getitem__") else list(frames_or_path)
        source = MovieSource(frames, source=f"array{np.shape(frames[0]) if len(frames) else ()}")
    settings = MovieSettings(material=material, pixel_size_A=pixel_size_A, max_frames=max_frames,
                             unconfirmed=unconfirmed, evidence=evidence, threads=threads,
                             dose_per_frame=dose_per_frame, evolve=evolve, evolution=dict(evolution or {}),
                             progress=progress)
    det = build_detector(detector, material=material, **dict(detector_settings or {}))
    return _analyze(source, detector=det, classifier=model, classes=class_set,
                    temperature=load_temperature(ckpt) if ckpt is not None else 1.0, settings=settings,
                    video_dir=video_dir)


def _classifier(classifier, material: str, classes: ClassSet):
    """(model, checkpoint path or None) from a model, a path or None (the bundled weights); a
    site-vocabulary (family) classifier is projected onto ``classes``."""
    from stem2d.models.loading import bundled_classifier_path, classifier_path_for
    from stem2d.models.loading import load_classifier as _load
    from stem2d.models.projected import project_classifier

    if classifier is not None and not isinstance(classifier, (str, Path)):
        return project_classifier(classifier, classes, get_material(material)), None
    path = classifier if classifier is not None else classifier_path_for(material, classes.names)
    path = path or bundled_classifier_path("WS2")
    return project_classifier(_load(path), classes, get_material(material)), path


def _own_class_set(material: str) -> ClassSet | None:
    """The class set of a material's own bundled classifier (``conf/classes/<material>.yaml``), if both exist."""
    from stem2d.models.loading import bundled_classifier_path

    name = get_material(material).name.lower()
    if name == "ws2" or not bundled_classifier_path(material).is_file():
        return None
    try:
        return _named_class_set(name)
    except FileNotFoundError:
        return None


def _named_class_set(name: str) -> ClassSet:
    from omegaconf import OmegaConf

    from stem2d.bench.config import repo_conf_dir

    path = repo_conf_dir() / "classes" / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"classes={name!r}: no class set {path}")
    return ClassSet.from_mapping(OmegaConf.to_container(OmegaConf.load(path)))


def _class_set(classes, material: str) -> ClassSet:
    if isinstance(classes, ClassSet):
        return classes
    if isinstance(classes, str):
        return _named_class_set(classes)
    if classes is not None:
        return ClassSet.from_mapping(classes)
    return _own_class_set(material) or ClassSet.from_mapping(None)
