"""Value checks at the config boundary, in one place: every key's type and range, before work starts.

Each entry point calls :func:`validate` with its table (:data:`TRAIN`, :data:`INFER`) right after
Hydra composed the config. A bad value stops the run with one ``ValueError`` that names the key,
the value and what is allowed, e.g.::

    model.optimizer.lr=1000.0: out of range, allowed 0 < lr <= 10

Why a table of :class:`Check` rows keyed by dotted config path, and not pydantic models or
Hydra structured configs: the composed config is a tree whose shape depends on the chosen
groups (SGD or AdamW, CamNet or UNet, simulated or experimental data), so a model mirroring it
would need one class per combination and would also reject keys it does not know. A flat
table checks exactly the keys that are present, reads as a table, and each message is built
from its row. A key missing from the config is skipped here (``require_keys`` and Hydra's
struct mode report missing and misspelt keys).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

__all__ = ["Check", "INFER", "TRAIN", "check_value", "validate"]


@dataclass(frozen=True)
class Check:
    """One config key: its type (``number``, ``int``, ``bool``, ``choice``, ``text``) and range.

    ``gt``/``ge``/``lt``/``le`` bound numbers; ``null`` allows None; ``choices`` lists the allowed
    values of a ``choice`` key; numbers must always be finite.
    """

    key: str
    kind: str
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    null: bool = False
    choices: tuple[Any, ...] = ()

    def allowed(self) -> str:
        """What is allowed, in words (the second half of every message)."""
        name = self.key.rsplit(".", 1)[-1]
        if self.kind == "choice":
            text = "one of " + ", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in self.choices)
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind == "text":
            text = "a text"
        else:
            lows = [f"> {_fmt(self.gt)}"] if self.gt is not None else [f">= {_fmt(self.ge)}"] if self.ge is not None else []
            highs = [f"< {_fmt(self.lt)}"] if self.lt is not None else [f"<= {_fmt(self.le)}"] if self.le is not None else []
            what = "an integer" if self.kind == "int" else "a finite number"
            if lows and highs:  # 0 < lr <= 10
                text = f"{what} with {lows[0][2:].strip()} {_flip(lows[0][:2].strip())} {name} {highs[0]}"
            else:
                text = " ".join([what, *lows, *highs])
        return text + (", or null" if self.null else "")


def number(key: str, **kw: Any) -> Check:
    return Check(key, "number", **kw)


def integer(key: str, **kw: Any) -> Check:
    return Check(key, "int", **kw)


def boolean(key: str, **kw: Any) -> Check:
    return Check(key, "bool", **kw)


def choice(key: str, *choices: Any, **kw: Any) -> Check:
    return Check(key, "choice", choices=tuple(choices), **kw)


# ------------------------------------------------------------------------------------- tables
# key                                                      range (numbers are always finite)

TRAIN: tuple[Check, ...] = (
    integer("seed",                                         ge=0, null=True),
    number("model.optimizer.lr",                            gt=0, le=10),
    number("model.optimizer.momentum",                      ge=0, lt=1),
    number("model.optimizer.weight_decay",                  ge=0, lt=1),
    boolean("model.optimizer.nesterov"),
    integer("model.scheduler.T_max",                        ge=1),
    number("model.net.dropout",                             ge=0, lt=1),
    number("model.net.pool_sigma_px",                       gt=0, null=True),
    integer("model.net.convs_per_block",                    ge=1),
    number("model.pos_weight",                              gt=0),
    number("model.focal_gamma",                             ge=0),
    number("model.focal_alpha",                             ge=0, le=1),
    integer("trainer.max_epochs",                           ge=1),
    integer("trainer.min_epochs",                           ge=0, null=True),
    integer("trainer.log_every_n_steps",                    ge=1),
    integer("trainer.check_val_every_n_epoch",              ge=1, null=True),
    integer("trainer.accumulate_grad_batches",              ge=1),
    number("trainer.gradient_clip_val",                     ge=0, null=True),
    integer("data.batch_size",                              ge=1),
    integer("data.num_workers",                             ge=0),
    integer("data.n_bases_per_class",                       ge=1),
    integer("data.n_val_bases_per_class",                   ge=1),
    integer("data.n_test_bases_per_class",                  ge=1),
    integer("data.n_train_samples",                         ge=1),
    integer("data.n_val_samples",                           ge=1),
    integer("data.n_test_samples",                          ge=1),
    integer("data.base_size_px",                            ge=64),
    number("data.pixel_size_A",                             gt=0, null=True),
    number("data.max_offset_px",                            ge=0),
    number("data.flip_probability",                         ge=0, le=1),
    boolean("data.skip_missing_classes"),
    number("data.max_shear",                                ge=0, lt=1),
    number("data.max_shift_px",                             ge=0),
    number("data.max_jitter_px",                            ge=0),
    number("data.max_background_fraction",                  ge=0),
    number("data.max_detector_sigma_counts",                ge=0),
    number("data.max_blur_px",                              ge=0),
    number("data.neighbour_density_per_nm2",                ge=0),
    number("data.min_neighbour_distance_A",                 ge=0),
    number("data.max_dopant_offset_A",                      ge=0),
    number("data.val_fraction",                             gt=0, lt=1),
    integer("data.tile_size",                               ge=16),
    integer("data.stride",                                  ge=1),
    number("data.label_radius_A",                           gt=0),
    integer("data.n_movies",                                ge=1),
    integer("data.samples_per_epoch",                       ge=1, null=True),
    integer("callbacks.early_stopping.patience",            ge=0),
    number("callbacks.divergence.max_factor",               gt=1),
    integer("callbacks.divergence.patience_steps",          ge=1),
)

INFER: tuple[Check, ...] = (
    integer("seed",                                         ge=0),
    number("pixel_size_A",                                  gt=0, null=True),   # plausibility: lattice/scale.py
    integer("max_frames",                                   ge=1, null=True),
    number("dose_per_frame",                                gt=0, null=True),
    choice("device",                                        "cpu", "cuda", "auto"),
    integer("threads",                                      ge=1, null=True),
    integer("prefetch",                                     ge=0, le=8),
    integer("classify.batch_size",                          ge=1),
    choice("classify.bf16",                                 "auto", True, False),
    choice("classify.runtime",                              "auto", "torch", "onnxruntime"),
    boolean("classify.check_classes"),
    choice("classify.unconfirmed",                          "unknown", "drop", "relabel"),
    boolean("classify.evidence"),
    choice("classify.check_evidence",                       "confirm", "contradict", "off", True, False),
    boolean("classify.column_candidates"),
    number("classify.column_z",                             gt=0),
    choice("detector.name",                                 "unet", "grid", "lattice", "fourier"),
    integer("detector.tile_size_px",                        ge=16, null=True),
    number("detector.threshold",                            gt=0, lt=1),
    integer("detector.min_area_px",                         ge=0),
    integer("detector.max_area_px",                         ge=1),
    number("detector.merge_dist_A",                         ge=0),
    integer("detector.stride_px",                           ge=1),
    choice("detector.bf16",                                 "auto", True, False),
    choice("detector.runtime",                              "auto", "torch", "onnxruntime"),
    choice("score.baseline",                                "lattice", "fourier", "unet", "grid", null=True),
    number("score.match_dist_A",                            gt=0),
    boolean("outputs.video"),
    number("outputs.fps",                                   gt=0, le=1000),
    choice("outputs.video_preset",                          "ultrafast", "superfast", "veryfast", "faster", "fast",
           "medium", "slow"),
    boolean("outputs.evolution"),
    boolean("outputs.tensorboard"),
    boolean("outputs.progress"),
    boolean("outputs.columns"),
    number("evolution.search_range_A",                      gt=0),
    integer("evolution.memory",                             ge=0),
    number("evolution.class_change_cost_A",                 ge=0),
    integer("evolution.max_lag_frames",                     ge=1),
    number("evolution.frame_time_s",                        gt=0, null=True),
    integer("evolution.n_boot",                             ge=0),
)


# ------------------------------------------------------------------------------------- checks


def validate(cfg: DictConfig, table: Iterable[Check], *, where: str) -> None:
    """Check every key of ``table`` present in ``cfg``; one ``ValueError`` listing all problems.

    Parameters
    ----------
    cfg : DictConfig
        The composed config (interpolations are resolved key by key).
    table : iterable of Check
        :data:`TRAIN`, :data:`INFER` or another table.
    where : str
        The command, first word of the message (``"train"``, ``"infer"``).

    Raises
    ------
    ValueError
        ``"<where>: model.optimizer.lr=1000.0: out of range, allowed ..."``; several problems are
        joined with ``"; "``.
    """
    problems = []
    for check in table:
        if not _present(cfg, check.key):
            continue
        value = OmegaConf.select(cfg, check.key, throw_on_missing=False)
        problem = check_value(check, value)
        if problem:
            problems.append(problem)
    if problems:
        raise ValueError(f"{where}: " + "; ".join(problems))


def check_value(check: Check, value: Any) -> str | None:
    """The problem with ``value`` for ``check`` (``"key=value: ..., allowed ..."``), or None."""
    head = f"{check.key}={value!r}"
    if value is None:
        return None if check.null else f"{head}: a value is needed, allowed {check.allowed()}"
    if check.kind == "choice":
        ok = any(value is c or (type(value) is type(c) and value == c) for c in check.choices)
        return None if ok else f"{head}: not allowed, allowed {check.allowed()}"
    if check.kind == "bool":
        return None if isinstance(value, bool) else f"{head}: not true/false, allowed {check.allowed()}"
    if check.kind == "text":
        return None if isinstance(value, str) else f"{head}: not a text"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        what = "an integer" if check.kind == "int" else "a number"
        return f"{head}: not {what}, allowed {check.allowed()}"
    if not math.isfinite(value):
        return f"{head}: not finite, allowed {check.allowed()}"
    if check.kind == "int" and value != int(value):
        return f"{head}: not an integer, allowed {check.allowed()}"
    out = ((check.gt is not None and not value > check.gt) or (check.ge is not None and not value >= check.ge)
           or (check.lt is not None and not value < check.lt) or (check.le is not None and not value <= check.le))
    return f"{head}: out of range, allowed {check.allowed()}" if out else None


def _present(cfg: DictConfig, key: str) -> bool:
    """Whether ``key`` exists in ``cfg`` with a value (not ``???``), through dict nodes only."""
    node: Any = cfg
    parts = key.split(".")
    for part in parts[:-1]:
        if not isinstance(node, DictConfig) or part not in node or node[part] is None:
            return False
        node = node[part]
    if not isinstance(node, DictConfig) or parts[-1] not in node:
        return False
    return not OmegaConf.is_missing(node, parts[-1])


def _flip(op: str) -> str:
    return {">": "<", ">=": "<="}[op]


def _fmt(x: float | None) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)

