"""``train(cfg)``: build data, model, callbacks, loggers and trainer from a Hydra config; fit; test."""

from __future__ import annotations

import copy
import logging
import math
import os
import sys
import time
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf, open_dict

from stem2d.models.precision import resolve_precision
from stem2d.output.files import write_json
from stem2d.pipeline.schema import TRAIN, validate
from stem2d.pipeline.utils import (
    flatten_config,
    instantiate_all,
    instantiate_node,
    output_dir,
    require_keys,
    to_float_dict,
)

log = logging.getLogger(__name__)

__all__ = ["train", "build_model"]

#: Config keys shown as TensorBoard hyper-parameters.
_HPARAM_KEYS = ["seed", "model", "data", "trainer.max_epochs", "trainer.precision"]


def build_model(model_cfg: DictConfig, datamodule: Any) -> pl.LightningModule:
    """Instantiate ``cfg.model`` with the class set, noise modes and tile geometry of the data.

    ``model.net.num_classes`` is filled from the data's ``class_names`` (it may also be given,
    then it must agree).
    """
    class_names = getattr(datamodule, "class_names", None)
    if not class_names:
        raise ValueError(f"data: {type(datamodule).__name__} has no class_names; the model needs them")
    model_cfg = copy.deepcopy(model_cfg)
    with open_dict(model_cfg):
        if "net" in model_cfg:
            given = OmegaConf.select(model_cfg, "net.num_classes", default=None, throw_on_missing=False)
            if given is not None and int(given) != len(class_names):
                raise ValueError(
                    f"model.net.num_classes={given} but the data has {len(class_names)} classes {list(class_names)}"
                )
            model_cfg.net.num_classes = len(class_names)
    extra: dict[str, Any] = {"class_names": list(class_names)}
    if getattr(datamodule, "noise_modes", None):
        extra["noise_modes"] = list(datamodule.noise_modes)
    for attr in ("tile_size_px", "pixel_size_A"):
        if getattr(datamodule, attr, None) is not None:
            extra[attr] = getattr(datamodule, attr)
    return instantiate_node(model_cfg, "model", **extra)


def _pruning_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    """The sweep's pruning callback (``stem2d.sweeper.pruning_callback_from_cfg``), if any."""
    from stem2d.sweeper import pruning_callback_from_cfg

    callback = pruning_callback_from_cfg(cfg)
    return [] if callback is None else [callback]


def _with_divergence_guard(callbacks: list[pl.Callback]) -> list[pl.Callback]:
    """``callbacks`` plus a default :class:`DivergenceGuard` unless one is configured: a diverging
    run must fail even when ``callbacks`` was replaced or removed."""
    from stem2d.models.divergence import DivergenceGuard

    if any(isinstance(c, DivergenceGuard) for c in callbacks):
        return callbacks
    return [*callbacks, DivergenceGuard()]


def check_checkpoint(path: str, model: pl.LightningModule, *, resume: bool) -> None:
    """Refuse, with a message naming ``ckpt_path``, a file that is not a training checkpoint of
    this model: missing, not loadable with ``weights_only=True`` (a pickle, a text file), a slim
    inference export when resuming (no optimizer or loop state), or weights of another network."""
    key = f"ckpt_path={str(path)!r}"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{key}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise ValueError(f"{key} is not a checkpoint that loads safely with weights_only=True: a pickle "
                         f"with code, a text file or a damaged file ({type(err).__name__})") from err
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ValueError(f"{key} is not a Lightning checkpoint (no state_dict)")
    if resume and not {"loops", "optimizer_states"} <= set(ckpt):
        raise ValueError(f"{key} holds weights only (an exported or slim checkpoint), not the optimizer and loop "
                         "state a resume needs: give checkpoints/last.ckpt of a train.py run, or add train=false "
                         "to only test these weights")
    own = set(model.state_dict())
    missing = sorted(own - set(ckpt["state_dict"]))
    if missing:
        raise ValueError(f"{key} holds the weights of another network: {len(missing)} of this model's "
                         f"{len(own)} tensors are missing (e.g. {missing[0]}); was it trained with another "
                         f"model= ({type(model).__name__} here)?")


def _best_checkpoint(trainer: pl.Trainer) -> str | None:
    callback = trainer.checkpoint_callback
    path = getattr(callback, "best_model_path", "") if callback is not None else ""
    if not path:
        log.warning("no best checkpoint was saved (fast_dev_run or no checkpoint callback): testing the current weights")
        return None
    return path


