"""Where the frame loop's networks (U-Net, classifier body) run on a CPU: torch, or ONNX Runtime.

In fp32 on the native-bf16 CPU of the benchmark (one thread, interleaved, best of 3-15): the
classifier on the 578 windows of a 2048 px frame takes 349 ms on ONNX Runtime against 381 ms on
torch (batches of 32), ~27 vs ~30 ms on the ~48 windows of a 512 px frame; the U-Net, whose torch
prediction copy fuses its convolutions (:func:`stem2d.models.unet.for_inference`), maps 402 px
frames in 30 ms on torch against 37 on ONNX Runtime, 1607 px frames in 0.49 against 1.0 s, and
the speed preset's 1607 px frames in 0.36 against 0.85 s (ONNX Runtime without its memory arena:
with it ~130 ms less on a 1607 px frame, but 1.69 instead of 1.44 GiB for a 4096 px frame when
the U-Net ran on it). AVX2-only CPUs are not measured. Where the CPU has native bf16
(:mod:`stem2d.models.precision`), torch's bf16 autocast is faster than either, so the rule of
:func:`choose_runtime` for ``runtime: auto`` is

- ``bf16``: torch under bf16 autocast (ONNX Runtime has no bf16 kernels on CPUs);
- else ``onnxruntime`` where it is installed, ``torch`` otherwise;

the classifier uses ``auto`` (conf/infer.yaml ``classify.runtime``), the U-Net ``torch``
(conf/detector/unet.yaml ``runtime``).

The network is exported once per checkpoint to ``<cache>/onnx/<hash>.onnx`` (the hash covers the
weights, the network spec, the source of stem2d's module classes in it and the torch version; ``STEM2D_CACHE`` or ``$XDG_CACHE_HOME/stem2d``,
else ``~/.cache/stem2d``): the first export imports the ``onnx`` package (0.6-0.85 s in all),
later runs load the file. ONNX Runtime's outputs equal torch's within 1e-4 in logits.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import inspect
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

__all__ = ["DEVICES", "RUNTIMES", "OnnxModule", "OnnxPixelNet", "cache_dir", "choose_runtime", "onnx_features",
           "onnx_if_chosen", "onnxruntime_available", "resolve_device"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Values of ``detector.runtime`` and ``classify.runtime`` (conf/detector/unet.yaml, conf/infer.yaml).
RUNTIMES = ("auto", "torch", "onnxruntime")
#: ONNX opset of the export (ONNX Runtime >= 1.16 runs it).
_OPSET = 17


#: Values of ``device`` (conf/infer.yaml).
DEVICES = ("cpu", "cuda", "auto")


def resolve_device(setting: str) -> str:
    """``"cpu"`` or ``"cuda"`` for a ``device`` setting (``auto``: the GPU when torch sees one).

    Raises
    ------
    ValueError
        An unknown setting, or ``cuda`` without a CUDA GPU.
    """
    setting = str(setting)
    if setting not in DEVICES:
        raise ValueError(f"device={setting!r}: choose one of {', '.join(DEVICES)}")
    if setting == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if setting == "cuda":
        raise ValueError("device=cuda: torch sees no CUDA GPU (a CPU-only torch build, or no driver); use device=cpu")
    return "cpu"


def onnxruntime_available() -> bool:
    """Whether ONNX Runtime and the ``onnx`` exporter dependency are installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def choose_runtime(setting: str, *, bf16: bool, device_type: str = "cpu") -> str:
    """``"torch"`` or ``"onnxruntime"`` for a ``runtime`` setting (see the module docstring).

    Raises
    ------
    ValueError
        An unknown setting, ``onnxruntime`` together with bf16 or a GPU, or ``onnxruntime`` when
        it is not installed.
    """
    setting = str(setting)
    if setting not in RUNTIMES:
        raise ValueError(f"runtime={setting!r}: choose one of {', '.join(RUNTIMES)}")
    if setting == "torch":
        return "torch"
    usable = not bf16 and device_type == "cpu"
    if setting == "auto":
        return "onnxruntime" if usable and onnxruntime_available() else "torch"
    if not usable:
        raise ValueError(f"runtime=onnxruntime runs fp32 on the CPU only (bf16={bf16}, device {device_type!r}): "
                         "use runtime=auto or torch")
    if not onnxruntime_available():
        raise ValueError("runtime=onnxruntime: the packages onnxruntime and onnx are not installed "
                         "(pip install onnxruntime onnx), or use runtime=auto or torch")
    return "onnxruntime"


def onnx_if_chosen(setting: str, make: Callable[[], T], *, bf16: bool, device_type: str, what: str) -> T | None:
    """``make()`` (the network on ONNX Runtime) where the ``runtime`` setting picks it
    (:func:`choose_runtime`), else None: the caller keeps the torch network. With ``auto`` a
    failing ``make()`` (a read-only cache folder, an exporter error) also gives None, with a
    warning; with ``onnxruntime`` asked for explicitly it raises."""
    if choose_runtime(setting, bf16=bf16, device_type=device_type) != "onnxruntime":
        return None
    try:
        return make()
    except Exception as err:  # noqa: BLE001 - any failure of the optional runtime falls back
        if setting == "onnxruntime":
            raise
        log.warning("%s: ONNX Runtime not usable (%s: %s); it runs on torch", what, type(err).__name__, err)
        return None


