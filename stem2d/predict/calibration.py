"""Frame calibration report: what the frame looks like to the models, measured from the frame itself,
with a warning where it lies outside what the models were trained on.

- metal / chalcogen peak ratio (median column intensities; theory ``Z_M^n / (2 Z_X^n)``) and the
  Z exponent ``n`` it implies;
- probe width: FWHM of a 2-D Gaussian fitted (``scipy.optimize.curve_fit``) to the median metal
  column of the resampled frame (0.3 A/px, as the classifier sees it);
- noise and dose: the departure of every pixel from the lattice motif (the frame averaged in
  local lattice coordinates), binned by expected signal; a straight line ``var = a + g * mean``
  gives the gain ``g`` (Poisson: units per electron count), so the metal column peak in electron
  counts and the equivalent dose ``peak_counts / (pixel_area * 0.05)``
  (:data:`stem2d.sim.imaging.HAADF_PEAK_FRACTION`). A rough estimate: on simulated frames it
  reads 0.3-0.7 of the true dose (scan jitter and motif error count as noise);
- scan distortion (spread of the Bragg ring radii, :func:`stem2d.lattice.scale.measure_pixel_size`;
  and the non-uniform part from the local lattice, :attr:`~stem2d.lattice.columns.LatticeFit.strain`);
- lattice fraction (the frame outside holes, edges, contamination and amorphous patches).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage, optimize

from stem2d.lattice.columns import ColumnQuantification
from stem2d.materials import Material
from stem2d.sim.imaging import HAADF_PEAK_FRACTION

__all__ = ["TrainingRanges", "frame_calibration"]

log = logging.getLogger(__name__)
_FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))


@dataclass(frozen=True)
class TrainingRanges:
    """The ranges the classifier's simulated training data spans (``conf/data/simulated.yaml``)."""

    probe_fwhm_A: tuple[float, float] = (0.8, 1.1)
    z_exponent: tuple[float, float] = (1.6, 1.9)
    dose_e_per_A2: tuple[float, float] = (3.4e3, 1.1e5)
    max_shear: float = 0.1
    max_blur_px: float = 0.5

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainingRanges:
        """Read the ranges from a data config (keys ``probe_fwhm_range_A``, ``z_exponent_range``,
        ``dose_range_e_per_A2``, ``max_shear``, ``max_blur_px``); missing keys keep the defaults."""
        import yaml

        cfg = yaml.safe_load(Path(path).read_text()) or {}
        d = cls()
        return cls(tuple(cfg.get("probe_fwhm_range_A", d.probe_fwhm_A)), tuple(cfg.get("z_exponent_range", d.z_exponent)),
                   tuple(float(v) for v in cfg.get("dose_range_e_per_A2", d.dose_e_per_A2)),
                   float(cfg.get("max_shear", d.max_shear)), float(cfg.get("max_blur_px", d.max_blur_px)))


def frame_calibration(
    frame: np.ndarray,
    *,
    pixel_size_A: float,
    material: Material,
    quant: ColumnQuantification,
    canon: np.ndarray,
    distortion: float | None = None,
    lattice_fraction: float | None = None,
    ranges: TrainingRanges = TrainingRanges(),
) -> dict:
    """Measure the calibration of one frame and compare it with the training ranges.

    Parameters
    ----------
    frame : ndarray, (H, W)
        The input frame (raw scale).
    pixel_size_A : float, keyword-only
        Its sampling.
    material : Material, keyword-only
    quant : ColumnQuantification, keyword-only
        Column quantification of ``canon``.
    canon : ndarray, keyword-only
        ``frame`` resampled to the quantification's pixel size.
    distortion : float or None, keyword-only
        Bragg ring spread from :func:`stem2d.lattice.scale.measure_pixel_size`.
    lattice_fraction : float or None, keyword-only
        From :meth:`stem2d.predict.regions.RegionMap.fractions`.
    ranges : TrainingRanges, keyword-only

    Returns
    -------
    dict of plain values, with ``warnings`` (list of str; also logged).
    """
    t = quant.table
    good = (t["fit_quality"] > 0.7) & (t["z"].abs() < 2)
    metal = t[(t["sublattice"] == "metal") & good]
    z_m, z_x = material.z_metal, material.z_chalcogen
    ratio = quant.ratio_metal_chalcogen
    n = float(np.log(2 * ratio) / np.log(z_m / z_x)) if ratio > 0 and z_m != z_x else float("nan")
    expected = [z_m**e / (2 * z_x**e) for e in ranges.z_exponent]
    fwhm = _probe_fwhm(canon, metal[["row", "col"]].to_numpy(), quant.pixel_size_A)
    # noise and levels from the central _MAX_PX square of the resampled frame at most (millions of
    # pixels are plenty for these statistics; a 4096 px frame would need GBs of float64 maps)
    crop = _central(canon.shape, _MAX_PX)
    in_crop = tuple(slice(int(c.start * f / q), min(f, int(np.ceil(c.stop * f / q))))
                    for c, f, q in zip(crop, np.shape(frame), canon.shape))
    gain = resample_noise_gain(tuple(c.stop - c.start for c in in_crop), from_pixel_size_A=pixel_size_A,
                               to_pixel_size_A=quant.pixel_size_A)
    noise = _noise(canon, quant, gain, crop)
    peak, hollow = _levels(frame, quant, canon.shape, in_crop)
    report = {
        "ratio_metal_chalcogen": ratio,
        "ratio_expected_range": [min(expected), max(expected)],
        "z_exponent": n,
        "probe_fwhm_A": fwhm,
        "noise_sigma": noise["sigma_at"](peak) if noise else None,
        "contrast_to_noise": (peak - hollow) / noise["sigma_at"](peak) if noise else None,
        "metal_peak_counts": None, "dose_e_per_A2": None,
        "scan_distortion": distortion,
        "lattice_strain": quant.lattice.strain,
        "lattice_fraction": lattice_fraction,
    }
    if noise and noise["gain"] > 0:
        counts = (peak - noise["dark"]) / noise["gain"]
        report["metal_peak_counts"] = float(counts)
        report["dose_e_per_A2"] = float(counts / (pixel_size_A**2 * HAADF_PEAK_FRACTION))
    report["warnings"] = _warnings(report, ranges)
    for w in report["warnings"]:
        log.warning("frame calibration: %s", w)
    return report


