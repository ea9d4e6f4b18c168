"""stem2d: find, classify and follow point defects in atomic-resolution STEM movies of 2D materials."""

__version__ = "0.1.0"

#: Canonical sampling of classifier tiles (a contract): 64 x 64 px at 0.3 A/px.
CANONICAL_PIXEL_SIZE_A = 0.3
TILE_SIZE_PX = 64
#: Value of a pixel-network training mask where a pixel has no label (no loss, no metric).
MASK_IGNORE = 255
