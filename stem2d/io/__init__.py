"""Movie readers and lattice-based pixel-size measurement."""

from stem2d.io.readers import Frames, Movie, read_movie
from stem2d.io.scale import (
    ScaleResult,
    measure_lattice_period,
    measure_pixel_size,
    resample,
    resample_factors,
    to_input_coords,
    to_resampled_coords,
)

__all__ = [
    "Frames",
    "Movie",
    "read_movie",
    "ScaleResult",
    "measure_lattice_period",
    "measure_pixel_size",
    "resample",
    "resample_factors",
    "to_input_coords",
    "to_resampled_coords",
]