def _probe_fwhm(canon: np.ndarray, centres: np.ndarray, pixel_size_A: float) -> float | None:
    """FWHM (A) of an isotropic Gaussian + constant fitted to the median patch of metal columns."""
    half = int(np.ceil(1.2 / pixel_size_A))
    base = np.rint(centres).astype(int)
    ok = ((base >= half) & (base < np.array(canon.shape) - half)).all(axis=1)
    if ok.sum() < 10:
        return None
    dy, dx = np.mgrid[-half:half + 1, -half:half + 1]
    patches = canon[base[ok, :1, None] + dy[None], base[ok, 1:, None] + dx[None]]
    patch = np.median(patches, axis=0)
    off = np.median(centres[ok] - base[ok], axis=0)

    def model(xy, amp, sigma, bg):
        return amp * np.exp(-((xy[0] - off[0]) ** 2 + (xy[1] - off[1]) ** 2) / (2 * sigma**2)) + bg

    try:
        p, _ = optimize.curve_fit(model, np.stack([dy.ravel(), dx.ravel()]), patch.ravel(),
                                  p0=(np.ptp(patch), 0.4 / pixel_size_A, patch.min()))
    except (RuntimeError, ValueError):
        return None
    return float(abs(p[1]) * _FWHM * pixel_size_A)


#: Side (px of the resampled frame) of the central square the noise and levels are measured on.
_MAX_PX = 1024


