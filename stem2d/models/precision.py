"""One precision rule for training and inference: bf16 only where the hardware has it natively.

On a CPU without native bf16 (most AVX2 laptops and workstations) bf16 autocast is emulated and
several times slower than fp32 (6.4x for a small SeedCNN training run on an AVX2 AMD CPU), so
``auto`` means:

- CPU: ``bf16-mixed`` where the CPU has AVX512-BF16 or AMX (x86) or bf16 instructions (ARM),
  else ``32-true``;
- CUDA GPU: ``bf16-mixed`` where the card supports bf16 (Ampere and newer), else ``16-mixed``
  (fp16 autocast with a gradient scaler, native on every CUDA GPU).

``python train.py trainer.precision=32-true`` (or any Lightning precision) and ``python infer.py
bf16=false|true`` still override the rule. torch is imported inside the functions, so config
handling can import this module cheaply.
"""

from __future__ import annotations

import logging
import platform

log = logging.getLogger(__name__)

__all__ = ["cpu_has_bf16", "device_has_bf16", "resolve_precision", "use_bf16"]

_X86 = ("x86_64", "amd64", "i386", "i686")


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 natively, so bf16 autocast is a speed-up.

    x86: AVX512-BF16 or AMX tiles (an AVX512 CPU without them converts bf16 in software), and
    torch's and oneDNN's kernels allowed to use them (``ATEN_CPU_CAPABILITY=avx2`` or
    ``ONEDNN_MAX_CPU_ISA=AVX2`` cap them: bf16 is then emulated, so fp32); other CPUs (ARM):
    oneDNN's own check for bf16 instructions.
    """
    import torch

    try:
        if platform.machine().lower() in _X86:
            native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
            kernels = torch.backends.cpu.get_cpu_capability().startswith("AVX512")
            return bool(native and kernels and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without the checks: assume not
        return False


def device_has_bf16(device_type: str) -> bool:
    """Native bf16 on ``device_type`` (``"cpu"``, ``"cuda"``; other accelerators: assumed)."""
    if device_type == "cpu":
        return cpu_has_bf16()
    if device_type == "cuda":
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return True


def resolve_precision(setting: str | int, *, accelerator: str) -> str:
    """Lightning ``trainer.precision`` for a setting that may be ``"auto"``.

    Parameters
    ----------
    setting : str or int
        ``"auto"`` or any Lightning precision (``"32-true"``, ``"bf16-mixed"``, 16, ...), which
        is returned unchanged (as a string).
    accelerator : str
        ``trainer.accelerator``: ``"cpu"``, ``"gpu"``/``"cuda"``, or ``"auto"`` (CUDA if
        available, else CPU).

    Returns
    -------
    str
        ``"bf16-mixed"`` where the device has native bf16; else ``"32-true"`` on a CPU and
        ``"16-mixed"`` on a GPU.
    """
    if str(setting) != "auto":
        return str(setting)
    device = str(accelerator)
    if device in ("auto", "gpu", "cuda"):
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device_has_bf16(device):
        return "bf16-mixed"
    return "32-true" if device == "cpu" else "16-mixed"


def use_bf16(setting: str | bool, *, device_type: str) -> bool:
    """``bf16: auto|true|false`` of conf/infer.yaml: whether to run under bf16 autocast.

    ``auto`` follows the same rule as :func:`resolve_precision` (native bf16 only).
    """
    if str(setting).lower() == "auto":
        return device_has_bf16(device_type)
    if isinstance(setting, bool):
        return setting
    raise ValueError(f"bf16={setting!r}: expected auto, true or false")
