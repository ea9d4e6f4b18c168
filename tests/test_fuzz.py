"""Bad input and faults (issue #18): every case ends in one clear message naming the key or file and
the value, and nothing wrong is reported as success.

CASES is the table to scan: case id, how it is run, the input, and a fragment (regex, case
insensitive) the error message must contain. The runners below turn a row into a call of the
library function the CLI uses (Hydra compose, not a subprocess), so the table runs in seconds.
Property-based fuzzing (hypothesis) of the readers and of the config validation follows; its
large runs are in the slow suite.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import pickle
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import tifffile
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf, open_dict
from optuna.trial import TrialState

from stem2d.io.readers import read_movie
from stem2d.io.tables import read_detections, read_truth
from stem2d.lattice.sampling import check_pixel_size, plan_resample
from stem2d.models.divergence import DivergenceGuard, TrainingDiverged
from stem2d.models.loading import (
    bundled_classifier_path,
    load_classifier,
    load_pixel_predictor,
)
from stem2d.output.rundir import CLAIM_FILE, claim_run_dir
from stem2d.pipeline.schema import INFER, TRAIN, Check, check_value, validate
from stem2d.pipeline.tiles import run_tiles
from stem2d.pipeline.train import check_checkpoint
from stem2d.pipeline.utils import compose_job
from stem2d.predict.movie import MovieSettings, MovieSource, analyze_movie
from stem2d.sweeper.loop import outcome_from_result

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
_GROUPS = {p.name for p in CONF.iterdir() if p.is_dir()}

# ------------------------------------------------------------------------------ the case table
# id                          runner        input                                     message must contain
CASES = [
    # training configuration (stem2d.pipeline.schema.TRAIN)
    ("train-lr-1e3",           "train_cfg",  ["model.optimizer.lr=1e3"],               r"model\.optimizer\.lr=1000\.0.*0 < lr <= 10"),
    ("train-lr-0",             "train_cfg",  ["model.optimizer.lr=0"],                 r"model\.optimizer\.lr=0.*0 < lr"),
    ("train-lr-nan",           "train_cfg",  ["model.optimizer.lr=nan"],               r"model\.optimizer\.lr=nan.*not finite"),
    ("train-lr-text",          "train_cfg",  ["model.optimizer.lr=fast"],              r"model\.optimizer\.lr='fast'.*not a number"),
    ("train-momentum-1.5",     "train_cfg",  ["model.optimizer.momentum=1.5"],         r"momentum=1\.5.*0 <= momentum < 1"),
    ("train-momentum-neg",     "train_cfg",  ["model.optimizer.momentum=-0.1"],        r"momentum=-0\.1.*0 <= momentum < 1"),
    ("train-epochs-0",         "train_cfg",  ["trainer.max_epochs=0"],                 r"trainer\.max_epochs=0.*>= 1"),
    ("train-epochs-2.5",       "train_cfg",  ["trainer.max_epochs=2.5"],               r"max_epochs=2\.5.*not an integer"),
    ("train-batch-0",          "train_cfg",  ["data.batch_size=0"],                    r"data\.batch_size=0.*>= 1"),
    ("train-batch-text",       "train_cfg",  ["data.batch_size=many"],                 r"data\.batch_size='many'.*integer"),
    ("train-workers-neg",      "train_cfg",  ["data.num_workers=-1"],                  r"data\.num_workers=-1.*>= 0"),
    ("train-samples-0",        "train_cfg",  ["data.n_train_samples=0"],               r"data\.n_train_samples=0"),
    ("train-dropout-1",        "train_cfg",  ["model.net.dropout=1.0"],                r"model\.net\.dropout=1\.0.*< 1"),
    ("train-unet-lr-neg",      "train_cfg",  ["experiment=exp_unet", "model.optimizer.lr=-1"], r"model\.optimizer\.lr=-1"),
    ("train-nesterov-text",    "train_cfg",  ["model.optimizer.nesterov=maybe"],       r"nesterov='maybe'.*true or false"),
    ("train-two-problems",     "train_cfg",  ["model.optimizer.lr=1e3", "data.batch_size=0"], r"lr=1000\.0.*; data\.batch_size=0"),
    # inference configuration (stem2d.pipeline.schema.INFER)
    ("infer-px-abc",           "infer_cfg",  ["pixel_size_A=abc"],                     r"pixel_size_A='abc'.*not a number"),
    ("infer-px-0",             "infer_cfg",  ["pixel_size_A=0"],                       r"pixel_size_A=0.*> 0"),
    ("infer-px-neg",           "infer_cfg",  ["pixel_size_A=-0.2"],                    r"pixel_size_A=-0\.2.*> 0"),
    ("infer-px-inf",           "infer_cfg",  ["pixel_size_A=inf"],                     r"pixel_size_A=inf.*not finite"),
    ("infer-px-nan",           "infer_cfg",  ["pixel_size_A=nan"],                     r"pixel_size_A=nan.*not finite"),
    ("infer-max-frames-0",     "infer_cfg",  ["max_frames=0"],                         r"max_frames=0.*>= 1, or null"),
    ("infer-max-frames-neg",   "infer_cfg",  ["max_frames=-1"],                        r"max_frames=-1.*>= 1, or null"),
    ("infer-max-frames-1.5",   "infer_cfg",  ["max_frames=1.5"],                       r"max_frames=1\.5.*not an integer"),
    ("infer-fps-0",            "infer_cfg",  ["outputs.fps=0"],                        r"outputs\.fps=0.*0 < fps"),
    ("infer-fps-inf",          "infer_cfg",  ["outputs.fps=inf"],                      r"outputs\.fps=inf.*not finite"),
    ("infer-threshold-high",   "infer_cfg",  ["detector.threshold=high"],              r"detector\.threshold='high'.*0 < threshold < 1"),
    ("infer-threshold-1",      "infer_cfg",  ["detector.threshold=1"],                 r"detector\.threshold=1.*0 < threshold < 1"),
    ("infer-threshold-0",      "infer_cfg",  ["detector.threshold=0"],                 r"detector\.threshold=0.*0 < threshold < 1"),
    ("infer-batch-0",          "infer_cfg",  ["classify.batch_size=0"],                r"classify\.batch_size=0.*>= 1"),
    ("infer-baseline-typo",    "infer_cfg",  ["score.baseline=latice"],                r"score\.baseline='latice'.*one of lattice, fourier"),
    ("infer-bf16-maybe",       "infer_cfg",  ["classify.bf16=maybe"],                  r"classify\.bf16='maybe'.*one of auto, true, false"),
    ("infer-dose-neg",         "infer_cfg",  ["dose_per_frame=-5"],                    r"dose_per_frame=-5.*> 0"),
    ("infer-match-0",          "infer_cfg",  ["score.match_dist_A=0"],                 r"score\.match_dist_A=0"),
    ("infer-video-text",       "infer_cfg",  ["outputs.video=yes please"],             r"outputs\.video='yes please'.*true or false"),
    # movie readers (stem2d.io): the input names a file made by MAKERS below
    ("tif-truncated-imagej",   "read",       "truncated_imagej_tif",                   r"truncated_imagej_tif\.tif.*header says 20 frames.*data for 1"),
    ("tif-truncated-imagej-lazy", "read_lazy", "truncated_imagej_tif",                 r"header says 20 frames.*data for 1"),
    ("tif-truncated-plain",    "read",       "truncated_plain_tif",                    r"truncated_plain_tif\.tif: truncated file.*20 frame"),
    ("tif-truncated-plain-lazy", "read_lazy", "truncated_plain_tif",                   r"truncated file.*20 frame"),
    ("npy-truncated",          "read",       "truncated_npy",                          r"truncated_npy\.npy: truncated file.*\(20, 96, 96\)"),
    ("npy-truncated-lazy",     "read_lazy",  "truncated_npy",                          r"truncated_npy\.npy: truncated file"),
    ("npy-pickle",             "read",       "pickle_npy",                             r"pickle_npy\.npy"),
    ("npy-empty-file",         "read",       "empty_npy",                              r"empty_npy\.npy"),
    ("txt-as-movie",           "read",       "text_tif",                               r"text_tif\.tif: could not read"),
    # tables (stem2d.io.tables, as python -m stem2d.evolution and the truth reader use them)
    ("detections-empty",       "detections", "",                                       r"detections\.csv: the detections table is empty"),
    ("detections-binary",      "detections", "\x93\xaf\x00\x01garbage\xff",             r"detections\.csv: not a CSV"),
    ("detections-no-columns",  "detections", "a,b\n1,2\n",                            r"lacks column.*'frame'"),
    ("detections-bad-frame",   "detections", "frame,row,col,class,score\n-1,2,3,s_vacancy,0.5\n", r"'frame'.*line 2 has '-1'"),
    ("detections-nan-row",     "detections", "frame,row,col,class,score\n0,nan,3,s_vacancy,0.5\n", r"'row'.*finite.*line 2 has 'nan'"),
    ("detections-bad-score",   "detections", "frame,row,col,class,score\n0,2,3,s_vacancy,1.5\n", r"'score'.*\[0, 1\].*'1\.5'"),
    ("detections-no-class",    "detections", "frame,row,col,class,score\n0,2,3,,0.5\n", r"'class' is empty in line 2"),
    # tiles= (stem2d.pipeline.tiles.run_tiles)
    ("tiles-npz",              "tiles",      "tiles_npz",                              r"tiles_npz\.npz' is an \.npz archive.*\['tiles'\]"),
    ("tiles-empty",            "tiles",      "tiles_empty",                            r"tiles_empty\.npy.*empty"),
    ("tiles-all-zero",         "tiles",      "tiles_zero",                             r"tiles_zero\.npy.*all 3 tiles are constant"),
    ("tiles-pickle",           "tiles",      "pickle_npy",                             r"pickle_npy\.npy' is not a plain \.npy"),
    # checkpoints given to train.py as ckpt_path (resume)
    ("resume-pickle",          "resume",     "pickle_payload",                         r"ckpt_path=.*pickle_payload\.pkl.*weights_only=True"),
    ("resume-text",            "resume",     "text_ckpt",                              r"ckpt_path=.*text_ckpt\.ckpt.*weights_only=True"),
    ("resume-slim-export",     "resume",     "bundled_classifier",                     r"ckpt_path=.*cam_cnn_ws2\.ckpt.*weights only.*train=false"),
    ("resume-missing",         "resume",     "missing_ckpt",                           r"ckpt_path=.*nothing\.ckpt.*no such file"),
    # checkpoints given to infer.py as unet_ckpt_path (stem2d.models.loading.load_pixel_predictor)
    ("unet-pickle",            "unet",       "pickle_payload",                         r"U-Net checkpoint .*pickle_payload\.pkl.*unet_ckpt_path.*weights_only=True"),
    ("unet-text",              "unet",       "text_ckpt",                              r"U-Net checkpoint .*text_ckpt\.ckpt.*weights_only=True"),
    ("unet-classifier",        "unet",       "bundled_classifier",                     r"cam_cnn_ws2\.ckpt.*holds a CamNet network.*ckpt_path="),
    ("unet-missing",           "unet",       "missing_ckpt",                           r"U-Net checkpoint .*nothing\.ckpt.*does not exist"),
    # checkpoints given to infer.py as ckpt_path (stem2d.models.loading.load_classifier)
    ("classifier-pickle",      "classifier", "pickle_payload",                         r"classifier checkpoint .*pickle_payload\.pkl.*weights_only=True"),
    ("classifier-text",        "classifier", "text_ckpt",                              r"classifier checkpoint .*text_ckpt\.ckpt.*weights_only=True"),
    ("classifier-unet",        "classifier", "bundled_unet",                           r"unet_ws2\.ckpt' holds the U-Net pixel predictor.*unet_ckpt_path="),
    # run folders (stem2d.output.rundir)
    ("rundir-claimed",         "rundir",     "claimed_by_other",                       r"hydra\.run\.dir=.*claimed.*already used by another run \(pid 999999 on other-host, started 2026-01-01 00:00:00"),
    ("rundir-under-file",      "rundir",     "under_a_file",                           r"hydra\.run\.dir=.*lies under .*a_file'.*which is a file"),
    # resampling bound (stem2d.lattice.sampling), a 256 px frame whose lattice measures 0.24 A/px
    ("px-30-vs-lattice",       "pixel_size", 30.0,                                     r"pixel_size_A=30 disagrees.*measures 0\.24 A/px"),
    ("px-30-memory",           "resample",   30.0,                                     r"256 x 256 px at pixel_size_A=30.*25600 x 25600 px.*GB"),
    ("px-0.001",               "resample",   0.001,                                    r"pixel_size_A=0\.001.*1 x 1 px.*smaller than one 64 x 64"),
    ("px-inf",                 "resample",   math.inf,                                 r"pixel_size_A=inf must be a finite number > 0"),
    ("px-0",                   "resample",   0.0,                                      r"pixel_size_A=0\.0 must be a finite number > 0"),
    # the movie loop's checks before the frame loop (stem2d.predict.movie.analyze_movie): a 256 px
    # synthetic frame at 0.24 A/px
    ("movie-px-30",            "movie",      {"pixel_size_A": 30.0},                   r"pixel_size_A=30 disagrees with the WS2 lattice.*measures 0\.2[34]\d* A/px"),
    ("movie-px-0.05",          "movie",      {"pixel_size_A": 0.05},                   r"pixel_size_A=0\.05 disagrees.*measures 0\.2[34]\d* A/px"),
    ("movie-px-inf",           "movie",      {"pixel_size_A": math.inf},               r"pixel_size_A=inf must be a finite number > 0"),
    ("movie-max-frames-0",     "movie",      {"max_frames": 0},                        r"max_frames=0 must be an integer >= 1"),
    ("movie-max-frames-neg",   "movie",      {"max_frames": -1},                       r"max_frames=-1 must be an integer >= 1"),
    # divergence (stem2d.models.divergence)
    ("train-loss-nan",         "diverge",    [1.6, 1.5, math.nan],                     r"diverged.*loss is nan.*model\.optimizer\.lr"),
    ("train-loss-inf",         "diverge",    [1.6, math.inf],                          r"diverged.*loss is inf"),
    ("train-loss-explodes",    "diverge",    [1.6, 1.2] + [8.5e10] * 5,                r"diverged.*8\.5e\+10.*100 x its first value.*5 steps"),
]


MAKERS_RUNNERS = ("read", "read_lazy", "tiles", "resume", "unet", "classifier", "rundir")


def _ids(cases):
    return [c[0] for c in cases]


@functools.lru_cache(maxsize=8)
def _base(config: str, groups: tuple[str, ...]):
    return compose_job(config, list(groups), run_dir=Path("/nonexistent"), conf_dir=CONF)


def _compose(config: str, overrides: list[str], tmp_path: Path):
    """The config as the CLI composes it: group choices by Hydra (cached), values typed by Hydra's
    own override grammar (so ``lr=1e3`` is the float 1000.0 and ``lr=fast`` the string 'fast')."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    groups = tuple(o.input_line for o in parsed if "." not in o.key_or_group and o.key_or_group in _GROUPS)
    cfg = copy.deepcopy(_base(config, groups))
    with open_dict(cfg):
        for o in parsed:
            if o.input_line not in groups:
                OmegaConf.update(cfg, o.key_or_group, o.value(), merge=False)
        cfg.paths.output_dir = str(tmp_path)
    return cfg


