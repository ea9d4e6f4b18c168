"""Candidate column labels for the real MoS2 dev set (tests/assets/real_labels/), then an eye check.

    python scripts/label_real.py                                   # the four frames in ../shared/data/real
    python scripts/label_real.py --png /tmp/eye                    # + zoomed crops of every candidate
    python scripts/label_real.py --frames a.npy --out /tmp/labels  # other frames, another folder

Procedure (written down in tests/assets/real_labels/README.md with the thresholds and doubts):

1. Lattice. The pixel size and three first-order Bragg vectors come from
   :func:`stem2d.lattice.scale.measure_pixel_size` (the measured, possibly sheared vectors). The slowly
   varying phase of two of them (geometric phase analysis: demodulate, low-pass over ~2 unit
   cells, unwrap) absorbs scan distortion, so every site of the three families (origin,
   (1/3, 2/3), (2/3, 1/3) in lattice coordinates) is placed where the local lattice puts it, whether
   or not a column is there. The brightest family is the metal (M), the next the chalcogen (X2), the
   darkest the hollow (H); each M/X family gets one global offset (median intensity-weighted shift).
2. Intensity. Each site's Gaussian-weighted mean (sigma 0.45 A) of the raw frame, minus the local
   background (median of the hollow sites within 10 A), over the local median of its own sublattice
   within 12 A: ``intensity_rel`` (1 = a typical column of that sublattice).
3. Rules (``THRESHOLDS``) turn ``intensity_rel`` into a class and a ``certain`` flag; a call is
   certain only where it is also ``MIN_Z`` robust standard deviations from 1 on its sublattice. Runs
   of >= 3 touching missing columns are holes, columns on a raised background are contamination, and
   columns within ``BORDER_A`` of the edge: all "don't care" (certain = 0).
4. Eye check: ``--png`` renders crops of every candidate; the verdicts live in
   ``tests/assets/real_labels/overrides.csv`` (frame,row,col,class,certain,note; nearest site within
   1 A) and are applied last.

These labels are an evaluation set only: never train, tune thresholds or select models on them.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from skimage.restoration import unwrap_phase

from stem2d.lattice.scale import _bragg_vectors, measure_pixel_size
from stem2d.materials import Material, get_material

log = logging.getLogger("label_real")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FRAMES = REPO.parent / "shared" / "data" / "real" / "mos2_scilink"
DEFAULT_OUT = REPO / "tests" / "assets" / "real_labels"

#: Gaussian smoothing of the frame before the phase analysis (angstrom).
SMOOTH_A = 0.35
#: Low-pass of the geometric phase, in lattice constants.
PHASE_SIGMA_CELLS = 2.0
#: Gaussian weight of a column's intensity (angstrom).
INTEGRATION_SIGMA_A = 0.45
#: Radius of the hollow-site background and of the sublattice median (angstrom).
BACKGROUND_RADIUS_A = 10.0
MEDIAN_RADIUS_A = 12.0
#: Columns closer than this to the frame edge are "don't care" (angstrom).
BORDER_A = 2.0
#: A certain call is at least this many robust standard deviations from 1 on its sublattice.
MIN_Z = 3.0
#: Hollow background this many robust standard deviations above the frame's median: contamination.
CONTAMINATION_Z = 3.0
#: A hole is a connected group of at least this many missing columns (rel below MISSING_REL).
HOLE_MIN_COLUMNS = 3
MISSING_REL = 0.3

#: (low, high, class, certain_possible) bands of intensity_rel per sublattice; "pristine" with
#: certain_possible False means "don't care". Expected values (Z^1.7 contrast, MoS2): V on Mo 0.36,
#: W on Mo 2.6, S2 -> one S 0.5, no S 0, Mo on an S2 site 2.6.
THRESHOLDS = {
    "metal": [(-np.inf, 0.15, "mo_vacancy", True), (0.15, 0.55, "v_dopant", True),
              (0.55, 0.75, "v_dopant", False), (0.75, 1.5, "pristine", True),
              (1.5, 1.9, "w_dopant", False), (1.9, np.inf, "w_dopant", True)],
    "chalcogen": [(-np.inf, 0.2, "s_vacancy", True), (0.2, 0.65, "s_vacancy", False),
                  (0.65, 1.6, "pristine", True), (1.6, np.inf, "pristine", False)],
}
#: A chalcogen site whose net intensity over the local metal median (``metal_rel``) exceeds these is
#: a metal atom on it (Mo on S2: 1.0, pristine S2 0.39): "don't care" above the first, mo_antisite
#: above the second (the S2 noise in units of its own median is 0.4-0.6, too wide for ratios of 2.6).
ANTISITE_METAL_REL = (0.7, 0.85)
#: Where the local metal median is below this fraction of the frame's, the lattice is thin or gone
#: (hole edge, amorphous patch): "don't care".
WEAK_LATTICE = 0.6
#: Calls within this distance of a hole or contamination column are "don't care" (angstrom).
REGION_MARGIN_A = 2.0


def lattice_sites(img: np.ndarray, material: Material) -> tuple[float, dict[str, np.ndarray]]:
    """Pixel size (A/px) and the (row, col) sites of the three families ``o``, ``p``, ``q``."""
    scale = measure_pixel_size(img, material)
    px = scale.pixel_size_A
    g = _bragg_vectors(img, min_period_px=max(material.d100_A / 0.8, 2.2),
                       max_period_px=material.d100_A / 0.05, min_peak_ratio=8.0)
    h, w = img.shape
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float64)
    smooth = ndimage.gaussian_filter(img, SMOOTH_A / px)
    sigma = PHASE_SIGMA_CELLS * material.a_A / px
    basis = g[:2]
    psi = []
    for k in range(2):
        z = smooth * np.exp(-2j * np.pi * (basis[k, 0] * rr + basis[k, 1] * cc))
        zl = ndimage.gaussian_filter(z.real, sigma) + 1j * ndimage.gaussian_filter(z.imag, sigma)
        psi.append(unwrap_phase(np.angle(zl)) / (2 * np.pi))
    psi = np.stack(psi)
    inv = np.linalg.inv(basis)

    def phase_at(pts: np.ndarray) -> np.ndarray:
        pts = np.clip(pts, 0, [h - 1, w - 1])
        return np.stack([ndimage.map_coordinates(p, pts.T, order=1) for p in psi], axis=1)

    corners = np.array([[0, 0], [0, w - 1], [h - 1, 0], [h - 1, w - 1]], np.float64)
    u = corners @ basis.T + phase_at(corners)
    lo, hi = np.floor(u.min(0)) - 2, np.ceil(u.max(0)) + 2
    n1, n2 = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
    n = np.stack([n1.ravel(), n2.ravel()], axis=1)
    families = {}
    for name, offset in (("o", (0.0, 0.0)), ("p", (1 / 3, 2 / 3)), ("q", (2 / 3, 1 / 3))):
        target = n + np.array(offset)
        r = target @ inv.T
        for _ in range(10):  # fixed point of  basis @ r + psi(r) = target
            r = (target - phase_at(r)) @ inv.T
        inside = (r[:, 0] >= -0.5) & (r[:, 0] <= h - 0.5) & (r[:, 1] >= -0.5) & (r[:, 1] <= w - 0.5)
        families[name] = r[inside]
    return px, families


def gaussian_mean(img: np.ndarray, pts: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian-weighted mean of ``img`` around each point (weights cut at 3 sigma and the edge)."""
    h, w = img.shape
    rad = int(np.ceil(3 * sigma_px))
    dr, dc = np.mgrid[-rad:rad + 1, -rad:rad + 1]
    base = np.rint(pts).astype(int)
    rs = base[:, 0, None, None] + dr
    cs = base[:, 1, None, None] + dc
    ok = (rs >= 0) & (rs < h) & (cs >= 0) & (cs < w)
    d2 = (rs - pts[:, 0, None, None]) ** 2 + (cs - pts[:, 1, None, None]) ** 2
    wgt = np.exp(-d2 / (2 * sigma_px**2)) * ok
    vals = img[np.clip(rs, 0, h - 1), np.clip(cs, 0, w - 1)]
    return (wgt * vals).sum(axis=(1, 2)) / wgt.sum(axis=(1, 2))


