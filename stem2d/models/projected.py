"""A site-vocabulary classifier seen through another class set (e.g. the default WS2 names).

The family classifier (``cam_cnn_mx2.ckpt``) speaks the site vocabulary
(:data:`stem2d.classes.SITE_CLASSES`). :class:`ProjectedClassifier` wraps it so that the rest of
the pipeline sees the requested classes for the material of the run: the site probabilities are
conditioned on the material (:func:`stem2d.classes.condition_on_material`: site classes it
cannot hold get 0; the model is not told the material, the config is), projected with
:func:`stem2d.classes.projection_matrix`, site classes the class set has no name for go to its
pristine class ("none of this set's defects": a movie reports such a candidate as ``unknown``),
and the class activation map of a projected class is the
probability-weighted mean of the CAMs of the site classes it merges. Since a CAM is linear in
the head weights, that is the CAM of one weight vector, computed in the same single pass.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from stem2d.classes import (
    SITE_CLASS_KINDS,
    SITE_CLASSES,
    ClassSet,
    pristine_class,
    projection_matrix,
    site_classes_in,
)
from stem2d.materials import Material
from stem2d.models.cam import class_activation_map

__all__ = ["ProjectedClassifier", "project_classifier"]

log = logging.getLogger(__name__)

#: Smallest probability kept before the log (a projected class no site class feeds is exactly 0).
_TINY = 1e-30


class ProjectedClassifier(nn.Module):
    """A site classifier whose outputs are projected onto ``classes`` for ``material``.

    Parameters
    ----------
    site_model : CamClassifier
        A classifier over site classes (its ``net`` has ``features``, ``pool`` and ``head``).
    classes : ClassSet
        The class set to report (every kind must exist in ``material``).
    material : Material

    Notes
    -----
    ``forward_with_cam`` returns log-probabilities as logits, so ``softmax`` of them gives back
    the projected probabilities exactly (they sum to 1).
    """

    def __init__(self, site_model: nn.Module, classes: ClassSet, material: Material) -> None:
        super().__init__()
        self.site_model = site_model
        matrix, names = projection_matrix(tuple(site_model.class_names), classes, material,
                                          outside_class=pristine_class(classes))
        self.register_buffer("matrix", torch.as_tensor(matrix, dtype=torch.float32))  # (S, K)
        held = site_classes_in(material)
        self.register_buffer("held", torch.tensor([float(s in held) for s in site_model.class_names]))  # (S,)
        self._names = tuple(names)
        self.material = material

    @property
    def class_names(self) -> list[str]:
        return list(self._names)

    @property
    def site_class_names(self) -> list[str]:
        return list(self.site_model.class_names)

    @property
    def hparams(self):
        return self.site_model.hparams

    @property
    def device(self) -> torch.device:
        return self.matrix.device

    def site_probabilities(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Site-class probabilities given the material (float32, (B, S)) and the last feature maps."""
        net = self.site_model.net
        feats = net.features(x)
        p = net.head(net.pool(feats)).float().softmax(dim=1) * self.held
        return p / p.sum(dim=1, keepdim=True).clamp_min(_TINY), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities over the projected classes, (B, K)."""
        p_site, _ = self.site_probabilities(x)
        return (p_site @ self.matrix).clamp_min(_TINY).log()

    def forward_with_cam(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities (B, K) and the CAM (B, H, W) of each image's winning projected class.

        The CAM of projected class k is ``sum_s w_s CAM_s`` over the site classes s it merges,
        with ``w_s = p_s M[s, k] / P_k`` (its share of k's probability; the weights sum to 1).
        """
        p_site, feats = self.site_probabilities(x)
        contrib = p_site[:, :, None] * self.matrix[None]  # (B, S, K): site s's mass in class k
        probs = contrib.sum(dim=1)
        win = probs.argmax(dim=1)
        rows = torch.arange(len(win), device=win.device)
        share = contrib[rows, :, win] / probs[rows, win, None].clamp_min(_TINY)  # (B, S)
        weight = share @ self.site_model.net.head.weight.float()  # (B, F): one head row per image
        cam = class_activation_map(feats, weight, rows, size=tuple(x.shape[-2:]))
        return probs.clamp_min(_TINY).log(), cam


def project_classifier(model: nn.Module, classes: ClassSet, material: Material, *,
                       strict: bool = True) -> nn.Module:
    """A :class:`ProjectedClassifier` for a site classifier (also onto the site classes themselves:
    conditioned on the material); ``model`` itself when it already has ``classes``' names; else
    ``ValueError`` (``strict``) or ``model`` unchanged (``strict=False``: ``classify.check_classes=false``).

    Raises
    ------
    ValueError
        The model is not a site classifier and its classes differ (``strict``), or a kind of
        ``classes`` does not exist in ``material``.
    """
    names = tuple(model.class_names)
    if names != SITE_CLASSES and (names == tuple(classes.names) or not strict):
        return model
    if names != SITE_CLASSES:
        raise ValueError(f"the classifier has classes {list(names)}, expected {list(classes.names)} "
                         "(only a site-vocabulary classifier, classes=sites, projects onto other class sets)")
    if classes != ClassSet.from_mapping(SITE_CLASS_KINDS):  # the site vocabulary fits every host
        try:
            classes.validate(material)
        except ValueError as err:
            raise ValueError(f"cannot project the site classifier onto these classes for {material.name}: "
                             f"{err}") from None
    log.info("site classifier read as classes %s for %s", list(classes.names), material.name)
    return ProjectedClassifier(model, classes, material)