def cache_dir() -> Path:
    """stem2d's cache folder (``STEM2D_CACHE``, else ``$XDG_CACHE_HOME/stem2d``, else ``~/.cache/stem2d``)."""
    if os.environ.get("STEM2D_CACHE"):
        return Path(os.environ["STEM2D_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stem2d"


def _fingerprint(module: torch.nn.Module) -> str:
    """Hash of the module's architecture (its repr), the source of stem2d's module classes in it
    (a changed forward exports another graph), its weights and the torch version (the export
    depends on all)."""
    h = hashlib.sha256()
    h.update(json.dumps([repr(module), torch.__version__, _OPSET,
                         sorted({_class_source(type(m)) for m in module.modules()})]).encode())
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def _class_source(cls: type) -> str:
    """The source of a stem2d class (its name elsewhere: torch's modules change with its version)."""
    if cls.__module__.split(".")[0] != "stem2d":
        return f"{cls.__module__}.{cls.__qualname__}"
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):  # no source file (a frozen install): the name
        return f"{cls.__module__}.{cls.__qualname__}"


def _export(module: torch.nn.Module, example: torch.Tensor, dynamic: dict[int, str], path: Path) -> None:
    """Write ``module`` (one float32 tensor in, one out, free ``dynamic`` axes) as ONNX (to a
    temporary name first: a failed export leaves no file that looks complete)."""
    import warnings

    import torch.onnx

    from stem2d.output.files import atomic_path

    with atomic_path(path) as tmp, warnings.catch_warnings():  # the TorchScript exporter warns it is legacy
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(tmp), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": dynamic, "y": dynamic}, opset_version=_OPSET, dynamo=False)


class OnnxModule(torch.nn.Module):
    """A torch module (one float32 tensor in, one out) run by ONNX Runtime on the CPU, in fp32.

    Exported once to ``<cache>/<hash>.onnx`` (see the module docstring). One ONNX Runtime
    session per thread count: each calling thread runs with the torch thread count it has set
    (the movie loop's ``threads``).

    Parameters
    ----------
    module : torch.nn.Module
        In eval mode, on the CPU; not changed.
    example : Tensor
        An input of the right rank (float32); its size along the ``dynamic`` axes is free.
    dynamic : dict of int to str
        The input's (and output's) free axes, e.g. ``{0: "batch"}``.
    cache : path, optional
        Folder of the exported graphs; default ``cache_dir() / "onnx"``.
    """

    def __init__(self, module: torch.nn.Module, *, example: torch.Tensor, dynamic: dict[int, str],
                 cache: str | Path | None = None):
        super().__init__()
        folder = Path(cache) if cache is not None else cache_dir() / "onnx"
        self.path = folder / f"{_fingerprint(module)}.onnx"
        if not self.path.is_file():
            log.info("exporting %s to ONNX once: %s", type(module).__name__, self.path)
            _export(module, example, dynamic, self.path)
        self._model = self.path.read_bytes()
        self._sessions: dict[int, object] = {}
        self._lock = threading.Lock()
        self._session(1)  # the frame loop's default thread count: made while loading, not at the first frame

    def _session(self, threads: int):
        with self._lock:
            if threads not in self._sessions:
                import onnxruntime as ort

                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
                opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                opts.enable_cpu_mem_arena = False  # bounded memory: a 4096 px frame 1.44 GiB peak (1.69 with the arena, the U-Net on it), ~130 ms more per 1607 px frame
                opts.log_severity_level = 3  # errors only
                self._sessions[threads] = ort.InferenceSession(self._model, opts,
                                                               providers=["CPUExecutionProvider"])
            return self._sessions[threads]

    def run(self, x: np.ndarray) -> np.ndarray:
        """The module's output for ``x`` (numpy in, numpy float32 out)."""
        session = self._session(max(1, torch.get_num_threads()))
        return session.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The module's output (float32, on the CPU) for a CPU tensor (computed in float32)."""
        if x.device.type != "cpu":
            raise ValueError(f"OnnxModule runs on the CPU only, got a tensor on {x.device}")
        return torch.from_numpy(self.run(x.detach().float().numpy()))


class OnnxPixelNet(OnnxModule):
    """A fully convolutional pixel network (a :class:`~stem2d.models.unet.UNet`) on ONNX Runtime.

    ``run(x)`` maps standardised frames (B, 1, H, W) float32 to logits (B, 1, H, W). It keeps
    ``size_multiple`` and ``receptive_radius_px`` of the network, so
    :func:`stem2d.predict.pixelmap.predict_frame` tiles and stitches it like the torch network.
    """

    def __init__(self, net: torch.nn.Module, *, cache: str | Path | None = None):
        m = int(getattr(net, "size_multiple", 1))
        super().__init__(net, example=torch.zeros(1, 1, 4 * m, 4 * m),
                         dynamic={0: "batch", 2: "height", 3: "width"}, cache=cache)
        self.size_multiple = m
        self.receptive_radius_px = int(getattr(net, "receptive_radius_px", 0))


def onnx_features(net: torch.nn.Module, *, tile_size_px: int, cache: str | Path | None = None) -> torch.nn.Module:
    """A copy of a CAM classifier network (CamNet, SeedCNN: ``features = body(x)``) whose feature
    body runs on ONNX Runtime; pooling, head and CAM stay in torch. For fp32 CPU prediction."""
    body = getattr(net, "body", None)
    if not isinstance(body, torch.nn.Module):
        raise ValueError(f"onnx_features: {type(net).__name__} has no feature body to export")
    out = copy.copy(net)  # shallow: the head is shared, the body replaced in the copy only
    out._modules = dict(net._modules)
    out._modules["body"] = OnnxModule(body, example=torch.zeros(2, 1, tile_size_px, tile_size_px),
                                      dynamic={0: "batch"}, cache=cache)
    return out