def _centroid_offset(img: np.ndarray, pts: np.ndarray, radius_px: float) -> np.ndarray:
    """Median (over the family) shift from the site to the local intensity-weighted centroid."""
    rad = int(np.ceil(radius_px))
    dr, dc = np.mgrid[-rad:rad + 1, -rad:rad + 1]
    disk = (dr**2 + dc**2) <= radius_px**2
    h, w = img.shape
    keep = (pts[:, 0] > rad) & (pts[:, 0] < h - rad - 1) & (pts[:, 1] > rad) & (pts[:, 1] < w - rad - 1)
    base = np.rint(pts[keep]).astype(int)
    vals = img[base[:, 0, None, None] + dr, base[:, 1, None, None] + dc] * disk
    vals = vals - np.median(vals[:, disk], axis=1)[:, None, None]
    vals = np.clip(vals, 0, None)
    tot = vals.sum(axis=(1, 2)) + 1e-12
    cen = np.stack([(vals * dr).sum(axis=(1, 2)) / tot, (vals * dc).sum(axis=(1, 2)) / tot], axis=1)
    return np.median(cen + base - pts[keep], axis=0)


def _local_median(pts: np.ndarray, ref_pts: np.ndarray, ref_vals: np.ndarray, radius: float) -> np.ndarray:
    tree = cKDTree(ref_pts)
    return np.array([np.median(ref_vals[idx]) if idx else np.nan
                     for idx in tree.query_ball_point(pts, radius)])


