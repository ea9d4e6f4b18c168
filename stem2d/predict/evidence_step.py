"""The per-frame evidence step of the movie loop: columns, regions, evidence per detection, and what
it writes (columns table, region mask and polygons) and sums up (lattice area, region fractions).

Pure (no Hydra): the pipeline builds one :class:`EvidenceStep` per run and calls it once per frame
after :func:`stem2d.predict.frame.analyze_frame`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from stem2d.materials import Material
from stem2d.predict.column_candidates import ColumnCache
from stem2d.predict.evidence import ADATOM, UNKNOWN, annotate_detections
from stem2d.predict.regions import REGION_KINDS, UNTRUSTED, RegionMap, find_regions

__all__ = ["EvidenceStep", "FrameEvidence", "write_regions"]


@dataclass(frozen=True)
class FrameEvidence:
    """Evidence of one frame.

    Attributes
    ----------
    annotation : DataFrame
        One row per detection: ``class`` (possibly ``unknown`` / ``adatom``), ``sublattice``,
        ``intensity_rel``, ``p_class``, ``region``, ``column_z``, ``fit_quality``, ``agrees``.
    columns : DataFrame or None
        The column table (``row, col`` in input pixels); None without a lattice.
    regions : RegionMap or None
        On the resampled frame.
    masks : dict of str to bool ndarray
        Region masks on the input frame's grid (for the overlay).
    """

    annotation: pd.DataFrame
    columns: pd.DataFrame | None
    regions: RegionMap | None
    masks: dict


class EvidenceStep:
    """``step(canon, points, labels, probs, frame_shape) -> FrameEvidence`` for every frame.

    Parameters
    ----------
    columns : ColumnCache
        Quantifies the resampled frame (shared with the column-candidate detector).
    material : Material
    class_names : tuple of str
        The classifier's classes.
    expectations : dict
        From :func:`stem2d.predict.evidence.class_expectations`.
    temperature : float, default 1
        Probability calibration (:mod:`stem2d.models.temperature`).
    pristine_index : int or None
        Windows of this class are unconfirmed candidates (None: the classifier never
        unconfirms, as with ``classify.unconfirmed=relabel``).
    evidence_rule : {"confirm", "contradict", "off"}, default "confirm"
        When a call's column unconfirms it (:func:`stem2d.predict.evidence.detection_evidence`).
    trust_regions : bool, default False
        Keep calls inside holes, contamination and amorphous patches (default: unconfirmed).
    """

    def __init__(self, columns: ColumnCache, *, material: Material, class_names: tuple[str, ...],
                 expectations: dict, temperature: float = 1.0, pristine_index: int | None = None,
                 evidence_rule: str = "confirm", trust_regions: bool = False):
        self.columns, self.material, self.class_names = columns, material, tuple(class_names)
        self.expectations = expectations
        self.temperature, self.pristine_index = float(temperature), pristine_index
        self.evidence_rule, self.trust_regions = str(evidence_rule), bool(trust_regions)
        self.fractions: list[dict[str, float]] = []
        self.lattice_area_nm2: list[float] = []

    def __call__(self, canon: np.ndarray, points: np.ndarray, labels: np.ndarray, probs: np.ndarray,
                 frame_shape: tuple[int, int]) -> FrameEvidence:
        from stem2d.lattice.scale import to_input_coords, to_resampled_coords

        factors = (canon.shape[0] / frame_shape[0], canon.shape[1] / frame_shape[1])  # as resample's
        quant = self.columns(canon)
        q_points = to_resampled_coords(np.asarray(points, dtype=np.float64).reshape(-1, 2), factors)
        ann = annotate_detections(q_points, labels, probs, quant, class_names=self.class_names,
                                  expectations=self.expectations, temperature=self.temperature,
                                  pristine_index=self.pristine_index, evidence_rule=self.evidence_rule)
        regions, table, present = None, None, {}
        region = np.full(len(ann), "lattice", dtype=object)
        if quant is not None:
            regions = find_regions(quant, canon.shape, material_mx_distance_A=self.material.mx_distance_A)
            region = regions.region_at(q_points)
            self.fractions.append(regions.fractions())
            self.lattice_area_nm2.append(regions.lattice_area_nm2())
            table = quant.table.copy()
            table[["row", "col"]] = to_input_coords(table[["row", "col"]].to_numpy(), factors)
            table["region"] = np.asarray(REGION_KINDS, dtype=object)[regions.site_region]
            present = regions.masks()
        # every kind every frame (empty where absent): the overlay's legend keeps one layout
        masks = {k: _to_input_grid(present[k], frame_shape) if regions is not None and k in present
                 else np.zeros(frame_shape, bool) for k in REGION_KINDS[1:]}
        if not self.trust_regions:
            untrusted = np.isin(region, UNTRUSTED) & (ann["class"] != ADATOM).to_numpy()
            ann.loc[untrusted, "class"] = UNKNOWN
        ann.insert(4, "region", region)
        return FrameEvidence(ann, table, regions, masks)

    def summary(self) -> dict:
        """Mean region fractions and lattice area over the frames seen (empty without a lattice)."""
        if not self.fractions:
            return {}
        return {"region_fractions": {k: float(np.mean([f[k] for f in self.fractions])) for k in REGION_KINDS},
                "lattice_area_nm2_mean": float(np.mean(self.lattice_area_nm2)),
                "lattice_area_nm2_total": float(np.sum(self.lattice_area_nm2))}


def _to_input_grid(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a mask of the resampled frame to the input grid."""
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * mask.shape[0] / shape[0]).astype(int), mask.shape[0] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * mask.shape[1] / shape[1]).astype(int), mask.shape[1] - 1)
    return mask[np.ix_(rows, cols)]


def write_regions(folder: Path, frame_index: int, evidence: FrameEvidence, frame_shape: tuple[int, int]) -> list[Path]:
    """``regions_<k>.png`` (label image on the input grid, value = index into REGION_KINDS, x 50 for
    viewing) and ``regions_<k>.json`` (kinds, and per connected region its kind, area in px and
    polygon (row, col) in input pixels). Returns the paths written."""
    import imageio.v2 as imageio
    from skimage import measure

    from stem2d.output.files import atomic_path

    labels = np.zeros(frame_shape, np.uint8)
    for k, m in evidence.masks.items():
        labels[m] = REGION_KINDS.index(k)
    regions = []
    for k in REGION_KINDS[1:]:
        lab, n = ndimage.label(labels == REGION_KINDS.index(k))
        # each region on its bounding box (zero outside it: the same contour as on the whole frame,
        # without a frame-sized float copy per region)
        for i, box in enumerate(ndimage.find_objects(lab), start=1):
            comp = lab[box] == i
            contours = measure.find_contours(np.pad(comp, 1).astype(float), 0.5)
            origin = np.array([box[0].start, box[1].start], dtype=float)
            poly = measure.approximate_polygon(max(contours, key=len) - 1 + origin, tolerance=1.0) if contours else []
            regions.append({"kind": k, "area_px": int(comp.sum()),
                            "polygon": np.round(np.asarray(poly, dtype=float), 1).tolist()})
    folder.mkdir(parents=True, exist_ok=True)
    png, js = folder / f"regions_{frame_index:05d}.png", folder / f"regions_{frame_index:05d}.json"
    with atomic_path(png) as tmp:
        imageio.imwrite(tmp, (labels * 50).astype(np.uint8), format="png")
    with atomic_path(js) as tmp:
        tmp.write_text(json.dumps({"frame": frame_index, "kinds": list(REGION_KINDS),
                                   "png_value": "50 x kind index", "regions": regions}, indent=1))
    return [png, js]
