"""How results look: the one class style (:mod:`stem2d.viz.style`), drawing helpers for frames
(:mod:`stem2d.viz.draw`) and the self-contained run report (:mod:`stem2d.viz.report`)."""
