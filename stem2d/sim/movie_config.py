"""Settings of a synthetic movie (:class:`MovieConfig`), checked on construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from stem2d.materials import ATOMIC_NUMBER, Material, get_material
from stem2d.sim.dynamics import DefectRateFields, DefectRates

__all__ = ["MovieConfig"]

_POSITIVE = ("dose_e_per_A2", "probe_fwhm_A", "probe_tail_fwhm_A", "z_exponent",
             "background_length_A")
_NON_NEGATIVE = ("detector_sigma_counts", "jitter_px", "background_fraction",
                 "drift_speed_px_per_frame", "drift_walk_px_per_frame", "max_drift_px",
                 "mo_b_offset_A")
_UNIT_INTERVAL = {"probe_tail_fraction": False, "jitter_correlation": False,
                  "scan_drift_fraction": True}  # name: 1 allowed
_MAX_PIXEL_SIZE_A = 1.0  # coarser sampling cannot resolve the 1.84 A W-S2 distance
_MIN_FRAME_PX = 32


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class _MovieSettings:
    """Specimen, sampling, imaging and drift fields of :class:`MovieConfig` (documented there).

    A base class so that the fields keep their order in :class:`MovieConfig`: these, then the
    :class:`~stem2d.sim.dynamics.DefectRateFields`, then ``mo_b_offset_A``.
    """

    material: str = "WS2"
    dopant: str = "Mo"
    n_frames: int = 20
    frame_shape: tuple[int, int] = (512, 512)
    pixel_size_A: float | None = None
    pixel_size_range_A: tuple[float, float] = (0.15, 0.35)
    rotation_deg: float | None = None
    dose_e_per_A2: float = 5e4
    probe_fwhm_A: float = 0.9
    probe_tail_fraction: float = 0.1
    probe_tail_fwhm_A: float = 3.0
    z_exponent: float = 1.7
    detector_sigma_counts: float = 1.0
    jitter_px: float = 0.3
    jitter_correlation: float = 0.5
    background_fraction: float = 0.1
    background_length_A: float = 20.0
    drift_speed_px_per_frame: float = 1.0
    drift_walk_px_per_frame: float = 0.3
    max_drift_px: float = 40.0
    scan_drift_fraction: float = 1.0


@dataclass(frozen=True)
class MovieConfig(DefectRateFields, _MovieSettings):
    """Settings of a synthetic movie; every quantity carries its unit in its name.

    Specimen and sampling
        material ("WS2"), dopant ("Mo", on metal sites), n_frames (20), frame_shape ((512, 512)
        px), pixel_size_A (None: uniform in pixel_size_range_A = (0.15, 0.35) A/px),
        rotation_deg (None: uniform in [0, 360) deg).
    Imaging (see :mod:`stem2d.sim.imaging`)
        dose_e_per_A2 (5e4 per frame: a W column peaks at dose * pixel_size^2 *
        HAADF_PEAK_FRACTION = 156 counts at 0.25 A/px), probe_fwhm_A (0.9), probe_tail_fraction
        (0.1), probe_tail_fwhm_A (3.0), z_exponent (1.7), detector_sigma_counts (1.0),
        jitter_px (0.3 px RMS scan-line jitter), jitter_correlation (0.5), background_fraction
        (0.1 of the W peak: specimen-fixed contamination), background_length_A (20).
    Drift (see :func:`stem2d.sim.dynamics.drift_path`)
        drift_speed_px_per_frame (1.0), drift_walk_px_per_frame (0.3 px RMS per axis),
        max_drift_px (40), scan_drift_fraction (1.0: the specimen drifts during the scan as
        between frames, so a frame is sheared by the drift to the next one; 0: rigid frames).
    Defect dynamics (see :class:`stem2d.sim.dynamics.DefectRates`, same names and defaults)
        mo_density_per_nm2, s_vacancy_density_per_nm2, w_vacancy_density_per_nm2,
        w_antisite_density_per_nm2, s_vacancy_creation_per_nm2_frame,
        w_vacancy_creation_per_nm2_frame, w_antisite_creation_per_nm2_frame,
        s_vacancy_hop_prob, s_vacancy_sticky_factor, mo_switch_prob_ab, mo_switch_prob_ba;
        mo_b_offset_A (0.5): displacement of a configuration-B dopant from its metal site
        towards a hollow site (hexagon centre, 1.84 A away).

    Raises
    ------
    ValueError
        Naming the field and the value, for any value out of range.
    """

    mo_b_offset_A: float = 0.5

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        material = get_material(self.material)
        if self.dopant not in ATOMIC_NUMBER or self.dopant == material.metal:
            raise ValueError(f"dopant={self.dopant!r} must be an element of {sorted(ATOMIC_NUMBER)} "
                             f"other than the host metal {material.metal}")
        if isinstance(self.n_frames, bool) or _number("n_frames", self.n_frames) != int(self.n_frames) \
                or self.n_frames < 1:
            raise ValueError(f"n_frames must be an integer >= 1, got {self.n_frames!r}")
        set_(self, "n_frames", int(self.n_frames))
        shape = tuple(self.frame_shape) if not isinstance(self.frame_shape, (str, bytes)) else ()
        if len(shape) != 2 or any(_number("frame_shape", v) != int(v) or v < _MIN_FRAME_PX
                                  for v in shape):
            raise ValueError(f"frame_shape must be two integers >= {_MIN_FRAME_PX} (rows, cols), "
                             f"got {self.frame_shape!r}")
        set_(self, "frame_shape", (int(shape[0]), int(shape[1])))
        rng_ = tuple(self.pixel_size_range_A) if not isinstance(self.pixel_size_range_A, str) else ()
        if len(rng_) != 2 or not 0 < _number("pixel_size_range_A", rng_[0]) \
                <= _number("pixel_size_range_A", rng_[1]) <= _MAX_PIXEL_SIZE_A:
            raise ValueError(f"pixel_size_range_A must be (low, high) with 0 < low <= high <= "
                             f"{_MAX_PIXEL_SIZE_A}, got {self.pixel_size_range_A!r}")
        set_(self, "pixel_size_range_A", (float(rng_[0]), float(rng_[1])))
        if self.pixel_size_A is not None:
            ps = _number("pixel_size_A", self.pixel_size_A)
            if not 0 < ps <= _MAX_PIXEL_SIZE_A:
                raise ValueError(f"pixel_size_A must be in (0, {_MAX_PIXEL_SIZE_A}] A/px or None, "
                                 f"got {self.pixel_size_A!r}")
            set_(self, "pixel_size_A", ps)
        if self.rotation_deg is not None:
            set_(self, "rotation_deg", _number("rotation_deg", self.rotation_deg))
        for name in _POSITIVE + _NON_NEGATIVE + tuple(_UNIT_INTERVAL):
            value = _number(name, getattr(self, name))
            bad = (value <= 0 if name in _POSITIVE else value < 0)
            if name in _UNIT_INTERVAL:
                bad = bad or value > 1 or (value == 1 and not _UNIT_INTERVAL[name])
            if bad:
                rule = ("> 0" if name in _POSITIVE else ">= 0" if name in _NON_NEGATIVE
                        else "in [0, 1]" if _UNIT_INTERVAL[name] else "in [0, 1)")
                raise ValueError(f"{name} must be {rule}, got {getattr(self, name)!r}")
            set_(self, name, value)
        if self.mo_b_offset_A >= material.mx_distance_A:
            raise ValueError(f"mo_b_offset_A must be < the metal-hollow distance "
                             f"{material.mx_distance_A:.2f} A, got {self.mo_b_offset_A!r}")
        self.defect_rates()  # validates the dynamics fields (errors name the field)

    @property
    def material_obj(self) -> Material:
        return get_material(self.material)

    def defect_rates(self) -> DefectRates:
        """The dynamics fields as :class:`~stem2d.sim.dynamics.DefectRates`."""
        return DefectRates(**{f.name: getattr(self, f.name) for f in fields(DefectRates)})

    def to_dict(self) -> dict:
        """JSON-ready dict of all fields (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