class _Losses(pl.LightningModule):
    """A module whose training loss follows a given sequence (to drive the divergence guard)."""

    def __init__(self, losses):
        super().__init__()
        self.losses = list(losses)
        self.p = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch, batch_idx):
        return self.p * 0 + self.losses[min(self.global_step, len(self.losses) - 1)]

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.zeros(len(self.losses) + 3, 1), batch_size=1)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(losses, guard=None):
    trainer = pl.Trainer(max_epochs=1, callbacks=[guard or DivergenceGuard()], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(_Losses(losses))
    return trainer


# ------------------------------------------------------------------------------ input makers

def _tif_truncated(tmp: Path, name: str, **kw) -> Path:
    path = tmp / f"{name}.tif"
    tifffile.imwrite(path, np.random.default_rng(0).poisson(30, (20, 96, 96)).astype(np.uint16), **kw)
    with tifffile.TiffFile(path) as tif:
        offset = tif.series[0].dataoffset or tif.pages[0].dataoffsets[0]
    path.write_bytes(path.read_bytes()[: offset + 96 * 96 * 2])  # header + one frame
    return path


def _npy(tmp: Path, name: str, array, cut: float | None = None) -> Path:
    path = tmp / f"{name}.npy"
    np.save(path, array, allow_pickle=True)
    if cut is not None:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * cut)])
    return path


