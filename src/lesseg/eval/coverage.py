"""How much of each object a label map covers, its discriminative part and the rest apart.

CAMs trained on image-level tags fire on the few pixels that tell a class apart (a bird's head, the
synthetic scenes' markers) and miss the rest of the object; Puzzle-CAM and MCIS claim to spread them over
whole objects. With per-object masks and part masks (the synthetic scenes' ``instances/`` and ``parts/``)
this is measured directly: for an object ``O`` of class ``c`` with discriminative part ``P``, the share of
``P`` and the share of the rest ``O \\ P`` that the label map assigns to ``c``.

Example:
    >>> import numpy as np
    >>> labels = np.array([[1, 1, 0, 0]])          # the prediction covers the first two pixels
    >>> instances = np.array([[1, 1, 1, 1]])       # one object over the whole row ...
    >>> parts = np.array([[1, 0, 0, 0]])           # ... whose first pixel is its part
    >>> classes = np.array([[1, 1, 1, 1]])         # of class 1
    >>> cov = ObjectCoverage()
    >>> cov.update(labels, instances, parts, classes)
    >>> cov.result()
    {'objects': 1, 'part': 1.0, 'rest': 0.3333333333333333, 'object': 0.5}
"""

from __future__ import annotations

import numpy as np


class ObjectCoverage:
    """Accumulates per-object coverage over images; :meth:`result` gives the means over objects.

    ``part`` is the mean share of each object's part pixels labelled with the object's class, ``rest`` the
    same for its other pixels and ``object`` for all of them. Objects without part pixels or without other
    pixels (after occlusion) count in ``object`` only through their pixels and are left out of the
    ``part``/``rest`` means.
    """

    def __init__(self) -> None:
        self.part: list[float] = []
        self.rest: list[float] = []
        self.whole: list[float] = []

    def update(
        self, labels: np.ndarray, instances: np.ndarray, parts: np.ndarray, classes: np.ndarray
    ) -> None:
        """One image: ``labels`` the predicted class map, ``instances`` object ids (0 = none), ``parts`` the
        object id on its part pixels (0 elsewhere), ``classes`` the ground-truth class map; all HxW."""
        shapes = {a.shape for a in (labels, instances, parts, classes)}
        if len(shapes) != 1 or labels.ndim != 2:
            raise ValueError(
                f"labels, instances, parts and classes must be HxW maps of one size, got {shapes}"
            )
        for obj in np.unique(instances):
            if obj == 0:
                continue
            inside = instances == obj
            cls = np.bincount(classes[inside].ravel()).argmax()  # the object's class, by its pixels
            hit = labels == cls
            part = inside & (parts == obj)
            rest = inside & ~part
            self.whole.append(float(hit[inside].mean()))
            if part.any() and rest.any():
                self.part.append(float(hit[part].mean()))
                self.rest.append(float(hit[rest].mean()))

    def result(self) -> dict:
        def mean(v: list[float]) -> float | None:
            return float(np.mean(v)) if v else None

        return {"objects": len(self.whole), "part": mean(self.part), "rest": mean(self.rest),
                "object": mean(self.whole)}  # fmt: skip
