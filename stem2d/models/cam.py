"""Class activation maps (Zhou et al., CVPR 2016) and sub-pixel defect localisation from them.

Pure torch/numpy: ``class_activation_map`` combines last-layer feature maps with the weights
of a GAP-linear head, ``cam_peak`` turns a map into a sub-pixel (row, col) position, and
``localisation_errors`` measures the distance to the true position.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

__all__ = ["class_activation_map", "cam_peak", "localisation_errors"]


def class_activation_map(
    features: torch.Tensor,
    weight: torch.Tensor,
    class_idx: torch.Tensor | int,
    *,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """``CAM_c = sum_k weight[c, k] * features[:, k]`` (bias excluded), optionally resized.

    Parameters
    ----------
    features : Tensor, (B, K, h, w)
        Last feature maps, the input of global average pooling.
    weight : Tensor, (C, K)
        Weights of the linear layer after global average pooling.
    class_idx : int or Tensor of int, (B,)
        Class of each map.
    size : (H, W), keyword-only, optional
        Resize bilinearly to this size (``align_corners=False``, so feature cell i stays
        centred on the pixels it pools). None keeps (h, w).

    Returns
    -------
    Tensor, float32, (B, H, W) or (B, h, w).
    """
    if features.dim() != 4 or weight.dim() != 2 or weight.shape[1] != features.shape[1]:
        raise ValueError(
            f"class_activation_map: need features (B, K, h, w) and weight (C, K); got "
            f"{tuple(features.shape)} and {tuple(weight.shape)}"
        )
    idx = torch.as_tensor(class_idx, device=features.device).long().expand(features.shape[0])
    cam = torch.einsum("bk,bkhw->bhw", weight[idx].to(features.dtype), features).float()
    if size is not None and tuple(cam.shape[-2:]) != tuple(size):
        cam = F.interpolate(cam[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    return cam


def cam_peak(cam: np.ndarray | torch.Tensor, *, fraction: float = 0.5) -> np.ndarray:
    """Sub-pixel position of the main peak of a class activation map.

    The map is rescaled to [0, 1] (min-max); the peak is the centre of mass of
    ``cam - fraction`` over the connected region (8-neighbourhood) above ``fraction`` that
    contains the arg-max. Subtracting the threshold makes the weights fall continuously to
    zero at the region's edge, which removes most of the pixel-grid bias of a plain
    thresholded centre of mass.

    Parameters
    ----------
    cam : array or Tensor, (H, W) or (N, H, W)
        One map or a stack; any real dtype.
    fraction : float, keyword-only
        Threshold as a fraction of the min-max range, in [0, 1). Default 0.5.

    Returns
    -------
    ndarray, float64, (2,) or (N, 2)
        (row, col) in pixels (pixel centres at integers); NaN for a flat or non-finite map.

    Examples
    --------
    >>> yy, xx = np.mgrid[:32, :32]
    >>> bump = np.exp(-((yy - 10.3) ** 2 + (xx - 20.6) ** 2) / (2 * 3.0**2))
    >>> np.round(cam_peak(bump), 1)
    array([10.3, 20.6])
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"cam_peak: fraction must be in [0, 1), got {fraction}")
    if isinstance(cam, torch.Tensor):
        cam = cam.detach().float().cpu().numpy()
    a = np.asarray(cam)
    if a.dtype not in (np.float32, np.float64):  # float32 maps stay float32 (half the memory traffic)
        a = a.astype(np.float64)
    single = a.ndim == 2
    if single:
        a = a[None]
    if a.ndim != 3 or a.shape[-1] == 0 or a.shape[-2] == 0:
        raise ValueError(f"cam_peak: expected a (H, W) or (N, H, W) map, got shape {np.shape(cam)}")
    n, h, w = a.shape
    out = np.full((n, 2), np.nan)
    if n == 0:
        return out[0] if single else out
    flat = a.reshape(n, -1)
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    ok = np.isfinite(flat).all(axis=1) & (hi > lo)
    if not ok.any():
        return out[0] if single else out
    a = a[ok]
    span = (hi - lo)[ok][:, None, None]
    u = (a - lo[ok][:, None, None]) / span - a.dtype.type(fraction)
    # Label regions tile by tile (no connectivity across the stack axis).
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True
    labels, _ = ndimage.label(u > 0, structure=structure)
    peak = a.reshape(a.shape[0], -1).argmax(axis=1)
    peak_label = labels.reshape(a.shape[0], -1)[np.arange(a.shape[0]), peak]
    weights = np.where(labels == peak_label[:, None, None], u, 0)
    # the sums in float64 whatever the map's dtype
    total = weights.sum(axis=(1, 2), dtype=np.float64)
    rows = np.arange(h, dtype=np.float64)
    cols = np.arange(w, dtype=np.float64)
    out[ok, 0] = (weights.sum(axis=2, dtype=np.float64) @ rows) / total
    out[ok, 1] = (weights.sum(axis=1, dtype=np.float64) @ cols) / total
    return out[0] if single else out


def localisation_errors(
    peaks: np.ndarray, true_pos: np.ndarray, *, pixel_size_A: float | None = None
) -> np.ndarray:
    """Euclidean distances between predicted and true (row, col) positions.

    Parameters
    ----------
    peaks, true_pos : ndarray, (N, 2)
        Positions in pixels.
    pixel_size_A : float, keyword-only, optional
        When given, return angstrom instead of pixels.

    Returns
    -------
    ndarray, float64, (N,); NaN where either position is NaN.
    """
    peaks = np.asarray(peaks, dtype=np.float64)
    true_pos = np.asarray(true_pos, dtype=np.float64)
    if peaks.shape != true_pos.shape or peaks.ndim != 2 or peaks.shape[1] != 2:
        raise ValueError(
            f"localisation_errors: need two (N, 2) arrays, got {peaks.shape} and {true_pos.shape}"
        )
    d = np.hypot(*(peaks - true_pos).T)
    return d * pixel_size_A if pixel_size_A is not None else d
