"""Defect labels from Fourier filtering: the original high-pass method and a lattice-periodic one.

Two ways to tell a defect from the perfect crystal without any trained model:

- :func:`maksov_mask` (Maksov et al., npj Comput. Mater. 5, 12 (2019)): zero a central disk of
  the FFT (a high-pass filter), take ``|image - filtered|`` (the low-frequency content),
  min-max normalise and flag values below ``low`` or above ``high``.
- :func:`lattice_points`: rebuild the ideal periodic lattice from its
  Bragg reflections only (:func:`ideal_lattice`: reciprocal basis measured from the first Bragg
  ring and refined on the strong low orders, amplitudes of all reflections fitted by least
  squares over the whole frame, per-scan-line offsets fitted against jitter) and flag where the
  frame departs from it (:func:`lattice_residual`): the residual is smoothed by the probe size,
  freed of slow background (contamination) and divided by a shot-noise model
  ``sqrt(a + b * intensity)`` fitted to robust (MAD) variances, then thresholded on its absolute
  value: vacancies and lighter dopants are negative, heavier substituents positive.

:func:`mask_to_points` turns a mask into defect positions (connected components, centroids).
Both work at any sampling, but their defaults are tuned at the canonical 0.3 A/px.

Modules: :mod:`~stem2d.lattice.maksov`, :mod:`~stem2d.lattice.bragg` (the ideal lattice),
:mod:`~stem2d.lattice.residual` (residual, mask, points), :mod:`~stem2d.lattice.background`
(slow background and noise model of the residual), :mod:`~stem2d.lattice.points`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from stem2d.lattice.bragg import ideal_lattice
from stem2d.lattice.maksov import maksov_mask, maksov_points
from stem2d.lattice.points import mask_to_points, suppress_close
from stem2d.lattice.residual import lattice_points, lattice_residual

__all__ = [
    "LABELERS",
    "ideal_lattice",
    "lattice_points",
    "lattice_residual",
    "maksov_mask",
    "maksov_points",
    "mask_to_points",
    "suppress_close",
]


#: Label methods by name: ``fn(frame, *, material, pixel_size_A) -> (N, 2) positions``.
LABELERS: dict[str, Callable[..., np.ndarray]] = {"fourier": maksov_points, "lattice": lattice_points}
