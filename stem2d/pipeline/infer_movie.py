"""``python infer.py movie=PATH``: every defect in every frame, classified, with CAMs and scores.

Frames are read, analysed and written one at a time (bounded memory). Outputs land in the run
folder; every file is written under a temporary name and renamed when complete, and
``summary.json`` is written last, so a run that died midway has no summary and no file that
looks complete.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from stem2d import CANONICAL_PIXEL_SIZE_A, __version__
from stem2d.classes import ClassSet
from stem2d.materials import get_material
from stem2d.output.files import atomic_path
from stem2d.output.plain import rounded, to_plain
from stem2d.pipeline.utils import output_dir
from stem2d.predict.column_candidates import ColumnCache, with_column_candidates
from stem2d.predict.evidence import ADATOM, UNKNOWN
from stem2d.predict.evidence_step import write_regions
from stem2d.predict.frame import analyze_frame
from stem2d.predict.overlay import OverlayRenderer
from stem2d.predict.regions import REGION_KINDS
from stem2d.predict.video import HeatStackWriter, OverlayMovieWriter

log = logging.getLogger(__name__)

DETECTION_COLUMNS = ["frame", "row", "col", "class", "score"]


@dataclass
class _Timer:
    """Wall-clock seconds per stage."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, start: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - start
        return now


@dataclass
class _Input:
    frames: Any
    pixel_size_A_metadata: float | None
    source: str
    truth: pd.DataFrame | None
    extra: dict


def synthetic_movie(cfg: DictConfig, classes: ClassSet):
    """The synthetic movie (with truth) of an infer config: ``cfg.synthetic`` at seed ``cfg.seed``."""
    from stem2d.sim.movie import MovieConfig, simulate_movie

    mcfg = MovieConfig(**OmegaConf.to_container(cfg.synthetic, resolve=True))
    return simulate_movie(mcfg, rng=int(cfg.seed), classes=classes)


def open_input(cfg: DictConfig, classes: ClassSet) -> _Input:
    """The movie named by ``cfg.movie``, or a synthetic movie with truth when it is null."""
    if cfg.get("movie"):
        from stem2d.io.readers import read_movie

        movie = read_movie(str(cfg.movie), dataset=cfg.get("dataset"), lazy=True)
        truth = _find_truth(Path(str(cfg.movie)))
        return _Input(movie.frames, movie.pixel_size_A, movie.source, truth, {})
    movie = synthetic_movie(cfg, classes)
    extra = {"synthetic": {"seed": int(cfg.seed), "params": to_plain(movie.params)}}
    return _Input(movie.frames, movie.pixel_size_A, f"synthetic(seed={cfg.seed})", movie.truth, extra)


def _find_truth(path: Path) -> pd.DataFrame | None:
    """``<stem>_truth.csv`` beside a movie (as written by ``stem2d.sim.movie_cli``), if any."""
    from stem2d.sim.movie_cli import truth_path

    candidate = truth_path(path)
    if not candidate.is_file():
        return None
    truth = pd.read_csv(candidate)
    missing = {"frame", "row", "col", "class"} - set(truth.columns)
    if missing:
        raise ValueError(f"truth file {str(candidate)!r} lacks columns {sorted(missing)}")
    return truth


def _write_json(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(rounded(to_plain(obj)), indent=2, allow_nan=False))