def _central(shape: tuple[int, int], limit: int) -> tuple[slice, slice]:
    """The central ``min(n, limit)`` rows and columns of ``shape``."""
    return tuple(slice((n - min(n, limit)) // 2, (n - min(n, limit)) // 2 + min(n, limit)) for n in shape)


def _noise(canon: np.ndarray, quant: ColumnQuantification, resample_noise_gain: float,
           crop: tuple[slice, slice]) -> dict | None:
    """Noise variance vs expected signal, on the resampled frame.

    The expected signal of a pixel is the frame's mean over pixels at the same place in the unit
    cell (the lattice motif in local lattice coordinates, 24 x 24 bins); the residual minus its
    slow part (contamination) is noise plus defects (the MAD per bin ignores those). A line
    ``var = a + slope * mean`` and ``slope = g * resample_noise_gain`` (the variance a resampling
    leaves of white noise) give the input frame's gain ``g``. Measured on ``crop`` of the frame.
    """
    frac = quant.lattice.frac[:, crop[0], crop[1]]
    n = 24
    b = np.floor(np.mod(frac, 1.0) * n).astype(np.intp) % n
    idx = (b[0] * n + b[1]).ravel()
    img = np.asarray(canon[crop], dtype=np.float64)
    motif = np.bincount(idx, weights=img.ravel(), minlength=n * n) / np.maximum(np.bincount(idx, minlength=n * n), 1)
    pred = motif[idx].reshape(img.shape)
    resid = img - pred
    resid -= ndimage.gaussian_filter(resid, 3.0 / quant.pixel_size_A)
    # only where the expected signal is flat along the scan line: there scan-line jitter and
    # sub-pixel misplacement of the motif add nothing
    slope_c = np.abs(np.gradient(pred, axis=1))
    flat = (slope_c <= np.percentile(slope_c, 25)).ravel()
    lo, hi = np.percentile(pred, [2, 98])
    if not hi > lo:
        return None
    edges = np.linspace(lo, hi, 11)
    which = np.digitize(pred.ravel(), edges) - 1
    xs, vs = [], []
    for k in range(10):
        sel = resid.ravel()[(which == k) & flat]
        if len(sel) > 30:
            xs.append(pred.ravel()[(which == k) & flat].mean())
            vs.append((1.4826 * np.median(np.abs(sel - np.median(sel)))) ** 2)
    if len(xs) < 4:
        return None
    slope, a = np.polyfit(xs, vs, 1)
    g = slope / resample_noise_gain
    dark = float(np.clip(-a / slope if slope > 0 else lo, min(img.min(), lo), lo))
    return {"gain": float(g), "dark": dark,
            "sigma_at": lambda x: float(np.sqrt(max((a + slope * x) / resample_noise_gain, 1e-30)))}


#: Largest side of the noise image of :func:`resample_noise_gain` (its variance estimate is then
#: within ~0.3 % of the operator's; a 2048 px frame's own size took 0.5 s for the same number).
_GAIN_PX = 512


def resample_noise_gain(shape: tuple[int, int], *, from_pixel_size_A: float, to_pixel_size_A: float) -> float:
    """Fraction of a white noise's variance that :func:`stem2d.lattice.scale.resample` keeps
    (measured on a noise image of ``shape``, at most ``_GAIN_PX`` px a side: a property of the
    resampling operator, not of the frame's size)."""
    from stem2d.lattice.scale import resample

    noise = np.random.default_rng(0).standard_normal(tuple(min(int(n), _GAIN_PX) for n in shape))
    out = resample(noise, from_pixel_size_A=from_pixel_size_A, to_pixel_size_A=to_pixel_size_A)
    return float(np.var(out[4:-4, 4:-4]))


def _levels(frame: np.ndarray, quant: ColumnQuantification, canon_shape,
            crop: tuple[slice, slice]) -> tuple[float, float]:
    """Median raw value at intact metal columns and at hollows (input frame, nearest pixel), of
    the sites in ``crop`` of the input frame (smoothed there only)."""
    t = quant.table
    scale = np.array(np.shape(frame)) / np.array(canon_shape)
    start = np.array([crop[0].start, crop[1].start])
    sm = ndimage.gaussian_filter(np.asarray(frame[crop], dtype=np.float64), 1.0)

    def level(sel):
        p = np.rint((t.loc[sel, ["row", "col"]].to_numpy() + 0.5) * scale - 0.5).astype(int) - start
        p = p[((p >= 0) & (p < np.array(sm.shape))).all(axis=1)]
        return float(np.median(sm[p[:, 0], p[:, 1]])) if len(p) else float("nan")

    good = (t["fit_quality"] > 0.7) & (t["z"].abs() < 2)
    return level((t["sublattice"] == "metal") & good), level((t["sublattice"] == "hollow") & good)


def _warnings(r: dict, ranges: TrainingRanges) -> list[str]:
    out = []
    lo, hi = ranges.z_exponent
    if np.isfinite(r["z_exponent"]) and not lo - 0.1 <= r["z_exponent"] <= hi + 0.1:
        out.append(f"metal/chalcogen ratio {r['ratio_metal_chalcogen']:.2f} (Z exponent {r['z_exponent']:.2f}) is "
                   f"outside the trained {r['ratio_expected_range'][0]:.2f}-{r['ratio_expected_range'][1]:.2f} "
                   f"(Z exponent {lo}-{hi}): another material, detector angles or thickness?")
    lo, hi = ranges.probe_fwhm_A
    blur_A = ranges.max_blur_px * 0.3 * _FWHM
    if r["probe_fwhm_A"] is not None and not lo * 0.9 <= r["probe_fwhm_A"] <= np.hypot(hi, blur_A) * 1.1:
        out.append(f"probe FWHM {r['probe_fwhm_A']:.2f} A is outside the trained {lo}-{hi} A (plus blur)")
    lo, hi = ranges.dose_e_per_A2
    # the estimate reads 0.3-0.7 of the true dose on simulated frames (jitter and motif error count
    # as noise): warn only well outside
    if r["dose_e_per_A2"] is not None and not lo / 3 <= r["dose_e_per_A2"] <= hi * 3:
        out.append(f"dose estimate {r['dose_e_per_A2']:.3g} e/A^2 (from the noise) is outside the trained "
                   f"{lo:.3g}-{hi:.3g} e/A^2")
    if r["scan_distortion"] is not None and r["scan_distortion"] > ranges.max_shear:
        out.append(f"scan distortion {r['scan_distortion']:.2f} exceeds the trained shear {ranges.max_shear}")
    if r["lattice_fraction"] is not None and r["lattice_fraction"] < 0.5:
        out.append(f"only {100 * r['lattice_fraction']:.0f} % of the frame is clean lattice")
    return out