class _Payload:
    def __reduce__(self):
        return (print, ("a pickle payload ran",))


def _pickle(tmp: Path) -> Path:
    path = tmp / "pickle_payload.pkl"
    path.write_bytes(pickle.dumps({"state_dict": _Payload()}))
    return path


def _claimed(tmp: Path) -> Path:
    folder = tmp / "claimed"
    folder.mkdir()
    (folder / CLAIM_FILE).write_text(json.dumps({"pid": 999999, "host": "other-host", "command": "infer.py",
                                                 "started_utc": "2026-01-01 00:00:00"}))
    return folder


def _under_file(tmp: Path) -> Path:
    (tmp / "a_file").write_text("x")
    return tmp / "a_file" / "run"


MAKERS = {
    "truncated_imagej_tif": lambda tmp: _tif_truncated(tmp, "truncated_imagej_tif", imagej=True),
    "truncated_plain_tif": lambda tmp: _tif_truncated(tmp, "truncated_plain_tif"),
    "truncated_npy": lambda tmp: _npy(tmp, "truncated_npy", np.ones((20, 96, 96), np.float32), cut=0.3),
    "pickle_npy": lambda tmp: _npy(tmp, "pickle_npy", np.array([_Payload()], dtype=object)),
    "empty_npy": lambda tmp: (tmp / "empty_npy.npy").write_bytes(b"") and None or tmp / "empty_npy.npy",
    "text_tif": lambda tmp: (tmp / "text_tif.tif").write_text("not an image") and tmp / "text_tif.tif",
    "tiles_npz": lambda tmp: np.savez(tmp / "tiles_npz.npz", tiles=np.ones((2, 64, 64))) or tmp / "tiles_npz.npz",
    "tiles_empty": lambda tmp: _npy(tmp, "tiles_empty", np.zeros((0, 64, 64), np.float32)),
    "tiles_zero": lambda tmp: _npy(tmp, "tiles_zero", np.zeros((3, 64, 64), np.float32)),
    "pickle_payload": _pickle,
    "text_ckpt": lambda tmp: (tmp / "text_ckpt.ckpt").write_text("epoch=3") and tmp / "text_ckpt.ckpt",
    "bundled_classifier": lambda tmp: bundled_classifier_path("WS2"),
    "bundled_unet": lambda tmp: bundled_classifier_path("WS2").with_name("unet_ws2.ckpt"),
    "missing_ckpt": lambda tmp: tmp / "nothing.ckpt",
    "claimed_by_other": _claimed,
    "under_a_file": _under_file,
}

