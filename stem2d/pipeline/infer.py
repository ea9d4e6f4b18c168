"""``python infer.py movie=PATH``: the Hydra glue of the movie pipeline.

Config -> :class:`~stem2d.predict.movie.MovieSettings`, detector and classifier ->
:func:`stem2d.predict.movie.analyze_movie` -> the run folder. Everything else lives in
:mod:`stem2d.predict` (no Hydra there).
"""

from __future__ import annotations

import logging
import time

from omegaconf import DictConfig, OmegaConf

from stem2d.classes import ClassSet
from stem2d.output.plain import to_plain
from stem2d.pipeline.schema import INFER, validate
from stem2d.pipeline.utils import output_dir
from stem2d.predict.detectors import SiteDetector, build_detector
from stem2d.predict.movie import MovieSettings, MovieSource, analyze_movie

log = logging.getLogger(__name__)

__all__ = ["configured_detector", "load_configured_classifier", "movie_settings", "open_input", "run_movie",
           "synthetic_movie"]


def run_movie(cfg: DictConfig) -> dict:
    """Analyse a movie end to end and write the run folder; return the summary dict."""
    validate(cfg, INFER, where="infer")
    start = time.perf_counter()
    out = output_dir(cfg)
    classes = ClassSet.from_mapping(OmegaConf.to_container(cfg.classes, resolve=True))
    movie = open_input(cfg, classes)
    classifier, temperature = load_configured_classifier(cfg, classes)
    detector = configured_detector(cfg)
    baseline = build_detector(str(cfg.score.baseline), material=str(cfg.material)) \
        if cfg.score.baseline and movie.truth is not None else None
    result = analyze_movie(movie, detector=detector, classifier=classifier, classes=classes,
                           temperature=temperature, settings=movie_settings(cfg), baseline=baseline,
                           video_dir=out if cfg.outputs.video else None, setup_s=time.perf_counter() - start)
    result.save(out, tensorboard=bool(cfg.outputs.tensorboard))
    return result.summary


def movie_settings(cfg: DictConfig) -> MovieSettings:
    """The plain settings of an infer config."""
    return MovieSettings(
        material=str(cfg.material),
        pixel_size_A=None if cfg.get("pixel_size_A") is None else float(cfg.pixel_size_A),
        max_frames=None if cfg.get("max_frames") is None else int(cfg.max_frames),
        batch_size=int(cfg.classify.batch_size),
        unconfirmed=str(cfg.classify.unconfirmed),
        evidence=bool(cfg.classify.evidence),
        check_evidence=cfg.classify.check_evidence,
        column_candidates=bool(cfg.classify.column_candidates),
        column_z=float(cfg.classify.column_z),
        columns=bool(cfg.outputs.columns),
        bf16=cfg.classify.bf16,
        runtime=str(cfg.classify.get("runtime", "auto")),
        threads=int(cfg.get("threads") or 1),
        prefetch=int(cfg.get("prefetch", 1)),
        match_dist_A=float(cfg.score.match_dist_A),
        dose_per_frame=cfg.get("dose_per_frame"),
        evolve=bool(cfg.outputs.evolution),
        evolution=OmegaConf.to_container(cfg.evolution, resolve=True),
        video_fps=float(cfg.outputs.fps),
        video_preset=str(cfg.outputs.get("video_preset", "ultrafast")),
        progress=bool(cfg.outputs.progress),
    )


def configured_detector(cfg: DictConfig) -> SiteDetector:
    """The detector of ``cfg.detector`` (``conf/detector/<name>.yaml``)."""
    settings = OmegaConf.to_container(cfg.detector, resolve=True)
    return build_detector(str(settings.pop("name")), material=str(cfg.material), **settings)


def load_configured_classifier(cfg: DictConfig, classes: ClassSet):
    """The classifier of ``ckpt_path`` (else the material's bundled one), checked against ``classes``
    (a site-vocabulary classifier is projected onto them for ``cfg.material``:
    :func:`stem2d.models.projected.project_classifier`), and its probability temperature (1.0
    when none was fitted; applied to the projected probabilities)."""
    from stem2d.materials import get_material
    from stem2d.models.loading import (
        bundled_classifier_path,
        classifier_path_for,
        load_classifier,
    )
    from stem2d.models.projected import project_classifier
    from stem2d.models.runtime import resolve_device
    from stem2d.models.temperature import load_temperature

    path = classifier_path_for(str(cfg.material), classes.names, cfg.get("ckpt_path"))
    # a site-vocabulary (family) classifier is projected onto the configured classes
    model = project_classifier(load_classifier(path), classes, get_material(str(cfg.material)),
                               strict=bool(cfg.classify.check_classes)).to(resolve_device(cfg.get("device", "cpu")))
    return model, load_temperature(path or bundled_classifier_path("WS2"))


def synthetic_movie(cfg: DictConfig, classes: ClassSet):
    """The synthetic movie (with truth) of an infer config: ``cfg.synthetic`` at seed ``cfg.seed``."""
    from stem2d.sim.movie import MovieConfig, simulate_movie

    mcfg = MovieConfig(**OmegaConf.to_container(cfg.synthetic, resolve=True))
    return simulate_movie(mcfg, rng=int(cfg.seed), classes=classes)


def open_input(cfg: DictConfig, classes: ClassSet) -> MovieSource:
    """The movie named by ``cfg.movie``, or the synthetic movie with truth when it is null.

    The summary records the config (``settings``) and, for a synthetic movie, its parameters.
    """
    from stem2d.materials import get_material

    settings = {k: to_plain(v) for k, v in cfg.items() if k != "hydra"}
    if cfg.get("movie"):
        movie = MovieSource.from_path(str(cfg.movie), dataset=cfg.get("dataset"))
        return MovieSource(movie.frames, movie.source, movie.pixel_size_A_metadata, movie.truth,
                           {"settings": settings})
    material = get_material(str(cfg.material))
    empty = [name for name, kinds in classes.kinds_in(material).items() if kinds == () and classes.kinds_of(name)]
    if empty:  # e.g. classes=sites on WS2: no heavier metal exists, so that class has no truth
        log.info("classes %s have no defect kind in %s: the synthetic movie's truth holds none of them",
                 empty, material.name)
    movie = synthetic_movie(cfg, classes)
    extra = {"settings": settings, "synthetic": {"seed": int(cfg.seed), "params": to_plain(movie.params)}}
    return MovieSource(movie.frames, f"synthetic(seed={cfg.seed})", movie.pixel_size_A, movie.truth, extra)
