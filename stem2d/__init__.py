"""stem2d: find, classify and follow point defects in atomic-resolution STEM movies of 2D materials.

The notebook API (loaded on first use, so ``import stem2d`` stays light):

- :func:`stem2d.find_defects` (one frame -> DataFrame),
- :func:`stem2d.analyze_movie` (a movie file or array -> :class:`~stem2d.predict.result.MovieResult`),
- :func:`stem2d.simulate_frame` (a synthetic frame with its truth),
- :func:`stem2d.load_classifier` (the CAM classifier).
"""

__version__ = "0.1.0"

#: Canonical sampling of classifier tiles (a contract): 64 x 64 px at 0.3 A/px.
CANONICAL_PIXEL_SIZE_A = 0.3
TILE_SIZE_PX = 64
#: Value of a pixel-network training mask where a pixel has no label (no loss, no metric).
MASK_IGNORE = 255

#: The notebook API, in stem2d.api (imported on first access: it needs torch).
_API = ("analyze_movie", "find_defects", "load_classifier", "simulate_frame")

__all__ = ["CANONICAL_PIXEL_SIZE_A", "MASK_IGNORE", "TILE_SIZE_PX", "__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from stem2d import api

        return getattr(api, name)
    raise AttributeError(f"module 'stem2d' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