_MEASURED_A = 0.24  # what the lattice says in the pixel-size cases


@functools.lru_cache(maxsize=1)
def _small_movie() -> MovieSource:
    from stem2d.sim.movie import MovieConfig, simulate_movie

    movie = simulate_movie(MovieConfig(n_frames=2, frame_shape=[256, 256], pixel_size_A=_MEASURED_A), rng=0)
    return MovieSource(movie.frames, "synthetic.tif", None, movie.truth)


def _run(runner: str, given, tmp_path: Path) -> None:
    if runner in MAKERS_RUNNERS:
        given = MAKERS[given](tmp_path)
    if runner == "train_cfg":
        validate(_compose("train", given, tmp_path), TRAIN, where="train")
    elif runner == "infer_cfg":
        validate(_compose("infer", given, tmp_path), INFER, where="infer")
    elif runner == "diverge":
        _fit(given)
    elif runner in ("read", "read_lazy"):
        with read_movie(given, lazy=runner == "read_lazy") as movie:
            [np.asarray(f) for f in movie.frames]
    elif runner == "detections":
        path = tmp_path / "detections.csv"
        path.write_bytes(given.encode("latin-1"))
        read_detections(path)
    elif runner == "tiles":
        run_tiles(_compose("infer", [f"tiles={given}"], tmp_path))
    elif runner == "resume":
        check_checkpoint(str(given), load_classifier(), resume=True)
    elif runner == "movie":
        analyze_movie(_small_movie(), detector=None, classifier=None, settings=MovieSettings(**given))
    elif runner == "classifier":
        load_classifier(given)
    elif runner == "unet":
        load_pixel_predictor(given)
    elif runner == "rundir":
        claim_run_dir(given)
    elif runner == "pixel_size":
        check_pixel_size(given, _MEASURED_A, source="movie.tif", material="WS2")
    elif runner == "resample":
        plan_resample((256, 256), pixel_size_A=given, source="movie.tif", available_bytes=16 * 2**30)
    else:
        raise AssertionError(f"unknown runner {runner}")


