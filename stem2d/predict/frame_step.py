"""One frame of a movie -> its detections table: detector, classifier, evidence, in that order.

:class:`FrameStep` holds what every frame of a movie shares (detector, classifier, class set,
pixel size, the ``unconfirmed`` policy and the evidence step) and turns a frame into the rows of
``detections.csv``: the contract columns ``frame,row,col,class,score`` and the evidence columns
``sublattice, intensity_rel, p_class`` (:mod:`stem2d.predict.evidence`). The movie loop and
``stem2d.find_defects`` both use it, so one frame gives the same rows either way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from stem2d import CANONICAL_PIXEL_SIZE_A
from stem2d.classes import ClassSet
from stem2d.materials import Material
from stem2d.predict import frame as frame_analysis
from stem2d.predict.detectors import SiteDetector
from stem2d.predict.evidence import ADATOM, UNKNOWN
from stem2d.predict.frame import FrameResult

__all__ = ["DETECTION_COLUMNS", "UNCONFIRMED", "FrameStep", "frame_table"]

log = logging.getLogger(__name__)

#: The detections contract: one row per defect, row/col in input-frame pixels (evidence columns follow).
DETECTION_COLUMNS = ["frame", "row", "col", "class", "score"]
#: What happens to an unconfirmed candidate (see ``conf/infer.yaml`` ``classify.unconfirmed``).
UNCONFIRMED = ("unknown", "drop", "relabel")


def frame_table(k: int, result: FrameResult, class_names: Sequence[str],
                evidence: pd.DataFrame | None = None) -> pd.DataFrame:
    """The detections of frame ``k``: ``frame,row,col,class,score`` (+ the evidence columns)."""
    table = pd.DataFrame({
        "frame": np.full(len(result.labels), k, dtype=np.int64),
        "row": result.points[:, 0],
        "col": result.points[:, 1],
        "class": np.asarray(class_names, dtype=object)[result.labels] if len(result.labels) else [],
        "score": result.scores,
    })
    if evidence is None:
        return table
    # the evidence step may demote a call to `unknown` (or report a bright hollow as `adatom`)
    table["class"] = evidence["class"].to_numpy()
    for col in evidence.columns.drop("class"):
        table[col] = evidence[col].to_numpy()
    return table


def concat_tables(rows: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Frame tables -> one table, contract columns first."""
    if not rows:
        return pd.DataFrame(columns=DETECTION_COLUMNS)
    table = pd.concat(rows, ignore_index=True)
    extra = [c for c in table.columns if c not in DETECTION_COLUMNS]
    return table[DETECTION_COLUMNS + extra]


def evidence_rule(value) -> str:
    """``check_evidence`` as a rule name: ``confirm``, ``contradict`` or ``off`` (True / False are
    ``confirm`` / ``off``, the older boolean setting)."""
    rule = {True: "confirm", False: "off"}.get(value, value) if isinstance(value, bool) else str(value)
    if rule not in ("confirm", "contradict", "off"):
        raise ValueError(f"check_evidence={value!r}: choose confirm, contradict or off")
    return rule


