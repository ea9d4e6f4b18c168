"""Benchmark 4: throughput of simulation, training, inference and the end-to-end pipeline.

Every figure is a wall-clock rate measured here after one warm-up call (the machine may be
shared: the report header gives the load average). The end-to-end figure runs
``python infer.py`` in a subprocess, so its peak memory is that of the CLI alone.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from stem2d import CANONICAL_PIXEL_SIZE_A, TILE_SIZE_PX
from stem2d.bench import movies
from stem2d.bench.config import BenchConfig, Checkpoints
from stem2d.bench.report import NOT_AVAILABLE, Section, Table
from stem2d.classes import DEFAULT_CLASSES
from stem2d.data.simulated import SimulatedDataModule
from stem2d.models.classifier import CamClassifier
from stem2d.models.loading import load_classifier, load_pixel_predictor
from stem2d.predict.classify import classify_tiles
from stem2d.predict.pixelmap import predict_frame
from stem2d.sim.movie import MovieConfig, simulate_movie

log = logging.getLogger(__name__)

TITLE = "4. Speed"


def rate(fn: Callable[[], int], *, repeats: int = 1) -> float:
    """Items per second of ``fn`` (which returns how many items it processed), after one warm-up call."""
    fn()
    start, n = time.perf_counter(), 0
    for _ in range(repeats):
        n += fn()
    return n / (time.perf_counter() - start)


def _sweep_rate(get: Callable[[int], object], n: int) -> float:
    """Items per second of one pass ``get(0), ..., get(n - 1)`` (no warm-up)."""
    start = time.perf_counter()
    for i in range(n):
        get(i)
    return n / (time.perf_counter() - start)


def _model_cfg(cfg: BenchConfig, name: str):
    path = cfg.conf_dir / "model" / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"model config {str(path)!r} does not exist")
    return OmegaConf.load(path)


def train_rate(cfg: BenchConfig, name: str, *, device: str, bf16: bool = False) -> float:
    """Tiles/s of forward + backward + optimizer steps of ``conf/model/<name>.yaml`` at ``train_batch``
    (under bf16 autocast when ``bf16``, as Lightning's ``precision=bf16-mixed`` does)."""
    mcfg = _model_cfg(cfg, name)
    net = instantiate(mcfg.net, num_classes=len(DEFAULT_CLASSES)).to(device).train()
    fmt = torch.channels_last if mcfg.get("channels_last", False) else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = instantiate(mcfg.optimizer)(params=net.parameters())
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn(cfg.train_batch, 1, TILE_SIZE_PX, TILE_SIZE_PX, generator=gen).to(device, memory_format=fmt)
    y = torch.randint(len(DEFAULT_CLASSES), (cfg.train_batch,), generator=gen).to(device)

    def step() -> int:
        for _ in range(cfg.train_steps):
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return cfg.train_steps * cfg.train_batch

    return rate(step)


def _classifier(cfg: BenchConfig, ckpts: Checkpoints, device: str) -> tuple[CamClassifier, str]:
    if ckpts.cam_cnn.is_file():
        return load_classifier(ckpts.cam_cnn, map_location=device), f"`{ckpts.cam_cnn}`"
    net = instantiate(_model_cfg(cfg, "cam_cnn").net, num_classes=len(DEFAULT_CLASSES))
    model = CamClassifier(net, class_names=DEFAULT_CLASSES).to(device).eval()
    return model, "untrained conf/model/cam_cnn.yaml net (checkpoint missing; same cost)"


def _unet(cfg: BenchConfig, ckpts: Checkpoints, device: str):
    if ckpts.unet.is_file():
        return load_pixel_predictor(ckpts.unet).net.to(device).eval(), f"`{ckpts.unet}`"
    net = instantiate(_model_cfg(cfg, "unet").net).to(device).eval()
    return net, "untrained conf/model/unet.yaml net (checkpoint missing; same cost)"


def _unet_frame(unet, canon: np.ndarray, device: str) -> Callable[[], int]:
    """One probability map of ``canon`` per call (synchronised on a GPU); returns 1 (frame)."""
    def once() -> int:
        predict_frame(unet, canon)
        if device == "cuda":
            torch.cuda.synchronize()
        return 1

    return once


def _tiles(cfg: BenchConfig) -> tuple[float, np.ndarray]:
    """Simulated tiles/s (augmentation + standardisation, as the data loader does) and raw tiles."""
    dm = SimulatedDataModule(None, seed=cfg.seed, n_test_bases_per_class=1, n_test_samples=cfg.speed_tiles,
                             num_workers=0, persistent_workers=False)
    dm.setup("test")
    ds = dm.datasets["test"]
    tiles_s = _sweep_rate(ds.__getitem__, len(ds))
    raw = np.stack([ds.sample(i).image for i in range(min(len(ds), cfg.infer_tiles))]).astype(np.float32)
    reps = -(-cfg.infer_tiles // len(raw))
    return tiles_s, np.concatenate([raw] * reps)[: cfg.infer_tiles]


def _frames_rate(cfg: BenchConfig) -> float:
    movie = simulate_movie(MovieConfig(n_frames=cfg.speed_frames, frame_shape=cfg.frame_shape), rng=cfg.seed)
    return _sweep_rate(movie.frames.__getitem__, len(movie.frames))


#: Both networks in fp32 (the classifier's body on ONNX Runtime where installed, the U-Net on torch).
FP32 = ("classify.bf16=false", "detector.bf16=false")
#: The frame loop as the issue times it (read, resample, U-Net, classify, drift, overlay, video),
#: in fp32, with the column quantification of the evidence step switched off.
E2E_FP32 = (*FP32, "classify.evidence=false", "classify.column_candidates=false")
#: Git revisions whose code the "before" columns run: main when session 4 of issue #16 started
#: (column evidence made cheaper, prediction Lightning-free) and when session 5 started (ONNX
#: Runtime, cheaper drift, column quantification and video).
BEFORE_REVS = ("1f7e1ae", "c116767")
#: Environment that makes torch, oneDNN, MKL, OpenBLAS and numpy use AVX2 kernels only, as on
#: the CPUs of most laptops (ONNX Runtime's kernels are not capped by it).
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
            "OPENBLAS_CORETYPE": "Haswell", "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}
#: Variants run side by side in one benchmark: (label, overrides, code, environment). ``code`` a
#: revision of :data:`BEFORE_REVS` runs that checkout (its defaults), "now" this one.
E2E_VARIANTS: tuple[tuple[str, tuple[str, ...], str, dict], ...] = (
    *((f"before ({rev}): defaults", (), rev, {}) for rev in BEFORE_REVS),
    ("now: defaults", (), "now", {}),
    ("now: defaults in fp32", FP32, "now", {}),
    ("now: fp32, torch only", (*FP32, "classify.runtime=torch", "detector.runtime=torch"), "now", {}),
    ("now: defaults, AVX2 kernels", (), "now", AVX2_ENV),
    ("now: column evidence off, fp32", E2E_FP32, "now", {}),
)


#: Stages of ``timings_s`` that run once per frame (the others run once per movie).
_PER_FRAME_STAGES = ("prefetch_wait", "read", "resample", "analyse", "evidence", "baseline", "drift", "overlay", "video")


def e2e_movie(cfg: BenchConfig, work: Path) -> Path:
    """The benchmark's synthetic movie written to a float32 TIFF (no truth beside it: no scoring)."""
    from stem2d.sim.movie_cli import write_movie

    ov = movies.movie_overrides(cfg, seed=cfg.seed, n_frames=cfg.e2e_frames, dose_e_per_A2=cfg.default_dose_e_per_A2)
    movie = movies.synthetic_movie(cfg.conf_dir, ov, run_dir=work / "render")
    path = write_movie(movie, work / "movie.tif")
    for extra in path.parent.glob(f"{path.stem}_truth.csv"):
        extra.unlink()
    return path


def end_to_end(cfg: BenchConfig, ckpts: Checkpoints, movie: Path, run_dir: Path,
               overrides: Sequence[str] = (), *, checkout: Path | None = None,
               env: dict | None = None) -> tuple[dict, float]:
    """``python infer.py movie=<movie>`` (overlay video on, no evolution or TensorBoard): its
    summary and the wall time of the command.

    A subprocess when ``cfg.e2e_subprocess`` (its peak memory and start-up are then the CLI's
    alone; ``summary["first_frame_s"]`` is the time from process start to the first analysed
    frame), else ``run_movie`` in this process. ``checkout``: run that source tree's
    ``infer.py`` and package instead of this one; ``env``: extra environment variables (both in
    a subprocess only).
    """
    ov = [*movies.model_overrides(ckpts), f"movie={movies.quote(movie)}", "outputs.video=true",
          "outputs.evolution=false", "outputs.tensorboard=false", "outputs.progress=false", *overrides]
    if cfg.detect_tile_px is not None:
        ov.append(f"detector.tile_size_px={int(cfg.detect_tile_px)}")
    start = time.perf_counter()
    if not cfg.e2e_subprocess:
        if checkout is not None or env:
            raise ValueError("end_to_end: another checkout or environment runs only as a subprocess (e2e_subprocess)")
        summary = movies.run(cfg, ov, run_dir=run_dir, quiet=False)
        return summary, time.perf_counter() - start
    root = cfg.conf_dir.parent if checkout is None else Path(checkout)
    script = root / "infer.py"
    if not script.is_file():
        raise FileNotFoundError(f"{str(script)!r} does not exist (the benchmark runs from a source checkout)")
    env = {**os.environ, **(env or {}), **({} if checkout is None else {"PYTHONPATH": str(root)})}
    # GNU time reports the command's own peak RSS for every checkout alike (ru_maxrss read inside
    # a process started by this large one counts this one's memory too: Linux, fork before exec)
    timer = ["/usr/bin/time", "-f", f"{_MAXRSS}%M"] if Path("/usr/bin/time").is_file() else []
    proc = subprocess.run([*timer, sys.executable, str(script), *ov, f"hydra.run.dir={movies.quote(run_dir)}"],
                          check=False, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"infer.py failed ({proc.returncode}): {proc.stderr[-2000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    kb = [line[len(_MAXRSS):] for line in proc.stderr.splitlines() if line.startswith(_MAXRSS)]
    if kb and kb[-1].strip().isdigit():
        summary["peak_rss_mb"] = int(kb[-1]) / 1024.0
    return summary, wall


#: Marker of GNU time's peak-RSS line in :func:`end_to_end`.
_MAXRSS = "STEM2D_MAXRSS_KB="


def before_checkout(cfg: BenchConfig, work: Path, rev: str) -> Path | None:
    """The source tree of revision ``rev`` exported into ``work`` (``git archive``), or None
    (logged) when this is not a git checkout that has it."""
    repo = cfg.conf_dir.parent
    dest = work / f"before_{rev}"
    try:
        archive = subprocess.run(["git", "-C", str(repo), "archive", rev], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as err:
        log.warning("speed: no checkout of %s for the 'before' column (%s)", rev, err)
        return None
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def import_torch_s() -> float:
    """Wall seconds of a bare ``python -c "import torch"`` (the floor of any start-up)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - start


def run(cfg: BenchConfig, ckpts: Checkpoints, out: Path, work: Path) -> Section:
    """Measure throughput on this machine (and on a CUDA GPU when there is one)."""
    threads = torch.get_num_threads()
    t = Table(f"**Throughput on the CPU** (torch threads {threads}, seed {cfg.seed}, load average "
              f"{os.getloadavg()[0]:.2f} when the section started).",
              ["what", "rate", "unit", "settings"])
    tiles_s, raw = _tiles(cfg)
    t.add("simulate training tiles", tiles_s, "tiles/s",
          f"{cfg.speed_tiles} augmented 64x64 tiles (SimulatedTileDataset item: warp, acquisition, standardise)")
    h, w = cfg.frame_shape
    t.add("simulate movie frames", _frames_rate(cfg), "frames/s",
          f"{cfg.speed_frames} frames of {h}x{w} px (render + acquisition), MovieConfig defaults")
    n = cfg.unet_frame_px
    canon = np.random.default_rng(cfg.seed).poisson(50.0, (n, n)).astype(np.float32)
    _model_rows(t, cfg, ckpts, raw, canon, device="cpu", unet_repeats=3, detailed=True)
    sec = Section(TITLE, tables=[t])
    from stem2d.models.precision import cpu_has_bf16, resolve_precision

    native = cpu_has_bf16()
    sec.paragraphs.append(
        f"This CPU {'has' if native else 'has no'} native bf16 (AVX512-BF16/AMX), so `trainer.precision: auto` "
        f"trains in {resolve_precision('auto', accelerator='cpu')} and `infer.py classify.bf16=auto` "
        f"{'uses' if native else 'skips'} bf16 autocast here (stem2d/models/precision.py). CPUs with AVX2 only "
        "emulate bf16, several times slower than fp32 (a small SeedCNN run: 6.4x), so there both pick fp32.")
    sec.tables.append(_e2e_table(cfg, ckpts, work))
    if cfg.large_frame_px is not None and ckpts.cam_cnn.is_file() and ckpts.unet.is_file():
        sec.tables.append(_large_table(cfg, ckpts, work / "large"))
    if torch.cuda.is_available():
        sec.tables.append(_gpu_table(cfg, ckpts, raw, canon))
    else:
        sec.paragraphs.append("No CUDA GPU on this machine: GPU figures skipped.")
    return sec


def _model_rows(t: Table, cfg: BenchConfig, ckpts: Checkpoints, raw: np.ndarray, canon: np.ndarray, *,
                device: str, unet_repeats: int, detailed: bool) -> None:
    """Add to ``t`` the rates of training both classifiers, classifying ``raw`` and the U-Net map of
    ``canon`` on ``device``; ``detailed`` spells out the settings (the first table does, the GPU
    table refers to it)."""
    for name in ("cam_cnn", "seed_cnn"):
        what = f"forward+backward+step of conf/model/{name}.yaml" if detailed else "steps"
        for bf16 in (False, True):
            t.add(f"train {name}" + (", bf16 autocast" if bf16 else ", fp32"),
                  train_rate(cfg, name, device=device, bf16=bf16), "tiles/s",
                  f"{cfg.train_steps} {what} at batch {cfg.train_batch}, {torch.get_num_threads()} thread(s)")
    model, source = _classifier(cfg, ckpts, device)
    for bf16 in (False, True):
        t.add("classify tiles (with CAM)" + (", bf16 autocast" if bf16 else ", fp32"),
              rate(lambda bf16=bf16: len(classify_tiles(model, raw, bf16=bf16).labels)), "tiles/s",
              f"{len(raw)} tiles, batch 256, {torch.get_num_threads()} thread(s), {source}")
    unet, source = _unet(cfg, ckpts, device)
    n = cfg.unet_frame_px
    where = f" at {CANONICAL_PIXEL_SIZE_A} A/px (whole frame, one tile)" if detailed else ""
    t.add("U-Net probability map", rate(_unet_frame(unet, canon, device), repeats=unet_repeats), "frames/s",
          f"{n}x{n} px{where}, {source}")


def _e2e_table(cfg: BenchConfig, ckpts: Checkpoints, work: Path) -> Table:
    """Frames/s and the per-stage profile of the frame loop for every :data:`E2E_VARIANTS`, run
    interleaved ``cfg.e2e_repeats`` times (the best of each is kept: the machine may be shared).
    The "before" variants need a subprocess and a git checkout, the AVX2 one a subprocess; without
    them they are left out."""
    h, w = cfg.frame_shape
    how = "`python infer.py` (subprocess)" if cfg.e2e_subprocess else "`run_movie` (in the benchmark process)"
    before = {rev: before_checkout(cfg, work, rev) if cfg.e2e_subprocess else None for rev in BEFORE_REVS}
    variants = [v for v in E2E_VARIANTS if (v[2] == "now" and (cfg.e2e_subprocess or not v[3]))
                or before.get(v[2]) is not None]
    labels = [label for label, *_ in variants]
    t = Table(f"**End to end**: {how} on a {cfg.e2e_frames}-frame {h}x{w} px synthetic movie read from a TIFF "
              f"(seed {cfg.seed}, dose {cfg.default_dose_e_per_A2:g} e/A^2, detector unet, overlay video on, no "
              f"evolution), conf/infer.yaml's `threads` per loop thread, load average "
              f"{os.getloadavg()[0]:.2f} at the start; best of {cfg.e2e_repeats} interleaved runs each. "
              f"'before' columns run the code of commits {' and '.join(BEFORE_REVS)} (their defaults), the others "
              "this checkout; defaults have column evidence on and `bf16: auto` for both networks (bf16 autocast "
              "where the CPU has it natively, else fp32: the classifier's body on ONNX Runtime, the U-Net on torch); 'AVX2 kernels' caps torch, oneDNN, MKL, "
              "OpenBLAS and numpy at AVX2 (environment variables; ONNX Runtime is not capped), so the rule "
              "picks fp32 there as on an AVX2 laptop. Stage rows "
              "are seconds per frame of wall time in the thread that ran the stage (with the prefetch thread, "
              "read, resample and detect overlap the rest, so stages do not add up to the loop).",
              ["what", *labels, "unit"])
    if not (ckpts.cam_cnn.is_file() and ckpts.unet.is_file()):
        t.add("frames per second", *[NOT_AVAILABLE] * len(labels), "frames/s")
        return t
    movie = e2e_movie(cfg, work)
    best: dict[str, tuple[dict, float]] = {}
    for rep in range(cfg.e2e_repeats):
        for k, (label, overrides, code, env) in enumerate(variants):
            summary, wall = end_to_end(cfg, ckpts, movie, work / f"e2e_{k}_{rep}", overrides,
                                       checkout=before.get(code), env=env)
            if label not in best or (summary["frames_per_s"] or 0) > (best[label][0]["frames_per_s"] or 0):
                best[label] = (summary, wall)
    runs = [best[label] for label in labels]
    n = cfg.e2e_frames
    t.add("frames per second (frame loop)", *[s["frames_per_s"] for s, _ in runs], "frames/s")
    t.add("frames per second once running (frames 3..N: the issue's marginal rate)",
          *[s.get("frames_per_s_marginal") for s, _ in runs], "frames/s")
    stages = list(dict.fromkeys(k for s, _ in runs for k in s["timings_s"]))
    for stage in stages:
        per_frame = stage in _PER_FRAME_STAGES
        t.add(f"stage '{stage}'" + ("" if per_frame else " (once)"),
              *[s["timings_s"].get(stage, 0.0) / (n if per_frame else 1) for s, _ in runs],
              "s/frame" if per_frame else "s")
    steps = list(dict.fromkeys(k for s, _ in runs for k in s.get("analyse_steps_s", {})))
    for step in steps:
        t.add(f"  analyse step '{step}'", *[s["analyse_steps_s"].get(step, 0.0) / n for s, _ in runs], "s/frame")
    if cfg.e2e_subprocess:
        t.add("time to first analysed frame (process start to frame 0 done)",
              *[s.get("first_frame_s", NOT_AVAILABLE) for s, _ in runs], "s")
        torch_s = min(import_torch_s() for _ in range(2))
        t.add("bare `python -c 'import torch'` (the floor of start-up; same for all)", *[torch_s] * len(runs), "s")
        t.add("whole command (Python start-up, setup, outputs)", *[wall for _, wall in runs], "s")
        t.add("peak resident memory of the command (GNU time where installed)", *[s["peak_rss_mb"] for s, _ in runs], "MB")
    return t


#: End-to-end variants of the large-frame table (labels and overrides).
LARGE_VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("defaults", ()), ("defaults in fp32", FP32), ("column evidence off, fp32", E2E_FP32))
#: Label of the large-frame variant with the speed-preset U-Net (Checkpoints.unet_fast), fp32.
FAST_UNET_VARIANT = "unet_ws2_fast, fp32"
#: Git revision whose code the large table's "before" column runs in fp32: main when session 7
#: of issue #16 started (1607 px frames in fp32 with column evidence at 0.84 frames/s).
LARGE_BEFORE_REV = "3e409a0"


def _large_table(cfg: BenchConfig, ckpts: Checkpoints, work: Path) -> Table:
    """Frames/s, the slowest analyse steps and peak memory of ``python infer.py`` on a
    ``cfg.large_frames``-frame movie of ``cfg.large_frame_px`` px square frames (one run each)."""
    n, px = cfg.large_frames, int(cfg.large_frame_px)
    big = replace(cfg, frame_shape=(px, px), e2e_frames=n)
    movie = e2e_movie(big, work)
    before = before_checkout(cfg, work, LARGE_BEFORE_REV) if cfg.e2e_subprocess else None
    variants = [(label, overrides, None) for label, overrides in LARGE_VARIANTS]
    if before is not None:
        variants.insert(1, (f"before ({LARGE_BEFORE_REV}): fp32", FP32, before))
    if Path(ckpts.unet_fast).is_file():
        variants.append((FAST_UNET_VARIANT, (*FP32, f"unet_ckpt_path={movies.quote(ckpts.unet_fast)}"), None))
    runs = [end_to_end(big, ckpts, movie, work / f"run_{k}", overrides, checkout=checkout)[0]
            for k, (_, overrides, checkout) in enumerate(variants)]
    t = Table(f"**Large frames**: the same command on a {n}-frame {px}x{px} px synthetic movie at "
              f"{runs[0]['pixel_size_A']:.4g} A/px (resampled to 0.3 A/px: {round(px * runs[0]['pixel_size_A'] / 0.3)} px) "
              f"(seed {cfg.seed}, ~{runs[0]['mean_defects_per_frame']:.0f} defects per frame; one run each; "
              "the U-Net maps such frames in balanced tiles of at most 1024 px)"
              + (f"; 'before' runs the code of commit {LARGE_BEFORE_REV} in fp32" if before is not None else "")
              + (f"; `{FAST_UNET_VARIANT}`: `unet_ckpt_path=stem2d/weights/unet_ws2_fast.ckpt`, the speed preset "
                 "with half the U-Net's full-resolution channels (its detection F1 against the default's in "
                 "its card, stem2d/weights/unet_ws2_fast.json)." if variants[-1][0] == FAST_UNET_VARIANT else "."),
              ["what", *[label for label, *_ in variants], "unit"])
    t.add("frames per second (frame loop)", *[s["frames_per_s"] for s in runs], "frames/s")
    t.add("frames per second once running (frames 3..N)",
          *[s.get("frames_per_s_marginal") for s in runs], "frames/s")
    for step in ("detect", "classify"):
        t.add(f"  analyse step '{step}'", *[s["analyse_steps_s"].get(step, 0.0) / n for s in runs], "s/frame")
    t.add("peak resident memory of the command", *[s["peak_rss_mb"] for s in runs], "MB")
    return t


def _gpu_table(cfg: BenchConfig, ckpts: Checkpoints, raw: np.ndarray, canon: np.ndarray) -> Table:
    torch.cuda.reset_peak_memory_stats()
    t = Table(f"**Throughput on the GPU** ({torch.cuda.get_device_name(0)}).", ["what", "rate", "unit", "settings"])
    _model_rows(t, cfg, ckpts, raw, canon, device="cuda", unet_repeats=5, detailed=False)
    t.add("peak GPU memory", torch.cuda.max_memory_allocated() / 2**20, "MB", "torch.cuda.max_memory_allocated")
    return t