@pytest.mark.parametrize("case, runner, given, fragment", CASES, ids=_ids(CASES))
def test_case_ends_in_a_clear_message(case, runner, given, fragment, tmp_path):
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        _run(runner, given, tmp_path)
    assert err.match(f"(?is){fragment}"), f"{case}: {err.value}"


# ------------------------------------------------------------------------------ divergence


def test_healthy_losses_and_a_single_spike_train_on():
    trainer = _fit([1.6, 1.4, 500.0, 1.2, 1.0, 0.9])
    assert trainer.state.finished


def test_diverged_trial_is_failed_and_never_best():
    outcome = outcome_from_result(failed=True, result=TrainingDiverged("training diverged: loss nan"))
    assert outcome.state == TrialState.FAIL
    assert "TrainingDiverged" in outcome.message


def test_default_configs_are_valid(tmp_path):
    for config, table, extra in (("train", TRAIN, []), ("train", TRAIN, ["experiment=exp_unet"]),
                                 ("infer", INFER, []), ("sweep", TRAIN, [])):
        validate(_compose(config, extra, tmp_path), table, where=config)


def test_divergence_guard_is_in_the_default_callbacks(tmp_path):
    cfg = _compose("train", [], tmp_path)
    assert cfg.callbacks.divergence._target_ == "stem2d.models.divergence.DivergenceGuard"


