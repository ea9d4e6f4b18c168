"""train.py configs: fast_dev_run of every model and experiment, TensorBoard output, errors, DDP."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import MissingConfigException

from stem2d.models.loading import load_classifier
from stem2d.pipeline.train import cpu_compute_threads, train
from tests.train_helpers import CONF, ROOT, TINY, compose_train


def _names(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _classifier_models() -> list[str]:
    """Model configs of the tile classifier (the pixel models need other data; see their tests)."""
    return [n for n in _names("model") if "CamClassifier" in (CONF / "model" / f"{n}.yaml").read_text()]


def _classifier_experiments() -> list[str]:
    """Experiments that train a tile classifier on simulated data (others have their own tests)."""
    GlobalHydra.instance().clear()
    keep = []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for name in _names("experiment"):
            cfg = compose(config_name="train", overrides=[f"experiment={name}"])
            if cfg.model._target_.endswith("CamClassifier") and cfg.data._target_.endswith("SimulatedDataModule"):
                keep.append(name)
    GlobalHydra.instance().clear()
    return keep


@pytest.mark.parametrize("model", _classifier_models())
def test_fast_dev_run_every_model(tmp_path, model):
    cfg = compose_train(tmp_path, [f"model={model}", "debug=fdr", *TINY])
    value = train(cfg)
    assert math.isfinite(value) and 0.0 <= value <= 1.0
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["optimized_metric"] == "val/f1_best" and summary["value"] == pytest.approx(value)
    assert "test/acc" in summary["metrics"]


@pytest.mark.parametrize("experiment", _classifier_experiments())
def test_fast_dev_run_every_experiment(tmp_path, experiment):
    cfg = compose_train(tmp_path, [f"experiment={experiment}", "debug=fdr", *TINY])
    assert math.isfinite(train(cfg))


def test_unknown_group_option_names_the_choices(tmp_path):
    with pytest.raises(MissingConfigException, match=r"(?s)model.*cam_cnn.*seed_cnn"):
        compose_train(tmp_path, ["model=resnet9000"])
    with pytest.raises(MissingConfigException, match=r"(?s)trainer.*cpu.*ddp.*gpu"):
        compose_train(tmp_path, ["trainer=tpu"])


def test_unlogged_optimized_metric_is_named(tmp_path):
    cfg = compose_train(tmp_path, ["debug=fdr", "optimized_metric=val/nonsense", "~callbacks", *TINY])
    with pytest.raises(ValueError, match="val/nonsense"):
        train(cfg)


def test_mismatched_num_classes_is_named(tmp_path):
    cfg = compose_train(tmp_path, ["debug=fdr", "model.net.num_classes=3", *TINY])
    with pytest.raises(ValueError, match="num_classes=3.*5 classes"):
        train(cfg)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One short real epoch with the default callbacks and TensorBoard logger."""
    tmp = tmp_path_factory.mktemp("tiny_run")
    cfg = compose_train(tmp, ["trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=0", *TINY])
    train(cfg)
    return tmp


def test_tensorboard_has_scalars_figures_and_hparams(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tiny_run / "tensorboard"), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = set(tags["scalars"])
    expected = {"train/loss_epoch", "train/acc", "val/loss", "val/acc", "val/f1", "val/f1_best",
                "val/f1_pristine", "test/acc", "test/f1", "test/f1_w_dopant", "test/acc_dose",
                "test/cam_err_px_median", "test/cam_err_A_median", "test/cam_within_2A", "lr-SGD"}
    assert expected <= scalars, expected - scalars
    assert {"val/confusion_matrix", "test/confusion_matrix", "test/cam_examples"} <= set(tags["images"])
    assert "_hparams_/experiment" in acc.summary_metadata


def test_checkpoints_and_metrics_file(tiny_run):
    summary = json.loads((tiny_run / "metrics.json").read_text())
    best = Path(summary["best_checkpoint"])
    assert best.is_file() and (tiny_run / "checkpoints" / "last.ckpt").is_file()
    model = load_classifier(best, expected_classes=summary["class_names"])
    assert model.class_names == summary["class_names"]


def test_test_only_run_from_a_checkpoint(tiny_run, tmp_path):
    best = json.loads((tiny_run / "metrics.json").read_text())["best_checkpoint"]
    cfg = compose_train(tmp_path, ["train=false", f"ckpt_path={best}", "~logger", *TINY])
    assert math.isnan(train(cfg))  # nothing was optimised in this run
    metrics = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert 0.0 <= metrics["test/acc"] <= 1.0 and "val/f1_best" not in metrics


@pytest.mark.slow
def test_resume_from_last_checkpoint(tiny_run, tmp_path):
    last = tiny_run / "checkpoints" / "last.ckpt"
    cfg = compose_train(tmp_path, ["trainer.max_epochs=2", f"ckpt_path={last}", "test=false",
                                   "callbacks.progress_bar.refresh_rate=0", *TINY])
    train(cfg)
    resumed = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["epoch"] == 1  # epoch 0 came from the checkpoint, only epoch 1 ran here


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    cmd = [sys.executable, "train.py", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
           "trainer.max_epochs=1", "trainer.precision=32-true", "callbacks.progress_bar.refresh_rate=0",
           f"paths.log_dir={tmp_path}", *TINY]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [metrics] = list(tmp_path.glob("train/runs/*/metrics.json"))
    summary = json.loads(metrics.read_text())
    assert "test/acc" in summary["metrics"]


def test_default_precision_is_resolved_by_the_hardware_rule(tmp_path, monkeypatch, caplog):
    """conf/trainer/cpu.yaml says precision: auto; train() resolves it (and logs it) before the
    Trainer sees it: fp32 on a CPU without native bf16."""
    from stem2d.models import precision

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    cfg = compose_train(tmp_path, ["debug=fdr", "model.net.channels=[4,8]", *TINY])
    assert cfg.trainer.precision == "auto"
    with caplog.at_level("INFO", logger="stem2d.pipeline.train"):
        train(cfg)
    assert cfg.trainer.precision == "32-true"
    assert "precision: 32-true (auto: no native bf16" in caplog.text


@pytest.mark.parametrize(("cpus", "workers", "env", "expected"), [
    (2, 1, None, 1), (16, 4, None, 12), (2, 4, None, 1), (2, 0, None, 2), (2, 1, "2", None),
])
def test_cpu_threads_leave_the_data_workers_their_cores(cpus, workers, env, expected):
    assert cpu_compute_threads(n_cpus=cpus, data_workers=workers, env_threads=env) == expected
