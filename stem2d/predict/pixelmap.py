"""Pixel-wise defect detection on whole frames: tiled prediction, seamless stitching, blob centres.

:func:`predict_frame` runs a fully convolutional network (e.g. :class:`stem2d.models.unet.UNet`)
over a frame at the canonical sampling in overlapping tiles and blends them with weights that
are zero within ``margin`` px of an inner tile edge (where zero padding changes the output) and
cross-fade with a raised cosine over the rest of the overlap (the weights of neighbouring tiles
sum to one). With ``margin >= net.receptive_radius_px`` and tile offsets that are multiples of
``net.size_multiple``, every kept pixel saw its full context, so the stitched map equals the
whole-frame output (tests check 1e-4). :func:`extract_defects` turns the probability map into
positions (connected components, probability-weighted centroids, peak probability as score) and
:func:`detect_defects` does resampling, prediction, extraction and the mapping of positions back
to the input frame.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from scipy import ndimage

from stem2d import CANONICAL_PIXEL_SIZE_A
from stem2d.lattice import suppress_close
from stem2d.lattice.scale import resample, resample_factors, to_input_coords
from stem2d.models.preprocess import standardize_tiles

__all__ = ["AUTO_TILE_PX", "MAX_WHOLE_FRAME_PX", "MIN_FRAME_PX", "auto_tile_px", "detect_defects", "extract_defects",
           "predict_frame", "tile_windows"]

log = logging.getLogger(__name__)

#: Smallest frame side accepted by :func:`predict_frame` (smaller frames hold < 2 unit cells).
MIN_FRAME_PX = 16
#: Length of the raised-cosine cross-fade between tiles when ``overlap`` is not given, px.
_DEFAULT_FADE_PX = 16
#: Frames whose padded side is at most this run as one tile (fastest); larger ones are tiled.
MAX_WHOLE_FRAME_PX = 1024
#: Tile side for frames larger than ``MAX_WHOLE_FRAME_PX`` (bounded memory at any frame size).
AUTO_TILE_PX = 1024
#: Pixels per forward pass when ``batch_size`` is not given.
_BATCH_PIXELS = 1 << 20


def _round_up(x: int, m: int) -> int:
    return -(-int(x) // m) * m


def _default_overlap(margin: int, size_multiple: int) -> int:
    """Tile overlap when none is given: both receptive margins plus the cross-fade."""
    return _round_up(2 * margin + _DEFAULT_FADE_PX, size_multiple)


def tile_windows(tile: int, overlap: int, margin: int, n_tiles: int) -> list[np.ndarray]:
    """1-D blending weights of each of ``n_tiles`` tiles along one axis.

    An inner edge (one with a neighbouring tile) gets ``margin`` zeros, then a raised-cosine
    ramp up to 1 over ``overlap - 2 * margin`` px; a frame edge keeps weight 1. Overlapping
    ramps of neighbours (offset ``tile - overlap``) sum to 1.

    Returns
    -------
    list of ndarray, float64, each of length ``tile``.
    """
    fade = overlap - 2 * margin
    if n_tiles > 1 and (fade < 1 or margin < 0):
        raise ValueError(f"overlap={overlap} must exceed 2 * margin = {2 * margin}")
    start = np.ones(tile)
    if n_tiles > 1:
        start[:margin] = 0.0
        start[margin:margin + fade] = np.sin(0.5 * np.pi * (np.arange(fade) + 0.5) / fade) ** 2
    out = []
    for i in range(n_tiles):
        w = np.ones(tile)
        if i > 0:
            w = np.minimum(w, start)
        if i < n_tiles - 1:
            w = np.minimum(w, start[::-1])
        out.append(w)
    return out


def _layout(length: int, *, tile: int, stride: int, margin: int) -> tuple[int, int]:
    """Number of tiles and padded length covering ``length`` px plus ``margin`` on both sides."""
    need = length + 2 * margin
    n = 1 if need <= tile else 1 + -(-(need - tile) // stride)
    return n, tile + (n - 1) * stride


def auto_tile_px(shape: tuple[int, int], *, margin: int, size_multiple: int = 1,
                 overlap: int | None = None) -> int | None:
    """The tile side :func:`predict_frame` uses when none is given.

    None (the whole frame as one tile, fastest) when the padded frame's longer side
    (``max(shape) + 2 * margin``) is at most ``MAX_WHOLE_FRAME_PX``; else the smallest side (a
    multiple of ``size_multiple``, at most ``AUTO_TILE_PX`` rounded up) that covers the longer
    side with as many tiles as ``AUTO_TILE_PX`` would need, so the network's activations stay
    bounded whatever the frame size and no tile is mostly padding (a 2048 px frame: nine 744 px
    tiles, 5.0 Mpx of network input, instead of nine 1024 px ones, 9.4 Mpx). ``overlap`` None:
    the default of :func:`predict_frame`.

    >>> auto_tile_px((512, 512), margin=24) is None, auto_tile_px((4096, 300), margin=24, size_multiple=8)
    (True, 880)
    """
    need = max(shape) + 2 * margin
    if need <= MAX_WHOLE_FRAME_PX:
        return None
    m = max(1, int(size_multiple))
    overlap = _default_overlap(margin, m) if overlap is None else int(overlap)
    largest = _round_up(AUTO_TILE_PX, m)
    n, _ = _layout(need - 2 * margin, tile=largest, stride=largest - overlap, margin=margin)
    return min(largest, _round_up(-(-(need + (n - 1) * overlap) // n), m))


def predict_frame(
    net: torch.nn.Module,
    frame: np.ndarray,
    *,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    bf16: bool = False,
) -> np.ndarray:
    """Defect probability map of a whole frame by tiled, seamlessly stitched prediction.

    Parameters
    ----------
    net : torch.nn.Module or OnnxPixelNet
        Fully convolutional network returning logits (B, 1, h, w) for (B, 1, h, w); its
        ``size_multiple`` and ``receptive_radius_px`` attributes are used when present (a
        :class:`~stem2d.models.unet.UNet`). It is put in eval mode; an
        :class:`~stem2d.models.runtime.OnnxPixelNet` runs fp32 on the CPU (``bf16`` does not apply).
    frame : ndarray, shape (H, W)
        Frame at the canonical sampling (0.3 A/px), any real dtype; it is standardised here
        (median 0, unit standard deviation over the whole frame), as training tiles are.
    tile : int or None, keyword-only, default None
        Tile side in px (a multiple of ``size_multiple``). None chooses (:func:`auto_tile_px`):
        the whole (padded) frame as one tile when its side is at most ``MAX_WHOLE_FRAME_PX``
        (fastest: a 512 x 512 frame becomes one 560 px tile instead of four 512 px ones), else
        tiles of at most ``AUTO_TILE_PX``, balanced over the frame, which bounds memory for any
        frame size. A frame smaller
        than one tile (but at least ``MIN_FRAME_PX``) is reflect-padded up to it.
    overlap : int or None, keyword-only
        Overlap of neighbouring tiles in px; None: ``2 * margin + 16`` where ``margin`` is the
        receptive radius rounded up to ``size_multiple``. Must exceed ``2 * margin``.
    batch_size : int or None, keyword-only
        Tiles per forward pass; None: as many as fit in ~1 Mpx (4 tiles of 512 px, 1 of 1024).
    device : str or torch.device, optional
        Where to run; default: the device of the network's parameters.
    bf16 : bool, keyword-only, default False
        Run the network under bf16 autocast on its device (see :mod:`stem2d.models.precision`).

    Returns
    -------
    ndarray, float32, shape (H, W): probabilities in [0, 1].

    Raises
    ------
    ValueError
        Frame not 2D, smaller than ``MIN_FRAME_PX``, non-finite; bad tile or overlap.
    """
    img = np.asarray(frame)
    if img.ndim != 2 or min(img.shape) < MIN_FRAME_PX:
        raise ValueError(f"frame must be 2D with sides >= {MIN_FRAME_PX} px, got shape {img.shape}")
    if not np.isfinite(img).all():
        raise ValueError("frame contains NaN or Inf values")
    m = int(getattr(net, "size_multiple", 1))
    margin = _round_up(int(getattr(net, "receptive_radius_px", 0)), m)
    overlap = _default_overlap(margin, m) if overlap is None else int(overlap)
    if tile is None:
        tile = auto_tile_px(img.shape, margin=margin, size_multiple=m, overlap=overlap)
    if tile is None:  # one tile: the overlap only has to be valid, it is never used
        tile = max(_round_up(max(img.shape) + 2 * margin, m), overlap + m)
    tile = int(tile)
    if tile % m or overlap % m or not 2 * margin < overlap < tile:
        raise ValueError(
            f"need tile ({tile}) and overlap ({overlap}) multiples of {m} with "
            f"2 * margin ({2 * margin}) < overlap < tile")
    stride = tile - overlap
    (n_r, len_r), (n_c, len_c) = (_layout(n, tile=tile, stride=stride, margin=margin) for n in img.shape)
    padded = np.pad(standardize_tiles(img), ((margin, len_r - img.shape[0] - margin),
                                              (margin, len_c - img.shape[1] - margin)), mode="reflect")
    net.eval()
    if device is None:  # an ONNX Runtime network has no parameters: the CPU
        device = next(net.parameters(), torch.empty(0)).device
    device = torch.device(device)

    def probabilities(x: np.ndarray) -> np.ndarray:
        """(B, tile, tile) standardised tiles -> (B, tile, tile) float32 probabilities."""
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = net(torch.from_numpy(np.ascontiguousarray(x)[:, None]).to(device))
        return torch.sigmoid(logits.float()).cpu().numpy()[:, 0]

    crop = (slice(margin, margin + img.shape[0]), slice(margin, margin + img.shape[1]))
    if n_r == n_c == 1:  # one tile: no blending
        return probabilities(padded[None])[0][crop]
    if batch_size is None:
        batch_size = max(1, _BATCH_PIXELS // (tile * tile))
    return _stitch(probabilities, padded, tile=tile, stride=stride, windows=(
        tile_windows(tile, overlap, margin, n_r), tile_windows(tile, overlap, margin, n_c)),
        batch_size=int(batch_size))[crop]


def _stitch(probabilities, padded: np.ndarray, *, tile: int, stride: int,
            windows: tuple[list[np.ndarray], list[np.ndarray]], batch_size: int) -> np.ndarray:
    """Blend the tiles' probabilities with separable weights (float32, one frame-sized array).

    The weight of tile (i, j) is ``outer(win_r[i], win_c[j])``, so the total weight is the
    outer product of the 1-D sums and the normalisation is two 1-D divisions.
    """
    win_r, win_c = windows
    acc = np.zeros(padded.shape, dtype=np.float32)
    origins = [(i, j) for i in range(len(win_r)) for j in range(len(win_c))]
    for k in range(0, len(origins), batch_size):
        chunk = origins[k:k + batch_size]
        prob = probabilities(np.stack([padded[i * stride:i * stride + tile, j * stride:j * stride + tile]
                                       for i, j in chunk]))
        for (i, j), p in zip(chunk, prob):
            p *= win_r[i].astype(np.float32)[:, None]
            p *= win_c[j].astype(np.float32)[None, :]
            acc[i * stride:i * stride + tile, j * stride:j * stride + tile] += p
    for axis, wins in enumerate(windows):
        total = np.zeros(padded.shape[axis])
        for i, w in enumerate(wins):
            total[i * stride:i * stride + tile] += w
        shape = (-1, 1) if axis == 0 else (1, -1)
        acc /= np.maximum(total, 1e-12).astype(np.float32).reshape(shape)
    return acc


def extract_defects(
    prob: np.ndarray,
    *,
    threshold: float = 0.5,
    min_area_px: int = 4,
    max_area_px: int = 400,
    min_dist_px: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Defect positions and scores from a probability map.

    Parameters
    ----------
    prob : ndarray, shape (H, W)
        Per-pixel defect probability.
    threshold : float, keyword-only, default 0.5
        Pixels with ``prob > threshold`` form the blobs (4-connected components).
    min_area_px, max_area_px : int, keyword-only, default 4, 400
        Blobs outside this area range are dropped.
    min_dist_px : float, keyword-only, default 0
        Blobs whose centres are closer than this keep only the higher-scoring one (0: keep all).

    Returns
    -------
    positions : ndarray, float64, shape (N, 2)
        Probability-weighted centroids (row, col) in pixels.
    scores : ndarray, float64, shape (N,)
        Peak probability of each blob.

    Examples
    --------
    >>> p = np.zeros((9, 9)); p[3:6, 4:7] = 0.9
    >>> extract_defects(p)
    (array([[4., 5.]]), array([0.9]))
    """
    prob = np.asarray(prob)
    if not np.issubdtype(prob.dtype, np.floating):
        prob = prob.astype(np.float64)
    if prob.ndim != 2:
        raise ValueError(f"prob must be 2D, got shape {prob.shape}")
    if not 0 < min_area_px <= max_area_px:
        raise ValueError(f"need 0 < min_area_px <= max_area_px, got {min_area_px}, {max_area_px}")
    mask = prob > np.float64(threshold)  # compared in float64 (a float32 map is not copied to float64)
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros((0, 2)), np.zeros(0)
    # per-blob sums over the blob pixels only (bincount; ndimage.maximum over an index list is slow)
    rr, cc = np.nonzero(mask)
    lab, p = labels[rr, cc], prob[rr, cc].astype(np.float64)
    area = np.bincount(lab, minlength=n + 1)[1:]
    keep = np.flatnonzero((area >= min_area_px) & (area <= max_area_px)) + 1
    if keep.size == 0:
        return np.zeros((0, 2)), np.zeros(0)
    mass = np.bincount(lab, weights=p, minlength=n + 1)
    centroid = np.stack([np.bincount(lab, weights=p * rr, minlength=n + 1),
                         np.bincount(lab, weights=p * cc, minlength=n + 1)], axis=1)
    peak = np.zeros(n + 1)
    np.maximum.at(peak, lab, p)
    positions = centroid[keep] / mass[keep, None]
    scores = peak[keep]
    if min_dist_px > 0:
        kept = suppress_close(positions, scores, min_dist_px=min_dist_px)
        positions, scores = positions[kept], scores[kept]
    return positions, scores


