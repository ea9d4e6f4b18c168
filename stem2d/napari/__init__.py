"""napari plugin (npe2 manifest ``napari.yaml``): open a run folder as layers, find defects in an image.

``pip install "stem2d[napari]"``, then ``napari outputs/infer/runs/<stamp>/summary.json`` (or the
folder with ``napari --plugin stem2d``: napari's own reader also takes folders, so without
``--plugin`` it asks which reader to use). The reader's layer
data (:func:`stem2d.napari.reader.run_layers`) is plain numpy/pandas and needs no napari; only
the widget imports napari's GUI stack, and only when napari loads it.
"""