def _robust_sd(x: np.ndarray) -> float:
    q16, q84 = np.nanpercentile(x, [16, 84])
    return float((q84 - q16) / 2)


def quantify(img: np.ndarray, material: Material) -> tuple[float, pd.DataFrame]:
    """Every metal, chalcogen and hollow site with its relative intensity (see the module doc)."""
    img = np.asarray(img, dtype=np.float64)
    px, fam = lattice_sites(img, material)
    raw = {k: gaussian_mean(img, v, INTEGRATION_SIGMA_A / px) for k, v in fam.items()}
    order = sorted(raw, key=lambda k: -np.median(raw[k]))
    names = dict(zip(order, ("metal", "chalcogen", "hollow")))
    hollow = fam[order[2]]
    frames = []
    for key, sub in names.items():
        pts = fam[key]
        if sub != "hollow":
            pts = pts + _centroid_offset(img, pts, 0.6 / px)
            h, w = img.shape
            pts = pts[(pts[:, 0] >= -0.5) & (pts[:, 0] <= h - 0.5) & (pts[:, 1] >= -0.5) & (pts[:, 1] <= w - 0.5)]
        inten = gaussian_mean(img, pts, INTEGRATION_SIGMA_A / px)
        bg = _local_median(pts, hollow, raw[order[2]], BACKGROUND_RADIUS_A / px)
        frames.append(pd.DataFrame({"row": pts[:, 0], "col": pts[:, 1], "sublattice": sub,
                                    "intensity": inten, "background": bg}))
    cols = pd.concat(frames, ignore_index=True)
    cols["net"] = cols["intensity"] - cols["background"]
    cols["intensity_rel"] = np.nan
    for sub in ("metal", "chalcogen"):
        sel = cols["sublattice"] == sub
        pts = cols.loc[sel, ["row", "col"]].to_numpy()
        med = _local_median(pts, pts, cols.loc[sel, "net"].to_numpy(), MEDIAN_RADIUS_A / px)
        cols.loc[sel, "intensity_rel"] = cols.loc[sel, "net"].to_numpy() / med
        if sub == "metal":
            metal_pts, metal_med = pts, med
    sel = cols["sublattice"] != "hollow"
    pts = cols.loc[sel, ["row", "col"]].to_numpy()
    local_metal = _local_median(pts, metal_pts, metal_med, MEDIAN_RADIUS_A / px)
    cols.loc[sel, "metal_rel"] = cols.loc[sel, "net"].to_numpy() / local_metal
    cols.loc[sel, "lattice_strength"] = local_metal / np.nanmedian(metal_med)
    return px, cols


