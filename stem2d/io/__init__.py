"""Movie readers: every supported file format to frames plus metadata (reading only)."""

from stem2d.io.readers import Frames, Movie, read_movie

__all__ = ["Frames", "Movie", "read_movie"]
