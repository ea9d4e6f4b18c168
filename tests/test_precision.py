"""One precision rule (stem2d.models.precision): bf16 only where native, overrides kept."""

import pytest
import torch

from stem2d.models import precision
from stem2d.models.precision import resolve_precision, use_bf16


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_on_cpu_follows_native_bf16(monkeypatch, native, expected):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: native)
    assert resolve_precision("auto", accelerator="cpu") == expected
    assert use_bf16("auto", device_type="cpu") is native


@pytest.mark.parametrize("setting", ["32-true", "bf16-mixed", "16-mixed", 32])
def test_explicit_precision_overrides_the_rule(monkeypatch, setting):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert resolve_precision(setting, accelerator="cpu") == str(setting)


def test_auto_gpu_without_cuda_falls_back_to_the_cpu_rule(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert resolve_precision("auto", accelerator="gpu") == "32-true"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_on_cuda_is_mixed():
    expected = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    assert resolve_precision("auto", accelerator="gpu") == expected


def test_infer_setting_values():
    assert use_bf16(True, device_type="cpu") is True
    assert use_bf16(False, device_type="cpu") is False
    with pytest.raises(ValueError, match="bf16='yes'"):
        use_bf16("yes", device_type="cpu")


def test_cpu_check_answers_a_bool():
    assert isinstance(precision.cpu_has_bf16(), bool)


@pytest.mark.parametrize("cap", [{"ATEN_CPU_CAPABILITY": "avx2"}, {"ONEDNN_MAX_CPU_ISA": "AVX2"}])
def test_kernels_capped_at_avx2_mean_fp32(cap):
    """An AVX2-only CPU, as torch and oneDNN see it when capped (what the AVX2 benchmark runs use):
    bf16 would be emulated there, so the rule picks fp32 whatever this machine's CPU has."""
    import os
    import subprocess
    import sys

    code = ("from stem2d.models.precision import cpu_has_bf16, resolve_precision; "
            "print(cpu_has_bf16(), resolve_precision('auto', accelerator='cpu'))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **cap}, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out == ["False", "32-true"]