def detect_defects(
    net: torch.nn.Module,
    frame: np.ndarray,
    *,
    pixel_size_A: float,
    threshold: float = 0.5,
    min_area_px: int = 4,
    max_area_px: int = 400,
    min_dist_A: float = 1.2,
    tile: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Defect positions in input-frame pixels: resample to 0.3 A/px, predict, extract, map back.

    Parameters
    ----------
    net : torch.nn.Module
        Pixel network trained at the canonical sampling.
    frame : ndarray, shape (H, W)
        Input frame at ``pixel_size_A``.
    pixel_size_A : float, keyword-only
        Sampling of ``frame`` (metadata or :func:`stem2d.lattice.scale.measure_pixel_size`).
    threshold, min_area_px, max_area_px : see :func:`extract_defects` (areas at 0.3 A/px).
    min_dist_A : float, keyword-only, default 1.2
        Blobs closer than this (angstrom) are merged into the higher-scoring one.
    tile : int or None, keyword-only
        See :func:`predict_frame`.

    Returns
    -------
    positions : ndarray, float64, (N, 2), (row, col) in input-frame pixels.
    scores : ndarray, float64, (N,).
    """
    factors = resample_factors(np.shape(frame), from_pixel_size_A=pixel_size_A)
    canonical = resample(frame, from_pixel_size_A=pixel_size_A)
    prob = predict_frame(net, canonical, tile=tile)
    pos, scores = extract_defects(prob, threshold=threshold, min_area_px=min_area_px, max_area_px=max_area_px,
                                  min_dist_px=min_dist_A / CANONICAL_PIXEL_SIZE_A)
    return to_input_coords(pos, factors), scores
