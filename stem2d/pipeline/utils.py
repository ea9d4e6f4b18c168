"""Shared pipeline helpers: friendly config errors, run folders, config composition."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue

log = logging.getLogger(__name__)


__all__ = [
    "flatten_config",
    "instantiate_node",
    "instantiate_all",
    "output_dir",
    "require_keys",
    "to_float_dict",
]


def require_keys(cfg: DictConfig, keys: list[str], *, where: str) -> None:
    """``ValueError`` naming every key of ``keys`` missing (or ``???``) from ``cfg``."""
    missing = [k for k in keys if OmegaConf.select(cfg, k, default=None, throw_on_missing=False) is None]
    if missing:
        raise ValueError(f"{where}: the config has no value for {missing}; set them on the command line, e.g. {missing[0]}=...")


def instantiate_node(node: DictConfig | None, key: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` with errors that name the config key.

    Parameters
    ----------
    node : DictConfig
        The config node (with ``_target_``).
    key : str
        Its dotted name in the run config, e.g. ``"model"``; used in error messages.
    **kwargs
        Passed to ``instantiate`` (arguments that the config does not hold).
    """
    if node is None or "_target_" not in node:
        raise ValueError(f"config '{key}' has no _target_ to build (got {None if node is None else dict(node)})")
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except MissingMandatoryValue as err:
        raise ValueError(f"config '{key}': a mandatory value is missing ({err.full_key} = ???)") from err
    except InstantiationException as err:
        raise ValueError(f"config '{key}' (_target_: {node._target_}) could not be built: {err}") from err


def instantiate_all(group: DictConfig | None, key: str) -> list[Any]:
    """Build every entry with a ``_target_`` of a group such as ``callbacks`` or ``logger``.

    Entries set to null are skipped (so ``callbacks.early_stopping=null`` disables one).
    """
    if group is None:
        return []
    if not isinstance(group, DictConfig):
        raise ValueError(f"config '{key}' must be a mapping of named entries, got {type(group).__name__}")
    built = []
    for name, node in group.items():
        if node is None:
            continue
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ValueError(f"config '{key}.{name}' must be a mapping with a _target_, got {node!r}")
        built.append(instantiate_node(node, f"{key}.{name}"))
    return built


def compose_job(config_name: str, overrides: Sequence[str], *, run_dir: Path, conf_dir: Path) -> DictConfig:
    """``conf_dir/<config_name>.yaml`` with ``overrides``, as ``@hydra.main`` hands it to a job whose
    run folder is ``run_dir``: Hydra's runtime config is set (so ``${hydra:...}`` resolves) and the
    ``hydra`` node is removed. For scripts and tests that call ``train``/``run_movie`` directly."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose(config_name=config_name, return_hydra_config=True, overrides=list(overrides))
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.runtime.cwd = str(Path.cwd())
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    GlobalHydra.instance().clear()
    return cfg


def output_dir(cfg: DictConfig) -> Path:
    """This run's folder (``paths.output_dir``), created if needed."""
    require_keys(cfg, ["paths.output_dir"], where="run folder")
    path = Path(cfg.paths.output_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def to_float_dict(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Metrics (tensors, numbers) as plain floats, sorted by name."""
    return {k: float(v) for k, v in sorted(metrics.items())}


def flatten_config(cfg: DictConfig, keys: list[str]) -> dict[str, Any]:
    """Flatten the given top-level keys of ``cfg`` into ``{"model.optimizer.lr": 0.05, ...}``.

    Values that are not numbers, strings or booleans become strings (TensorBoard hparams).
    """
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(node, (bool, int, float, str)):
            out[prefix] = node
        else:
            out[prefix] = str(node)

    for key in keys:
        node = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if isinstance(node, DictConfig):
            walk(key, OmegaConf.to_container(node, resolve=True, throw_on_missing=False))
        else:
            walk(key, node)
    return out