def _write_csv(path: Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.3f")


def _frames_to_table(rows: list[pd.DataFrame]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame(columns=DETECTION_COLUMNS)
    table = pd.concat(rows, ignore_index=True)
    extra = [c for c in table.columns if c not in DETECTION_COLUMNS]
    return table[DETECTION_COLUMNS + extra]


def _result_table(k: int, result, class_names: tuple[str, ...], evidence: pd.DataFrame | None = None) -> pd.DataFrame:
    table = pd.DataFrame({
        "frame": np.full(len(result.labels), k, dtype=np.int64),
        "row": result.points[:, 0],
        "col": result.points[:, 1],
        "class": np.asarray(class_names, dtype=object)[result.labels] if len(result.labels) else [],
        "score": result.scores,
    })
    if evidence is None:
        return table
    # the evidence step may demote a call to `unknown` (or report a bright hollow as `adatom`)
    table["class"] = evidence["class"].to_numpy()
    for col in evidence.columns.drop("class"):
        table[col] = evidence[col].to_numpy()
    return table


# ---------------------------------------------------------------- detectors and classifier


def build_detector(mode: str, cfg: DictConfig, material, unet=None):
    """The candidate-site proposer for ``mode`` (``unet``, ``fourier``, ``lattice`` or ``grid``).

    Every detector works on the canonical-sampling frame (0.3 A/px).
    """
    det = cfg.detect
    if mode == "unet":
        from stem2d.predict.pixelmap import extract_defects, predict_frame

        def unet_detector(canon: np.ndarray):
            prob = predict_frame(unet, canon, tile=None if det.tile_px is None else int(det.tile_px))
            return extract_defects(prob, threshold=float(det.threshold), min_area_px=int(det.min_area_px),
                                   max_area_px=int(det.max_area_px),
                                   min_dist_px=float(det.merge_dist_A) / CANONICAL_PIXEL_SIZE_A)

        return unet_detector
    if mode in ("fourier", "lattice"):
        from stem2d.lattice import LABELERS

        labeler = LABELERS[mode]

        def fourier_detector(canon: np.ndarray):
            points = labeler(canon, material=material, pixel_size_A=CANONICAL_PIXEL_SIZE_A)
            return points, np.ones(len(points))

        return fourier_detector
    if mode == "grid":
        from stem2d.predict.windows import grid_centres

        def grid_detector(canon: np.ndarray):
            points = grid_centres(canon.shape, stride=int(det.grid_stride_px))
            return points, np.zeros(len(points))

        return grid_detector
    raise ValueError(f"mode={mode!r} is not known; choose unet, grid, lattice or fourier")


def _classifier_fn(model, batch_size: int, bf16: bool):
    from stem2d.predict.classify import classify_tiles

    def classify(windows: np.ndarray):
        r = classify_tiles(model, windows, batch_size=batch_size, bf16=bf16)
        return r.labels, r.probs, r.cams, r.cam_pos

    return classify


def _classifier_path(ckpt_path: str | None, material: str, class_names) -> str | None:
    """The classifier to load: ``ckpt_path`` if given, else the bundled one of the material when
    it ships and has the configured classes, else None (the bundled WS2 weights), with a warning
    saying why."""
    from stem2d.models.loading import bundled_classifier_path, load_classifier

    if ckpt_path is not None:
        return ckpt_path
    own = bundled_classifier_path(material)
    if material == "WS2":
        return None
    if not own.is_file():
        log.warning("no bundled classifier for %s: using the WS2 weights (train one, e.g. "
                    "python train.py experiment=mos2_cam_cnn, and pass ckpt_path=)", material)
        return None
    own_names = load_classifier(own).class_names
    if tuple(own_names) != tuple(class_names):
        log.warning("the bundled %s classifier has classes %s; add classes=%s to use it. Using the "
                    "WS2 weights", material, list(own_names), material.lower())
        return None
    return str(own)


def _use_bf16(setting, device_type: str) -> bool:
    """``bf16: auto|true|false`` of conf/infer.yaml: auto = on a CPU with native bf16, or a GPU."""
    if str(setting).lower() == "auto":
        from stem2d.predict.classify import cpu_has_bf16

        return device_type != "cpu" or cpu_has_bf16()
    if not isinstance(setting, bool):
        raise ValueError(f"bf16={setting!r}: expected auto, true or false")
    return setting


def _load_unet(path: str | None):
    """The pixel network for prediction, with its BatchNorms folded into the convolutions."""
    from stem2d.models.loading import weights_dir
    from stem2d.models.pixel import load_pixel_predictor
    from stem2d.models.unet import fuse_batchnorm

    if path is None:
        path = str(weights_dir() / "unet_ws2.ckpt")
    model = load_pixel_predictor(path)
    return fuse_batchnorm(model.net.eval())


def _evidence_setup(cfg: DictConfig, material, classes: ClassSet, class_names, pristine, columns):
    """``detect.unconfirmed`` and the per-frame :class:`~stem2d.predict.evidence_step.EvidenceStep`
    (None when ``detect.evidence`` is off)."""
    from stem2d.models.loading import bundled_classifier_path
    from stem2d.models.temperature import load_temperature
    from stem2d.predict.evidence import class_expectations
    from stem2d.predict.evidence_step import EvidenceStep

    unconfirmed = str(cfg.detect.get("unconfirmed", "unknown"))
    if unconfirmed not in ("unknown", "drop", "relabel"):
        raise ValueError(f"detect.unconfirmed={unconfirmed!r}: choose unknown, drop or relabel")
    if not cfg.detect.get("evidence", True):
        return unconfirmed, None
    ckpt = cfg.get("ckpt_path") or _classifier_path(None, material.name, class_names) \
        or bundled_classifier_path("WS2")
    step = EvidenceStep(columns, material=material, class_names=tuple(class_names),
                        expectations=class_expectations(classes, material), temperature=load_temperature(ckpt),
                        pristine_index=pristine if unconfirmed != "relabel" else None,
                        check_evidence=bool(cfg.detect.get("check_evidence", True)) and unconfirmed != "relabel",
                        trust_regions=unconfirmed == "relabel")
    return unconfirmed, step


# ---------------------------------------------------------------- the run


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _post_frame(k: int, frame: np.ndarray, res, tracker, video, renderer) -> tuple:
    """Per-frame work after the analysis (drift, overlay, video).

    Returns the overlay frame (or None) and the seconds of each step.
    """
    t0 = time.perf_counter()
    tracker.add(frame)
    t1 = time.perf_counter()
    seconds = {"drift": t1 - t0}
    rgb = None
    if video is not None:
        rgb = renderer.render(frame, res.heat, res.points, res.labels, index=k,
                              regions=getattr(res, "regions", None))
        t2 = time.perf_counter()
        video.append(rgb)
        seconds.update(overlay=t2 - t1, video=time.perf_counter() - t2)
    return rgb, seconds


def run_movie(cfg: DictConfig) -> dict:
    """Analyse a movie end to end and write the run folder; return the summary dict."""
    from stem2d.evolution.drift import DriftTracker
    from stem2d.lattice.scale import measure_pixel_size, resample
    from stem2d.models.loading import load_classifier

    timer = _Timer()
    t = time.perf_counter()
    out = output_dir(cfg)
    material = get_material(str(cfg.material))
    classes = ClassSet.from_mapping(OmegaConf.to_container(cfg.classes, resolve=True))
    if not cfg.get("movie"):
        classes.validate(material)  # the synthetic movie places these kinds in this material
    mode = str(cfg.mode)
    inp = open_input(cfg, classes)
    n_frames = len(inp.frames)
    if cfg.get("max_frames"):
        n_frames = min(n_frames, int(cfg.max_frames))
    if n_frames == 0:
        raise ValueError(f"movie {inp.source!r} has no frames")
    first = np.asarray(inp.frames[0], dtype=np.float32)
    given = float(cfg.pixel_size_A) if cfg.get("pixel_size_A") else None
    if given is not None and not given > 0:
        raise ValueError(f"pixel_size_A={given} must be > 0")
    try:
        scale = measure_pixel_size(first, material, metadata_pixel_size_A=inp.pixel_size_A_metadata)
        measured = scale.pixel_size_A
    except ValueError as err:
        if given is None:
            raise ValueError(f"movie {inp.source!r}, frame 0: cannot measure the pixel size of a "
                             f"{material.name} lattice ({err}); give pixel_size_A= if you know it") from err
        log.warning("frame 0: no lattice found (%s); using pixel_size_A=%s as given", err, given)
        scale, measured = None, None
    pixel_size_A = given if given is not None else measured
    log.info("%s: %d frames of %s, pixel size %.4f A (lattice: %s A, metadata: %s)", inp.source, n_frames,
             first.shape, pixel_size_A, measured, inp.pixel_size_A_metadata)
    model = load_classifier(_classifier_path(cfg.get("ckpt_path"), material.name, classes.names),
                            expected_classes=list(classes.names) if cfg.get("check_classes", True) else None)
    class_names = tuple(model.class_names)
    pristine = class_names.index("pristine") if "pristine" in class_names else None
    unet = _load_unet(cfg.get("unet_ckpt_path")) if mode == "unet" else None
    detector = build_detector(mode, cfg, material, unet)
    columns = ColumnCache(material=material, pixel_size_A=CANONICAL_PIXEL_SIZE_A)  # one quantification per frame
    if cfg.detect.get("column_candidates", False) and mode != "grid":
        detector = with_column_candidates(detector, columns, merge_dist_px=float(cfg.detect.merge_dist_A) / CANONICAL_PIXEL_SIZE_A,
                                          z_threshold=float(cfg.detect.column_z))
    use_bf16 = _use_bf16(cfg.get("bf16", False), model.device.type)
    classify = _classifier_fn(model, int(cfg.batch_size), use_bf16)
    baseline_mode = cfg.get("baseline") if inp.truth is not None else None
    baseline = build_detector(str(baseline_mode), cfg, material) if baseline_mode else None
    t = timer.add("setup", t)

    rows, base_rows, col_rows = [], [], []
    calibration = None
    unconfirmed, evidence = _evidence_setup(cfg, material, classes, class_names, pristine, columns)
    period_px = material.a_A / pixel_size_A
    tracker = DriftTracker(max_step_px=max(1.0, 0.45 * period_px), highpass_sigma_px=period_px)
    video = OverlayMovieWriter(out, fps=float(cfg.outputs.fps)) if cfg.outputs.video else None
    # the CAM heat maps beside the movie (napari's hidden layer), binned to ~the CAMs' 0.3 A/px
    heat_out = None if video is None else HeatStackWriter(
        out, n_frames=n_frames, frame_shape=first.shape, bin_px=max(1, round(CANONICAL_PIXEL_SIZE_A / pixel_size_A)))
    renderer = OverlayRenderer(class_names, pixel_size_A=pixel_size_A, n_frames=n_frames,
                               dose_per_frame=cfg.get("dose_per_frame"),
                               region_names=REGION_KINDS[1:] if evidence is not None else ())
    overlay_samples, steps = {}, {}
    # a fixed number of torch threads (1 by default: on 2 cores a second torch thread gains
    # little for these small networks and collapses when another process shares the CPU)
    threads_before = torch.get_num_threads()
    n_threads = max(1, int(cfg.get("threads") or 1))
    torch.set_num_threads(n_threads)
    loop_start = time.perf_counter()
    try:
        with threadpool_limits(limits=n_threads, user_api="blas"):   # numpy's BLAS too
            for k in tqdm(range(n_frames), desc="frames", unit="frame", disable=not cfg.outputs.progress):
                frame = first if k == 0 else np.asarray(inp.frames[k], dtype=np.float32)
                if frame.shape != first.shape:
                    raise ValueError(f"movie {inp.source!r}: frame {k} has shape {frame.shape}, frame 0 {first.shape}")
                t = timer.add("read", t)
                canon = resample(frame, from_pixel_size_A=pixel_size_A, to_pixel_size_A=CANONICAL_PIXEL_SIZE_A)
                t = timer.add("resample", t)
                res = analyze_frame(frame, pixel_size_A=pixel_size_A, detector=detector, classify=classify,
                                    pristine_index=pristine, refine_with_cam=mode == "grid",
                                    relabel_pristine=unconfirmed == "relabel" and mode != "grid",
                                    keep_unconfirmed=evidence is not None and mode != "grid",
                                    merge_dist_A=float(cfg.detect.merge_dist_A), with_heat=video is not None,
                                    canon=canon)
                t = timer.add("analyse", t)
                ann, shown = None, res
                if evidence is not None:
                    ev = evidence(canon, res.points, res.labels, res.probs, frame.shape)
                    ann = ev.annotation
                    if ev.columns is not None and cfg.outputs.get("columns", False):
                        col_rows.append(ev.columns.assign(frame=k))
                    if k == 0 and ev.regions is not None:
                        write_regions(out / "regions", k, ev, frame.shape)
                        calibration = _calibration(frame, canon, pixel_size_A, material, columns(canon), ev, scale)
                    claimed = ~ann["class"].isin([UNKNOWN, ADATOM]).to_numpy()
                    shown = SimpleNamespace(heat=res.heat, points=res.points[claimed],
                                            labels=res.labels[claimed], regions=ev.masks)
                    t = timer.add("evidence", t)
                table = _result_table(k, res, class_names, ann)
                rows.append(table[table["class"] != UNKNOWN] if unconfirmed == "drop" else table)
                for step, sec in res.seconds.items():
                    steps[step] = steps.get(step, 0.0) + sec
                t = timer.add("analyse", t)
                if baseline is not None:
                    bres = analyze_frame(frame, pixel_size_A=pixel_size_A, detector=baseline, classify=classify,
                                         pristine_index=pristine, with_heat=False, canon=canon)
                    base_rows.append(_result_table(k, bres, class_names))
                    t = timer.add("baseline", t)
                rgb, seconds = _post_frame(k, frame, shown, tracker, video, renderer)
                if heat_out is not None and res.heat is not None:
                    heat_out.append(res.heat)
                for stage, sec in seconds.items():
                    timer.seconds[stage] = timer.seconds.get(stage, 0.0) + sec
                if rgb is not None and k in (0, n_frames // 2, n_frames - 1):
                    overlay_samples[k] = rgb
                t = time.perf_counter()
    except BaseException:
        if video is not None:
            video.abort()
            heat_out.abort()
        raise
    finally:
        torch.set_num_threads(threads_before)
    if video is not None:
        video.close()
        heat_out.close()
    loop_s = time.perf_counter() - loop_start
    t = timer.add("video_close", t)
    # end-to-end speed of the pipeline itself (the scoring baseline is extra work)
    analysed_s = loop_s - timer.seconds.get("baseline", 0.0)
    detections = _frames_to_table(rows)
    _write_csv(out / "detections.csv", detections)
    if col_rows:
        _write_csv(out / "columns.csv", pd.concat(col_rows, ignore_index=True))
    n_unknown = int((detections["class"] == UNKNOWN).sum())
    detections = detections[detections["class"] != UNKNOWN]  # flagged candidates are not claims
    drift_px = np.array(tracker.drift)
    summary: dict[str, Any] = {
        "stem2d_version": __version__,
        "source": inp.source,
        "n_frames": n_frames,
        "frame_shape": list(first.shape),
        "pixel_size_A": pixel_size_A,
        "pixel_size_measured_A": measured,
        "pixel_size_metadata_A": inp.pixel_size_A_metadata,
        "lattice_distortion": None if scale is None else scale.distortion,
        "material": material.name,
        "mode": mode,
        "class_names": list(class_names),
        "counts_total": {c: int((detections["class"] == c).sum()) for c in class_names if c != "pristine"},
        "mean_defects_per_frame": len(detections) / n_frames,
        "unconfirmed_candidates": n_unknown,
        "unconfirmed": unconfirmed,
        **_lattice_summary(evidence, detections, class_names),
        "calibration": calibration,
        "classifier_bf16": use_bf16,
        "drift_px": drift_px.tolist(),
        "settings": {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
                     for k, v in cfg.items() if k != "hydra"},
        **inp.extra,
    }
    t = time.perf_counter()
    _counts_plot(out / "counts.png", detections, n_frames, first.shape, pixel_size_A, class_names,
                 cfg.get("dose_per_frame"))
    if inp.truth is not None:
        summary["metrics"] = _score(out, inp.truth, detections, _frames_to_table(base_rows), pixel_size_A,
                                    class_names, str(baseline_mode) if baseline_mode else None, cfg)
    t = timer.add("score", t)
    if cfg.outputs.evolution:
        summary["evolution"] = _evolution(out, detections, pixel_size_A, first.shape, n_frames,
                                          drift_px, class_names, material.name, cfg)
    t = timer.add("evolution", t)
    if cfg.outputs.tensorboard:
        _tensorboard(out, overlay_samples)
        t = timer.add("tensorboard", t)
    summary["timings_s"] = dict(timer.seconds)
    summary["analyse_steps_s"] = steps
    summary["frame_loop_s"] = loop_s
    summary["frames_per_s"] = n_frames / analysed_s if analysed_s > 0 else None
    summary["peak_rss_mb"] = _peak_rss_mb()
    from stem2d.viz.report import write_report

    report = write_report(out, rounded(to_plain(summary)), overlay_frames=overlay_samples)
    _write_json(out / "summary.json", summary)
    log.info("%d defects in %d frames (%.1f frames/s) -> %s", len(detections), n_frames,
             summary["frames_per_s"] or 0.0, out)
    log.info("report: %s", report.resolve().as_uri())
    return summary


def _calibration(frame, canon, pixel_size_A: float, material, quant, ev, scale) -> dict | None:
    """The frame calibration report of frame 0 (:func:`stem2d.predict.calibration.frame_calibration`)
    against the ranges of conf/data/simulated.yaml; warnings are logged."""
    from stem2d.predict.calibration import TrainingRanges, frame_calibration

    if quant is None:
        return None
    data_yaml = Path(__file__).resolve().parents[2] / "conf" / "data" / "simulated.yaml"
    ranges = TrainingRanges.from_yaml(data_yaml) if data_yaml.is_file() else TrainingRanges()
    report = frame_calibration(frame, pixel_size_A=pixel_size_A, material=material, quant=quant, canon=canon,
                               distortion=None if scale is None else scale.distortion,
                               lattice_fraction=ev.regions.fractions()["lattice"], ranges=ranges)
    log.info("frame 0 calibration: metal/chalcogen %.2f (Z exponent %.2f), probe FWHM %s A, contrast/noise %s, "
             "dose ~%s e/A^2, scan distortion %s, lattice fraction %.2f", report["ratio_metal_chalcogen"],
             report["z_exponent"], _fmt(report["probe_fwhm_A"]), _fmt(report["contrast_to_noise"]),
             _fmt(report["dose_e_per_A2"]), _fmt(report["scan_distortion"]), report["lattice_fraction"])
    return report


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def _lattice_summary(evidence, detections: pd.DataFrame, class_names) -> dict:
    """Region fractions, lattice area and defect densities per lattice area (outside holes,
    edges, contamination and amorphous patches) from the evidence step."""
    if evidence is None:
        return {}
    out = evidence.summary()
    area = out.get("lattice_area_nm2_total")
    if area:
        inside = detections[detections["region"] == "lattice"] if "region" in detections else detections
        out["density_per_nm2_lattice"] = {c: int((inside["class"] == c).sum()) / area
                                          for c in class_names if c != "pristine"}
    return out


def _score(out: Path, truth: pd.DataFrame, detections: pd.DataFrame, baseline: pd.DataFrame,
           pixel_size_A: float, class_names: tuple[str, ...], baseline_mode: str | None,
           cfg: DictConfig) -> dict:
    """Copy the truth into the run folder and score the pipeline (and the baseline) against it."""
    from stem2d.predict.scoring import score_detections

    _write_csv(out / "truth.csv", truth)
    max_dist_px = float(cfg.score.match_dist_A) / pixel_size_A
    defect_classes = [c for c in class_names if c != "pristine"]
    metrics = {
        "match_dist_A": float(cfg.score.match_dist_A),
        "pipeline": {"mode": str(cfg.mode),
                     **score_detections(detections, truth, max_dist_px=max_dist_px, classes=defect_classes)},
    }
    if baseline_mode is not None:
        metrics["baseline"] = {"mode": baseline_mode,
                               **score_detections(baseline, truth, max_dist_px=max_dist_px,
                                                  classes=defect_classes)}
        _write_csv(out / "baseline_detections.csv", baseline)
    _write_json(out / "metrics.json", metrics)
    p, b = metrics["pipeline"], metrics.get("baseline")
    log.info("detection F1 %.3f, class accuracy %s%s", p["detection"]["f1"] or 0.0,
             "n/a" if p["class_accuracy"] is None else f"{p['class_accuracy']:.3f}",
             "" if b is None else f" (baseline {baseline_mode}: F1 {b['detection']['f1'] or 0.0:.3f})")
    return metrics


def _evolution(out: Path, detections: pd.DataFrame, pixel_size_A: float, frame_shape, n_frames: int,
               drift_px: np.ndarray, class_names, material: str, cfg: DictConfig) -> dict:
    """Tracks, diffusion, transitions and their plots (``stem2d.evolution``) into ``evolution/``."""
    from stem2d.evolution import evolve

    result = evolve(detections, pixel_size_A=pixel_size_A, frame_shape=frame_shape, n_frames=n_frames,
                    drift_px=drift_px, classes=[c for c in class_names if c != "pristine"],
                    material=material, dose_per_frame=cfg.get("dose_per_frame"))
    result.write(out / "evolution", skip_figures=("counts",))  # the same figure is the run's counts.png
    return result.to_summary()


def _counts_plot(path: Path, detections: pd.DataFrame, n_frames: int, frame_shape, pixel_size_A: float,
                 class_names, dose_per_frame=None) -> None:
    """Defect counts per class vs frame (and vs dose when known) as a PNG."""
    from stem2d.evolution.analysis import counts_per_frame, frame_area_nm2
    from stem2d.evolution.plots import plot_counts, save_figure

    classes = [c for c in class_names if c != "pristine"]
    counts = counts_per_frame(detections, n_frames=n_frames, classes=classes, dose_per_frame=dose_per_frame,
                              frame_area_nm2=frame_area_nm2(frame_shape, pixel_size_A))
    save_figure(plot_counts(counts, classes=classes), path)


def _tensorboard(out: Path, overlays: dict[int, np.ndarray]) -> None:
    """Overlay frames and the evolution plots as TensorBoard images."""
    import imageio.v2 as imageio
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out / "tensorboard"))
    try:
        for k, rgb in overlays.items():
            writer.add_image("overlay/frame", rgb, global_step=k, dataformats="HWC")
        for png in sorted((out / "evolution").glob("*.png")):
            writer.add_image(f"evolution/{png.stem}", imageio.imread(png)[..., :3], dataformats="HWC")
    finally:
        writer.close()