def label_columns(cols: pd.DataFrame, *, pixel_size_A: float, shape: tuple[int, int]) -> pd.DataFrame:
    """Class and ``certain`` flag of every metal and chalcogen column by the written rules."""
    out = cols[cols["sublattice"] != "hollow"].copy().reset_index(drop=True)
    out["class"] = "pristine"
    out["certain"] = True
    for sub, bands in THRESHOLDS.items():
        sel = out["sublattice"] == sub
        rel = out.loc[sel, "intensity_rel"].to_numpy()
        sd = _robust_sd(rel)
        z_ok = np.abs(rel - 1) >= MIN_Z * sd
        cls = np.full(len(rel), "pristine", dtype=object)
        cert = np.ones(len(rel), bool)
        for lo, hi, name, can_be_certain in bands:
            band = (rel >= lo) & (rel < hi)
            cls[band] = name
            cert[band] = can_be_certain & (z_ok[band] | (name == "pristine"))
        out.loc[sel, "class"] = cls
        out.loc[sel, "certain"] = cert
        log.info("%s: robust sd of intensity_rel %.3f (certain calls need |rel - 1| >= %.2f)", sub, sd, MIN_Z * sd)
    xs = (out["sublattice"] == "chalcogen").to_numpy()
    mrel = out["metal_rel"].to_numpy()
    out.loc[xs & (mrel > ANTISITE_METAL_REL[0]), ["class", "certain"]] = ("mo_antisite", False)
    out.loc[xs & (mrel > ANTISITE_METAL_REL[1]), ["class", "certain"]] = ("mo_antisite", True)
    weak = out["lattice_strength"].to_numpy() < WEAK_LATTICE
    out.loc[weak & (out["class"] != "pristine"), "class"] = "hole"
    out.loc[weak, "certain"] = False
    # holes: connected groups of missing columns (any sublattice), neighbours within 1.3 x M-X distance
    pts = out[["row", "col"]].to_numpy()
    missing = np.flatnonzero(out["intensity_rel"].to_numpy() < MISSING_REL)
    if len(missing):
        tree = cKDTree(pts[missing])
        pairs = tree.query_pairs(1.3 * 1.83 / pixel_size_A, output_type="ndarray")
        adj = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(missing),) * 2)
        _, comp = connected_components(adj, directed=False)
        sizes = np.bincount(comp)
        in_hole = missing[sizes[comp] >= HOLE_MIN_COLUMNS]
        out.loc[in_hole, "class"] = "hole"
        out.loc[in_hole, "certain"] = False
    # contamination: a raised local background
    bg = out["background"].to_numpy()
    med, sd = np.nanmedian(bg), _robust_sd(bg)
    contam = bg > med + CONTAMINATION_Z * sd
    out.loc[contam, "class"] = "contamination"
    out.loc[contam, "certain"] = False
    region = out["class"].isin(["hole", "contamination"]).to_numpy()
    if region.any():
        near = cKDTree(out.loc[region, ["row", "col"]].to_numpy()).query(
            out[["row", "col"]].to_numpy(), distance_upper_bound=REGION_MARGIN_A / pixel_size_A)[0]
        out.loc[np.isfinite(near) & (out["class"] != "pristine"), "certain"] = False
    border = BORDER_A / pixel_size_A
    h, w = shape
    edge = ((out["row"] < border) | (out["col"] < border) | (out["row"] > h - 1 - border)
            | (out["col"] > w - 1 - border))
    out.loc[edge, "certain"] = False
    return out


def apply_overrides(labels: pd.DataFrame, overrides: pd.DataFrame, *, frame: str, pixel_size_A: float) -> pd.DataFrame:
    """Eye-check verdicts: the nearest column within 1 A of each override row takes its class/certain."""
    rows = overrides[overrides["frame"] == frame]
    if rows.empty:
        return labels
    labels = labels.copy()
    tree = cKDTree(labels[["row", "col"]].to_numpy())
    for _, o in rows.iterrows():
        d, i = tree.query([o["row"], o["col"]])
        if d * pixel_size_A > 1.0:
            raise ValueError(f"override {frame} ({o['row']}, {o['col']}) is {d * pixel_size_A:.2f} A from any column")
        labels.loc[i, "class"] = o["class"]
        labels.loc[i, "certain"] = bool(o["certain"])
    return labels


def to_asset(labels: pd.DataFrame) -> pd.DataFrame:
    """Rows worth storing: every non-pristine column and every "don't care" column."""
    keep = (labels["class"] != "pristine") | ~labels["certain"]
    out = labels.loc[keep, ["row", "col", "class", "certain", "sublattice", "intensity_rel"]].copy()
    out["row"] = out["row"].round(1)
    out["col"] = out["col"].round(1)
    out["intensity_rel"] = out["intensity_rel"].round(2)
    out["certain"] = out["certain"].astype(int)
    return out.sort_values(["row", "col"]).reset_index(drop=True)


