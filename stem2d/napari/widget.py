"""napari widget: find the defects of the current image layer with the bundled weights.

The widget (magicgui) asks for the material and the U-Net threshold (and, optionally, the pixel
size), analyses the frame shown (or every frame of a stack, streamed from a worker thread so the
viewer stays responsive: each frame's defects appear as it is done) and puts the defects into
one Points layer per class, styled as everywhere else (:mod:`stem2d.viz.style`).

:func:`find_defects_layers` does the work and returns plain layer-data tuples (no napari needed).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: Materials offered by the widget (stem2d.materials).
MATERIALS = ("WS2", "MoS2", "WSe2", "MoSe2")


@lru_cache(maxsize=4)
def _frame_analysis(material: str, threshold: float):
    """The detector and classifier for a material (cached: loading the weights takes a second)."""
    from stem2d.classes import ClassSet
    from stem2d.models.loading import classifier_path_for, load_classifier
    from stem2d.predict.detectors import build_detector

    classes = ClassSet.from_mapping(_class_mapping(material))
    model = load_classifier(classifier_path_for(material, classes.names))
    if tuple(model.class_names) != classes.names:
        classes = ClassSet.from_mapping(None)  # the WS2 weights, with their classes
    detector = build_detector("unet", material=material, threshold=float(threshold))
    return detector, model, classes


def _class_mapping(material: str) -> dict | None:
    """The shipped class set of a material (conf/classes/<material>.yaml), None for the default."""
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[2] / "conf" / "classes" / f"{material.lower()}.yaml"
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def find_defects_table(frames: Sequence[np.ndarray], *, material: str = "WS2", threshold: float = 0.5,
                       pixel_size_A: float | None = None) -> Iterator[tuple[int, pd.DataFrame, float]]:
    """Analyse frames one at a time; yield ``(frame index, detections of that frame, pixel size)``.

    Parameters
    ----------
    frames : sequence of (H, W) arrays
        The images (one frame: a list of one).
    material : str
        Host lattice (sets the lattice constant, and the classifier where one ships for it).
    threshold : float
        U-Net probability threshold (0..1).
    pixel_size_A : float, optional
        Å/px; None = measured from the lattice of the first frame.
    """
    from stem2d.predict.movie import MovieSettings, MovieSource, analyze_movie

    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold={threshold}: must be in (0, 1)")
    detector, model, classes = _frame_analysis(str(material), round(float(threshold), 3))
    settings = MovieSettings(material=str(material), pixel_size_A=pixel_size_A, evolve=False, progress=False)
    for k, frame in enumerate(frames):
        result = analyze_movie(MovieSource([np.asarray(frame, dtype=np.float32)], source=f"frame {k}"),
                               detector=detector, classifier=model, classes=classes, settings=settings)
        pixel_size_A = pixel_size_A or result.pixel_size_A
        settings = MovieSettings(material=str(material), pixel_size_A=pixel_size_A, evolve=False, progress=False)
        yield k, result.detections.assign(frame=k), float(result.pixel_size_A)


def find_defects_layers(frames: Sequence[np.ndarray], *, material: str = "WS2", threshold: float = 0.5,
                        pixel_size_A: float | None = None, frame_indices: Sequence[int] | None = None,
                        scale: Sequence[float] | None = None) -> list[tuple]:
    """Layer-data tuples (one Points layer per class) of the defects of ``frames``.

    ``frame_indices`` are the frame numbers the points get (default 0, 1, ...); ``scale`` is the
    image layer's scale (default: nm from the pixel size). See :func:`find_defects_table`.
    """
    from stem2d.napari.reader import points_layers

    tables, px = [], pixel_size_A
    for k, table, px in find_defects_table(frames, material=material, threshold=threshold,
                                           pixel_size_A=pixel_size_A):
        if frame_indices is not None:
            table = table.assign(frame=int(frame_indices[k]))
        tables.append(table)
    det = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["frame", "row", "col", "class"])
    return points_layers(det, pixel_size_A=px, scale=scale, ndim=3 if frame_indices is not None or len(frames) > 1 else 2)


def find_defects_widget():
    """The napari dock widget (npe2 ``widgets`` contribution)."""
    import napari
    from magicgui import magicgui
    from napari.qt.threading import thread_worker

    @magicgui(call_button="Find defects", material={"choices": list(MATERIALS)},
              threshold={"min": 0.05, "max": 0.95, "step": 0.05},
              pixel_size_A={"label": "pixel size (Å; 0 = measure)", "min": 0.0, "max": 5.0, "step": 0.001},
              all_frames={"label": "every frame of a stack"})
    def find_defects(viewer: napari.Viewer, image: napari.layers.Image, material: str = "WS2",
                     threshold: float = 0.5, pixel_size_A: float = 0.0, all_frames: bool = False) -> None:
        data = np.asarray(image.data) if image.ndim == 2 else image.data
        if image.ndim == 2:
            frames, indices = [data], None
        elif all_frames:
            frames, indices = data, list(range(data.shape[0]))
        else:
            k = int(viewer.dims.current_step[0])
            frames, indices = [np.asarray(data[k])], [k]
        scale = tuple(image.scale)

        @thread_worker
        def work():
            for i in range(len(frames)):
                yield find_defects_layers([np.asarray(frames[i])], material=material, threshold=threshold,
                                          pixel_size_A=pixel_size_A or None,
                                          frame_indices=None if indices is None else [indices[i]], scale=scale)

        def show(layers):
            for data_, kwargs, _ in layers:
                cls = kwargs["metadata"]["class"]
                name = f"{cls} (found)"
                if name in viewer.layers:
                    layer = viewer.layers[name]
                    old = layer.features
                    layer.data = np.concatenate([layer.data, data_])
                    layer.features = pd.concat([old, pd.DataFrame(kwargs["features"])], ignore_index=True)
                else:  # in the image's units and axes (napari ignores units that differ between layers)
                    viewer.add_points(data_, **{**kwargs, "name": name, "units": image.units,
                                                "axis_labels": image.axis_labels})

        worker = work()
        worker.yielded.connect(show)
        worker.start()

    return find_defects