# ------------------------------------------------------------------------------ properties

_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)


def _check_property(check: Check, value) -> None:
    problem = check_value(check, value)
    if problem is not None:
        assert problem.startswith(f"{check.key}="), problem
        assert "allowed" in problem or "not a text" in problem, problem
        return
    # accepted: the value really lies in the allowed set
    if value is None:
        assert check.null
    elif check.kind in ("number", "int"):
        assert not isinstance(value, bool) and math.isfinite(value)
        assert check.gt is None or value > check.gt
        assert check.ge is None or value >= check.ge
        assert check.lt is None or value < check.lt
        assert check.le is None or value <= check.le
        assert check.kind != "int" or value == int(value)
    elif check.kind == "bool":
        assert isinstance(value, bool)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=st.sampled_from(TRAIN + INFER), value=_SCALARS)
def test_config_validation_property_fast(row, value):
    _check_property(row, value)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None)
@given(row=st.sampled_from(TRAIN + INFER), value=_SCALARS)
def test_config_validation_property(row, value):
    _check_property(row, value)


# the same through the command line's grammar: key=<text> as a user would type it
_TYPED = st.one_of(
    st.sampled_from(["0", "-1", "1", "1e3", "1e-9", "inf", "-inf", "nan", "null", "true", "false", "abc", "0.5",
                     "2.5", "1e309", "''", "[1,2]", "{a: 1}", "0x10", "1_000"]),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.integers(-10**9, 10**9).map(str),
    st.text(alphabet="abcxyz019.-_ ", min_size=1, max_size=6).map(lambda t: f"'{t}'"),
)


def _check_override(config: str, table, row: Check, text: str, tmp: Path) -> None:
    from hydra.errors import HydraException

    try:
        cfg = _compose(config, [f"{row.key}={text}"], tmp)
    except HydraException as err:  # the override grammar refused it: Hydra names the override
        assert row.key in str(err), str(err)
        return
    try:
        validate(cfg, table, where=config)
    except ValueError as err:
        assert f"{row.key}=" in str(err), str(err)
        return
    _check_property(row, OmegaConf.select(cfg, row.key))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_config_overrides_property_fast(data, tmp_path):
    config, table = data.draw(st.sampled_from([("train", TRAIN), ("infer", INFER)]))
    _check_override(config, table, data.draw(st.sampled_from(table)), data.draw(_TYPED), tmp_path)


@pytest.mark.slow
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_config_overrides_property(data, tmp_path):
    config, table = data.draw(st.sampled_from([("train", TRAIN), ("infer", INFER)]))
    _check_override(config, table, data.draw(st.sampled_from(table)), data.draw(_TYPED), tmp_path)


# ------------------------------------------------------------------------------ reader properties

_FORMATS = (".npy", ".npz", ".tif", ".h5")


def _write(path: Path, stack: np.ndarray) -> None:
    if path.suffix == ".npy":
        np.save(path, stack)
    elif path.suffix == ".npz":
        np.savez(path, frames=stack)
    elif path.suffix == ".tif":
        tifffile.imwrite(path, stack)
    else:
        import h5py

        with h5py.File(path, "w") as f:
            f["data"] = stack


@st.composite
def _mangled_movies(draw, suffix: str):
    n = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.int16, np.float32, np.float64]))
    seed = draw(st.integers(0, 2**16))
    stack = np.random.default_rng(seed).poisson(30, size=(n, 64, 64 + draw(st.integers(0, 8)))).astype(dtype)
    how = draw(st.sampled_from(["none", "truncate", "flip", "append"]))
    return suffix, stack, how, draw(st.floats(0, 1)), draw(st.lists(st.integers(0, 255), min_size=1, max_size=8))