def render_candidates(img: np.ndarray, labels: pd.DataFrame, path: Path, *, pixel_size_A: float,
                      per_page: int = 12) -> list[Path]:
    """Mosaics of 12 A crops (raw | smoothed) around every certain candidate defect."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cand = labels[~labels["class"].isin(["pristine", "hole", "contamination"]) & labels["certain"]]
    cand = cand.reset_index(drop=True)
    half = int(round(6.0 / pixel_size_A))
    lo, hi = np.percentile(img, [0.5, 99.8])
    smooth = ndimage.gaussian_filter(img, 0.25 / pixel_size_A)
    slo, shi = np.percentile(smooth, [0.5, 99.9])
    paths = []
    for page in range(0, len(cand), per_page):
        chunk = cand.iloc[page:page + per_page]
        ncol = 6
        nrow = int(np.ceil(len(chunk) / ncol)) * 2
        fig, axes = plt.subplots(nrow, ncol, figsize=(2.4 * ncol, 2.4 * nrow))
        axes = np.atleast_2d(axes)
        for ax in axes.ravel():
            ax.axis("off")
        for k, (_, c) in enumerate(chunk.iterrows()):
            r0, c0 = int(round(c["row"])), int(round(c["col"]))
            for j, (im, a, b) in enumerate(((img, lo, hi), (smooth, slo, shi))):
                ax = axes[2 * (k // ncol) + j, k % ncol]
                ax.imshow(im, cmap="gray", vmin=a, vmax=b)
                ax.set_xlim(c0 - half, c0 + half)
                ax.set_ylim(r0 + half, r0 - half)
                ax.plot(c["col"], c["row"], "o", mfc="none", mec="r" if c["certain"] else "y", ms=14, mew=1)
                if j == 0:
                    ax.set_title(f"#{page + k} {c['class'][:8]} {c['intensity_rel']:.2f}\n"
                                 f"({c['row']:.0f},{c['col']:.0f})", fontsize=7)
        fig.tight_layout()
        out = path.with_name(f"{path.stem}_{page // per_page}.png")
        fig.savefig(out, dpi=75)
        plt.close(fig)
        paths.append(out)
    return paths


def render_overview(img: np.ndarray, labels: pd.DataFrame, path: Path, *, pixel_size_A: float) -> Path:
    """The frame (smoothed) with every non-pristine label: certain solid, "don't care" faint."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    smooth = ndimage.gaussian_filter(img, 0.25 / pixel_size_A)
    fig, ax = plt.subplots(figsize=(12, 12))
    ax.imshow(smooth, cmap="gray", vmin=np.percentile(smooth, 0.5), vmax=np.percentile(smooth, 99.9))
    colours = {"s_vacancy": "lime", "mo_vacancy": "yellow", "v_dopant": "cyan", "w_dopant": "magenta",
               "mo_antisite": "red", "hole": "orange", "contamination": "white", "pristine": "gray"}
    for name, colour in colours.items():
        for certain, alpha, ms in ((True, 1.0, 11), (False, 0.35, 6)):
            sel = labels[(labels["class"] == name) & (labels["certain"] == certain)]
            if name == "pristine" and certain:
                continue
            ax.plot(sel["col"], sel["row"], "o", mfc="none", mec=colour, alpha=alpha, ms=ms,
                    label=f"{name}{'' if certain else ' (dc)'} {len(sel)}")
    ax.legend(loc="upper right", fontsize=7)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", nargs="+", type=Path, default=sorted(DEFAULT_FRAMES.glob("*.npy")))
    p.add_argument("--material", default="MoS2")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for <frame>.csv")
    p.add_argument("--overrides", type=Path, default=DEFAULT_OUT / "overrides.csv")
    p.add_argument("--png", type=Path, default=None, help="folder for eye-check crops")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    material = get_material(args.material)
    overrides = (pd.read_csv(args.overrides) if args.overrides.is_file()
                 else pd.DataFrame(columns=["frame", "row", "col", "class", "certain", "note"]))
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.frames:
        img = np.load(path).astype(np.float64)
        px, cols = quantify(img, material)
        labels = label_columns(cols, pixel_size_A=px, shape=img.shape)
        labels = apply_overrides(labels, overrides, frame=path.stem, pixel_size_A=px)
        asset = to_asset(labels)
        asset.to_csv(args.out / f"{path.stem}.csv", index=False)
        counts = asset[asset["certain"] == 1]["class"].value_counts().to_dict()
        log.info("%s: %.4f A/px, %d columns, certain %s, don't care %d", path.stem, px, len(labels), counts,
                 int((asset["certain"] == 0).sum()))
        if args.png is not None:
            args.png.mkdir(parents=True, exist_ok=True)
            render_candidates(img, labels, args.png / f"{path.stem}.png", pixel_size_A=px)
            render_overview(img, labels, args.png / f"{path.stem}_overview.png", pixel_size_A=px)


if __name__ == "__main__":
    main()
