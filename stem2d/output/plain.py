"""Plain Python values for checkpoints (``torch.load(weights_only=True)``) and JSON files."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf


def to_plain(obj: Any) -> Any:
    """Recursively turn configs, partials, numpy values and other objects into plain values.

    Mappings become dicts with string keys, sequences and arrays lists, numpy scalars Python
    numbers, non-finite floats None (valid JSON), ``functools.partial`` a Hydra-style
    ``{"_target_": ..., "_partial_": True, ...}`` dict, anything else its ``repr``.
    """
    if isinstance(obj, (DictConfig, ListConfig)):
        obj = OmegaConf.to_container(obj, resolve=True)
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_plain(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, functools.partial):
        target = f"{obj.func.__module__}.{obj.func.__qualname__}"
        return {"_target_": target, "_partial_": True, **{k: to_plain(v) for k, v in obj.keywords.items()}}
    return repr(obj)


def rounded(obj: Any, *, digits: int = 6) -> Any:
    """``obj`` (plain values, see :func:`to_plain`) with every float rounded to ``digits``
    significant digits, for files people read: ``-3.5999999999999996`` becomes ``-3.6``.

    >>> rounded({"drift_px": [-3.5999999999999996, 0.16624690211674042], "n": 3})
    {'drift_px': [-3.6, 0.166247], 'n': 3}
    """
    if isinstance(obj, dict):
        return {k: rounded(v, digits=digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, digits=digits) for v in obj]
    if isinstance(obj, float) and math.isfinite(obj):
        return float(f"{obj:.{digits}g}")
    return obj
