"""The movie loop: frames in, a :class:`~stem2d.predict.result.MovieResult` out (no Hydra).

Frames are read and analysed one at a time (bounded memory): frame 0 gives the pixel size
(measured from the lattice), every frame goes through :class:`stem2d.predict.frame_step.FrameStep`
and the streamed drift tracker, and the overlay movie (when asked for) is written as the frames
come. At the end the detections are scored against the truth (when there is one) and the
evolution (tracks, diffusion, transitions) is computed with the drift measured while streaming.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stem2d import CANONICAL_PIXEL_SIZE_A, __version__
from stem2d.classes import ClassSet
from stem2d.lattice.sampling import plan_resample
from stem2d.materials import Material, get_material
from stem2d.models.precision import use_bf16
from stem2d.predict.detectors import SiteDetector
from stem2d.predict.evidence import UNKNOWN
from stem2d.predict.frame_step import FrameStep, concat_tables
from stem2d.predict.result import MovieResult

__all__ = ["MovieSettings", "MovieSource", "analyze_movie"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MovieSettings:
    """How a movie is analysed (the plain counterpart of ``conf/infer.yaml``).

    Attributes
    ----------
    material : str
        Host lattice (sets the lattice constant used to measure the pixel size).
    pixel_size_A : float or None
        Angstrom per px; None = measured from the lattice of frame 0.
    max_frames : int or None
        Analyse only the first N frames.
    batch_size : int
        Windows per classifier batch.
    unconfirmed : {"unknown", "drop", "relabel"}
        A candidate the classifier calls pristine, on an empty hollow, or (``check_evidence``)
        whose column contradicts its class: kept as class ``unknown`` (flagged, not counted or
        scored), dropped, or given its likeliest defect class (no evidence check).
    evidence : bool
        Quantify the columns of every frame: ``sublattice, intensity_rel, p_class`` per detection.
    check_evidence : {"confirm", "contradict", "off"}
        confirm: a call's column must read on the defect's side of the midpoint between pristine
        and its class's Z-contrast value; contradict: only a column that clearly reads pristine
        unconfirms the call (recall); off.
    column_candidates : bool
        Also classify columns ``|z| >= column_z`` robust SDs off their sublattice (not with grid).
    column_z : float
    columns : bool
        Keep every quantified column of every frame (``columns.csv``; large for long movies).
    bf16 : bool or "auto"
        Classifier under bf16 autocast; "auto" = on a CPU with native bf16, or a GPU.
    runtime : {"auto", "torch", "onnxruntime"}
        Where an fp32 classifier runs on the CPU (:func:`stem2d.models.runtime.choose_runtime`):
        its feature body on ONNX Runtime when installed (auto), pooling, head and CAM in torch.
    threads : int
        Torch and BLAS threads of each thread of the frame loop.
    prefetch : int
        Frames read, resampled and mapped by the detector ahead of the rest of the loop, in a
        second thread (:mod:`stem2d.predict.prefetch`: on 2 cores the halves overlap); 0 runs
        the whole loop in one thread.
    match_dist_A : float
        A detection matches a true defect within this distance (scoring).
    dose_per_frame : float or None
        Electron dose per frame, e/A^2 (counts vs accumulated dose).
    evolve : bool
        Compute the evolution (tracks, diffusion, transitions, lifetimes).
    evolution : mapping
        Keyword settings of :func:`stem2d.evolution.evolve` (``search_range_A``, ``memory``, ...).
    video_fps : float
        Frames per second of the overlay movie.
    video_preset : str
        x264 speed preset of the overlay MP4 (:class:`~stem2d.predict.video.OverlayMovieWriter`).
    progress : bool
        Show a progress bar.
    """

    material: str = "WS2"
    pixel_size_A: float | None = None
    max_frames: int | None = None
    batch_size: int = 32
    unconfirmed: str = "unknown"
    evidence: bool = True
    check_evidence: str = "confirm"
    column_candidates: bool = True
    column_z: float = 4.0
    columns: bool = False
    bf16: bool | str = "auto"
    runtime: str = "auto"
    threads: int = 1
    prefetch: int = 1
    match_dist_A: float = 1.5
    dose_per_frame: float | None = None
    evolve: bool = True
    evolution: Mapping[str, Any] = field(default_factory=dict)
    video_fps: float = 10.0
    video_preset: str = "ultrafast"
    progress: bool = False


@dataclass(frozen=True)
class MovieSource:
    """Frames and what is known about them.

    Attributes
    ----------
    frames : sequence of (H, W) arrays
        Indexable, ``len()``-able; read lazily frame by frame (a ``stem2d.io`` ``Frames`` or an array).
    source : str
        Name for messages and ``summary.json``.
    pixel_size_A_metadata : float or None
        The file's pixel size (only compared with the measured one).
    truth : DataFrame or None
        ``frame,row,col,class`` of the true defects (synthetic movies): the run is scored.
    extra : mapping
        Entries added to the summary (e.g. the synthetic movie's parameters).
    """

    frames: Sequence[np.ndarray]
    source: str = "array"
    pixel_size_A_metadata: float | None = None
    truth: pd.DataFrame | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_path(cls, path: str | Path, *, dataset: str | None = None) -> MovieSource:
        """A movie file or folder (any ``stem2d.io`` format), with ``<stem>_truth.csv`` beside it if any."""
        from stem2d.io.readers import read_movie

        movie = read_movie(str(path), dataset=dataset, lazy=True)
        return cls(movie.frames, movie.source, movie.pixel_size_A, _find_truth(Path(path)))


def _find_truth(path: Path) -> pd.DataFrame | None:
    """``<stem>_truth.csv`` beside a movie (as written by ``stem2d.sim.movie_cli``), if any; its use
    is announced in the log (the run is then scored against it)."""
    from stem2d.io.tables import read_truth, truth_path  # not via stem2d.sim (the simulator's imports)

    candidate = truth_path(path)
    if not candidate.is_file():
        return None
    truth = read_truth(candidate)
    log.info("truth file %s found beside the movie (%d defects): the detections will be scored against it",
             candidate, len(truth))
    return truth


class _Timer:
    """Wall-clock seconds per stage."""

    def __init__(self, seconds: Mapping[str, float] | None = None) -> None:
        self.seconds = dict(seconds or {})
        self.t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.add(stage, now - self.t)
        self.t = now

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


def _tile_classifier(model, batch_size: int, bf16: bool, runtime: str = "auto"):
    """``windows -> (labels, probs, cams, cam_pos)`` with the classifier's BatchNorms folded into
    its convolutions (same outputs to float32 rounding, ~20 % faster on CPU), its feature body on
    ONNX Runtime where ``runtime`` picks it (:func:`stem2d.models.runtime.choose_runtime`)."""
    from stem2d.models.runtime import onnx_features, onnx_if_chosen
    from stem2d.models.unet import fuse_batchnorm
    from stem2d.predict.classify import classify_tiles

    model = fuse_batchnorm(model)
    inner = getattr(model, "site_model", model)  # a projected classifier runs its site model
    onnx = onnx_if_chosen(runtime, lambda: onnx_features(inner.net, tile_size_px=int(inner.hparams.tile_size_px)),
                          bf16=bf16, device_type=model.device.type, what="classifier")
    if onnx is not None:
        inner.net = onnx
    log.info("classifier: %s, %s", "torch" if onnx is None else "onnxruntime", "bf16 autocast" if bf16 else "fp32")

    def classify(windows: np.ndarray):
        r = classify_tiles(model, windows, batch_size=batch_size, bf16=bf16)
        return r.labels, r.probs, r.cams, r.cam_pos

    return classify


@dataclass
class _Scale:
    pixel_size_A: float
    measured_A: float | None
    distortion: Any


def _pixel_size(first: np.ndarray, material: Material, given: float | None, movie: MovieSource) -> _Scale:
    """The pixel size: ``given`` if set, else measured from the lattice of frame 0."""
    from stem2d.lattice.sampling import check_pixel_size
    from stem2d.lattice.scale import measure_pixel_size

    if given is not None and not 0 < given < np.inf:
        raise ValueError(f"pixel_size_A={given} must be a finite number > 0")
    try:
        scale = measure_pixel_size(first, material, metadata_pixel_size_A=movie.pixel_size_A_metadata)
    except ValueError as err:
        if given is None:
            raise ValueError(f"movie {movie.source!r}, frame 0: cannot measure the pixel size of a "
                             f"{material.name} lattice ({err}); give pixel_size_A= if you know it") from err
        log.warning("frame 0: no lattice found (%s); using pixel_size_A=%s as given", err, given)
        return _Scale(given, None, None)
    if given is not None:  # a given value far from the lattice's is a typo or a unit mix-up
        check_pixel_size(given, scale.pixel_size_A, source=movie.source, material=material.name)
    return _Scale(given if given is not None else scale.pixel_size_A, scale.pixel_size_A, scale.distortion)


def analyze_movie(
    movie: MovieSource,
    *,
    detector: SiteDetector,
    classifier,
    classes: ClassSet | None = None,
    temperature: float = 1.0,
    settings: MovieSettings = MovieSettings(),
    baseline: SiteDetector | None = None,
    video_dir: str | Path | None = None,
    setup_s: float = 0.0,
) -> MovieResult:
    """Find, classify and follow the defects of a movie, streaming frame by frame.

    Parameters
    ----------
    movie : MovieSource
        The frames (read lazily), their source, metadata pixel size and truth.
    detector : SiteDetector
        Candidate-site proposer (:func:`stem2d.predict.detectors.build_detector`).
    classifier : TileClassifier
        Window classifier (:func:`stem2d.models.loading.load_classifier`).
    classes : ClassSet, optional
        The defect kinds of the classifier's classes (for the evidence step); None = the default
        WS2 class set, which must then match the classifier's class names.
    temperature : float, keyword-only
        Probability calibration of the classifier (:func:`stem2d.models.temperature.load_temperature`).
    settings : MovieSettings, keyword-only
    baseline : SiteDetector, optional
        A second detector scored beside ``detector`` with the same classifier (needs a truth).
    video_dir : path, optional
        Write ``overlay.mp4`` and ``overlay.gif`` there while streaming.
    setup_s : float, keyword-only
        Seconds already spent setting up (model loading), added to ``timings_s["setup"]``.

    Returns
    -------
    MovieResult
        ``detections`` holds every row of ``detections.csv`` (unconfirmed candidates as class
        ``unknown``); counts, scores and evolution use the confirmed ones.
    """
    timer = _Timer({"setup": setup_s})
    material = get_material(settings.material)
    n_frames = len(movie.frames)
    if settings.max_frames is not None:
        if int(settings.max_frames) != settings.max_frames or settings.max_frames < 1:
            raise ValueError(f"max_frames={settings.max_frames!r} must be an integer >= 1 (or None: all frames)")
        n_frames = min(n_frames, int(settings.max_frames))
    if n_frames == 0:
        raise ValueError(f"movie {movie.source!r} has no frames")
    truth = _truth_of_frames(movie.truth, n_frames)
    first = np.asarray(movie.frames[0], dtype=np.float32)
    scale = _pixel_size(first, material, settings.pixel_size_A, movie)
    # before the frame loop: the resampled frame must be usable and fit in memory
    plan_resample(first.shape, pixel_size_A=scale.pixel_size_A, source=movie.source)
    log.info("%s: %d frames of %s, pixel size %.4f A (lattice: %s A, metadata: %s)", movie.source, n_frames,
             first.shape, scale.pixel_size_A, scale.measured_A, movie.pixel_size_A_metadata)
    class_names = tuple(classifier.class_names)
    bf16 = use_bf16(settings.bf16, device_type=classifier.device.type)
    step_classes = _class_set(classes, class_names)
    step = FrameStep(detector, _tile_classifier(classifier, int(settings.batch_size), bf16, settings.runtime),
                     class_names=class_names, classes=step_classes, material=material,
                     pixel_size_A=scale.pixel_size_A, unconfirmed=settings.unconfirmed,
                     evidence=settings.evidence, check_evidence=settings.check_evidence,
                     column_candidates=settings.column_candidates, column_z=settings.column_z, temperature=temperature,
                     ahead=max(0, int(settings.prefetch)))
    if truth is None:
        baseline = None
    timer.lap("setup")
    stream = _stream(movie, first, n_frames, step, baseline, material, scale.pixel_size_A, settings,
                     video_dir, timer, scale.distortion)
    table = concat_tables(stream.rows)
    confirmed = table[table["class"] != UNKNOWN]  # flagged candidates are not claims
    base_table = concat_tables(stream.base_rows) if baseline is not None else None
    metrics = None
    if truth is not None:
        metrics = _score(truth, confirmed, base_table, scale.pixel_size_A, class_names, detector.name,
                         None if baseline is None else baseline.name, settings.match_dist_A)
    timer.lap("score")
    evolution = None
    evolution_skipped = None
    if settings.evolve and n_frames < 2:
        evolution_skipped = "one frame: tracks, diffusion, transitions and lifetimes need two or more frames"
        log.info("evolution skipped (%s)", evolution_skipped)
    elif settings.evolve:
        from stem2d.evolution import evolve

        evolution = evolve(confirmed, pixel_size_A=scale.pixel_size_A, frame_shape=first.shape,
                           n_frames=n_frames, drift_px=stream.drift_px,
                           classes=step_classes, material=material.name,
                           dose_per_frame=settings.dose_per_frame, **dict(settings.evolution))
    timer.lap("evolution")
    # end-to-end speed of the pipeline itself (the scoring baseline is extra work)
    analysed_s = stream.loop_s - timer.seconds.get("baseline", 0.0)
    summary: dict[str, Any] = {
        "stem2d_version": __version__,
        "source": movie.source,
        "n_frames": n_frames,
        "frame_shape": list(first.shape),
        "pixel_size_A": scale.pixel_size_A,
        "pixel_size_measured_A": scale.measured_A,
        "pixel_size_metadata_A": movie.pixel_size_A_metadata,
        "lattice_distortion": scale.distortion,
        "material": material.name,
        "mode": detector.name,
        "class_names": list(class_names),
        "counts_total": {c: int((confirmed["class"] == c).sum()) for c in class_names if c != "pristine"},
        "mean_defects_per_frame": len(confirmed) / n_frames,
        "unconfirmed_candidates": len(table) - len(confirmed),
        "unconfirmed": settings.unconfirmed,
        **step.lattice_summary(confirmed),
        "calibration": stream.calibration,
        "classifier_bf16": bf16,
        "drift_px": stream.drift_px.tolist(),
        "settings": asdict(settings),
        **movie.extra,
    }
    if metrics is not None:
        summary["metrics"] = metrics
    if evolution is not None:
        summary["evolution"] = evolution.to_summary()
    if evolution_skipped is not None:
        summary["evolution_skipped"] = evolution_skipped
    summary.update(timings_s=timer.seconds, analyse_steps_s=stream.steps, frame_loop_s=stream.loop_s,
                   frames_per_s=n_frames / analysed_s if analysed_s > 0 else None,
                   frames_per_s_marginal=stream.marginal_rate() if baseline is None else None,
                   first_frame_s=stream.first_frame_s)
    return MovieResult(
        detections=table, drift_px=stream.drift_px, pixel_size_A=scale.pixel_size_A,
        frame_shape=tuple(first.shape), class_names=class_names, summary=summary, truth=truth,
        metrics=metrics, baseline_detections=base_table, evolution=evolution,
        columns=concat_columns(stream.col_rows), evidence0=stream.evidence0, dose_per_frame=settings.dose_per_frame, overlay_samples=stream.overlay_samples, frames=movie.frames,
        step=step,
    )


def _truth_of_frames(truth: pd.DataFrame | None, n_frames: int) -> pd.DataFrame | None:
    """The truth of the analysed frames only (``max_frames`` cuts the movie, so it cuts the truth)."""
    if truth is None:
        return None
    kept = truth[truth["frame"] < n_frames]
    if len(kept) < len(truth):
        log.info("scoring the %d analysed frames against their %d of the %d true defects", n_frames, len(kept),
                 len(truth))
    return kept.reset_index(drop=True)


def _class_set(classes: ClassSet | None, class_names: tuple[str, ...]) -> ClassSet:
    if classes is None:
        classes = ClassSet.from_mapping(None)
        if tuple(classes.names) != class_names:
            raise ValueError(f"the classifier has classes {list(class_names)}, not the default ones: "
                             "give classes= (their defect kinds)")
    return classes


def concat_columns(rows: list[pd.DataFrame]) -> pd.DataFrame | None:
    return pd.concat(rows, ignore_index=True) if rows else None


@dataclass
class _Stream:
    rows: list = field(default_factory=list)
    base_rows: list = field(default_factory=list)
    col_rows: list = field(default_factory=list)
    evidence0: Any = None
    calibration: dict | None = None
    overlay_samples: dict = field(default_factory=dict)
    steps: dict = field(default_factory=dict)
    drift_px: np.ndarray | None = None
    loop_s: float = 0.0
    first_frame_s: float | None = None
    done_at: list = field(default_factory=list)

    def marginal_rate(self, skip: int = 2) -> float | None:
        """Frames per second once the loop runs: frames ``skip+1 .. N-1`` over the time from
        frame ``skip``'s end to the last frame's, so the start (the pipeline filling up, frame
        0's full lattice search and calibration) and closing the movie files do not count (the
        issue's "marginal" rate: 10 vs 60 frames). None for fewer than ``skip + 3`` frames."""
        if len(self.done_at) < skip + 3:
            return None
        return (len(self.done_at) - 1 - skip) / (self.done_at[-1] - self.done_at[skip])


def _process_age_s() -> float | None:
    """Seconds since this process started (Linux ``/proc``; None elsewhere): the time a user
    waits for the first analysed frame, Python start-up and imports included."""
    import os

    try:
        start_ticks = float(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime_s = float(Path("/proc/uptime").read_text().split()[0])
        return uptime_s - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _stream(movie: MovieSource, first: np.ndarray, n_frames: int, step: FrameStep,
            baseline: SiteDetector | None, material: Material, pixel_size_A: float, settings: MovieSettings,
            video_dir: str | Path | None, timer: _Timer, distortion: Any) -> _Stream:
    """The frame loop: read, resample, analyse, evidence (and the baseline), drift, overlay movie."""
    import torch
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    from stem2d.evolution.drift import DriftTracker
    from stem2d.lattice.scale import resample
    from stem2d.predict.overlay import OverlayRenderer
    from stem2d.predict.prefetch import prefetched
    from stem2d.predict.regions import REGION_KINDS
    from stem2d.predict.video import HeatStackWriter, OverlayMovieWriter

    out = _Stream()
    period_px = material.a_A / pixel_size_A
    tracker = DriftTracker(max_step_px=max(1.0, 0.45 * period_px), highpass_sigma_px=period_px)
    video, heat_out = None, None
    if video_dir is not None:
        video = OverlayMovieWriter(video_dir, fps=float(settings.video_fps), preset=settings.video_preset)
        # the CAM heat maps beside the movie (napari's hidden layer), binned to ~the CAMs' 0.3 A/px
        heat_out = HeatStackWriter(video_dir, n_frames=n_frames, frame_shape=first.shape,
                                   bin_px=max(1, round(CANONICAL_PIXEL_SIZE_A / pixel_size_A)))
    renderer = OverlayRenderer(step.class_names, pixel_size_A=pixel_size_A, n_frames=n_frames,
                               dose_per_frame=settings.dose_per_frame,
                               region_names=REGION_KINDS[1:] if step.evidence is not None else ())
    # a fixed number of torch threads (1 by default: on 2 cores a second torch thread gains
    # little for these small networks and collapses when another process shares the CPU)
    threads_before = torch.get_num_threads()
    n_threads = max(1, int(settings.threads or 1))
    torch.set_num_threads(n_threads)
    loop_start = time.perf_counter()

    def front(k: int) -> tuple:
        """Read, resample and map frame ``k`` (runs ahead in the prefetch thread)."""
        torch.set_num_threads(n_threads)  # torch's thread count is per thread
        t0 = time.perf_counter()
        frame = first if k == 0 else np.asarray(movie.frames[k], dtype=np.float32)
        if frame.shape != first.shape:
            raise ValueError(f"movie {movie.source!r}: frame {k} has shape {frame.shape}, frame 0 {first.shape}")
        t1 = time.perf_counter()
        canon = resample(frame, from_pixel_size_A=pixel_size_A, to_pixel_size_A=CANONICAL_PIXEL_SIZE_A)
        t2 = time.perf_counter()
        if step.uses_columns:  # the column quantification runs beside the detector's map
            step.columns.start(canon)
        sites = step.detector(canon)
        return frame, canon, sites, {"read": t1 - t0, "resample": t2 - t1, "detect": time.perf_counter() - t2}

    depth = max(0, int(settings.prefetch))
    frames = prefetched(front, range(n_frames), depth=depth)
    try:
        with threadpool_limits(limits=n_threads, user_api="blas"):   # numpy's BLAS too
            for k in tqdm(range(n_frames), desc="frames", unit="frame", disable=not settings.progress):
                frame, canon, sites, front_s = next(frames)
                if depth:
                    timer.lap("prefetch_wait")  # the loop waited for the front half (read..detect)
                else:
                    timer.t = time.perf_counter()
                for stage in ("read", "resample"):
                    timer.add(stage, front_s[stage])
                res = step.analyze(frame, canon=canon, with_heat=video is not None, sites=sites)
                out.steps["detect"] = out.steps.get("detect", 0.0) + front_s["detect"]
                for name, sec in res.seconds.items():
                    if name != "detect":
                        out.steps[name] = out.steps.get(name, 0.0) + sec
                timer.lap("analyse")
                table, ev, shown = step.table(k, frame, res, canon)
                out.rows.append(table)
                if ev is not None and ev.columns is not None and settings.columns:
                    out.col_rows.append(ev.columns.assign(frame=k))
                if k == 0 and ev is not None and ev.regions is not None:
                    out.evidence0 = ev
                    out.calibration = step.calibration(frame, canon, ev, distortion)
                timer.lap("evidence")
                if baseline is not None:
                    out.base_rows.append(step.baseline(k, frame, baseline, canon))
                    timer.lap("baseline")
                tracker.add(frame)
                timer.lap("drift")
                if video is not None:
                    rgb = renderer.render(frame, shown.heat, shown.points, shown.labels, index=k,
                                          regions=getattr(shown, "regions", None))
                    timer.lap("overlay")
                    video.append(rgb)
                    if res.heat is not None:
                        heat_out.append(res.heat)
                    timer.lap("video")
                    if k in (0, n_frames // 2, n_frames - 1):
                        out.overlay_samples[k] = rgb
                if k == 0:
                    out.first_frame_s = _process_age_s()
                out.done_at.append(time.perf_counter())
    except BaseException:
        if video is not None:
            video.abort()
            heat_out.abort()
        raise
    finally:
        frames.close()
        step.columns.close()
        torch.set_num_threads(threads_before)
    if video is not None:
        video.close()
        heat_out.close()
    out.loop_s = time.perf_counter() - loop_start
    timer.lap("video_close")
    out.drift_px = np.array(tracker.drift)
    return out


def _score(truth: pd.DataFrame, detections: pd.DataFrame, baseline: pd.DataFrame | None, pixel_size_A: float,
           class_names: tuple[str, ...], mode: str, baseline_mode: str | None, match_dist_A: float) -> dict:
    """Score the pipeline (and the baseline) against the truth."""
    from stem2d.predict.scoring import score_detections

    max_dist_px = float(match_dist_A) / pixel_size_A
    defect_classes = [c for c in class_names if c != "pristine"]
    metrics = {
        "match_dist_A": float(match_dist_A),
        "pipeline": {"mode": mode,
                     **score_detections(detections, truth, max_dist_px=max_dist_px, classes=defect_classes)},
    }
    if baseline_mode is not None:
        metrics["baseline"] = {"mode": baseline_mode,
                               **score_detections(baseline, truth, max_dist_px=max_dist_px,
                                                  classes=defect_classes)}
    p, b = metrics["pipeline"], metrics.get("baseline")
    log.info("detection F1 %.3f, class accuracy %s%s", p["detection"]["f1"] or 0.0,
             "n/a" if p["class_accuracy"] is None else f"{p['class_accuracy']:.3f}",
             "" if b is None else f" (baseline {baseline_mode}: F1 {b['detection']['f1'] or 0.0:.3f})")
    return metrics
