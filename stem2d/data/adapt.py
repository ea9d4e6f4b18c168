"""The user's own frames with confident pseudo-labels, to fine-tune the U-Net (``experiment=adapt``).

:class:`AdaptDataModule` is an :class:`~stem2d.data.experimental.ExperimentalDataModule` whose
labels come from :mod:`stem2d.data.pseudo`: the bundled (or given) U-Net, the lattice-residual
labeller and column quantification propose sites, the CAM classifier confirms or rejects them,
and uncertain sites are left out of the loss. The bottom ``val_fraction`` stripe of every frame is
held out (validation and test tiles, and :class:`~stem2d.models.adapt.AdaptReport`'s before /
after comparison); no training tile touches it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from stem2d import CANONICAL_PIXEL_SIZE_A
from stem2d.data.experimental import ExperimentalDataModule
from stem2d.data.labels import EDGE_PAD_PX, LABEL_METHODS, LabelledFrame
from stem2d.data.pixel_tiles import region_split
from stem2d.data.pseudo import PseudoLabels, pseudo_labels, pseudo_mask
from stem2d.lattice.scale import resample, resample_factors, to_resampled_coords

log = logging.getLogger(__name__)

__all__ = ["AdaptDataModule", "HeldOut"]


@dataclass(frozen=True)
class HeldOut:
    """One labelled frame at 0.3 A/px and what is known about its held-out stripe.

    ``rows`` is the stripe ``[r0, r1)``; ``labels`` the pseudo-labels of the whole frame; ``truth``
    the true defect sites (synthetic movies only, else None). All positions in canonical pixels.
    """

    image: np.ndarray
    rows: tuple[int, int]
    labels: PseudoLabels
    truth: np.ndarray | None
    source: str


class AdaptDataModule(ExperimentalDataModule):
    """Pseudo-labelled frames of the user's movie (or a synthetic one) for fine-tuning the U-Net.

    Parameters
    ----------
    movie, label_frames, material, pixel_size_A, synthetic, n_movies, movie_seed, tile_size, stride,
    val_fraction, samples_per_epoch, batch_size, num_workers, seed, augment
        As :class:`~stem2d.data.experimental.ExperimentalDataModule`.
    label_method : {"pseudo"}
        Only pseudo-labels (the key exists so ``model.label_method`` records it).
    test_label_method : {None, "truth"}
        ``"truth"`` tests against a synthetic movie's truth (None: the held-out pseudo-labels).
    unet_ckpt : path, optional
        U-Net that proposes sites (None: the bundled ``unet_ws2.ckpt``).
    classifier_ckpt : path, optional
        CAM classifier that confirms them (None: the bundled one of ``material``, else WS2's).
    min_sources : int, default 2
        Detectors (of unet, lattice, columns) that must agree on a positive.
    sufficient : sequence of str, default ("columns",)
        Detectors whose proposal alone, confirmed by the classifier, makes a positive.
    p_confident : float, default 0.9
        Classifier probability for a positive (defect) or a negative (pristine).
    column_z : float, default 4.0
        A metal or chalcogen column whose ``z`` (robust standard deviations of ``intensity_rel``
        from its sublattice) exceeds this in size is a column-quantification candidate.
    column_z_uncertain : float, default 2.5
        A column with ``column_z_uncertain <= |z| < column_z`` that is no site of its own is made
        uncertain (ignored), not background: a defect every detector missed should not be taught
        as background.
    merge_dist_A, label_radius_A, ignore_radius_A : float, default 1.5, 1.0, 2.0
        Candidates closer than ``merge_dist_A`` are one site; a positive is a disk of
        ``label_radius_A``; an uncertain site is an ignored disk of ``ignore_radius_A``.
    """

    label_methods = (*LABEL_METHODS, "pseudo")

    def __init__(
        self,
        movie: str | None = None,
        *,
        label_frames: Sequence[int] = (0,),
        label_method: str = "pseudo",
        test_label_method: str | None = None,
        material: str = "WS2",
        pixel_size_A: float | None = None,
        synthetic: Mapping | None = None,
        n_movies: int = 1,
        movie_seed: int = 0,
        tile_size: int = 128,
        stride: int = 16,
        val_fraction: float = 0.25,
        samples_per_epoch: int | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
        augment: Mapping | None = None,
        unet_ckpt: str | None = None,
        classifier_ckpt: str | None = None,
        min_sources: int = 2,
        sufficient: Sequence[str] = ("columns",),
        p_confident: float = 0.9,
        column_z: float = 4.0,
        column_z_uncertain: float = 2.5,
        merge_dist_A: float = 1.5,
        label_radius_A: float = 1.0,
        ignore_radius_A: float = 2.0,
    ) -> None:
        if label_method != "pseudo":
            raise ValueError(f"data.label_method={label_method!r}: the adapt data only makes 'pseudo' labels")
        if test_label_method not in (None, "truth"):
            raise ValueError(f"data.test_label_method={test_label_method!r}: choose null or truth")
        for key, path in (("unet_ckpt", unet_ckpt), ("classifier_ckpt", classifier_ckpt)):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"data.{key}={str(path)!r} does not exist")
        super().__init__(movie, label_frames=label_frames, label_method=label_method,
                         test_label_method=test_label_method, material=material, pixel_size_A=pixel_size_A,
                         synthetic=synthetic, n_movies=n_movies, movie_seed=movie_seed,
                         label_radius_A=label_radius_A, tile_size=tile_size, stride=stride,
                         val_fraction=val_fraction, samples_per_epoch=samples_per_epoch, batch_size=batch_size,
                         num_workers=num_workers, seed=seed, augment=augment)
        self.save_hyperparameters(logger=False)
        self.heldout: list[HeldOut] = []
        self._models = None
        self._weak_columns = np.zeros((0, 2))

    # ------------------------------------------------------------ the three detectors and the judge
    def _load_models(self):
        if self._models is None:
            from stem2d.models.loading import bundled_classifier_path, load_classifier
            from stem2d.models.pixel import pretrained_unet
            from stem2d.models.unet import for_inference

            h = self.hparams
            ckpt = h.classifier_ckpt
            if ckpt is None and bundled_classifier_path(self.material.name).is_file():
                ckpt = bundled_classifier_path(self.material.name)
            classifier = load_classifier(ckpt)
            unet = for_inference(pretrained_unet(h.unet_ckpt).eval())
            self._models = (unet, classifier)
            log.info("pseudo-labels: U-Net %s, classifier %s (classes %s)", h.unet_ckpt or "bundled",
                     ckpt or "bundled WS2", list(classifier.class_names))
        return self._models

    def defect_probability(self, image: np.ndarray, sites: np.ndarray) -> np.ndarray:
        """1 - the classifier's pristine probability of the window at each site (canonical px)."""
        from stem2d.predict.classify import classify_tiles
        from stem2d.predict.windows import extract_windows

        sites = np.asarray(sites, dtype=float).reshape(-1, 2)
        if not len(sites):
            return np.zeros(0)
        _, classifier = self._load_models()
        res = classify_tiles(classifier, extract_windows(image, sites))
        names = list(classifier.class_names)
        return 1.0 - res.probs[:, names.index("pristine")] if "pristine" in names else res.probs.max(axis=1)

    def candidates(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Sites proposed by the U-Net, the lattice residual and column quantification (canonical px)."""
        from stem2d.lattice import LABELERS
        from stem2d.lattice.columns import quantify_columns
        from stem2d.predict.pixelmap import extract_defects, predict_frame

        h = self.hparams
        unet, _ = self._load_models()
        merge_px = h.merge_dist_A / CANONICAL_PIXEL_SIZE_A
        unet_pts, _ = extract_defects(predict_frame(unet, image), min_dist_px=merge_px)
        lattice_pts = LABELERS["lattice"](image, material=self.material, pixel_size_A=CANONICAL_PIXEL_SIZE_A)
        cols = quantify_columns(image, material=self.material, pixel_size_A=CANONICAL_PIXEL_SIZE_A).table
        on_lattice = cols["sublattice"].isin(["metal", "chalcogen"])
        odd = on_lattice & (cols["z"].abs() >= h.column_z)
        weak = on_lattice & (cols["z"].abs() >= h.column_z_uncertain) & ~odd
        self._weak_columns = cols.loc[weak, ["row", "col"]].to_numpy(dtype=float)
        return {"unet": unet_pts, "lattice": np.asarray(lattice_pts, dtype=float).reshape(-1, 2),
                "columns": cols.loc[odd, ["row", "col"]].to_numpy(dtype=float)}

    def _with_weak_columns(self, labels: PseudoLabels) -> PseudoLabels:
        """``labels`` with the weakly odd columns that are no site yet added as uncertain."""
        weak = self._weak_columns
        sites = np.concatenate([labels.positive, labels.negative, labels.uncertain])
        if len(weak) and len(sites):
            d, _ = cKDTree(sites).query(weak)
            weak = weak[d > self.hparams.merge_dist_A / CANONICAL_PIXEL_SIZE_A]
        votes = {**labels.votes, "weak_columns": len(weak)}
        return PseudoLabels(labels.positive, labels.negative, np.concatenate([labels.uncertain, weak]), votes)

    # ------------------------------------------------------------ labelling (ExperimentalDataModule hook)
    def _label_movie(self, movie, method: str) -> list[LabelledFrame]:
        if method == "truth":
            return super()._label_movie(movie, method)
        h = self.hparams
        n = len(movie.frames)
        out = []
        pixel_size = None
        for k in h.label_frames:
            if not -n <= k < n:
                raise ValueError(f"data.label_frames: frame {k} out of range for {movie.source} ({n} frames)")
            frame = movie.frames[k]
            pixel_size = pixel_size or self._pixel_size(movie, frame)
            image = resample(frame, from_pixel_size_A=pixel_size).astype(np.float64)
            if min(image.shape) <= EDGE_PAD_PX:
                raise ValueError(f"{movie.source}[{k}]: frame of {image.shape} px at 0.3 A/px is too small")
            labels = pseudo_labels(self.candidates(image), lambda s, im=image: self.defect_probability(im, s),
                                   merge_dist_px=h.merge_dist_A / CANONICAL_PIXEL_SIZE_A,
                                   min_sources=int(h.min_sources), sufficient=tuple(h.sufficient),
                                   p_confident=float(h.p_confident))
            labels = self._with_weak_columns(labels)
            mask = pseudo_mask(image.shape, labels, radius_px=h.label_radius_A / CANONICAL_PIXEL_SIZE_A,
                               ignore_radius_px=h.ignore_radius_A / CANONICAL_PIXEL_SIZE_A)
            truth = None
            if hasattr(movie, "truth"):
                pts = movie.truth.loc[movie.truth["frame"] == k % n, ["row", "col"]].to_numpy(dtype=float)
                truth = to_resampled_coords(pts, resample_factors(np.shape(frame), from_pixel_size_A=pixel_size))
            source = f"{movie.source}[{k}]"
            r0 = region_split(image.shape[0], val_fraction=float(h.val_fraction), val_tile=32)[1][0]
            self.heldout.append(HeldOut(image, (r0, image.shape[0]), labels, truth, source))
            out.append(LabelledFrame(np.pad(image, EDGE_PAD_PX, mode="reflect").astype(np.float32),
                                     np.pad(mask, EDGE_PAD_PX), len(labels.positive), source, EDGE_PAD_PX))
            log.info("pseudo-labelled %s: %s", source, labels.counts())
        return out
