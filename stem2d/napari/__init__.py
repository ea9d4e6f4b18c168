"""napari plugin (npe2 manifest ``napari.yaml``): open a run folder as layers, find defects in an image.

``pip install "stem2d[napari]"``, then ``napari outputs/infer/runs/<stamp>``. The reader's layer
data (:func:`stem2d.napari.reader.run_layers`) is plain numpy/pandas and needs no napari; only
the widget imports napari's GUI stack, and only when napari loads it.
"""