def _log_hparams(trainer: pl.Trainer, cfg: DictConfig, metrics: dict[str, float]) -> None:
    """Write the TensorBoard HParams summary; the metrics point at scalar tags already logged."""
    from torch.utils.tensorboard.summary import hparams

    if not trainer.is_global_zero:
        return
    params = flatten_config(cfg, _HPARAM_KEYS)
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            writer = logger.experiment._get_file_writer()
            for summary in hparams(params, metrics):
                writer.add_summary(summary)
            logger.experiment.flush()


def cpu_compute_threads(*, n_cpus: int, data_workers: int, env_threads: str | None) -> int | None:
    """Threads for torch on a CPU run: the cores the data workers leave, unless OMP_NUM_THREADS
    says otherwise (then None: keep torch's choice). On 2 cores with one simulating worker,
    two compute threads oversubscribe the machine and every step waits on the worker."""
    if env_threads:
        return None
    return max(1, int(n_cpus) - int(data_workers))


def _set_cpu_threads(cfg: DictConfig) -> None:
    if str(cfg.trainer.get("accelerator", "cpu")) != "cpu":
        return
    n = cpu_compute_threads(n_cpus=os.cpu_count() or 1, data_workers=int(cfg.data.get("num_workers", 0)),
                            env_threads=os.environ.get("OMP_NUM_THREADS"))
    if n is not None:
        torch.set_num_threads(n)
        log.info("CPU run: %d torch thread(s) beside %s data worker(s)", n, cfg.data.get("num_workers", 0))


def _resolve_precision(cfg: DictConfig) -> None:
    """``trainer.precision: auto`` -> bf16-mixed where the device has native bf16, else fp32 on
    a CPU (16-mixed on a GPU); stem2d.models.precision holds the rule. Logged either way."""
    setting = cfg.trainer.get("precision", "32-true")
    precision = resolve_precision(setting, accelerator=str(cfg.trainer.get("accelerator", "cpu")))
    with open_dict(cfg):
        cfg.trainer.precision = precision
    how = "native bf16 on this device" if precision.startswith("bf16") else "no native bf16"
    log.info("precision: %s (%s)", precision,
             f"auto: {how}" if str(setting) == "auto" else "trainer.precision")


def train(cfg: DictConfig) -> float:
    """Fit (and test) the configured model; return the value of ``cfg.optimized_metric``.

    Writes ``metrics.json`` (all final metrics, best checkpoint, wall time) to the run folder.
    """
    require_keys(cfg, ["data", "model", "trainer", "optimized_metric"], where="train")
    validate(cfg, TRAIN, where="train")
    start = time.perf_counter()
    _set_cpu_threads(cfg)
    _resolve_precision(cfg)
    if cfg.get("seed") is not None:
        pl.seed_everything(int(cfg.seed), workers=True)
    datamodule = instantiate_node(cfg.data, "data")
    model = build_model(cfg.model, datamodule)
    callbacks = _with_divergence_guard(instantiate_all(cfg.get("callbacks"), "callbacks") + _pruning_callbacks(cfg))
    loggers = instantiate_all(cfg.get("logger"), "logger")
    trainer: pl.Trainer = instantiate_node(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)

    metrics: dict[str, float] = {}
    best = tested = None
    if cfg.get("ckpt_path") is not None:
        check_checkpoint(cfg.ckpt_path, model, resume=bool(cfg.get("train", True)))
    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
        metrics.update(to_float_dict(trainer.callback_metrics))
        best = _best_checkpoint(trainer)
    if cfg.get("test", True):
        ckpt = best if cfg.get("train", True) else cfg.get("ckpt_path")
        if ckpt is None and not cfg.get("train", True):
            log.warning("train=false without ckpt_path: testing an untrained model")
        trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
        tested = ckpt
        metrics.update(to_float_dict(trainer.callback_metrics))

    name = cfg.optimized_metric
    if name not in metrics:
        if cfg.get("train", True):
            raise ValueError(f"optimized_metric={name!r} was not logged; logged metrics: {sorted(metrics)}")
        log.warning("test-only run: %s was not measured, returning NaN", name)
    value = metrics.get(name, math.nan)
    _log_hparams(trainer, cfg, {k: v for k, v in metrics.items() if k == name or k.startswith("test/")})
    if trainer.is_global_zero:
        summary = {
            "optimized_metric": name,
            "value": value,
            "metrics": metrics,
            "best_checkpoint": best,
            "tested_checkpoint": None if tested is None else str(tested),
            "epochs": trainer.current_epoch,
            "wall_time_s": round(time.perf_counter() - start, 1),
            "class_names": list(model.hparams.class_names),
            "command": " ".join(sys.argv),
        }
        write_json(output_dir(cfg) / "metrics.json", summary)
    log.info("%s = %.4f", name, value)
    return value