def _check_reader(tmp: Path, suffix: str, stack: np.ndarray, how: str, where: float, noise: list[int]) -> None:
    """Read a (possibly mangled) file: a correct movie, or a ValueError naming the file; never a
    shorter movie from a truncated file, never another exception."""
    path = tmp / f"movie{suffix}"
    _write(path, stack)
    data = bytearray(path.read_bytes())
    at = int(where * (len(data) - 1))
    if how == "truncate":
        data = data[:at]
    elif how == "flip":
        for k, b in enumerate(noise):
            data[(at + 97 * k) % len(data)] = b
    elif how == "append":
        data += bytes(noise)
    path.write_bytes(bytes(data))
    for lazy in (False, True):
        try:
            with read_movie(path, lazy=lazy) as movie:
                frames = [np.asarray(f) for f in movie.frames]
        except (ValueError, FileNotFoundError) as err:
            assert path.name in str(err), str(err)
            continue
        assert all(f.dtype == np.float32 and f.ndim == 2 and np.isfinite(f).all() for f in frames)
        if how in ("none", "truncate"):  # whatever reads is the whole movie, never a part of it
            assert len(frames) == len(stack), (how, len(frames), len(stack))
            np.testing.assert_allclose(np.stack(frames), stack.astype(np.float32))


_FAST = settings(max_examples=8, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
_SLOW = settings(max_examples=300, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("suffix", _FORMATS)
def test_reader_property_fast(suffix, tmp_path):
    @_FAST
    @given(case=_mangled_movies(suffix))
    def run(case):
        _check_reader(tmp_path, *case)

    run()


@pytest.mark.slow
@pytest.mark.parametrize("suffix", _FORMATS)
def test_reader_property(suffix, tmp_path):
    @_SLOW
    @given(case=_mangled_movies(suffix))
    def run(case):
        _check_reader(tmp_path, *case)

    run()


# ------------------------------------------------------------------------------ failed runs


def test_failed_run_sets_its_partial_output_aside(tmp_path, caplog):
    """A run that fails after writing files leaves nothing that looks like a result, and says so."""
    from stem2d.pipeline.cli import PARTIAL_DIR, run_friendly

    compose_job("infer", [], run_dir=tmp_path, conf_dir=CONF)  # sets the run folder, as Hydra does

    def fails_midway():
        (tmp_path / "detections.csv").write_text("frame,row,col,class,score\n")
        raise ValueError("evolution: something went wrong")

    with pytest.raises(SystemExit) as exit_info:
        run_friendly(fails_midway)
    assert exit_info.value.code == 2
    assert not (tmp_path / "detections.csv").exists()
    assert (tmp_path / PARTIAL_DIR / "detections.csv").is_file()
    assert "detections.csv) was moved to" in caplog.text and "partial, not results" in caplog.text


def test_claim_is_reentrant_for_the_same_process(tmp_path):
    assert claim_run_dir(tmp_path / "run") == claim_run_dir(tmp_path / "run")


def test_a_child_of_the_claiming_run_may_join_it_a_stranger_may_not(tmp_path):
    """DDP starts ranks > 0 as children of rank 0 running the same command in the same folder."""
    claim_run_dir(tmp_path / "run")
    code = "import sys; from stem2d.output.rundir import claim_run_dir; claim_run_dir(sys.argv[1])"
    child = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], capture_output=True, text=True)
    assert child.returncode == 0, child.stderr
    grandchild = subprocess.run(  # a process whose parent is not the claiming run
        [sys.executable, "-c", f"import subprocess, sys; sys.exit(subprocess.run([sys.executable, '-c', {code!r}, "
                               f"{str(tmp_path / 'run')!r}]).returncode)"], capture_output=True, text=True)
    assert grandchild.returncode != 0


# ------------------------------------------------------------------------------ the command line (slow)


