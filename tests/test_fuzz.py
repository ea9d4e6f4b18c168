"""Bad input and faults (issue #18): every case ends in one clear message naming the key or file and
the value, and nothing wrong is reported as success.

CASES is the table to scan: case id, how it is run, the input, and a fragment (regex, case
insensitive) the error message must contain. The runners below turn a row into a call of the
library function the CLI uses (Hydra compose, not a subprocess), so the table runs in seconds.
Property-based fuzzing (hypothesis) of the readers and of the config validation follows; its
large runs are in the slow suite.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState

from stem2d.models.divergence import DivergenceGuard, TrainingDiverged
from stem2d.pipeline.schema import INFER, TRAIN, Check, check_value, validate
from stem2d.pipeline.utils import compose_job
from stem2d.sweeper.loop import outcome_from_result

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

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
    ("infer-threshold-high",   "infer_cfg",  ["detect.threshold=high"],                r"detect\.threshold='high'.*0 < threshold < 1"),
    ("infer-threshold-1",      "infer_cfg",  ["detect.threshold=1"],                   r"detect\.threshold=1.*0 < threshold < 1"),
    ("infer-threshold-0",      "infer_cfg",  ["detect.threshold=0"],                   r"detect\.threshold=0.*0 < threshold < 1"),
    ("infer-batch-0",          "infer_cfg",  ["batch_size=0"],                         r"batch_size=0.*>= 1"),
    ("infer-mode-typo",        "infer_cfg",  ["mode=unett"],                           r"mode='unett'.*one of unet, grid"),
    ("infer-bf16-maybe",       "infer_cfg",  ["bf16=maybe"],                           r"bf16='maybe'.*one of auto, true, false"),
    ("infer-dose-neg",         "infer_cfg",  ["dose_per_frame=-5"],                    r"dose_per_frame=-5.*> 0"),
    ("infer-match-0",          "infer_cfg",  ["score.match_dist_A=0"],                 r"score\.match_dist_A=0"),
    ("infer-video-text",       "infer_cfg",  ["outputs.video=yes please"],             r"outputs\.video='yes please'.*true or false"),
    # divergence (stem2d.models.divergence)
    ("train-loss-nan",         "diverge",    [1.6, 1.5, math.nan],                     r"diverged.*loss is nan.*model\.optimizer\.lr"),
    ("train-loss-inf",         "diverge",    [1.6, math.inf],                          r"diverged.*loss is inf"),
    ("train-loss-explodes",    "diverge",    [1.6, 1.2] + [8.5e10] * 5,                r"diverged.*8\.5e\+10.*100 x its first value.*5 steps"),
]


def _ids(cases):
    return [c[0] for c in cases]


def _compose(config: str, overrides: list[str], tmp_path: Path):
    return compose_job(config, overrides, run_dir=tmp_path, conf_dir=CONF)


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


def _run(runner: str, given, tmp_path: Path) -> None:
    if runner == "train_cfg":
        validate(_compose("train", given, tmp_path), TRAIN, where="train")
    elif runner == "infer_cfg":
        validate(_compose("infer", given, tmp_path), INFER, where="infer")
    elif runner == "diverge":
        _fit(given)
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