class FrameStep:
    """Frames of one movie -> detections, with the detector's options and the evidence step.

    Parameters
    ----------
    detector : SiteDetector
    classify : callable
        ``windows -> (labels, probs, cams, cam_pos)`` (see :data:`stem2d.predict.frame.TileClassifier`).
    class_names : tuple of str
        The classifier's classes.
    classes : ClassSet
        Their defect kinds (the evidence step's expected column intensities).
    material : Material
    pixel_size_A : float
        Input sampling of the frames.
    unconfirmed : {"unknown", "drop", "relabel"}
    evidence : bool
    check_evidence : {"confirm", "contradict", "off"} (True: confirm, False: off)
        When a call's column unconfirms it (:func:`stem2d.predict.evidence.detection_evidence`).
    column_candidates : bool
        Also classify the columns whose intensity is ``|z| >= column_z`` robust SDs off their
        sublattice (:mod:`stem2d.predict.column_candidates`; not with a grid detector).
    column_z : float
    temperature : float
        Probability calibration of the classifier (:mod:`stem2d.models.temperature`).
    ahead : int, default 1
        Frames the movie loop maps ahead of the evidence step (``prefetch``): the column
        quantifications of that many frames + 2 are kept.
    """

    def __init__(self, detector: SiteDetector, classify, *, class_names: tuple[str, ...], classes: ClassSet,
                 material: Material, pixel_size_A: float, unconfirmed: str = "unknown", evidence: bool = True,
                 check_evidence: str = "confirm", column_candidates: bool = True, column_z: float = 4.0,
                 temperature: float = 1.0, ahead: int = 1) -> None:
        from stem2d.predict.column_candidates import ColumnCache, with_column_candidates

        if unconfirmed not in UNCONFIRMED:
            raise ValueError(f"unconfirmed={unconfirmed!r}: choose {', '.join(UNCONFIRMED)}")
        # one column quantification per frame, shared by the candidates and the evidence
        # (kept for the frames in flight: the one in the evidence step, those queued and mapped ahead)
        self.columns = ColumnCache(material=material, pixel_size_A=CANONICAL_PIXEL_SIZE_A,
                                   size=max(0, int(ahead)) + 2)
        self.uses_columns = bool(evidence) or bool(column_candidates and detector.centred)
        if column_candidates and detector.centred:
            detector = replace(detector, propose=with_column_candidates(
                detector.propose, self.columns, merge_dist_px=detector.merge_dist_A / CANONICAL_PIXEL_SIZE_A,
                z_threshold=float(column_z)))
        self.detector, self.classify, self.class_names = detector, classify, tuple(class_names)
        self.material, self.pixel_size_A, self.unconfirmed = material, float(pixel_size_A), unconfirmed
        self.pristine = self.class_names.index("pristine") if "pristine" in self.class_names else None
        self.evidence = None
        if evidence:
            from stem2d.predict.evidence import class_expectations
            from stem2d.predict.evidence_step import EvidenceStep

            self.evidence = EvidenceStep(
                self.columns, material=material, class_names=self.class_names,
                expectations=class_expectations(classes, material), temperature=float(temperature),
                pristine_index=self.pristine if unconfirmed != "relabel" else None,
                evidence_rule="off" if unconfirmed == "relabel" else evidence_rule(check_evidence),
                trust_regions=unconfirmed == "relabel")

    def analyze(self, frame: np.ndarray, *, canon: np.ndarray | None = None, with_heat: bool = True,
                sites: tuple[np.ndarray, np.ndarray] | None = None) -> FrameResult:
        """The frame through :func:`~stem2d.predict.frame.analyze_frame` with the detector's options.

        ``sites``: the detector's ``(points, scores)`` for ``canon`` when already computed (the
        movie loop maps the next frame ahead in another thread).
        """
        d = self.detector
        propose = d if sites is None else (lambda _canon: sites)
        return frame_analysis.analyze_frame(
            frame, pixel_size_A=self.pixel_size_A, detector=propose, classify=self.classify,
            pristine_index=self.pristine,
            refine_with_cam=not d.centred, relabel_pristine=self.unconfirmed == "relabel" and d.centred,
            keep_unconfirmed=self.evidence is not None and d.centred, merge_dist_A=d.merge_dist_A,
            with_heat=with_heat, canon=canon)

    def table(self, k: int, frame: np.ndarray, result: FrameResult, canon: np.ndarray):
        """Frame ``k``'s detections (rows of ``detections.csv``), its evidence (or None) and what the
        overlay shows (the claimed defects and the region masks).

        Returns
        -------
        table : DataFrame
        evidence : FrameEvidence or None
        shown : FrameResult-like
            ``heat, points, labels, regions`` for :class:`~stem2d.predict.overlay.OverlayRenderer`.
        """
        ev, shown = None, result
        if self.evidence is not None:
            ev = self.evidence(canon, result.points, result.labels, result.probs, frame.shape)
            claimed = ~ev.annotation["class"].isin([UNKNOWN, ADATOM]).to_numpy()
            shown = SimpleNamespace(heat=result.heat, points=result.points[claimed], labels=result.labels[claimed],
                                    regions=ev.masks)
        table = frame_table(k, result, self.class_names, None if ev is None else ev.annotation)
        if self.unconfirmed == "drop":
            table = table[table["class"] != UNKNOWN]
        return table, ev, shown

    def lattice_summary(self, confirmed: pd.DataFrame) -> dict:
        """Region fractions, lattice area and defect densities per lattice area (outside holes,
        edges, contamination and amorphous patches) from the evidence step."""
        if self.evidence is None:
            return {}
        out = self.evidence.summary()
        area = out.get("lattice_area_nm2_total")
        if area:
            inside = confirmed[confirmed["region"] == "lattice"] if "region" in confirmed else confirmed
            out["density_per_nm2_lattice"] = {c: int((inside["class"] == c).sum()) / area
                                              for c in self.class_names if c != "pristine"}
        return out

    def calibration(self, frame: np.ndarray, canon: np.ndarray, ev, distortion) -> dict | None:
        """The calibration report of a frame (:func:`stem2d.predict.calibration.frame_calibration`)
        against the ranges of conf/data/simulated.yaml; logged."""
        from stem2d.predict.calibration import TrainingRanges, frame_calibration

        quant = self.columns(canon)
        if quant is None or ev is None or ev.regions is None:
            return None
        data_yaml = Path(__file__).resolve().parents[2] / "conf" / "data" / "simulated.yaml"
        ranges = TrainingRanges.from_yaml(data_yaml) if data_yaml.is_file() else TrainingRanges()
        report = frame_calibration(frame, pixel_size_A=self.pixel_size_A, material=self.material, quant=quant,
                                   canon=canon, distortion=distortion,
                                   lattice_fraction=ev.regions.fractions()["lattice"], ranges=ranges)
        log.info("frame 0 calibration: metal/chalcogen %.2f (Z exponent %.2f), probe FWHM %s A, contrast/noise %s, "
                 "dose ~%s e/A^2, scan distortion %s, lattice fraction %.2f", report["ratio_metal_chalcogen"],
                 report["z_exponent"], _fmt(report["probe_fwhm_A"]), _fmt(report["contrast_to_noise"]),
                 _fmt(report["dose_e_per_A2"]), _fmt(report["scan_distortion"]), report["lattice_fraction"])
        return report

    def baseline(self, k: int, frame: np.ndarray, detector: SiteDetector, canon: np.ndarray) -> pd.DataFrame:
        """Frame ``k`` through a baseline detector (no CAM refinement, no relabelling, no evidence)."""
        res = frame_analysis.analyze_frame(frame, pixel_size_A=self.pixel_size_A, detector=detector,
                                           classify=self.classify, pristine_index=self.pristine, with_heat=False,
                                           canon=canon)
        return frame_table(k, res, self.class_names)


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3g}"