def _cli(script: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run an entry script; ``.stdout`` holds stdout and stderr together (Hydra logs to stdout)."""
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


@pytest.mark.slow
def test_cli_diverging_training_exits_2_without_metrics(tmp_path):
    tiny = ["data.n_bases_per_class=1", "data.n_val_bases_per_class=1", "data.n_test_bases_per_class=1",
            "data.n_train_samples=48", "data.n_val_samples=20", "data.n_test_samples=20", "data.batch_size=16",
            "data.num_workers=0", "data.persistent_workers=false", "trainer.max_epochs=3", "trainer.precision=32-true"]
    proc = _cli("train.py", f"hydra.run.dir={tmp_path}", "model.optimizer._target_=torch.optim.Adam",
                "~model.optimizer.momentum", "~model.optimizer.nesterov", "model.optimizer.lr=10", *tiny)
    assert proc.returncode == 2, proc.stdout[-2000:]
    assert "TrainingDiverged: training diverged" in proc.stdout and "model.optimizer.lr=10" in proc.stdout
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.slow
def test_cli_bad_values_exit_2_naming_the_key(tmp_path):
    proc = _cli("train.py", f"hydra.run.dir={tmp_path / 'a'}", "model.optimizer.lr=1e3", "model.optimizer.momentum=1.5")
    assert proc.returncode == 2
    assert "model.optimizer.lr=1000.0" in proc.stdout and "momentum=1.5" in proc.stdout
    for bad, named in (("pixel_size_A=abc", "pixel_size_A='abc'"), ("outputs.fps=0", "outputs.fps=0"),
                       ("max_frames=0", "max_frames=0"), ("detector.threshold=high", "detector.threshold='high'")):
        proc = _cli("infer.py", f"hydra.run.dir={tmp_path / bad.split('=')[0]}", bad)
        assert proc.returncode == 2 and named in proc.stdout, proc.stdout[-2000:]


@pytest.mark.slow
def test_cli_second_run_into_a_claimed_folder_stops(tmp_path):
    quick = ["synthetic.n_frames=1", "synthetic.frame_shape=[128,128]", "outputs.video=false",
             "outputs.evolution=false", "outputs.tensorboard=false", "outputs.progress=false"]
    first = _cli("infer.py", f"hydra.run.dir={tmp_path}", *quick)
    assert first.returncode == 0, first.stdout[-2000:]
    before = (tmp_path / "summary.json").read_bytes()
    second = _cli("infer.py", f"hydra.run.dir={tmp_path}", *quick)
    assert second.returncode == 2
    assert f"hydra.run.dir='{tmp_path}' is already used by another run (pid " in second.stdout
    assert (tmp_path / "summary.json").read_bytes() == before
    (tmp_path / "plain_file").write_text("x")
    third = _cli("infer.py", f"hydra.run.dir={tmp_path / 'plain_file' / 'run'}", *quick)
    assert third.returncode == 2 and "which is a file" in third.stdout


@pytest.mark.slow
def test_cli_sweep_records_a_rejected_trial_as_failed_never_best(tmp_path):
    cmd = ["-m", f"hydra.sweep.dir={tmp_path}", "hydra.sweeper.n_trials=1", "hydra.sweeper.max_failure_rate=1.0",
           "model.optimizer.lr=1e3", f"paths.log_dir={tmp_path}/logs", "data.num_workers=0"]
    proc = _cli("sweep.py", *cmd)
    import optuna
    import yaml

    trials = optuna.load_study(study_name="cam_optuna", storage=f"sqlite:///{tmp_path}/optuna.db").trials
    assert [t.state for t in trials] == [TrialState.FAIL], proc.stdout[-2000:]
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert results["best_params"] is None


@pytest.mark.slow
def test_cli_max_frames_scores_only_the_analysed_frames(tmp_path):
    """max_frames=3 on a 20-frame movie with a truth file: scored against the truth of those 3 frames
    (was: against all 20, F1 0.219 instead of 0.973), and the truth file is announced in the log."""
    from stem2d.sim.movie_cli import main as movie_cli

    movie = tmp_path / "movie.tif"
    movie_cli(["--out", str(movie), "--n-frames", "6", "--frame-shape", "192", "192", "--pixel-size-A", "0.25",
               "--seed", "1", "--no-progress"])
    run = tmp_path / "run"
    proc = _cli("infer.py", f"movie={movie}", "max_frames=3", f"hydra.run.dir={run}", "outputs.video=false",
                "outputs.evolution=false", "outputs.tensorboard=false", "outputs.progress=false", "score.baseline=null")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "movie_truth.csv found beside the movie" in proc.stdout
    truth = read_truth(run / "truth.csv")
    assert truth["frame"].max() <= 2
    metrics = json.loads((run / "metrics.json").read_text())["pipeline"]["detection"]
    assert metrics["n_true"] == len(truth) and metrics["f1"] >= 0.9
